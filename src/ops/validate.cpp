#include "ops/validate.h"

#include <string>

#include "config.h"

namespace sparsejit {
namespace {

Error arg_error(const std::string& arg, const std::string& what) { return make_error("validate", "argument " + arg + ": " + what); }

#define SJ_REQUIRE(cond, arg, what) \
  do {                              \
    if (!(cond)) return arg_error(arg, what); \
  } while (0)

// Checks shared by prefill and decode.
template <class A>
Status common(const A& a) {
  SJ_REQUIRE(a.q != nullptr, "q", "must be a device pointer, got null");
  SJ_REQUIRE(a.kv_cache != nullptr, "kv_cache", "must be a device pointer, got null");
  SJ_REQUIRE(a.topk_idx != nullptr, "topk_idx", "must be a device pointer, got null");
  SJ_REQUIRE(a.block_table != nullptr, "block_table", "must be a device pointer, got null");
  SJ_REQUIRE(a.seq_lens != nullptr, "seq_lens", "must be a device pointer, got null");
  SJ_REQUIRE(a.output != nullptr, "output", "must be a device pointer, got null");
  SJ_REQUIRE(a.num_kv_heads >= 1, "num_kv_heads", "must be >= 1, got " + std::to_string(a.num_kv_heads));
  SJ_REQUIRE(a.num_heads >= 1 && a.num_heads % a.num_kv_heads == 0, "num_heads",
             "must be a positive multiple of num_kv_heads (" + std::to_string(a.num_kv_heads) + "), got " + std::to_string(a.num_heads));
  SJ_REQUIRE(a.num_heads / a.num_kv_heads <= 16, "num_heads",
             "GQA group num_heads/num_kv_heads must be <= 16, got " + std::to_string(a.num_heads / a.num_kv_heads));
  SJ_REQUIRE(a.head_dim >= 16 && a.head_dim <= 256 && a.head_dim % 16 == 0, "head_dim",
             "must be a multiple of 16 in [16, 256], got " + std::to_string(a.head_dim));
  SJ_REQUIRE(a.topk >= 1 && a.topk <= 4096, "topk", "must be in [1, 4096], got " + std::to_string(a.topk));
  SJ_REQUIRE(a.total_q >= 0, "total_q", "must be >= 0, got " + std::to_string(a.total_q));
  SJ_REQUIRE(a.total_q <= 0x7fffffff, "total_q", "must fit the grid (< 2^31), got " + std::to_string(a.total_q));
  SJ_REQUIRE(a.max_blocks >= 1, "max_blocks", "block_table must have >= 1 column, got " + std::to_string(a.max_blocks));
  SJ_REQUIRE(a.num_pages >= 1, "num_pages", "kv_cache must have >= 1 page, got " + std::to_string(a.num_pages));
  SJ_REQUIRE(a.q_dtype == DType::bf16 || a.q_dtype == DType::fp16, "q_dtype", std::string("must be bf16 or fp16, got ") + to_string(a.q_dtype));
  SJ_REQUIRE(dtype_bytes(a.kv_dtype) > 0, "kv_dtype", "unknown dtype code " + std::to_string(static_cast<int>(a.kv_dtype)));
  SJ_REQUIRE(a.scale_mode == ScaleMode::none || a.scale_mode == ScaleMode::scalar || a.scale_mode == ScaleMode::per_token_head,
             "scale_mode", "unknown scale mode code " + std::to_string(static_cast<int>(a.scale_mode)));
  if (!is_fp8(a.kv_dtype))
    SJ_REQUIRE(a.scale_mode == ScaleMode::none, "k_scale/v_scale",
               std::string("scales apply to fp8 KV only; kv_dtype is ") + to_string(a.kv_dtype) + ", so scale_mode must be none");
  if (a.scale_mode != ScaleMode::none) {
    SJ_REQUIRE(a.k_scale != nullptr, "k_scale", std::string("must be a device pointer for scale_mode ") + to_string(a.scale_mode));
    SJ_REQUIRE(a.v_scale != nullptr, "v_scale", std::string("must be a device pointer for scale_mode ") + to_string(a.scale_mode));
  }
  SJ_REQUIRE(a.sm_scale > 0.f && a.sm_scale < 1e30f, "sm_scale", "must be a positive finite number, got " + std::to_string(a.sm_scale));
  SJ_REQUIRE(a.q_stride[2] != 0 && a.output_stride[2] != 0 && a.kv_stride[3] != 0, "strides",
             "the head_dim stride of q, output and kv_cache must be non-zero");
  return ok_status();
}

}  // namespace

Status validate_prefill(const PrefillArgs& a) {
  if (auto st = common(a); !st) return st;
  SJ_REQUIRE(a.cu_seqlens_q != nullptr, "cu_seqlens_q", "must be a device pointer, got null");
  SJ_REQUIRE(a.prefix_lens != nullptr, "prefix_lens", "must be a device pointer, got null");
  SJ_REQUIRE(a.batch >= 1 && a.batch <= 65535, "batch", "must be in [1, 65535] (grid z), got " + std::to_string(a.batch));
  SJ_REQUIRE(a.max_query_len >= 0 && a.max_query_len <= std::max<std::int64_t>(a.total_q, 0), "max_query_len",
             "must be in [0, total_q=" + std::to_string(a.total_q) + "], got " + std::to_string(a.max_query_len));
  SJ_REQUIRE(a.num_kv_heads <= 65535, "num_kv_heads", "must be <= 65535 (grid y)");
  return ok_status();
}

Status validate_decode(const DecodeArgs& a, std::size_t workspace_needed) {
  if (auto st = common(a); !st) return st;
  SJ_REQUIRE(a.decode_query_len >= 1, "decode_query_len", "must be >= 1, got " + std::to_string(a.decode_query_len));
  SJ_REQUIRE(a.num_reqs >= 0, "num_reqs", "must be >= 0, got " + std::to_string(a.num_reqs));
  SJ_REQUIRE((a.query_start_loc == nullptr) == (a.token_to_req_indices == nullptr), "query_start_loc/token_to_req_indices",
             "must be given together (ragged decode) or both be null (uniform decode_query_len)");
  if (a.query_start_loc != nullptr) {
    // Ragged: total_q is query_start_loc[num_reqs], on the device; rows map to requests through token_to_req_indices.
    SJ_REQUIRE(a.num_reqs >= 1 || a.total_q == 0, "num_reqs", "must be >= 1 for a ragged decode with queries, got " + std::to_string(a.num_reqs));
  } else {
    // Checked multiply: a huge num_reqs must be an error, not signed-overflow UB that wraps to a "valid" total.
    std::int64_t expected_q = 0;
    const bool overflows = __builtin_mul_overflow(a.num_reqs, a.decode_query_len, &expected_q);
    SJ_REQUIRE(!overflows && a.total_q == expected_q, "total_q",
               "must equal num_reqs * decode_query_len = " +
                   (overflows ? std::string("(overflows int64)") : std::to_string(expected_q)) + ", got " +
                   std::to_string(a.total_q));
  }
  SJ_REQUIRE(a.num_heads <= 65535 && a.num_kv_heads <= 65535, "num_heads", "must be <= 65535 (grid y)");
  SJ_REQUIRE(a.workspace_bytes >= workspace_needed && (workspace_needed == 0 || a.workspace != nullptr), "workspace",
             "needs " + std::to_string(workspace_needed) + " bytes (decode_workspace_bytes), got " + std::to_string(a.workspace_bytes) +
                 (a.workspace ? "" : " at a null pointer"));
  SJ_REQUIRE(reinterpret_cast<std::uintptr_t>(a.workspace) % 16 == 0, "workspace", "must be 16-byte aligned");
  return ok_status();
}

#undef SJ_REQUIRE

}  // namespace sparsejit
