// sparsejit generated kernel: sparsejit_merge for gfx942 (do not edit; `sparsejit emit` reproduces it)
// config: {"arch":"gfx942","gqa_group":0,"head_dim":128,"kv_dtype":"bf16","launch":{"cluster":1,"min_blocks":1,"stages":1,"threads":128,"waves_per_eu":1},"num_topk_chunks":4,"op":"merge","q_dtype":"bf16","q_tile":1,"scale_mode":"none","sub_k":0,"template":"merge.cu","topk":0}
// config-key: 68caf0d7b0f9ac34
// template: merge.cu + prelude_hip.cuh (configs/archs/gfx942.json)
// ---- vendor primitives: AMD (HIPRTC or Clang -nogpuinc; compiler builtins only) ----
#define SJ_GLOBAL extern "C" __attribute__((global)) __attribute__((visibility("default")))
#define SJ_DEVICE static __attribute__((device)) __attribute__((always_inline)) inline
#define SJ_SHARED __attribute__((shared))
// Global loads a thread batches in registers when staging a K/V tile: 4 keeps the
// CDNA kernels inside the VGPR budget with no spills (16 spilled SGPRs on gfx942).
#define SJ_STAGE_BATCH 4
#define SJ_KERNEL_ATTRS(threads, waves_per_eu) \
  __attribute__((amdgpu_flat_work_group_size(1, threads))) __attribute__((amdgpu_waves_per_eu(waves_per_eu)))
typedef unsigned short sj_u16;
typedef unsigned char sj_u8;

SJ_DEVICE int sj_tid() { return (int)__builtin_amdgcn_workitem_id_x(); }
SJ_DEVICE long long sj_bid_x() { return (long long)__builtin_amdgcn_workgroup_id_x(); }
SJ_DEVICE long long sj_bid_y() { return (long long)__builtin_amdgcn_workgroup_id_y(); }
SJ_DEVICE long long sj_bid_z() { return (long long)__builtin_amdgcn_workgroup_id_z(); }
SJ_DEVICE void sj_sync() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
SJ_DEVICE float sj_exp2(float x) { return __builtin_exp2f(x); }
SJ_DEVICE float sj_log2(float x) { return __builtin_log2f(x); }
SJ_DEVICE void sj_grid_dependency_wait() {}  // programmatic dependent launch is NVIDIA's; HIP orders the kernels
SJ_DEVICE void sj_grid_launch_dependents() {}
SJ_DEVICE float sj_bits_to_float(unsigned u) { return __builtin_bit_cast(float, u); }
SJ_DEVICE unsigned sj_float_to_bits(float f) { return __builtin_bit_cast(unsigned, f); }
SJ_DEVICE float sj_neg_inf() { return sj_bits_to_float(0xff800000u); }
SJ_DEVICE float sj_f16_to_f32(sj_u16 h) { return (float)__builtin_bit_cast(_Float16, h); }
SJ_DEVICE sj_u16 sj_f32_to_f16(float f) { return __builtin_bit_cast(sj_u16, (_Float16)f); }

// Matrix-core tile product: one wave64 computes c += a * b for a 16x16x16 tile
// (v_mfma_f32_16x16x16_bf16 / _f16, gfx90a and later). Fragments are per-lane
// element arrays in the order of SjMmaAmd16x16x16 (mma_layout.h). Builtins, not
// inline asm, so the compiler sees the MFMA's hazards and latency.
#define SJ_WARP 64
#define SJ_MMA SjMmaAmd16x16x16
typedef short sj_short4 __attribute__((ext_vector_type(4)));
typedef _Float16 sj_half4 __attribute__((ext_vector_type(4)));
typedef float sj_float4 __attribute__((ext_vector_type(4)));
template <bool kBf16>
SJ_DEVICE void sj_mma(float (&c)[4], const sj_u16 (&a)[4], const sj_u16 (&b)[4]) {
  sj_float4 d = {c[0], c[1], c[2], c[3]};
  if constexpr (kBf16) {
    const sj_short4 va = {(short)a[0], (short)a[1], (short)a[2], (short)a[3]};
    const sj_short4 vb = {(short)b[0], (short)b[1], (short)b[2], (short)b[3]};
    d = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(va, vb, d, 0, 0, 0);
  } else {
    const sj_half4 va = {__builtin_bit_cast(_Float16, a[0]), __builtin_bit_cast(_Float16, a[1]), __builtin_bit_cast(_Float16, a[2]),
                         __builtin_bit_cast(_Float16, a[3])};
    const sj_half4 vb = {__builtin_bit_cast(_Float16, b[0]), __builtin_bit_cast(_Float16, b[1]), __builtin_bit_cast(_Float16, b[2]),
                         __builtin_bit_cast(_Float16, b[3])};
    d = __builtin_amdgcn_mfma_f32_16x16x16f16(va, vb, d, 0, 0, 0);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) c[i] = d[i];
}

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

