// plan: what the runtime picks for one model shape on one target, without compiling anything:
// the prefill kernel, and for decode every range of total_q with its split-K chunks, launch
// and kernel. Shows where the arch table's thresholds fall (docs/ARCH_TABLES.md).
#include <iomanip>
#include <iostream>

#include "arch_table.h"
#include "cli.h"
#include "ops/config_select.h"

namespace sparsejit::cli {

namespace {

struct PlanFlags {
  std::string arch, q_dtype = "bf16", kv_dtype = "bf16", scale_mode = "none";
  int num_heads = 64, num_kv_heads = 4, head_dim = 128, topk = 16;
};

nlohmann::json launch_json(const KernelConfig& c) {
  return {{"threads", c.launch.threads}, {"sub_k", c.sub_k},        {"stages", c.launch.stages}, {"min_blocks", c.launch.min_blocks},
          {"tma", c.launch.tma},         {"wgmma", c.launch.wgmma}, {"cluster", c.launch.cluster}};
}

std::string count(const nlohmann::json& n, const std::string& one, const std::string& many) {
  const long long v = n.get<long long>();
  return std::to_string(v) + " " + (v == 1 ? one : many);
}

std::string range(std::int64_t first, std::int64_t last) {
  return std::to_string(first) + (last < 0 ? "+" : last == first ? "" : "-" + std::to_string(last));
}

Result<nlohmann::json> make_plan(const PlanFlags& f) {
  auto table = load_arch_table(f.arch);
  if (!table) return table.error();
  auto dt = parse_dtype_flags(f.q_dtype, f.kv_dtype, f.scale_mode);
  if (!dt) return dt.error();
  if (f.num_heads % f.num_kv_heads != 0)
    return make_error("config", "--num-heads " + std::to_string(f.num_heads) + " must be a multiple of --num-kv-heads " + std::to_string(f.num_kv_heads));
  if (f.num_heads / f.num_kv_heads > 16)
    return make_error("config", "--num-heads " + std::to_string(f.num_heads) + " over --num-kv-heads " + std::to_string(f.num_kv_heads) +
                                    " is " + std::to_string(f.num_heads / f.num_kv_heads) + " query heads per kv head: at most 16 are supported");
  AttnShape s;
  s.num_heads = f.num_heads, s.num_kv_heads = f.num_kv_heads, s.head_dim = f.head_dim, s.topk = f.topk;
  s.q_dtype = dt->q, s.kv_dtype = dt->kv, s.scale_mode = dt->scale_mode;
  auto kernel = [&](const KernelConfig& c) -> Result<nlohmann::json> {
    if (auto st = c.validate(); !st) return st.error();
    nlohmann::json j = launch_json(c);
    j["kernel_name"] = c.kernel_name();
    j["config_key"] = c.config_key();  // names the config in logs and in the generated source
    j["config"] = c.to_json();         // for emit/compile/inspect --config
    return j;
  };
  nlohmann::json out = {{"arch", table->target},
                        {"shape",
                         {{"num_heads", f.num_heads},
                          {"num_kv_heads", f.num_kv_heads},
                          {"gqa_group", f.num_heads / f.num_kv_heads},
                          {"head_dim", f.head_dim},
                          {"topk", f.topk},
                          {"q_dtype", to_string(dt->q)},
                          {"kv_dtype", to_string(dt->kv)},
                          {"scale_mode", to_string(dt->scale_mode)}}}};
  const KernelConfig pre = prefill_config(*table, s);
  auto pj = kernel(pre);
  if (!pj) return pj.error();
  (*pj)["q_tile"] = pre.q_tile;
  out["prefill"] = *pj;
  out["decode"] = nlohmann::json::array();
  for (const DecodeSplit& r : decode_plan(*table, s.num_kv_heads, s.topk, s.num_heads / s.num_kv_heads)) {
    const KernelConfig dc = decode_config(*table, s, r.chunks, r.launch, r.kv_head_split);
    auto dj = kernel(dc);
    if (!dj) return dj.error();
    // huge_batch takes large_batch's config where its min_blocks workgroups do not fit an SM.
    const bool as_large = r.launch == DecodeLaunch::huge && dc.config_key() == decode_config(*table, s, r.chunks, DecodeLaunch::large, r.kv_head_split).config_key();
    nlohmann::json row = {{"first_total_q", r.first_total_q},
                          {"last_total_q", r.last_total_q < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.last_total_q)},
                          {"chunks", r.chunks},
                          {"entries_per_chunk", (s.topk + r.chunks - 1) / r.chunks},
                          {"kv_head_split", r.kv_head_split},
                          {"first_workgroups", r.first_total_q * s.num_kv_heads * r.kv_head_split * r.chunks},
                          {"last_workgroups", r.last_total_q < 0 ? nlohmann::json(nullptr)
                                                                 : nlohmann::json(r.last_total_q * s.num_kv_heads * r.kv_head_split * r.chunks)},
                          {"launch", to_string(r.launch)},
                          {"launch_config", as_large ? "large_batch" : to_string(r.launch)},
                          {"merge", r.chunks == 1 ? "none" : decode_uses_merge_kernel(*table, r.chunks) ? "kernel" : "cluster"},
                          {"kernel", *dj}};
    if (decode_uses_merge_kernel(*table, r.chunks)) {
      auto mj = kernel(merge_config(*table, s.head_dim, s.q_dtype, r.chunks));
      if (!mj) return mj.error();
      row["merge_kernel"] = *mj;
    }
    out["decode"].push_back(row);
  }
  return out;
}

void print_plan(const nlohmann::json& p) {
  const auto& s = p["shape"];
  std::cout << p["arch"].get<std::string>() << ": " << count(s["num_heads"], "query head", "query heads") << ", " << count(s["num_kv_heads"], "kv head", "kv heads") << " (G "
            << s["gqa_group"] << "), head_dim " << s["head_dim"] << ", topk " << s["topk"] << ", q " << s["q_dtype"].get<std::string>()
            << ", kv " << s["kv_dtype"].get<std::string>() << " (scales " << s["scale_mode"].get<std::string>() << ")\n";
  const auto& pre = p["prefill"];
  std::cout << "prefill: config " << pre["config_key"].get<std::string>() << ", " << count(pre["q_tile"], "query", "queries") << " per workgroup, "
            << pre["threads"] << " threads, sub_k " << pre["sub_k"] << ", stages " << pre["stages"]
            << (pre["wgmma"].get<bool>() ? ", wgmma" : "") << (pre["tma"].get<bool>() ? ", tma" : "") << "\n";
  std::cout << "decode, by total_q (requests x decode_query_len):\n";
  std::cout << "  " << std::left << std::setw(10) << "total_q" << std::setw(7) << "split" << std::setw(8) << "chunks" << std::setw(9) << "entries" << std::setw(12)
            << "workgroups" << std::setw(13) << "launch" << std::setw(9) << "threads" << std::setw(7) << "sub_k" << std::setw(8) << "stages"
            << std::setw(8) << "blocks" << std::setw(5) << "tma" << std::setw(9) << "merge"
            << "config\n";
  auto bound = [](const nlohmann::json& v) { return v.is_null() ? std::int64_t(-1) : v.get<std::int64_t>(); };
  bool as_large = false;
  for (const auto& r : p["decode"]) {
    const bool note = r["launch_config"] != r["launch"];
    as_large = as_large || note;
    const auto& k = r["kernel"];
    std::cout << "  " << std::left << std::setw(10) << range(r["first_total_q"], bound(r["last_total_q"])) << std::setw(7)
              << r["kv_head_split"].get<int>() << std::setw(8) << r["chunks"].get<int>() << std::setw(9) << r["entries_per_chunk"].get<int>() << std::setw(12)
              << range(r["first_workgroups"], bound(r["last_workgroups"])) << std::setw(13) << r["launch"].get<std::string>() + (note ? "*" : "") << std::setw(9)
              << k["threads"].get<int>() << std::setw(7) << k["sub_k"].get<int>() << std::setw(8) << k["stages"].get<int>() << std::setw(8)
              << k["min_blocks"].get<int>() << std::setw(5) << (k["tma"].get<bool>() ? "yes" : "no") << std::setw(9)
              << r["merge"].get<std::string>() << k["config_key"].get<std::string>() << "\n";
  }
  if (as_large) std::cout << "  * huge_batch takes large_batch's config here: its min_blocks workgroups do not fit an SM's shared memory\n";
}

}  // namespace

