// A float64 CPU reference of the sparsejit kernel contract (DESIGN.md, "The
// kernel contract"), written from the contract and the number-format
// definitions, not from the kernels:
//   - fp8 e4m3fn / e5m2 / e4m3fnuz / e5m2fnuz decoding from the bit layouts;
//   - bf16 / fp16 encoding with round-to-nearest-even (overflow -> inf) and decoding;
//   - block-sparse GQA prefill and decode attention in double, with the exact
//     masking rules, fp8 dequantization "to q's dtype" (value * scale computed in
//     fp32, rounded to q's dtype, as vLLM's `k.to(q.dtype) * k_scale` does), an
//     exact softmax (natural base; identical to the kernels' base-2 form), and
//     zeros for a query that sees no key;
//   - on request (Options), fp8 dequantized exactly instead, as the sm_89+ kernels'
//     fp16 path does for no or scalar scales.
// The reference takes the public PrefillArgs / DecodeArgs, but with HOST
// pointers in every pointer field (same strides, same element units).
#pragma once

#include <cstdint>
#include <vector>

#include "sparsejit/sparsejit.hpp"

namespace sparsejit::ref {

// ---- number formats -------------------------------------------------------
// fp8 byte -> exact value (quiet NaN for NaN codes, +-inf where the format has it).
double fp8_to_double(std::uint8_t bits, DType format);
double bf16_to_double(std::uint16_t bits);
double fp16_to_double(std::uint16_t bits);
// Round-to-nearest-even encodings of a double (a single rounding of the exact value).
std::uint16_t double_to_bf16(double x);
std::uint16_t double_to_fp16(double x);

// bf16 / fp16 by DType.
double half_to_double(std::uint16_t bits, DType dtype);
std::uint16_t double_to_half(double x, DType dtype);
// x rounded to bf16 / fp16 and back.
double round_to(double x, DType dtype);

bool is_fp8(DType dtype);
std::size_t element_bytes(DType dtype);

// One K or V element of `kv_cache` (host bytes) at element offset `offset`, as the
// contract turns it into q's dtype: bf16/fp16 converted to q's dtype; fp8 decoded
// (exact in bf16/fp16), multiplied in fp32 by the scale (none: 1; scalar: scale[0];
// per_token_head: scale[scale_offset]) and rounded to q's dtype.
double kv_to_q_dtype(const void* kv_cache, std::int64_t offset, DType kv_dtype, DType q_dtype, ScaleMode mode, const float* scale,
                     std::int64_t scale_offset);

// ---- attention ---------------------------------------------------------------
struct Result {
  // [total_q][num_heads][head_dim], contiguous, exact (not rounded to q's dtype).
  std::vector<double> out;
  // [total_q][num_heads]: how many keys the query sees (0 -> its output must be exactly zero).
  std::vector<int> visible_keys;
  std::int64_t num_heads = 0, head_dim = 0;
  double at(std::int64_t token, std::int64_t head, std::int64_t d) const { return out[(token * num_heads + head) * head_dim + d]; }
  int visible(std::int64_t token, std::int64_t head) const { return visible_keys[token * num_heads + head]; }
};

// How the reference dequantizes fp8 K/V.
struct Options {
  // false: the contract's way, value x scale in fp32 rounded to q's dtype. true: value x scale
  // unrounded (per-token scales: to float's 2^-24), as attention_nv.cu's fp16 path computes it
  // on sm_89+ (kFp8Half). The two differ by at most that one rounding of every K and V element.
  bool exact_fp8_dequant = false;
};

// Prefill: query i of request b is token cu_seqlens_q[b] + i at position p = prefix_lens[b] + i;
// key c+n of a selected block is visible iff c+n <= p and c+n < seq_lens[b].
// Throws std::invalid_argument on inconsistent host arguments (a test bug).
Result prefill(const PrefillArgs& host, const Options& opt = {});

// Decode: query j of request r is token r*decode_query_len + j at p = seq_lens[r] - decode_query_len + j;
// visible iff c+n <= p. (Split-K is an implementation detail: not modelled.)
Result decode(const DecodeArgs& host, const Options& opt = {});

}  // namespace sparsejit::ref
