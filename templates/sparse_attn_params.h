// Kernel parameter blocks, shared verbatim by the host (included) and the
// device (embedded into every rendered source), so their layouts cannot drift.
// Only 8-byte members before the trailing floats: identical layout under every
// host and device compiler. No placeholders in this file.
#ifndef SPARSEJIT_SPARSE_ATTN_PARAMS_H
#define SPARSEJIT_SPARSE_ATTN_PARAMS_H

// SjAttnParams::flags
#define SJ_FLAG_KV_VEC16 1  // K/V: unit dim stride and 16-byte aligned rows, pages, heads and v_offset
#define SJ_FLAG_Q_VEC16 2   // q: unit dim stride and 16-byte aligned tokens and heads
#define SJ_FLAG_KV_TMA 4    // SjTmaMaps holds tensor maps of K and V (attention_nv.cu decode with launch.tma)

struct SjAttnParams {
  const void* q;             // [total_q, num_heads, head_dim]
  const void* kv;            // K at kv, V at kv + v_offset (elements)
  const void* topk;          // int32 [num_kv_heads, total_q, topk]
  const void* block_table;   // int32 [batch, max_blocks]
  const void* seq_lens;      // int32 [batch]
  const void* prefix_lens;   // int32 [batch] (prefill)
  const void* cu_seqlens_q;  // int32 [batch + 1] (prefill)
  const void* query_start_loc;  // int32 [num_reqs + 1] (ragged decode; null: uniform decode_query_len)
  const void* token_to_req;     // int32 [total_q] (ragged decode)
  const void* k_scale;       // float: scalar, or [num_kv_heads, tokens] per token/head
  const void* v_scale;
  void* out;                 // prefill: output [total_q, num_heads, head_dim]; decode: float partials
  void* lse;                 // decode: float [chunks, total_q, num_heads]
  long long q_stride[3];     // token, head, dim (elements)
  long long out_stride[3];   // token, head, dim (prefill only)
  long long kv_stride[4];    // page, kv head, position, dim
  long long v_offset;        // elements from a K element to its V element
  long long topk_stride[3];  // kv head, token, k
  long long bt_stride;       // block_table row stride
  long long ks_stride[2];    // k_scale kv head, token
  long long vs_stride[2];    // v_scale kv head, token
  long long total_q;
  long long decode_query_len;
  long long num_reqs;        // decode: rows of seq_lens / block_table (bounds for token_to_req)
  long long num_heads;
  long long max_blocks;      // block_table row length (bounds for logical block ids)
  long long num_pages;       // kv cache page count (bounds for physical pages from block_table)
  float sm_scale_log2;       // sm_scale * log2(e)
  int flags;                 // SJ_FLAG_* (set by the host from the arguments)
};

// The second parameter of kernels built with launch.tma: CUDA tensor maps (CUtensorMap:
// 128 bytes, 64-byte aligned) of K and V, 5-D: (dims within 64, key, 64-dim group, kv
// head, page), boxes of (64, SUB_K, head_dim / 64, 1, 1), 128-byte swizzle.
struct SjTmaMaps {
  alignas(64) unsigned long long k[16];
  alignas(64) unsigned long long v[16];
};

struct SjMergeParams {
  const float* o_part;       // [chunks, total_q, num_heads, head_dim]
  const float* lse;          // [chunks, total_q, num_heads]
  void* out;                 // [total_q, num_heads, head_dim]
  long long out_stride[3];
  long long total_q;
  long long num_heads;
};

#endif
