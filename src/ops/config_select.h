// Chooses the kernel configuration for a call's shapes from the arch table.
// NUM_TOPK_CHUNKS is a pure function of shapes (and the table), so a captured
// graph always finds the same kernels.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "arch_table.h"
#include "config.h"

namespace sparsejit {

struct AttnShape {
  std::int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, topk = 0;
  DType q_dtype = DType::bf16, kv_dtype = DType::bf16;
  ScaleMode scale_mode = ScaleMode::none;
};

// Split-K chunks for decode: the largest power of two <= min(topk, target_grid / (total_q * num_kv_heads)),
// at least 1; where chunks would walk fewer than the table's min_chunk_entries top-k entries on
// more than min_chunk_entries_above workgroups, the largest within topk / min_chunk_entries.
int decode_chunks(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t topk);
// Decode's workgroups per kv head (each taking group / S of its query heads, all reading its
// blocks): the largest power of two within the table's kv_head_split that divides the group
// and keeps total_q x num_kv_heads x S within target_grid; 1 where the table does not ask
// (attention_nv.cu only). The split-K chunks then come from num_kv_heads x S.
int decode_kv_head_split(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t group);
// Whether decode with `chunks` needs the separate merge kernel (and the workspace for
// its partials): not for one chunk, nor for up to the table's max_cluster chunks,
// which merge in their cluster (sm_90; chosen by measurement, see docs/PERF.md).
bool decode_uses_merge_kernel(const ArchTable& arch, int chunks);

KernelConfig prefill_config(const ArchTable& arch, const AttnShape& s);
// Which of the table's decode launches a call takes.
enum class DecodeLaunch : std::uint8_t {
  base = 0,   // the op's launch
  large = 1,  // "large_batch": enough workgroups, each walking enough top-k entries
  small = 2,  // "small_batch": few workgroups (and not large)
  huge = 3,   // "huge_batch": large, and enough workgroups for several on each SM (where they fit)
};
const char* to_string(DecodeLaunch l);
// The launch a decode of this size takes (a pure function of shapes, like the chunk count).
DecodeLaunch decode_launch(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, int num_chunks, std::int64_t topk);
// What decode picks by size for these shapes: consecutive total_q ranges with one (chunks,
// launch) pair each, from total_q 1; the last range has no end (last_total_q -1).
// What decode takes for one size: the kv head split, the split-K chunks and the launch.
struct DecodeChoice {
  int kv_head_split = 1;
  int chunks = 1;
  DecodeLaunch launch = DecodeLaunch::base;
  bool operator==(const DecodeChoice& o) const { return kv_head_split == o.kv_head_split && chunks == o.chunks && launch == o.launch; }
};
DecodeChoice decode_choice(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t group, std::int64_t topk);
struct DecodeSplit : DecodeChoice {
  std::int64_t first_total_q = 1, last_total_q = -1;
};
// group: num_heads / num_kv_heads (the kv head split depends on it).
std::vector<DecodeSplit> decode_plan(const ArchTable& arch, std::int64_t num_kv_heads, std::int64_t topk, std::int64_t group);
// Every choice decode can make for these shapes, for warming.
std::vector<DecodeChoice> decode_variants(const ArchTable& arch, std::int64_t num_kv_heads, std::int64_t topk, std::int64_t group);
// s: the call's shapes (num_heads / num_kv_heads the whole group); kv_head_split > 1 gives
// each workgroup group / kv_head_split query heads.
KernelConfig decode_config(const ArchTable& arch, const AttnShape& s, int num_chunks, DecodeLaunch launch = DecodeLaunch::base,
                           int kv_head_split = 1);
KernelConfig merge_config(const ArchTable& arch, std::int64_t head_dim, DType q_dtype, int num_chunks);

}  // namespace sparsejit
