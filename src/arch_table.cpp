#include "arch_table.h"

#include <initializer_list>

#include <nlohmann/json.hpp>

#include "log.h"
#include "resources.h"

namespace sparsejit {
namespace {

Result<nlohmann::json> parse(const std::string& path) {
  auto text = read_resource(path);
  if (!text) return text.error();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("arch", path + " is not a JSON object");
  return j;
}

// A key the reader does not know is an error naming it: a misspelled knob would otherwise be
// ignored silently, and the tuning it was meant to change never applied.
Status known_keys(const nlohmann::json& o, std::initializer_list<const char*> keys, const std::string& where) {
  for (auto it = o.begin(); it != o.end(); ++it) {
    bool ok = false;
    for (const char* k : keys) ok = ok || it.key() == k;
    if (!ok) {
      std::string list;
      for (const char* k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
      return make_error("arch", where + ": unknown key \"" + it.key() + "\" (known: " + list + ")");
    }
  }
  return ok_status();
}

Status read_op(const nlohmann::json& ops, const char* name, OpTuning& t, const std::string& path) {
  const std::string default_template = std::string(name) == "merge" ? kTemplateMerge : kTemplateAttention;
  if (!ops.contains(name) || !ops[name].is_object()) return make_error("arch", path + ": ops." + name + " is missing");
  const auto& o = ops[name];
  if (auto st = known_keys(o,
                           {"template", "threads", "waves_per_eu", "sub_k", "target_grid", "stages", "min_blocks", "wgmma",
                            "q_row_groups", "union_entries", "max_cluster", "dependent_launch", "large_batch"},
                           path + ": ops." + name);
      !st)
    return st;
  if (o.contains("large_batch") && o["large_batch"].is_object())
    if (auto st = known_keys(o["large_batch"], {"min_workgroups", "threads", "stages", "min_blocks", "sub_k"},
                             path + ": ops." + name + ".large_batch");
        !st)
      return st;
  try {
    t.launch.threads = o.value("threads", 128);
    t.launch.waves_per_eu = o.value("waves_per_eu", 1);
    t.sub_k = o.value("sub_k", 0);
    t.target_grid = o.value("target_grid", 256);
    t.launch.stages = o.value("stages", 1);
    t.launch.min_blocks = o.value("min_blocks", 1);
    t.launch.wgmma = o.value("wgmma", false);
    t.templ = o.value("template", default_template);
    t.q_row_groups = o.value("q_row_groups", 1);
    t.union_entries = o.value("union_entries", 256);
    t.max_cluster = o.value("max_cluster", 1);
    t.dependent_launch = o.value("dependent_launch", false);
    if (o.contains("large_batch")) {
      const auto& l = o.at("large_batch");
      t.large_min_workgroups = l.at("min_workgroups").get<int>();
      t.large_launch = t.launch;
      t.large_launch.threads = l.value("threads", t.launch.threads);
      t.large_launch.stages = l.value("stages", t.launch.stages);
      t.large_launch.min_blocks = l.value("min_blocks", t.launch.min_blocks);
      t.large_sub_k = l.value("sub_k", t.sub_k);
    }
  } catch (const std::exception& e) {
    return make_error("arch", path + ": ops." + name + ": " + e.what());
  }
  return ok_status();
}

Status fill(const nlohmann::json& j, ArchTable& a, const std::string& path) {
  try {
    a.vendor = j.at("vendor").get<std::string>();
    a.description = j.value("description", "");
    a.prelude = j.at("prelude").get<std::string>();
    a.backends = j.at("backends").get<std::vector<std::string>>();
    a.wave_size = j.value("wave_size", 32);
    a.max_shared_bytes = j.value("max_shared_bytes", 49152);
    a.max_vgprs = j.value("max_vgprs", 0);
    a.max_dynamic_shared_bytes = j.value("max_dynamic_shared_bytes", a.max_shared_bytes);
  } catch (const std::exception& e) {
    return make_error("arch", path + ": " + e.what());
  }
  if (auto st = known_keys(j,
                           {"target", "vendor", "description", "prelude", "backends", "wave_size", "max_shared_bytes",
                            "max_dynamic_shared_bytes", "max_vgprs", "ops"},
                           path);
      !st)
    return st;
  if (!j.contains("ops")) return make_error("arch", path + ": ops is missing");
  if (j["ops"].is_object())
    if (auto st = known_keys(j["ops"], {"prefill", "decode", "merge"}, path + ": ops"); !st) return st;
  for (auto [name, t] : {std::pair<const char*, OpTuning*>{"prefill", &a.prefill}, {"decode", &a.decode}, {"merge", &a.merge}})
    if (auto st = read_op(j["ops"], name, *t, path); !st) return st;
  a.source = path;
  return ok_status();
}

}  // namespace

const OpTuning& ArchTable::tuning(Op op) const {
  switch (op) {
    case Op::prefill: return prefill;
    case Op::decode: return decode;
    case Op::merge: return merge;
  }
  return prefill;
}

Result<ArchTable> load_arch_table(const std::string& target) {
  ArchTable a;
  a.target = target;
  a.processor = target.substr(0, target.find(':'));
  if (a.processor.empty()) return make_error("arch", "empty target id");
  for (char c : a.processor)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return make_error("arch", "target id \"" + target + "\" is malformed: expected e.g. sm_90 or gfx942[:sramecc+][:xnack-]");
  const std::string own = "configs/archs/" + a.processor + ".json";
  for (const auto& p : list_resources("configs/archs/")) {
    if (p != own) continue;
    auto j = parse(own);
    if (!j) return j.error();
    if (auto st = fill(*j, a, own); !st) return st.error();
    return a;
  }
  auto fb = parse("configs/archs/fallback.json");
  if (!fb) return fb.error();
  const auto& by_prefix = (*fb)["by_prefix"];
  for (auto it = by_prefix.begin(); it != by_prefix.end(); ++it) {
    if (a.processor.rfind(it.key(), 0) != 0) continue;
    if (auto st = fill(it.value(), a, "configs/archs/fallback.json#" + it.key()); !st) return st.error();
    a.from_fallback = true;
    log::warn_once("fallback:" + a.processor, "no tuning table for " + a.processor + ": using the fallback for '" + it.key() +
                                                  "*' targets (configs/archs/fallback.json)");
    return a;
  }
  return make_error("arch", "unknown target \"" + target + "\": no configs/archs/" + a.processor +
                                ".json and no fallback prefix matches (known: sm_*, gfx*)");
}

std::vector<std::string> known_targets() {
  std::vector<std::string> out;
  for (const auto& p : list_resources("configs/archs/")) {
    auto name = p.substr(std::string("configs/archs/").size());
    if (name == "fallback.json" || name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
    out.push_back(name.substr(0, name.size() - 5));
  }
  return out;
}

}  // namespace sparsejit
