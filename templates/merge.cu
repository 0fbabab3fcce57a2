{{> sparse_attn_params.h}}
{{> common.cuh}}
// ---- split-K merge: out = sum_c 2^(lse_c - M) o_c / sum_c 2^(lse_c - M) ----
// grid: (total_q, num_heads). Rows whose chunks are all empty (padded requests) get zeros, never NaN.
namespace {
constexpr int kHeadDim = {{HEAD_DIM}};
constexpr int kChunks = {{NUM_TOPK_CHUNKS}};
constexpr int kThreads = {{THREADS}};
constexpr int kQDtype = {{Q_DTYPE}};
}  // namespace

SJ_GLOBAL void SJ_KERNEL_ATTRS({{THREADS}}, {{WAVES_PER_EU}}) {{KERNEL_NAME}}(SjMergeParams p) {
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
