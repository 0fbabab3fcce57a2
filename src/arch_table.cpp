#include "arch_table.h"

#include <algorithm>
#include <initializer_list>
#include <vector>

#include <nlohmann/json.hpp>

#include "log.h"
#include "resources.h"
#include "util/json_int.h"

namespace sparsejit {
namespace {

Result<nlohmann::json> parse(const std::string& path) {
  auto text = read_resource(path);
  if (!text) return text.error();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("arch", path + " is not a JSON object");
  return j;
}

// An error naming the first key of `o` that `known` rejects: a misspelled knob would otherwise
// be ignored silently, and the tuning it was meant to change never applied.
template <typename Known>
Status unknown_key(const nlohmann::json& o, const Known& known, const std::string& list, const std::string& where) {
  for (auto it = o.begin(); it != o.end(); ++it)
    if (!known(it.key())) return make_error("arch", where + ": unknown key \"" + it.key() + "\" (known: " + list + ")");
  return ok_status();
}

Status known_keys(const nlohmann::json& o, std::initializer_list<const char*> keys, const std::string& where) {
  std::string list;
  for (const char* k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
  return unknown_key(o, [&](const std::string& key) { return std::find(keys.begin(), keys.end(), key) != keys.end(); }, list, where);
}

// The knobs of one table object (an op, or one of its size-dependent launches): each read checks the type and a sane
// range and names the key (a huge target_grid would make the decode variant scan run for minutes;
// KernelConfig::validate checks the finer rules). unknown() then refuses every key no read asked
// for, so the list of keys is the reads themselves.
class Knobs {
 public:
  Knobs(const nlohmann::json& o, std::string where) : o_(o), where_(std::move(where)) {}

  // Absent: `out` keeps its value (the default).
  Status integer(const char* key, long long lo, long long hi, int& out) {
    if (!ask(key)) return ok_status();
    const auto& v = o_[key];
    long long x = 0;
    switch (read_json_int(v, lo, hi, x)) {
      case JsonInt::not_integer:
        return make_error("arch", where_ + "." + key + " must be an integer, got " + shown(v));
      case JsonInt::out_of_range:
        return make_error("arch", where_ + "." + key + " = " + shown(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      case JsonInt::ok:
        break;
    }
    out = static_cast<int>(x);
    return ok_status();
  }
  Status boolean(const char* key, bool& out) {
    if (!ask(key)) return ok_status();
    if (!o_[key].is_boolean()) return make_error("arch", where_ + "." + key + " must be true or false, got " + shown(o_[key]));
    out = o_[key].get<bool>();
    return ok_status();
  }
  Status text(const char* key, std::string& out) {
    if (!ask(key)) return ok_status();
    if (!o_[key].is_string()) return make_error("arch", where_ + "." + key + " must be a string");
    out = o_[key].get<std::string>();
    return ok_status();
  }
  // A key read elsewhere (a nested object).
  bool ask(const char* key) {
    asked_.push_back(key);
    return o_.contains(key);
  }
  Status unknown() const {
    std::string list;
    for (const auto& k : asked_) list += (list.empty() ? "" : ", ") + k;
    return unknown_key(o_, [&](const std::string& key) { return std::find(asked_.begin(), asked_.end(), key) != asked_.end(); }, list,
                       where_);
  }
  const std::string& where() const { return where_; }

 private:
  static std::string shown(const nlohmann::json& v) { return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }
  const nlohmann::json& o_;
  std::string where_;
  std::vector<std::string> asked_;
};

Status read_op(const nlohmann::json& ops, const char* name, OpTuning& t, const std::string& path) {
  if (!ops.contains(name) || !ops[name].is_object()) return make_error("arch", path + ": ops." + name + " is missing");
  Knobs o(ops[name], path + ": ops." + name);
  constexpr long long kMaxGrid = 1 << 20;
  t = OpTuning{};
  t.templ = std::string(name) == "merge" ? kTemplateMerge : kTemplateAttention;
  for (Status st : {o.integer("threads", 32, 1024, t.launch.threads), o.integer("waves_per_eu", 1, 10, t.launch.waves_per_eu),
                    o.integer("sub_k", 0, 128, t.sub_k), o.integer("target_grid", 1, kMaxGrid, t.target_grid),
                    o.integer("min_chunk_entries", 1, 4096, t.min_chunk_entries),
                    o.integer("min_chunk_entries_above", 0, kMaxGrid, t.min_chunk_entries_above),
                    o.integer("stages", 1, 8, t.launch.stages), o.integer("min_blocks", 1, 32, t.launch.min_blocks),
                    o.integer("q_row_groups", 1, 16, t.q_row_groups), o.integer("union_entries", 1, 4096, t.union_entries),
                    o.integer("max_cluster", 1, 8, t.max_cluster), o.integer("kv_head_split", 1, 16, t.kv_head_split), o.boolean("wgmma", t.launch.wgmma),
                    o.boolean("tma", t.launch.tma),
                    o.boolean("dependent_launch", t.dependent_launch), o.text("template", t.templ)})
    if (!st) return st;
  // A size-dependent launch ("large_batch", "small_batch"): its threshold, then what it sets of
  // the op's launch (the rest stays the op's).
  // "huge_batch" starts from large_batch's launch instead.
  auto read_tier = [&](const char* key, const char* threshold, int& bound, LaunchTier& out, int* min_entries,
                       const LaunchTier* base = nullptr) -> Status {
    if (!o.ask(key)) return ok_status();
    const auto& tj = ops[name][key];
    const std::string at = o.where() + "." + key;
    if (!tj.is_object()) return make_error("arch", at + " must be an object");
    if (!tj.contains(threshold)) return make_error("arch", at + "." + threshold + " is missing");
    Knobs l(tj, at);
    out.launch = base ? base->launch : t.launch;
    out.sub_k = base ? base->sub_k : t.sub_k;
    for (Status st : {l.integer(threshold, 1, kMaxGrid, bound), min_entries ? l.integer("min_entries", 1, 4096, *min_entries) : ok_status(),
                      l.integer("threads", 32, 1024, out.launch.threads), l.integer("stages", 1, 8, out.launch.stages),
                      l.integer("min_blocks", 1, 32, out.launch.min_blocks), l.integer("sub_k", 0, 128, out.sub_k),
                      l.integer("fp8_stages", 1, 8, out.fp8_stages), l.boolean("tma", out.launch.tma), l.unknown()})
      if (!st) return st;
    return ok_status();
  };
  if (auto st = read_tier("large_batch", "min_workgroups", t.large_min_workgroups, t.large, &t.large_min_entries); !st) return st;
  if (auto st = read_tier("small_batch", "max_workgroups", t.small_max_workgroups, t.small, nullptr); !st) return st;
  if (auto st = read_tier("huge_batch", "min_workgroups", t.huge_min_workgroups, t.huge, nullptr, &t.large); !st) return st;
  if (t.huge_min_workgroups > 0 && t.large_min_workgroups == 0)
    return make_error("arch", o.where() + ".huge_batch needs large_batch (it starts from large_batch's launch)");
  return o.unknown();
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
