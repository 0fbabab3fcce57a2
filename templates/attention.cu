{{> sparse_attn_params.h}}
{{> common.cuh}}
// ---- block-sparse GQA attention: one workgroup = one (query, kv head, top-k chunk) ----
// Each selected 128-token block is walked in SUB_K-token sub-tiles; the online
// softmax (base 2) runs per sub-tile. Prefill and decode differ only in how a
// query finds its position and its visibility limit, and in what they store.
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
constexpr int kAccPerThread = (kGroup * kHeadDim + kThreads - 1) / kThreads;
constexpr int kChunkSize = (kTopk + kChunks - 1) / kChunks;
static_assert(kBlock % kSubK == 0, "SUB_K must divide the 128-token block");
static_assert(kGroup <= kThreads, "one thread per head for the softmax statistics");

struct Shared {
  sj_u16 q[kGroup][kHeadDim];    // q in its own dtype (exact)
  sj_u16 kv[kSubK][kHeadDim];    // K, then V, of the current sub-tile, dequantized to q's dtype
  float s[kGroup][kSubK];        // scores, then probabilities
  float m[kGroup];
  float l[kGroup];
  float alpha[kGroup];
};

// Attends query `token` (absolute position `pos`, keys visible below `limit` and
// at most `pos`) of request `req` to the top-k entries [t_begin, t_end) of kv head `kvh`.
// On return acc holds the unnormalized output and sh.m / sh.l the statistics.
SJ_DEVICE void sj_attend(const SjAttnParams& p, Shared& sh, float (&acc)[kAccPerThread], long long token, long long req,
                         long long kvh, long long pos, long long limit, int t_begin, int t_end) {
  const int tid = sj_tid();
  const long long h0 = kvh * kGroup;
  for (int i = tid; i < kGroup * kHeadDim; i += kThreads) {
    const int g = i / kHeadDim, d = i % kHeadDim;
    sh.q[g][d] = ((const sj_u16*)p.q)[token * p.q_stride[0] + (h0 + g) * p.q_stride[1] + d * p.q_stride[2]];
  }
  if (tid < kGroup) {
    sh.m[tid] = sj_neg_inf();
    sh.l[tid] = 0.f;
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
    if (page < 0) continue;
    const long long kv_row = page * p.kv_stride[0] + kvh * p.kv_stride[1];
    for (int sub = 0; sub < kBlock / kSubK; ++sub) {
      const long long n0 = blk * kBlock + sub * kSubK;  // absolute position of the sub-tile's first key
      if (n0 > hi) break;
      // K sub-tile -> shared (invisible keys as zeros: never read past the sequence).
      for (int i = tid; i < kSubK * kHeadDim; i += kThreads) {
        const int n = i / kHeadDim, d = i % kHeadDim;
        const long long in_page = sub * kSubK + n;
        sj_u16 v = 0;
        if (n0 + n <= hi)
          v = sj_load_kv<kQDtype, kKvDtype, kScaleMode>(p.kv, kv_row + in_page * p.kv_stride[2] + d * p.kv_stride[3], k_scale,
                                                          kvh * p.ks_stride[0] + (page * kBlock + in_page) * p.ks_stride[1]);
        sh.kv[n][d] = v;
      }
      sj_sync();
      for (int i = tid; i < kGroup * kSubK; i += kThreads) {
        const int g = i / kSubK, n = i % kSubK;
        float s = sj_neg_inf();
        if (n0 + n <= hi) {
          float dot = 0.f;
#pragma unroll 8
          for (int d = 0; d < kHeadDim; ++d) dot += sj_half_to_f32<kQDtype>(sh.q[g][d]) * sj_half_to_f32<kQDtype>(sh.kv[n][d]);
          s = dot * p.sm_scale_log2;
        }
        sh.s[g][n] = s;
      }
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
          sum += e;
        }
        const float alpha = (mx == sj_neg_inf()) ? 1.f : sj_exp2(m_old - mx);
        sh.alpha[tid] = alpha;
        sh.l[tid] = sh.l[tid] * alpha + sum;
        sh.m[tid] = mx;
      }
      // V sub-tile -> shared (the K tile is no longer needed).
      for (int i = tid; i < kSubK * kHeadDim; i += kThreads) {
        const int n = i / kHeadDim, d = i % kHeadDim;
        const long long in_page = sub * kSubK + n;
        sj_u16 v = 0;
        if (n0 + n <= hi)
          v = sj_load_kv<kQDtype, kKvDtype, kScaleMode>(p.kv, p.v_offset + kv_row + in_page * p.kv_stride[2] + d * p.kv_stride[3],
                                                          v_scale, kvh * p.vs_stride[0] + (page * kBlock + in_page) * p.vs_stride[1]);
        sh.kv[n][d] = v;
      }
      sj_sync();
#pragma unroll
      for (int j = 0; j < kAccPerThread; ++j) {
        const int i = tid + j * kThreads;
        if (i < kGroup * kHeadDim) {
          const int g = i / kHeadDim, d = i % kHeadDim;
          float a = acc[j] * sh.alpha[g];
          for (int n = 0; n < kSubK; ++n) a += sh.s[g][n] * sj_half_to_f32<kQDtype>(sh.kv[n][d]);
          acc[j] = a;
        }
      }
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
  // grid: (total_q, num_kv_heads, chunks). Query j of request r sits at seq_lens[r] - decode_query_len + j.
  const long long token = sj_bid_x(), kvh = sj_bid_y(), chunk = sj_bid_z();
  const long long req = token / p.decode_query_len;
  const long long seq_len = ((const int*)p.seq_lens)[req];
  const long long pos = seq_len - p.decode_query_len + (token - req * p.decode_query_len);
  const int t_begin = (int)chunk * kChunkSize;
  const int t_end = t_begin + kChunkSize < kTopk ? t_begin + kChunkSize : kTopk;
  sj_attend(p, sh, acc, token, req, kvh, pos, pos + 1, t_begin, t_end);
  float* o_part = (float*)p.out;
  float* lse = (float*)p.lse;
  const long long row = (chunk * p.total_q + token) * p.num_heads + kvh * kGroup;  // first head of this group
#pragma unroll
  for (int j = 0; j < kAccPerThread; ++j) {
    const int i = tid + j * kThreads;
    if (i < kGroup * kHeadDim) {
      const int g = i / kHeadDim, d = i % kHeadDim;
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
#pragma unroll
  for (int j = 0; j < kAccPerThread; ++j) {
    const int i = tid + j * kThreads;
    if (i < kGroup * kHeadDim) {
      const int g = i / kHeadDim, d = i % kHeadDim;
      const float l = sh.l[g];
      const float o = l > 0.f ? acc[j] / l : 0.f;  // no visible key: zeros
      ((sj_u16*)p.out)[token * p.out_stride[0] + (kvh * kGroup + g) * p.out_stride[1] + d * p.out_stride[2]] =
          sj_f32_to_half<kQDtype>(o);
    }
  }
#endif
}