// ---- shared algorithm layer (every vendor): dtypes, dequantization, rounding ----
// dtype codes: must match sparsejit::DType on the host.
#define SJ_BF16 0
#define SJ_FP16 1
#define SJ_FP8_E4M3FN 2
#define SJ_FP8_E5M2 3
#define SJ_FP8_E4M3FNUZ 4
#define SJ_FP8_E5M2FNUZ 5
#define SJ_SCALE_NONE 0
#define SJ_SCALE_SCALAR 1
#define SJ_SCALE_PER_TOKEN_HEAD 2

SJ_DEVICE float sj_bf16_to_f32(sj_u16 h) { return sj_bits_to_float(((unsigned)h) << 16); }
SJ_DEVICE sj_u16 sj_f32_to_bf16(float f) {
  unsigned u = sj_float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (sj_u16)((u >> 16) | 0x40u);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                           // round to nearest even
  return (sj_u16)(u >> 16);
}

template <int DT>
SJ_DEVICE float sj_half_to_f32(sj_u16 h) {
  if (DT == SJ_BF16) return sj_bf16_to_f32(h);
  return sj_f16_to_f32(h);
}
template <int DT>
SJ_DEVICE sj_u16 sj_f32_to_half(float f) {
  if (DT == SJ_BF16) return sj_f32_to_bf16(f);
  return sj_f32_to_f16(f);
}

// fp8 -> float, exact. EB exponent bits, MB mantissa bits, BIAS, FNUZ: 0x80 is the
// only NaN and there is no -0/inf; IEEE_SPECIALS: all-ones exponent is inf/NaN (e5m2).
template <int EB, int MB, int BIAS, bool FNUZ, bool IEEE_SPECIALS>
SJ_DEVICE float sj_fp8_decode(sj_u8 v) {
  const unsigned sign = (v >> 7) & 1u;
  const unsigned exp = (v >> MB) & ((1u << EB) - 1u);
  const unsigned man = v & ((1u << MB) - 1u);
  if (FNUZ && v == 0x80u) return sj_bits_to_float(0x7fc00000u);
  if (!FNUZ && !IEEE_SPECIALS && exp == ((1u << EB) - 1u) && man == ((1u << MB) - 1u))
    return sj_bits_to_float(0x7fc00000u);  // e4m3fn: S.1111.111 is NaN, no inf
  if (IEEE_SPECIALS && exp == ((1u << EB) - 1u))
    return sj_bits_to_float(man ? 0x7fc00000u : ((sign << 31) | 0x7f800000u));
  float mag;
  if (exp == 0) {
    // subnormal: man * 2^(1 - BIAS - MB), built exactly from float bits
    mag = (float)man * sj_bits_to_float((unsigned)(127 + 1 - BIAS - MB) << 23);
  } else {
    mag = sj_bits_to_float(((exp + 127u - (unsigned)BIAS) << 23) | (man << (23 - MB)));
  }
  return sign ? -mag : mag;
}

template <int DT>
SJ_DEVICE float sj_fp8_to_f32(sj_u8 v) {
  if (DT == SJ_FP8_E4M3FN) return sj_fp8_decode<4, 3, 7, false, false>(v);
  if (DT == SJ_FP8_E5M2) return sj_fp8_decode<5, 2, 15, false, true>(v);
  if (DT == SJ_FP8_E4M3FNUZ) return sj_fp8_decode<4, 3, 8, true, false>(v);
  return sj_fp8_decode<5, 2, 16, true, false>(v);
}

// Rounds through q's dtype (the reference dequantizes K/V "to q.dtype").
template <int QDT>
SJ_DEVICE float sj_round_q(float f) {
  return sj_half_to_f32<QDT>(sj_f32_to_half<QDT>(f));
}

// Loads one K or V element as q's dtype (bits), dequantizing and scaling fp8.
template <int QDT, int KVDT, int SCALE>
SJ_DEVICE sj_u16 sj_load_kv(const void* base, long long off, const float* scale, long long scale_off) {
  if (KVDT == SJ_BF16 || KVDT == SJ_FP16) {
    const sj_u16 raw = ((const sj_u16*)base)[off];
    if (KVDT == QDT) return raw;
    return sj_f32_to_half<QDT>(sj_half_to_f32<KVDT>(raw));
  } else {
    float f = sj_fp8_to_f32<KVDT>(((const sj_u8*)base)[off]);  // exact in bf16/fp16
    if (SCALE == SJ_SCALE_SCALAR) f = f * scale[0];
    if (SCALE == SJ_SCALE_PER_TOKEN_HEAD) f = f * scale[scale_off];
    return sj_f32_to_half<QDT>(f);
  }
}

// Decode: the request of query row `token` and its absolute position. Uniform:
// query j of request r is row r * decode_query_len + j at seq_lens[r] -
// decode_query_len + j. Ragged (query_start_loc / token_to_req): row
// query_start_loc[r] + j at seq_lens[r] - n_r + j; a row of no request gets
// req 0 and pos -1 (sees nothing, reads nothing out of range).
SJ_DEVICE void sj_decode_row(const SjAttnParams& p, long long token, long long& req, long long& pos) {
  if (p.query_start_loc) {
    req = ((const int*)p.token_to_req)[token];
    if (req >= 0 && req < p.num_reqs) {
      const long long start = ((const int*)p.query_start_loc)[req], n = ((const int*)p.query_start_loc)[req + 1] - start;
      pos = ((const int*)p.seq_lens)[req] - n + (token - start);
    } else {
      req = 0, pos = -1;
    }
  } else {
    req = token / p.decode_query_len;
    pos = ((const int*)p.seq_lens)[req] - p.decode_query_len + (token - req * p.decode_query_len);
  }
}

// Split-K merge by LSE (base 2), shared by the merge kernel and decode's cluster
// merge: each part's weight 2^(lse_c - max) (0 for an empty part, lse = -inf)
// into w; returns their sum, 0 when every part is empty (the caller then writes
// zeros, never NaN). Unrolled by 16 so the loads behind lse are in flight together.
template <int N>
SJ_DEVICE float sj_lse_weights(const float (&lse)[N], float (&w)[N]) {
  float mx = sj_neg_inf();
#pragma unroll 16
  for (int c = 0; c < N; ++c) mx = lse[c] > mx ? lse[c] : mx;
  float den = 0.f;
#pragma unroll 16
  for (int c = 0; c < N; ++c) {
    w[c] = (mx == sj_neg_inf() || lse[c] == sj_neg_inf()) ? 0.f : sj_exp2(lse[c] - mx);
    den += w[c];
  }
  return den;
}

// ---- split-K merge: out = sum_c 2^(lse_c - M) o_c / sum_c 2^(lse_c - M) ----
// grid: (total_q, num_heads). Rows whose chunks are all empty (padded requests) get zeros, never NaN.
namespace {
constexpr int kHeadDim = 128;
constexpr int kChunks = 4;
constexpr int kThreads = 128;
constexpr int kQDtype = 0;
}  // namespace

SJ_GLOBAL void SJ_KERNEL_ATTRS(128, 1) sparsejit_merge(SjMergeParams p) {
  sj_grid_dependency_wait();  // launched while the split-K kernel runs (sm_90): its partials are complete from here on
  const long long token = sj_bid_x(), head = sj_bid_y();
  const long long row_stride = p.total_q * p.num_heads;
  const long long row = token * p.num_heads + head;
  // Unrolled over the chunks so their loads are in flight together (one latency, not kChunks).
  float lse[kChunks], w[kChunks];
#pragma unroll 16
  for (int c = 0; c < kChunks; ++c) lse[c] = p.lse[c * row_stride + row];
  const float den = sj_lse_weights(lse, w);
  for (int d = sj_tid(); d < kHeadDim; d += kThreads) {
    float num = 0.f;
#pragma unroll 16
    for (int c = 0; c < kChunks; ++c) num += w[c] * p.o_part[(c * row_stride + row) * kHeadDim + d];
    const float o = den > 0.f ? num / den : 0.f;
    ((sj_u16*)p.out)[token * p.out_stride[0] + head * p.out_stride[1] + d * p.out_stride[2]] = sj_f32_to_half<kQDtype>(o);
  }
}
