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
  // Each knob is checked for its type and a sane range here (a huge target_grid would make the
  // decode variant scan run for minutes); KernelConfig::validate checks the finer rules.
  const std::string where = path + ": ops." + name;
  auto int_knob = [](const nlohmann::json& obj, const char* key, int def, long long lo, long long hi, int& out,
                     const std::string& at) -> Status {
    out = def;
    if (!obj.contains(key)) return ok_status();
    const auto& v = obj[key];
    if (!v.is_number_integer())
      return make_error("arch", at + "." + key + " must be an integer, got " + v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    const long long x = v.is_number_unsigned() ? (v.get<unsigned long long>() > static_cast<unsigned long long>(hi) ? hi + 1 : v.get<long long>())
                                               : v.get<long long>();
    if (x < lo || x > hi)
      return make_error("arch", at + "." + key + " = " + v.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out = static_cast<int>(x);
    return ok_status();
  };
  auto bool_knob = [](const nlohmann::json& obj, const char* key, bool& out, const std::string& at) -> Status {
    out = false;
    if (!obj.contains(key)) return ok_status();
    if (!obj[key].is_boolean())
      return make_error("arch", at + "." + key + " must be true or false, got " +
                                    obj[key].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    out = obj[key].get<bool>();
    return ok_status();
  };
  constexpr long long kMaxGrid = 1 << 20;
  for (Status st : {int_knob(o, "threads", 128, 32, 1024, t.launch.threads, where),
                    int_knob(o, "waves_per_eu", 1, 1, 10, t.launch.waves_per_eu, where),
                    int_knob(o, "sub_k", 0, 0, 128, t.sub_k, where),
                    int_knob(o, "target_grid", 256, 1, kMaxGrid, t.target_grid, where),
                    int_knob(o, "stages", 1, 1, 8, t.launch.stages, where),
                    int_knob(o, "min_blocks", 1, 1, 32, t.launch.min_blocks, where),
                    int_knob(o, "q_row_groups", 1, 1, 16, t.q_row_groups, where),
                    int_knob(o, "union_entries", 256, 1, 4096, t.union_entries, where),
                    int_knob(o, "max_cluster", 1, 1, 8, t.max_cluster, where),
                    bool_knob(o, "wgmma", t.launch.wgmma, where),
                    bool_knob(o, "dependent_launch", t.dependent_launch, where)})
    if (!st) return st;
  t.templ = default_template;
  if (o.contains("template")) {
    if (!o["template"].is_string()) return make_error("arch", where + ".template must be a string");
    t.templ = o["template"].get<std::string>();
  }
  if (o.contains("large_batch")) {
    const auto& l = o["large_batch"];
    const std::string at = where + ".large_batch";
    if (!l.is_object()) return make_error("arch", at + " must be an object");
    if (!l.contains("min_workgroups")) return make_error("arch", at + ".min_workgroups is missing");
    t.large_launch = t.launch;
    for (Status st : {int_knob(l, "min_workgroups", 0, 1, kMaxGrid, t.large_min_workgroups, at),
                      int_knob(l, "threads", t.launch.threads, 32, 1024, t.large_launch.threads, at),
                      int_knob(l, "stages", t.launch.stages, 1, 8, t.large_launch.stages, at),
                      int_knob(l, "min_blocks", t.launch.min_blocks, 1, 32, t.large_launch.min_blocks, at),
                      int_knob(l, "sub_k", t.sub_k, 0, 128, t.large_sub_k, at)})
      if (!st) return st;
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
