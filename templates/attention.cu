{{> sparse_attn_params.h}}
{{> common.cuh}}
{{> mma_layout.h}}
// ---- block-sparse GQA attention: one workgroup = one (query, kv head, top-k chunk) ----
// Each selected 128-token block is walked in SUB_K-token sub-tiles; the online
// softmax (base 2) runs per sub-tile. Prefill and decode differ only in how a
// query finds its position and its visibility limit, and in what they store.
// The two products per sub-tile, S = Q K^T and O += P V, are tile products of the
// vendor's matrix instruction (SJ_MMA, sj_mma in the prelude): the G query heads
// of the kv head are the M rows, padded to 16 with zeros and never stored.
namespace {
constexpr int kHeadDim = {{HEAD_DIM}};
constexpr int kGroup = {{GQA_GROUP}};
constexpr int kTopk = {{TOPK}};
constexpr int kChunks = {{NUM_TOPK_CHUNKS}};
constexpr int kSubK = {{SUB_K}};
constexpr int kThreads = {{THREADS}};
constexpr int kQDtype = {{Q_DTYPE}};
constexpr int kKvDtype = {{KV_DTYPE}};
constexpr int kScaleMode = {{SCALE_MODE}};
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

SJ_GLOBAL void SJ_KERNEL_ATTRS({{THREADS}}, {{WAVES_PER_EU}}) {{KERNEL_NAME}}(SjAttnParams p) {
  SJ_SHARED Shared sh;
  float acc[kAccPerThread];
  const int tid = sj_tid();
#if {{IS_DECODE}}
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
