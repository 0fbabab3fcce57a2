#include "preset.h"

#include <set>

#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "ops/config_select.h"
#include "resources.h"

namespace sparsejit {

Result<Preset> load_preset(const std::string& name) {
  const std::string path = "configs/models/" + name + ".json";
  auto text = read_resource(path);
  if (!text) {
    std::string known;
    for (const auto& k : known_presets()) known += (known.empty() ? "" : ", ") + k;
    return make_error("preset", "unknown preset \"" + name + "\" (known: " + known + ")");
  }
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("preset", path + " is not a JSON object");
  Preset p;
  try {
    p.name = j.at("name").get<std::string>();
    p.description = j.value("description", "");
    p.num_heads = j.at("num_heads").get<int>();
    p.num_kv_heads = j.at("num_kv_heads").get<int>();
    p.head_dim = j.at("head_dim").get<int>();
    p.topk = j.at("topk").get<int>();
    p.tensor_parallel = j.at("tensor_parallel").get<std::vector<int>>();
    p.default_archs = j.at("default_archs").get<std::vector<std::string>>();
    for (const auto& v : j.at("variants")) {
      auto q = parse_dtype(v.at("q_dtype").get<std::string>());
      auto kv = parse_dtype(v.at("kv_dtype").get<std::string>());
      auto sm = parse_scale_mode(v.at("scale_mode").get<std::string>());
      if (!q || !kv || !sm) return make_error("preset", path + ": bad variant " + v.dump());
      p.variants.push_back({*q, *kv, *sm});
    }
  } catch (const std::exception& e) {
    return make_error("preset", path + ": " + e.what());
  }
  for (int tp : p.tensor_parallel)
    if (tp <= 0 || p.num_heads % tp != 0) return make_error("preset", path + ": tensor_parallel " + std::to_string(tp) + " does not divide num_heads");
  return p;
}

std::vector<std::string> known_presets() {
  std::vector<std::string> out;
  for (const auto& p : list_resources("configs/models/")) {
    auto name = p.substr(std::string("configs/models/").size());
    if (name.size() > 5 && name.substr(name.size() - 5) == ".json") out.push_back(name.substr(0, name.size() - 5));
  }
  return out;
}

Result<std::vector<KernelConfig>> expand_preset(const Preset& p, const std::string& arch_id) {
  auto arch = load_arch_table(arch_id);
  if (!arch) return arch.error();
  std::vector<KernelConfig> out;
  std::set<std::string> seen;
  auto add = [&](const KernelConfig& c) -> Status {
    if (auto st = c.validate(); !st) return st;
    if (seen.insert(c.canonical()).second) out.push_back(c);
    return ok_status();
  };
  for (int tp : p.tensor_parallel) {
    AttnShape s;
    s.num_heads = p.num_heads / tp;
    s.num_kv_heads = std::max(1, p.num_kv_heads / tp);  // KV heads are replicated beyond TP = num_kv_heads
    s.head_dim = p.head_dim;
    s.topk = p.topk;
    for (const auto& v : p.variants) {
      s.q_dtype = v.q_dtype;
      s.kv_dtype = v.kv_dtype;
      s.scale_mode = v.scale_mode;
      if (auto st = add(prefill_config(*arch, s)); !st) return st.error();
      // Exactly the split-K chunk counts and launches the runtime can pick for these shapes
      // (decode_variants), and the merge kernel only where decode needs one.
      for (const DecodeChoice& d : decode_variants(*arch, s.num_kv_heads, s.topk, s.num_heads / s.num_kv_heads)) {
        if (auto st = add(decode_config(*arch, s, d.chunks, d.launch, d.kv_head_split)); !st) return st.error();
        if (decode_uses_merge_kernel(*arch, d.chunks))
          if (auto st = add(merge_config(*arch, p.head_dim, v.q_dtype, d.chunks)); !st) return st.error();
      }
    }
  }
  return out;
}

}  // namespace sparsejit
