#include "ops/config_select.h"

#include <algorithm>

namespace sparsejit {
namespace {

KernelConfig attention_config(Op op, const ArchTable& arch, const AttnShape& s) {
  KernelConfig c;
  c.op = op;
  c.arch = arch.target;
  c.head_dim = static_cast<int>(s.head_dim);
  c.topk = static_cast<int>(s.topk);
  c.gqa_group = s.num_kv_heads > 0 ? static_cast<int>(s.num_heads / s.num_kv_heads) : 0;
  c.q_dtype = s.q_dtype;
  c.kv_dtype = s.kv_dtype;
  c.scale_mode = s.scale_mode;
  const OpTuning& t = arch.tuning(op);
  c.launch = t.launch;
  c.sub_k = t.sub_k;
  c.templ = t.templ;
  return c;
}

// Pipelined template: the deepest pipeline (up to the table's stages) that fits the shared memory.
void fit_stages(const ArchTable& arch, KernelConfig& c) {
  // Each warp's key slice must be whole 16-key steps: sub_k a multiple of 16 x the key split.
  const int step = 16 * c.nv_warp_layout().key_split;
  if (c.sub_k % step != 0 && step <= kSparseBlock) c.sub_k = step;
  while (c.launch.stages > 1 && c.dynamic_shared_bytes() > arch.max_dynamic_shared_bytes) --c.launch.stages;
}

// The table asks for bulk copies; without them (this op or these dtypes do not allow
// them) the producer warp the table's threads count is not launched.
void fit_tma(KernelConfig& c) {
  if (!c.launch.tma || c.tma_fits()) return;
  c.launch.tma = false;
  c.launch.threads = std::max(32, c.launch.threads - 32);
}

}  // namespace

int decode_chunks(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t topk) {
  const OpTuning& d = arch.decode;
  const std::int64_t work = std::max<std::int64_t>(1, total_q * num_kv_heads), entries = std::max<std::int64_t>(1, topk);
  // The largest power of two within the target grid's share and `most` chunks.
  auto split = [&](std::int64_t most) {
    const std::int64_t target = std::max<std::int64_t>(1, std::min<std::int64_t>(most, d.target_grid / work));
    int chunks = 1;
    while (chunks * 2 <= target) chunks *= 2;
    return chunks;
  };
  const int chunks = split(entries);
  const int min_entries = std::max(1, d.min_chunk_entries);
  if ((entries + chunks - 1) / chunks < min_entries && work * chunks > d.min_chunk_entries_above) return split(entries / min_entries);
  return chunks;
}

int decode_kv_head_split(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t group) {
  const OpTuning& d = arch.decode;
  if (d.templ != kTemplateAttentionNv) return 1;
  const std::int64_t work = std::max<std::int64_t>(1, total_q * std::max<std::int64_t>(1, num_kv_heads));
  int split = 1;
  while (split * 2 <= d.kv_head_split && group >= split * 2 && group % (split * 2) == 0 && work * split * 2 <= d.target_grid) split *= 2;
  return split;
}

DecodeChoice decode_choice(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t group, std::int64_t topk) {
  DecodeChoice c;
  c.kv_head_split = decode_kv_head_split(arch, total_q, num_kv_heads, group);
  const std::int64_t heads = num_kv_heads * c.kv_head_split;  // the workgroups' kv heads, as decode_chunks sees them
  c.chunks = decode_chunks(arch, total_q, heads, topk);
  c.launch = decode_launch(arch, total_q, heads, c.chunks, topk);
  return c;
}

bool decode_uses_merge_kernel(const ArchTable& arch, int chunks) {
  if (chunks <= 1) return false;
  return !(arch.decode.templ == kTemplateAttentionNv && chunks <= arch.decode.max_cluster);
}

KernelConfig prefill_config(const ArchTable& arch, const AttnShape& s) {
  KernelConfig c = attention_config(Op::prefill, arch, s);
  c.num_topk_chunks = 1;
  if (c.templ == kTemplateAttentionNv) {
    // Query union: as many 16-row groups (G heads of 16 / G queries each) as
    // the table asks and the warps allow, while q_tile x topk stays within the
    // entries one workgroup deduplicates.
    const KernelConfig::NvWarpLayout layout = c.nv_warp_layout();
    const int warps = layout.warps, per_group = layout.queries_per_group;
    int groups = std::max(1, arch.prefill.q_row_groups);
    // At most 16 queries (the kernel's per-block query masks are 16 bits).
    auto too_many = [&](std::int64_t q_tile) { return q_tile > 16 || q_tile * s.topk > arch.prefill.union_entries; };
    while (groups > 1 && (warps % groups != 0 || too_many(static_cast<std::int64_t>(groups) * per_group))) --groups;
    int q_tile = groups * per_group;
    while (q_tile > 1 && too_many(q_tile)) --q_tile;
    c.q_tile = q_tile;
    c.launch.wgmma = c.launch.wgmma && c.wgmma_fits();  // the table asks for it; this shape's warp layout allows it
    fit_tma(c);
    fit_stages(arch, c);
  }
  return c;
}

const char* to_string(DecodeLaunch l) {
  switch (l) {
    case DecodeLaunch::large:
      return "large_batch";
    case DecodeLaunch::small:
      return "small_batch";
    case DecodeLaunch::huge:
      return "huge_batch";
    case DecodeLaunch::base:
      break;
  }
  return "base";
}

DecodeLaunch decode_launch(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, int num_chunks, std::int64_t topk) {
  const std::int64_t chunks = std::max(1, num_chunks), entries = (std::max<std::int64_t>(1, topk) + chunks - 1) / chunks;
  const std::int64_t workgroups = total_q * std::max<std::int64_t>(1, num_kv_heads) * chunks;
  const OpTuning& d = arch.decode;
  if (d.large_min_workgroups > 0 && workgroups >= d.large_min_workgroups && entries >= d.large_min_entries)
    return d.huge_min_workgroups > 0 && workgroups >= d.huge_min_workgroups ? DecodeLaunch::huge : DecodeLaunch::large;
  if (d.small_max_workgroups > 0 && workgroups <= d.small_max_workgroups) return DecodeLaunch::small;
  return DecodeLaunch::base;
}

std::vector<DecodeSplit> decode_plan(const ArchTable& arch, std::int64_t num_kv_heads, std::int64_t topk, std::int64_t group) {
  // Every total_q up to the largest threshold is scanned. From total_q = target_grid on,
  // decode_chunks is 1 (min_chunk_entries only ever lowers it), the kv head split is 1, and the
  // workgroups grow with total_q, so past the tiers' thresholds nothing changes: the last range has no end.
  const std::int64_t kvh = std::max<std::int64_t>(1, num_kv_heads);
  const OpTuning& d = arch.decode;
  const std::int64_t last = std::max({std::int64_t(std::max(1, d.target_grid)), (d.large_min_workgroups + kvh - 1) / kvh,
                                      (d.huge_min_workgroups + kvh - 1) / kvh, std::int64_t(d.small_max_workgroups) / kvh}) +
                            1;
  std::vector<DecodeSplit> out;
  for (std::int64_t t = 1; t <= last; ++t) {
    const DecodeChoice c = decode_choice(arch, t, kvh, group, topk);
    if (!out.empty() && out.back() == c) continue;
    if (!out.empty()) out.back().last_total_q = t - 1;
    out.push_back({c, t});
  }
  return out;
}

std::vector<DecodeChoice> decode_variants(const ArchTable& arch, std::int64_t num_kv_heads, std::int64_t topk, std::int64_t group) {
  std::vector<DecodeChoice> out;
  for (const DecodeSplit& r : decode_plan(arch, num_kv_heads, topk, group))
    if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
  return out;
}

KernelConfig decode_config(const ArchTable& arch, const AttnShape& s, int num_chunks, DecodeLaunch launch, int kv_head_split) {
  AttnShape per_workgroup = s;  // kv_head_split workgroups per kv head: as many kv heads, each with group / split query heads
  per_workgroup.num_kv_heads = s.num_kv_heads * kv_head_split;
  KernelConfig c = attention_config(Op::decode, arch, per_workgroup);
  c.kv_head_split = kv_head_split;
  const LaunchTier* tier = launch == DecodeLaunch::large && arch.decode.large_min_workgroups > 0   ? &arch.decode.large
                           : launch == DecodeLaunch::huge && arch.decode.huge_min_workgroups > 0   ? &arch.decode.huge
                           : launch == DecodeLaunch::huge && arch.decode.large_min_workgroups > 0  ? &arch.decode.large
                           : launch == DecodeLaunch::small && arch.decode.small_max_workgroups > 0 ? &arch.decode.small
                                                                                                   : nullptr;
  if (tier) {
    c.launch = tier->launch;
    c.sub_k = tier->sub_k;
    if (tier->fp8_stages > 0 && is_fp8(s.kv_dtype)) c.launch.stages = tier->fp8_stages;
  }
  c.num_topk_chunks = num_chunks;
  fit_tma(c);
  if (num_chunks > 1 && !decode_uses_merge_kernel(arch, num_chunks)) c.launch.cluster = num_chunks;  // they merge in their cluster
  if (c.templ == kTemplateAttentionNv) fit_stages(arch, c);
  // huge: only where min_blocks workgroups fit an SM's shared memory, which is the most one
  // workgroup may take plus the 1 KiB the hardware reserves per workgroup (sm_80: 163 + 1 KiB,
  // sm_89: 99 + 1, sm_90: 227 + 1); elsewhere the launch is large's.
  if (launch == DecodeLaunch::huge && tier == &arch.decode.huge &&
      std::size_t(c.launch.min_blocks) * (c.dynamic_shared_bytes() + 1024) > std::size_t(arch.max_dynamic_shared_bytes) + 1024)
    return decode_config(arch, s, num_chunks, DecodeLaunch::large, kv_head_split);
  return c;
}

KernelConfig merge_config(const ArchTable& arch, std::int64_t head_dim, DType q_dtype, int num_chunks) {
  KernelConfig c;
  c.op = Op::merge;
  c.arch = arch.target;
  c.head_dim = static_cast<int>(head_dim);
  c.topk = 0;
  c.gqa_group = 0;
  c.sub_k = 0;
  c.num_topk_chunks = num_chunks;
  c.q_dtype = q_dtype;
  c.kv_dtype = q_dtype;
  c.scale_mode = ScaleMode::none;
  c.templ = kTemplateMerge;
  c.launch = arch.merge.launch;
  c.launch.stages = 1;
  return c;
}

}  // namespace sparsejit