void add_plan(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("plan", "What the runtime picks for a model shape on a target: the prefill kernel, and decode's split-K chunks, launch and kernel for every range of total_q (nothing is compiled)");
  auto f = std::make_shared<PlanFlags>();
  cmd->add_option("--arch", f->arch, "Target id: sm_90, sm_80, gfx942, gfx950, gfx90a ...")->required();
  cmd->add_option("--num-heads", f->num_heads, "Query heads (per tensor-parallel rank)")->check(CLI::Range(1, 4096));
  cmd->add_option("--num-kv-heads", f->num_kv_heads, "KV heads (per rank)")->check(CLI::Range(1, 4096));
  cmd->add_option("--head-dim", f->head_dim, "head_dim (multiple of 16, <= 256)")->check(CLI::Range(1, 4096));
  cmd->add_option("--topk", f->topk, "Selected blocks per query")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--q-dtype", f->q_dtype, "bf16 | fp16");
  cmd->add_option("--kv-dtype", f->kv_dtype, "bf16 | fp16 | fp8_e4m3fn | fp8_e5m2 | fp8_e4m3fnuz | fp8_e5m2fnuz");
  cmd->add_option("--scale-mode", f->scale_mode, "none | scalar | per_token_head");
  cmd->callback([&g, f] {
    auto plan = make_plan(*f);
    if (!plan) throw CLI::RuntimeError(fail(g, plan.error()));
    if (g.json) print_json(*plan);
    else print_plan(*plan);
  });
}

}  // namespace sparsejit::cli
