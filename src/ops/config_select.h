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
struct DecodeSplit {
  std::int64_t first_total_q = 1, last_total_q = -1;
  int chunks = 1;
  DecodeLaunch launch = DecodeLaunch::base;
};
std::vector<DecodeSplit> decode_plan(const ArchTable& arch, std::int64_t num_kv_heads, std::int64_t topk);
// Every (chunks, launch) pair decode can pick for these shapes, for warming.
std::vector<std::pair<int, DecodeLaunch>> decode_variants(const ArchTable& arch, std::int64_t num_kv_heads, std::int64_t topk);
KernelConfig decode_config(const ArchTable& arch, const AttnShape& s, int num_chunks, DecodeLaunch launch = DecodeLaunch::base);
KernelConfig merge_config(const ArchTable& arch, std::int64_t head_dim, DType q_dtype, int num_chunks);

}  // namespace sparsejit
