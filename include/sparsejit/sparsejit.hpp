// sparsejit public C++ API: block-sparse GQA attention (MiniMax-M3 semantics,
// vLLM's minimax_m3_sparse_attn / minimax_m3_sparse_attn_decode), with kernels
// generated, compiled and cached at run time for the device in use.
//
// All tensors are device pointers with element strides; nothing is copied or
// allocated on the launch path, and launches go to the caller's stream, so the
// calls can be captured in CUDA/HIP graphs once their kernels are warm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sparsejit/types.hpp"

namespace sparsejit {


// The outcome of an API call: ok, or a message naming the argument and what was expected.
struct CallStatus {
  bool ok = true;
  std::string stage;    // "validate", "compile", "load", "launch", ...
  std::string message;  // full description (compile errors include the log and the dumped source path)
  explicit operator bool() const { return ok; }
};

// Strides are in elements. Every int tensor is int32.
struct PrefillArgs {
  const void* q = nullptr;  // [total_q, num_heads, head_dim], q_dtype
  std::int64_t q_stride[3] = {0, 0, 0};
  const void* kv_cache = nullptr;  // K element (page, kvh, pos, d) at page*s0 + kvh*s1 + pos*s2 + d*s3; V at that + v_offset
  std::int64_t kv_stride[4] = {0, 0, 0, 0};
  std::int64_t v_offset = 0;
  std::int64_t num_pages = 0;  // kv_cache's page count (for validation)
  const void* topk_idx = nullptr;  // [num_kv_heads, total_q, topk]
  std::int64_t topk_stride[3] = {0, 0, 0};
  const void* block_table = nullptr;  // [batch, max_blocks]
  std::int64_t block_table_stride = 0;
  std::int64_t max_blocks = 0;
  const void* cu_seqlens_q = nullptr;  // [batch + 1]
  const void* seq_lens = nullptr;      // [batch]
  const void* prefix_lens = nullptr;   // [batch]
  const void* k_scale = nullptr;       // fp8 only: float scalar, or [num_kv_heads, tokens]
  const void* v_scale = nullptr;
  std::int64_t k_scale_stride[2] = {0, 0};
  std::int64_t v_scale_stride[2] = {0, 0};
  void* output = nullptr;  // [total_q, num_heads, head_dim], q_dtype
  std::int64_t output_stride[3] = {0, 0, 0};

  std::int64_t total_q = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, topk = 0, batch = 0, max_query_len = 0;
  DType q_dtype{}, kv_dtype{};
  ScaleMode scale_mode{};
  float sm_scale = 0.f;
};

struct DecodeArgs {
  const void* q = nullptr;
  std::int64_t q_stride[3] = {0, 0, 0};
  const void* kv_cache = nullptr;
  std::int64_t kv_stride[4] = {0, 0, 0, 0};
  std::int64_t v_offset = 0;
  std::int64_t num_pages = 0;
  const void* topk_idx = nullptr;
  std::int64_t topk_stride[3] = {0, 0, 0};
  const void* block_table = nullptr;
  std::int64_t block_table_stride = 0;
  std::int64_t max_blocks = 0;
  const void* seq_lens = nullptr;  // [num_reqs]
  const void* k_scale = nullptr;
  const void* v_scale = nullptr;
  std::int64_t k_scale_stride[2] = {0, 0};
  std::int64_t v_scale_stride[2] = {0, 0};
  void* output = nullptr;
  std::int64_t output_stride[3] = {0, 0, 0};

  std::int64_t total_q = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, topk = 0, num_reqs = 0, decode_query_len = 1;
  DType q_dtype{}, kv_dtype{};
  ScaleMode scale_mode{};
  float sm_scale = 0.f;
  // Split-K scratch (partial outputs and LSEs), caller-owned so nothing allocates inside a captured region.
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  // Ragged decode (vLLM's query_start_loc / token_to_req_indices), both or neither: int32
  // [num_reqs + 1] cumulative query starts and int32 [total_q] request of each query row.
  // Query j of request r (row query_start_loc[r] + j) sits at seq_lens[r] - n_r + j with
  // n_r = query_start_loc[r + 1] - query_start_loc[r]; decode_query_len is then unused.
  const void* query_start_loc = nullptr;
  const void* token_to_req_indices = nullptr;
};

// The shapes that select a call's kernels: what warm_prefill/warm_decode build
// ahead of time (e.g. before a CUDA/HIP graph capture).
struct KernelShape {
  std::int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, topk = 0;
  DType q_dtype = DType::bf16, kv_dtype = DType::bf16;
  ScaleMode scale_mode = ScaleMode::none;
};

struct RuntimeOptions {
  int device = -1;  // -1: the calling thread's current device
};

class Runtime {
 public:
  static std::unique_ptr<Runtime> create(const RuntimeOptions& options = {});
  ~Runtime();

  CallStatus sparse_attn_prefill(const PrefillArgs& args, void* stream);
  CallStatus sparse_attn_decode(const DecodeArgs& args, void* stream);
  // Scratch bytes sparse_attn_decode needs for these shapes (a pure function of them); 0 for one chunk.
  std::size_t decode_workspace_bytes(std::int64_t total_q, std::int64_t num_heads, std::int64_t num_kv_heads, std::int64_t head_dim,
                                     std::int64_t topk) const;
  // The split-K chunk count decode uses for these shapes (a pure function of them).
  int decode_num_chunks(std::int64_t total_q, std::int64_t num_heads, std::int64_t num_kv_heads, std::int64_t topk) const;
  // The same where each kv head has one workgroup per chunk (num_heads unknown: no kv head
  // split, which the arch table's decode.kv_head_split may ask for; the shipped tables do not).
  int decode_num_chunks(std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t topk) const;

  // Builds and loads the kernels a call with these shapes needs, so the call (or
  // a graph capture of it) later finds them in memory. A kernel that is not warm
  // when a capturing stream needs it is refused (stage "capture"), never built.
  CallStatus warm_prefill(const KernelShape& shape);
  // Decode's kernels depend on total_q through the split-K chunk count;
  // total_q <= 0 warms every chunk count decode can pick for these shapes.
  CallStatus warm_decode(const KernelShape& shape, std::int64_t total_q = 0);
  // The kernel cache (path, mode, entries, bytes) and this runtime's loaded kernels, as a JSON object.
  std::string cache_status_json() const;
  int device() const;

  struct Impl;

 private:
  friend struct RuntimeAccess;  // src/runtime_internal.h: the C ABI and test hooks
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparsejit
