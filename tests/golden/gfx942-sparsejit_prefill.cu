// sparsejit generated kernel: sparsejit_prefill for gfx942 (do not edit; `sparsejit emit` reproduces it)
// config: {"arch":"gfx942","gqa_group":16,"head_dim":128,"kv_dtype":"bf16","launch":{"cluster":1,"min_blocks":1,"stages":1,"threads":64,"waves_per_eu":2},"num_topk_chunks":1,"op":"prefill","q_dtype":"bf16","q_tile":1,"scale_mode":"none","sub_k":32,"template":"attention.cu","topk":16}
// config-key: 2266b0416c53f98c
// template: attention.cu + prelude_hip.cuh (configs/archs/gfx942.json)
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

// Element -> (lane, register) maps of the matrix instructions the attention
// kernel uses, written once: the device templates embed this file and the host
// tests (tests/test_mma_layout.cpp) include it and check it against software
// models of the instructions. Each map goes from (lane, element i of that lane's
// fragment) to the matrix coordinate; fragments are the instruction's 16-bit
// inputs (A, B) and 32-bit float accumulators (C = D), element i of a fragment
// sitting in bits [16*(i%2), 16*(i%2)+16) of register i/2 for A and B, and in
// register i for C. No placeholders and no includes: rendered sources stay
// self-contained. Plain constexpr works everywhere (NVRTC runs with
// -default-device, HIP treats constexpr as host+device).
#ifndef SPARSEJIT_MMA_LAYOUT_H
#define SPARSEJIT_MMA_LAYOUT_H

// NVIDIA mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 (sm_80+),
// from the PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type":
// groupID = lane / 4, threadID_in_group = lane % 4. A is 16x16 (row-major), B is
// 16x8 (K x N, "col"), C/D 16x8.
struct SjMmaNvM16N8K16 {
  static constexpr int kM = 16, kN = 8, kK = 16, kLanes = 32;
  static constexpr int kA = 8, kB = 4, kC = 4;  // elements per lane
  // a0,a1: row g; a2,a3: row g+8; a4..a7 repeat that 8 columns to the right.
  static constexpr int a_row(int lane, int i) { return (lane >> 2) + ((i >> 1) & 1) * 8; }
  static constexpr int a_col(int lane, int i) { return (lane & 3) * 2 + (i & 1) + (i >> 2) * 8; }
  // b0,b1: k = 2t, 2t+1; b2,b3: k + 8; column n = g.
  static constexpr int b_row(int lane, int i) { return (lane & 3) * 2 + (i & 1) + (i >> 1) * 8; }
  static constexpr int b_col(int lane, int) { return lane >> 2; }
  // c0,c1: row g; c2,c3: row g+8; columns 2t, 2t+1.
  static constexpr int c_row(int lane, int i) { return (lane >> 2) + (i >> 1) * 8; }
  static constexpr int c_col(int lane, int i) { return (lane & 3) * 2 + (i & 1); }
};

// AMD v_mfma_f32_16x16x16_bf16 (bf16_1k on gfx90a) and v_mfma_f32_16x16x16_f16
// on wave64 (gfx90a/gfx942/gfx950), as in AMD's CDNA3 ISA guide ("Dependency
// and layout of MFMA operands"), the AMD Matrix Instruction Calculator and AMD's
// lab-notes example matrix-cores/src/mfma_fp32_16x16x16fp16.cpp: lane l holds
// 4 consecutive k of A row l%16 and of B column l%16, starting at k = 4*(l/16);
// D column l%16, rows 4*(l/16) .. +3.
struct SjMmaAmd16x16x16 {
  static constexpr int kM = 16, kN = 16, kK = 16, kLanes = 64;
  static constexpr int kA = 4, kB = 4, kC = 4;
  static constexpr int a_row(int lane, int) { return lane & 15; }
  static constexpr int a_col(int lane, int i) { return (lane >> 4) * 4 + i; }
  static constexpr int b_row(int lane, int i) { return (lane >> 4) * 4 + i; }
  static constexpr int b_col(int lane, int) { return lane & 15; }
  static constexpr int c_row(int lane, int i) { return (lane >> 4) * 4 + i; }
  static constexpr int c_col(int lane, int) { return lane & 15; }
};

// NVIDIA wgmma (sm_90a) operands in shared memory with the 128-byte swizzle, as
// attention_nv.cu stores Q and K (read K-major) and V (read N-major): element e
// (0 .. head_dim-1, head_dim a multiple of 64) of row r (a query row or a key) of a
// buffer of `rows` rows (a multiple of 8, 1024-byte aligned), as an offset in
// 16-bit elements. Elements [64c, 64c + 64) of every row form region c (rows x
// 128 bytes); 16-byte chunk j of row r sits at chunk j ^ (r % 8) of its 128 bytes,
// the PTX ISA's Swizzle<3,4,3> of the canonical layouts ("Shared Memory Matrix
// Layout": K-major ((8,m),(T,2k)):((8T,SBO),(1,T)), MN-major
// ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)), SBO 1024 bytes, LBO = rows x 128 bytes).
struct SjWgmmaSw128 {
  static constexpr int off(int rows, int r, int e) { return (e / 64) * (rows * 64) + r * 64 + (((e % 64) / 8) ^ (r % 8)) * 8 + e % 8; }
};

#ifdef SPARSEJIT_MMA_LAYOUT_HOST
// Host only: the layouts by name, for test messages.
inline const char* sj_mma_layout_name(const SjMmaNvM16N8K16*) { return "nvidia mma.m16n8k16"; }
inline const char* sj_mma_layout_name(const SjMmaAmd16x16x16*) { return "amd mfma 16x16x16"; }
#endif

#endif

// ---- block-sparse GQA attention: one workgroup = one (query, kv head, top-k chunk) ----
// Each selected 128-token block is walked in SUB_K-token sub-tiles; the online
// softmax (base 2) runs per sub-tile. Prefill and decode differ only in how a
// query finds its position and its visibility limit, and in what they store.
// The two products per sub-tile, S = Q K^T and O += P V, are tile products of the
// vendor's matrix instruction (SJ_MMA, sj_mma in the prelude): the G query heads
// of the kv head are the M rows, padded to 16 with zeros and never stored.
namespace {
constexpr int kHeadDim = 128;
constexpr int kGroup = 16;
constexpr int kTopk = 16;
constexpr int kChunks = 1;
constexpr int kSubK = 32;
constexpr int kThreads = 64;
constexpr int kQDtype = 0;
constexpr int kKvDtype = 0;
constexpr int kScaleMode = 0;
constexpr int kBlock = 128;
constexpr int kChunkSize = (kTopk + kChunks - 1) / kChunks;
static_assert(kBlock % kSubK == 0, "SUB_K must divide the 128-token block");
static_assert(kGroup <= kThreads, "one thread per head for the softmax statistics");

using Mma = SJ_MMA;
// Tile products need whole warps/waves; other thread counts keep scalar loops.
constexpr bool kUseMma = kThreads % SJ_WARP == 0;
constexpr int kWarps = kThreads / SJ_WARP > 0 ? kThreads / SJ_WARP : 1;
constexpr bool kBf16 = kQDtype == SJ_BF16;
constexpr int kOutTiles = kHeadDim / Mma::kN;  // N tiles of O (head_dim is a multiple of 16)
constexpr int kOutTilesPerWarp = (kOutTiles + kWarps - 1) / kWarps;
// Output elements per thread: MMA accumulators (tile t of this warp, register r at t * kC + r), or scalar.
constexpr int kAccPerThread = kUseMma ? kOutTilesPerWarp * Mma::kC : (kGroup * kHeadDim + kThreads - 1) / kThreads;
static_assert(kGroup <= Mma::kM, "the G heads of a kv head must fit the 16 rows of one tile");
static_assert(kSubK % Mma::kN == 0 && kSubK % Mma::kK == 0 && kHeadDim % Mma::kK == 0, "tile shapes");

// Per-head arrays have kRows = 16 rows: rows >= G hold zeros (q, p) or finite
// don't-cares, so fragment loads and score stores need no per-lane row test
// (on AMD such tests pinned exec masks in SGPRs and made the G = 8 kernels spill).
constexpr int kRows = 16;
static_assert(kGroup <= kRows, "G <= 16");
// Rows are padded (16 bytes for the 16-bit tiles, 4 bytes for the scores) so the
// fragment loads of 8 consecutive rows at one column hit 8 different bank groups
// instead of one: unpadded power-of-two rows serialize them 8 ways.
constexpr int kPadHalf = 8;
constexpr int kPadFloat = 1;
struct Shared {
  sj_u16 q[kRows][kHeadDim + kPadHalf];   // q in its own dtype (exact); zero rows >= G
  sj_u16 kv[kSubK][kHeadDim + kPadHalf];  // K, then V, of the current sub-tile, dequantized to q's dtype
  float s[kRows][kSubK + kPadFloat];      // scores, then probabilities
  sj_u16 p[kRows][kSubK + kPadHalf];      // probabilities in q's dtype: the A operand of P V; zero rows >= G
  float m[kRows];
  float l[kRows];
  float alpha[kRows];
};

// Which output element (head g, dim d) acc[j] of this thread holds; false if none.
SJ_DEVICE bool sj_acc_coord(int j, int& g, int& d) {
  if constexpr (kUseMma) {
    const int lane = sj_tid() % SJ_WARP;
    const int tile = sj_tid() / SJ_WARP + (j / Mma::kC) * kWarps;
    g = Mma::c_row(lane, j % Mma::kC);
    d = tile * Mma::kN + Mma::c_col(lane, j % Mma::kC);
    return tile < kOutTiles && g < kGroup;
  } else {
    const int i = sj_tid() + j * kThreads;
    g = i / kHeadDim;
    d = i % kHeadDim;
    return i < kGroup * kHeadDim;
  }
}

// Stages one K or V sub-tile (keys n0 .. n0 + SUB_K - 1 of the page at `base`) in
// shared memory, dequantized to q's dtype. Loads are batched in registers before
// the shared stores so each thread keeps kStageBatch global loads in flight: one
// dependent load->store per element serialized on memory latency (~120 us per
// 128-token block on the H100).
constexpr int kTileElems = kSubK * kHeadDim;
constexpr int kStageBatch = SJ_STAGE_BATCH;
SJ_DEVICE void sj_stage_tile(const SjAttnParams& p, Shared& sh, long long base, const float* scale, long long scale_base,
                             long long scale_stride_t, int sub, long long n0, long long hi) {
  const int tid = sj_tid();
  for (int i0 = tid; i0 < kTileElems; i0 += kThreads * kStageBatch) {
    sj_u16 v[kStageBatch];
#pragma unroll
    for (int u = 0; u < kStageBatch; ++u) {
      const int i = i0 + u * kThreads;
      const int n = i / kHeadDim, d = i % kHeadDim;
      const long long in_page = sub * kSubK + n;
      v[u] = 0;
      if (i < kTileElems && n0 + n <= hi)
        v[u] = sj_load_kv<kQDtype, kKvDtype, kScaleMode>(p.kv, base + in_page * p.kv_stride[2] + d * p.kv_stride[3], scale,
                                                         scale_base + in_page * scale_stride_t);
    }
#pragma unroll
    for (int u = 0; u < kStageBatch; ++u) {
      const int i = i0 + u * kThreads;
      if (i < kTileElems) sh.kv[i / kHeadDim][i % kHeadDim] = v[u];
    }
  }
}

// sh.s = base-2 scores of the sub-tile in sh.kv (keys at n0 + n); -inf where invisible (n0 + n > hi).
SJ_DEVICE void sj_scores(Shared& sh, long long n0, long long hi, float scale) {
  const int tid = sj_tid();
  if constexpr (kUseMma) {
    const int warp = tid / SJ_WARP, lane = tid % SJ_WARP;
    for (int nt = warp; nt < kSubK / Mma::kN; nt += kWarps) {  // warp-uniform: every lane takes part in each MMA
      float c[Mma::kC] = {};
#pragma unroll 4
      for (int k0 = 0; k0 < kHeadDim; k0 += Mma::kK) {
        sj_u16 a[Mma::kA], b[Mma::kB];
#pragma unroll
        for (int i = 0; i < Mma::kA; ++i) a[i] = sh.q[Mma::a_row(lane, i)][k0 + Mma::a_col(lane, i)];
#pragma unroll
        for (int i = 0; i < Mma::kB; ++i) b[i] = sh.kv[nt * Mma::kN + Mma::b_col(lane, i)][k0 + Mma::b_row(lane, i)];
        sj_mma<kBf16>(c, a, b);
      }
#pragma unroll
      for (int i = 0; i < Mma::kC; ++i) {
        const int n = nt * Mma::kN + Mma::c_col(lane, i);
        sh.s[Mma::c_row(lane, i)][n] = n0 + n <= hi ? c[i] * scale : sj_neg_inf();
      }
    }
  } else {
    for (int i = tid; i < kGroup * kSubK; i += kThreads) {
      const int g = i / kSubK, n = i % kSubK;
      float s = sj_neg_inf();
      if (n0 + n <= hi) {
        float dot = 0.f;
#pragma unroll 8
        for (int d = 0; d < kHeadDim; ++d) dot += sj_half_to_f32<kQDtype>(sh.q[g][d]) * sj_half_to_f32<kQDtype>(sh.kv[n][d]);
        s = dot * scale;
      }
      sh.s[g][n] = s;
    }
  }
}

// acc = acc * alpha + P V for the sub-tile whose V is in sh.kv.
SJ_DEVICE void sj_accumulate_pv(const Shared& sh, float (&acc)[kAccPerThread]) {
  if constexpr (kUseMma) {
    const int warp = sj_tid() / SJ_WARP, lane = sj_tid() % SJ_WARP;
#pragma unroll
    for (int t = 0; t < kOutTilesPerWarp; ++t) {
      const int tile = warp + t * kWarps;
      if (tile >= kOutTiles) continue;  // warp-uniform
      float c[Mma::kC];
#pragma unroll
      for (int i = 0; i < Mma::kC; ++i) c[i] = acc[t * Mma::kC + i] * sh.alpha[Mma::c_row(lane, i)];
#pragma unroll
      for (int k0 = 0; k0 < kSubK; k0 += Mma::kK) {
        sj_u16 a[Mma::kA], b[Mma::kB];
#pragma unroll
        for (int i = 0; i < Mma::kA; ++i) a[i] = sh.p[Mma::a_row(lane, i)][k0 + Mma::a_col(lane, i)];
#pragma unroll
        for (int i = 0; i < Mma::kB; ++i) b[i] = sh.kv[k0 + Mma::b_row(lane, i)][tile * Mma::kN + Mma::b_col(lane, i)];
        sj_mma<kBf16>(c, a, b);
      }
#pragma unroll
      for (int i = 0; i < Mma::kC; ++i) acc[t * Mma::kC + i] = c[i];
    }
  } else {
#pragma unroll
    for (int j = 0; j < kAccPerThread; ++j) {
      int g, d;
      if (sj_acc_coord(j, g, d)) {
        float a = acc[j] * sh.alpha[g];
        for (int n = 0; n < kSubK; ++n) a += sh.s[g][n] * sj_half_to_f32<kQDtype>(sh.kv[n][d]);
        acc[j] = a;
      }
    }
  }
}

// Attends query `token` (absolute position `pos`, keys visible below `limit` and
// at most `pos`) of request `req` to the top-k entries [t_begin, t_end) of kv head `kvh`.
// On return acc holds the unnormalized output and sh.m / sh.l the statistics.
SJ_DEVICE void sj_attend(const SjAttnParams& p, Shared& sh, float (&acc)[kAccPerThread], long long token, long long req,
                         long long kvh, long long pos, long long limit, int t_begin, int t_end) {
  const int tid = sj_tid();
  const long long h0 = kvh * kGroup;
  for (int i = tid; i < kRows * kHeadDim; i += kThreads) {
    const int g = i / kHeadDim, d = i % kHeadDim;
    sh.q[g][d] = g < kGroup ? ((const sj_u16*)p.q)[token * p.q_stride[0] + (h0 + g) * p.q_stride[1] + d * p.q_stride[2]] : (sj_u16)0;
  }
  for (int i = tid + kGroup * kSubK; i < kRows * kSubK; i += kThreads) sh.p[i / kSubK][i % kSubK] = 0;  // padded rows of P
  if (tid < kRows) {
    sh.m[tid] = sj_neg_inf();
    sh.l[tid] = 0.f;
    sh.alpha[tid] = 1.f;
  }
#pragma unroll
  for (int j = 0; j < kAccPerThread; ++j) acc[j] = 0.f;
  sj_sync();

  const int* topk = (const int*)p.topk + kvh * p.topk_stride[0] + token * p.topk_stride[1];
  const int* bt_row = (const int*)p.block_table + req * p.bt_stride;
  const float* k_scale = (const float*)p.k_scale;
  const float* v_scale = (const float*)p.v_scale;
  const long long hi = pos < limit - 1 ? pos : limit - 1;  // last visible key position

  for (int t = t_begin; t < t_end; ++t) {
    const long long blk = topk[t * p.topk_stride[2]];
    // Padding (< 0) and ids outside the block table select nothing; so does a block wholly in the future.
    if (blk < 0 || blk >= p.max_blocks || blk * kBlock > hi) continue;
    const long long page = bt_row[blk];
    if (page < 0 || page >= p.num_pages) continue;  // unmapped or beyond the KV cache: masked
    const long long kv_row = page * p.kv_stride[0] + kvh * p.kv_stride[1];
    for (int sub = 0; sub < kBlock / kSubK; ++sub) {
      const long long n0 = blk * kBlock + sub * kSubK;  // absolute position of the sub-tile's first key
      if (n0 > hi) break;
      // K sub-tile -> shared (invisible keys as zeros: never read past the sequence).
      sj_stage_tile(p, sh, kv_row, k_scale, kvh * p.ks_stride[0] + page * kBlock * p.ks_stride[1], p.ks_stride[1], sub, n0, hi);
      sj_sync();
      sj_scores(sh, n0, hi, p.sm_scale_log2);
      sj_sync();
      if (tid < kGroup) {
        const float m_old = sh.m[tid];
        float mx = m_old;
        for (int n = 0; n < kSubK; ++n) mx = sh.s[tid][n] > mx ? sh.s[tid][n] : mx;
        float sum = 0.f;
        for (int n = 0; n < kSubK; ++n) {
          const float s = sh.s[tid][n];
          const float e = (s == sj_neg_inf()) ? 0.f : sj_exp2(s - mx);
          sh.s[tid][n] = e;
          sh.p[tid][n] = sj_f32_to_half<kQDtype>(e);
          sum += e;
        }
        const float alpha = (mx == sj_neg_inf()) ? 1.f : sj_exp2(m_old - mx);
        sh.alpha[tid] = alpha;
        sh.l[tid] = sh.l[tid] * alpha + sum;
        sh.m[tid] = mx;
      }
      // V sub-tile -> shared (the K tile is no longer needed).
      sj_stage_tile(p, sh, p.v_offset + kv_row, v_scale, kvh * p.vs_stride[0] + page * kBlock * p.vs_stride[1], p.vs_stride[1], sub,
                    n0, hi);
      sj_sync();
      sj_accumulate_pv(sh, acc);
      sj_sync();
    }
  }
}
}  // namespace

SJ_GLOBAL void SJ_KERNEL_ATTRS(64, 2) sparsejit_prefill(SjAttnParams p) {
  SJ_SHARED Shared sh;
  float acc[kAccPerThread];
  const int tid = sj_tid();
#if 0
  // grid: (total_q, num_kv_heads, chunks); sj_decode_row places each query row.
  const long long token = sj_bid_x(), kvh = sj_bid_y(), chunk = sj_bid_z();
  sj_grid_dependency_wait();  // decode.dependent_launch: every global access comes after it
  long long req, pos;
  sj_decode_row(p, token, req, pos);
  const int t_begin = (int)chunk * kChunkSize;
  const int t_end = t_begin + kChunkSize < kTopk ? t_begin + kChunkSize : kTopk;
  sj_attend(p, sh, acc, token, req, kvh, pos, pos + 1, t_begin, t_end);
  if (kChunks == 1) {  // one chunk: the final output, no merge
#pragma unroll
    for (int j = 0; j < kAccPerThread; ++j) {
      int g, d;
      if (sj_acc_coord(j, g, d)) {
        const float l = sh.l[g];
        ((sj_u16*)p.out)[token * p.out_stride[0] + (kvh * kGroup + g) * p.out_stride[1] + d * p.out_stride[2]] =
            sj_f32_to_half<kQDtype>(l > 0.f ? acc[j] / l : 0.f);
      }
    }
    return;
  }
  float* o_part = (float*)p.out;
  float* lse = (float*)p.lse;
  const long long row = (chunk * p.total_q + token) * p.num_heads + kvh * kGroup;  // first head of this group
#pragma unroll
  for (int j = 0; j < kAccPerThread; ++j) {
    int g, d;
    if (sj_acc_coord(j, g, d)) {
      const float l = sh.l[g];
      o_part[(row + g) * kHeadDim + d] = l > 0.f ? acc[j] / l : 0.f;  // empty chunk: zeros, weight 0 via lse
    }
  }
  if (tid < kGroup) lse[row + tid] = sh.l[tid] > 0.f ? sh.m[tid] + sj_log2(sh.l[tid]) : sj_neg_inf();
#else
  // grid: (max_query_len, num_kv_heads, batch). Query i of request b sits at prefix_lens[b] + i.
  const long long i_q = sj_bid_x(), kvh = sj_bid_y(), req = sj_bid_z();
  const long long q_start = ((const int*)p.cu_seqlens_q)[req];
  const long long q_len = ((const int*)p.cu_seqlens_q)[req + 1] - q_start;
  if (i_q >= q_len) return;
  const long long token = q_start + i_q;
  const long long pos = ((const int*)p.prefix_lens)[req] + i_q;
  const long long seq_len = ((const int*)p.seq_lens)[req];
  sj_attend(p, sh, acc, token, req, kvh, pos, seq_len, 0, kTopk);
  (void)tid;
#pragma unroll
  for (int j = 0; j < kAccPerThread; ++j) {
    int g, d;
    if (sj_acc_coord(j, g, d)) {
      const float l = sh.l[g];
      const float o = l > 0.f ? acc[j] / l : 0.f;  // no visible key: zeros
      ((sj_u16*)p.out)[token * p.out_stride[0] + (kvh * kGroup + g) * p.out_stride[1] + d * p.out_stride[2]] =
          sj_f32_to_half<kQDtype>(o);
    }
  }
#endif
}
