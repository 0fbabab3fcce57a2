// Per-architecture tuning as data (configs/archs/<processor>.json), with an
// explicit prefix-based fallback (configs/archs/fallback.json). No code in
// sparsejit branches on an arch name: it reads these tables.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "util/result.h"

namespace sparsejit {

// One of decode's size-dependent launches: what replaces the op's launch and sub_k.
struct LaunchTier {
  LaunchParams launch;
  int sub_k = 0;
  int fp8_stages = 0;  // fp8 K/V: stages instead of launch.stages (0: the same); not inherited by huge_batch
};

struct OpTuning {
  LaunchParams launch;  // launch.stages: the most the op uses (fewer when shared memory runs short)
  int sub_k = 0;
  int target_grid = 256;  // decode: workgroups the split-K aims for
  // decode: split-K leaves each chunk at least min_chunk_entries top-k entries wherever the
  // finer split would take more than min_chunk_entries_above workgroups (0: everywhere).
  int min_chunk_entries = 1;
  int min_chunk_entries_above = 0;
  std::string templ;      // kernel template ("template"); default by op
  int q_row_groups = 1;   // prefill, attention_nv.cu: 16-row query groups per workgroup (query union)
  int union_entries = 256;  // prefill, attention_nv.cu: at most q_tile x topk top-k entries per workgroup
  int max_cluster = 1;      // decode, attention_nv.cu: merge split-K in a cluster of up to this many chunks (sm_90: 8)
  int kv_head_split = 1;    // decode, attention_nv.cu: up to this many workgroups per kv head (decode_kv_head_split)
  // Programmatic dependent launch (sm_90): the kernel may start while the stream's previous
  // kernel still runs and waits for it before its first global access. merge: overlaps the
  // split-K kernel's tail; decode: overlaps whatever ran before (the previous layer, call).
  bool dependent_launch = false;
  // decode: from this many workgroups (total_q x kv heads x chunks) on, each walking at least
  // large_min_entries top-k entries (topk / chunks, rounded up), large's launch and sub_k
  // replace the op's ("large_batch" in the table; 0: never).
  int large_min_workgroups = 0;
  int large_min_entries = 1;
  LaunchTier large;
  // decode: from this many workgroups on, where large applies, huge's launch and sub_k (large's, with
  // what "huge_batch" sets) replace the op's where huge.launch.min_blocks workgroups of the
  // resulting config fit one SM's shared memory; elsewhere large's apply (0: never).
  int huge_min_workgroups = 0;
  LaunchTier huge;
  // decode: up to this many workgroups (and not large), small's launch and sub_k replace the
  // op's ("small_batch" in the table; 0: never).
  int small_max_workgroups = 0;
  LaunchTier small;
};

struct ArchTable {
  std::string target;     // as asked (full target id)
  std::string processor;  // before the first ':' ("gfx942")
  std::string vendor;     // "nvidia" | "amd"
  std::string description;
  std::string prelude;    // template with the vendor primitives
  std::vector<std::string> backends;  // compiler preference order
  int wave_size = 32;
  std::size_t max_shared_bytes = 49152;          // static shared memory / LDS per workgroup
  std::size_t max_dynamic_shared_bytes = 49152;  // dynamic shared memory per workgroup (opt-in limit)
  int max_vgprs = 0;
  OpTuning prefill, decode, merge;
  bool from_fallback = false;
  std::string source;  // which file it came from

  const OpTuning& tuning(Op op) const;
};

// The table for `target` ("sm_90", "gfx942:sramecc+:xnack-").
Result<ArchTable> load_arch_table(const std::string& target);
// Targets that have their own table (the known archs).
std::vector<std::string> known_targets();

}  // namespace sparsejit
