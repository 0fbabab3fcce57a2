#include <fstream>
#include <iostream>
#include <sstream>

#include "arch_table.h"
#include "cli.h"
#include "ops/config_select.h"

namespace sparsejit::cli {

void ShapeFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--op", op, "prefill | decode | merge")->check(CLI::IsMember({"prefill", "decode", "merge"}));
  cmd.add_option("--arch", arch, "Target id: sm_90, gfx942, gfx950, gfx90a, gfx942:sramecc+:xnack- ...");
  cmd.add_option("--config", config_file, "Kernel config JSON file (overrides the shape flags)");
  cmd.add_option("--head-dim", head_dim, "head_dim (multiple of 16, <= 256)");
  cmd.add_option("--topk", topk, "Selected blocks per query");
  cmd.add_option("--gqa-group", gqa_group, "Query heads per KV head (1..16)");
  cmd.add_option("--chunks", chunks, "NUM_TOPK_CHUNKS for decode/merge (power of two; default 1)");
  cmd.add_option("--sub-k", sub_k, "SUB_K override (default: the arch table)");
  cmd.add_option("--threads", threads, "Threads per workgroup override (default: the arch table)");
  cmd.add_option("--q-dtype", q_dtype, "bf16 | fp16");
  cmd.add_option("--kv-dtype", kv_dtype, "bf16 | fp16 | fp8_e4m3fn | fp8_e5m2 | fp8_e4m3fnuz | fp8_e5m2fnuz");
  cmd.add_option("--scale-mode", scale_mode, "none | scalar | per_token_head");
  cmd.add_option("--launch", launch,
                 "decode: the arch table's launch to use, as the runtime picks it by size: base | small_batch | large_batch | huge_batch "
                 "(default base; a table without that launch gives base)")
      ->check(CLI::IsMember({"base", "small_batch", "large_batch", "huge_batch"}));
}

Result<DtypeFlags> parse_dtype_flags(const std::string& q_dtype, const std::string& kv_dtype, const std::string& scale_mode) {
  auto q = parse_dtype(q_dtype);
  if (!q) return make_error("config", "--q-dtype " + q_dtype + " is invalid: must be bf16 or fp16");
  auto kv = parse_dtype(kv_dtype);
  if (!kv) return make_error("config", "--kv-dtype " + kv_dtype + " is invalid");
  auto sm = parse_scale_mode(scale_mode);
  if (!sm) return make_error("config", "--scale-mode " + scale_mode + " is invalid: must be none, scalar or per_token_head");
  return DtypeFlags{*q, *kv, *sm};
}

Result<KernelConfig> ShapeFlags::resolve() const {
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) return make_error("config", "cannot read --config " + config_file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) return make_error("config", config_file + " is not valid JSON");
    return KernelConfig::from_json(j);
  }
  if (arch.empty()) return make_error("config", "--arch is required (or --config FILE)");
  auto table = load_arch_table(arch);
  if (!table) return table.error();
  auto dt = parse_dtype_flags(q_dtype, kv_dtype, scale_mode);
  if (!dt) return dt.error();
  AttnShape s;
  s.num_kv_heads = 1;
  s.num_heads = gqa_group;
  s.head_dim = head_dim;
  s.topk = topk;
  s.q_dtype = dt->q;
  s.kv_dtype = dt->kv;
  s.scale_mode = dt->scale_mode;
  DecodeLaunch dl = DecodeLaunch::base;
  for (DecodeLaunch l : {DecodeLaunch::small, DecodeLaunch::large, DecodeLaunch::huge})
    if (launch == to_string(l)) dl = l;
  if (dl != DecodeLaunch::base && op != "decode") return make_error("config", "--launch " + launch + " applies to --op decode only");
  KernelConfig c;
  const int n = chunks > 0 ? chunks : 1;
  if (op == "prefill") c = prefill_config(*table, s);
  else if (op == "decode") c = decode_config(*table, s, n, dl);
  else c = merge_config(*table, head_dim, dt->q, n);
  if (sub_k > 0 && c.op != Op::merge) c.sub_k = sub_k;
  if (threads > 0) c.launch.threads = threads;
  if (auto st = c.validate(); !st) return st.error();
  return c;
}

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

int fail(const Globals& g, const Error& e, int code) {
  if (g.json) {
    print_json({{"error", {{"stage", e.stage}, {"message", e.message}, {"target", e.target}, {"log", e.log}, {"source_path", e.source_path}}}});
  } else {
    std::cerr << "sparsejit: error: " << e.describe(true) << std::endl;
  }
  return code;
}

}  // namespace sparsejit::cli
