// Out-of-range indices on the GPU (issue 4). The defined behaviour is
// "masked": a top-k id outside [0, max_blocks), a block_table page outside
// [0, num_pages) and a negative or huge seq_len select nothing, and the output
// stays finite. Each case runs twice: with the out-of-range values and with
// them replaced by padding (-1); the outputs must be bitwise identical.
// scripts/gpu-sanitize.sh runs these under compute-sanitizer memcheck to show
// that no kernel reads or writes out of bounds. Skips visibly without a GPU.
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "gpu_harness.h"
#include "sparsejit/sparsejit.hpp"

namespace sparsejit {
namespace {

constexpr int H = 16, KVH = 1, D = 128, kTopk = 16, kBlock = 128;
constexpr int kPages = 4, kMaxBlocks = 4, kBatch = 2;

std::uint16_t bf16_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<std::uint16_t>(u >> 16);
}
float float_of_bf16(std::uint16_t b) {
  std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<std::uint16_t> random_bf16(std::size_t n, std::uint32_t seed) {
  std::vector<std::uint16_t> v(n);
  std::uint32_t s = seed;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = bf16_of(static_cast<float>(s >> 8) / float(1 << 24) * 2.f - 1.f);
  }
  return v;
}

// Replaces every out-of-range id / page by padding (-1): what "masked" means.
std::vector<std::int32_t> as_padding(std::vector<std::int32_t> v, std::int64_t bound) {
  for (auto& x : v)
    if (x < 0 || x >= bound) x = -1;
  return v;
}

// Ids beyond the block table (and huge/negative ones) mixed with valid ones and padding.
std::vector<std::int32_t> hostile_topk(int total_q) {
  const std::int32_t pattern[] = {0, kMaxBlocks, 1, -1, kMaxBlocks + 1000, 2, INT_MAX, 3, INT_MIN, kMaxBlocks - 1,
                                  -1000, 1 << 20, 0, 1, 2, 3};
  std::vector<std::int32_t> v(std::size_t(KVH) * total_q * kTopk);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = pattern[(i + i / kTopk) % 16];
  return v;
}

// Pages beyond the KV cache (and huge/negative ones) mixed with valid ones.
std::vector<std::int32_t> hostile_block_table() {
  return {0, kPages, 2, INT_MAX,  // request 0
          -1, 3, kPages + 1000000, 1};  // request 1
}

// [pages, 2, 128, kv_heads, head_dim]
void kv_layout(std::int64_t (&s)[4], std::int64_t& v_offset) {
  s[0] = 2 * kBlock * KVH * D, s[1] = D, s[2] = KVH * D, s[3] = 1;
  v_offset = std::int64_t(kBlock) * KVH * D;
}

class GpuOutOfRange : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    if (!gputest::gpu_available(&reason)) GTEST_SKIP() << "no GPU: " << reason;
    rt_ = gputest::shared_runtime();
    if (!rt_) GTEST_SKIP() << "no runtime on this GPU";
    ASSERT_EQ(gputest::upload_vector(kv_, random_bf16(std::size_t(kPages) * 2 * kBlock * KVH * D, 7)), "");
  }
  Runtime* rt_ = nullptr;
  gputest::DeviceBuffer kv_;
};

std::vector<std::uint16_t> run_prefill(Runtime* rt, const gputest::DeviceBuffer& kv, const std::vector<std::int32_t>& topk,
                                       const std::vector<std::int32_t>& bt, const std::vector<std::int32_t>& seq_lens,
                                       const std::vector<std::int32_t>& prefix_lens) {
  const std::vector<std::int32_t> cu = {0, 3, 6};
  const int total_q = 6;
  gputest::DeviceBuffer q, out, dt, dbt, dcu, dsl, dpl;
  EXPECT_EQ(gputest::upload_vector(q, random_bf16(std::size_t(total_q) * H * D, 11)), "");
  EXPECT_EQ(out.allocate(std::size_t(total_q) * H * D * 2), "");
  EXPECT_EQ(out.fill(0x7f), "");  // NaN-ish garbage: every element must be written
  EXPECT_EQ(gputest::upload_vector(dt, topk), "");
  EXPECT_EQ(gputest::upload_vector(dbt, bt), "");
  EXPECT_EQ(gputest::upload_vector(dcu, cu), "");
  EXPECT_EQ(gputest::upload_vector(dsl, seq_lens), "");
  EXPECT_EQ(gputest::upload_vector(dpl, prefix_lens), "");
  PrefillArgs a;
  a.q = q.get();
  a.q_stride[0] = H * D, a.q_stride[1] = D, a.q_stride[2] = 1;
  a.kv_cache = kv.get();
  kv_layout(a.kv_stride, a.v_offset);
  a.num_pages = kPages;
  a.topk_idx = dt.get();
  a.topk_stride[0] = std::int64_t(total_q) * kTopk, a.topk_stride[1] = kTopk, a.topk_stride[2] = 1;
  a.block_table = dbt.get();
  a.block_table_stride = kMaxBlocks;
  a.max_blocks = kMaxBlocks;
  a.cu_seqlens_q = dcu.get();
  a.seq_lens = dsl.get();
  a.prefix_lens = dpl.get();
  a.output = out.get();
  a.output_stride[0] = H * D, a.output_stride[1] = D, a.output_stride[2] = 1;
  a.total_q = total_q, a.num_heads = H, a.num_kv_heads = KVH, a.head_dim = D, a.topk = kTopk, a.batch = kBatch,
  a.max_query_len = 3;
  a.q_dtype = DType::bf16, a.kv_dtype = DType::bf16, a.scale_mode = ScaleMode::none;
  a.sm_scale = 1.f / std::sqrt(float(D));
  auto st = rt->sparse_attn_prefill(a, nullptr);
  EXPECT_TRUE(st.ok) << st.message;
  EXPECT_EQ(gputest::synchronize(), "");
  std::vector<std::uint16_t> host(std::size_t(total_q) * H * D);
  EXPECT_EQ(out.download(host.data()), "");
  return host;
}

std::vector<std::uint16_t> run_decode(Runtime* rt, const gputest::DeviceBuffer& kv, const std::vector<std::int32_t>& topk,
                                      const std::vector<std::int32_t>& bt, const std::vector<std::int32_t>& seq_lens) {
  const int total_q = kBatch;  // decode_query_len 1
  gputest::DeviceBuffer q, out, dt, dbt, dsl, ws;
  EXPECT_EQ(gputest::upload_vector(q, random_bf16(std::size_t(total_q) * H * D, 13)), "");
  EXPECT_EQ(out.allocate(std::size_t(total_q) * H * D * 2), "");
  EXPECT_EQ(out.fill(0x7f), "");
  EXPECT_EQ(gputest::upload_vector(dt, topk), "");
  EXPECT_EQ(gputest::upload_vector(dbt, bt), "");
  EXPECT_EQ(gputest::upload_vector(dsl, seq_lens), "");
  DecodeArgs a;
  a.q = q.get();
  a.q_stride[0] = H * D, a.q_stride[1] = D, a.q_stride[2] = 1;
  a.kv_cache = kv.get();
  kv_layout(a.kv_stride, a.v_offset);
  a.num_pages = kPages;
  a.topk_idx = dt.get();
  a.topk_stride[0] = std::int64_t(total_q) * kTopk, a.topk_stride[1] = kTopk, a.topk_stride[2] = 1;
  a.block_table = dbt.get();
  a.block_table_stride = kMaxBlocks;
  a.max_blocks = kMaxBlocks;
  a.seq_lens = dsl.get();
  a.output = out.get();
  a.output_stride[0] = H * D, a.output_stride[1] = D, a.output_stride[2] = 1;
  a.total_q = total_q, a.num_heads = H, a.num_kv_heads = KVH, a.head_dim = D, a.topk = kTopk, a.num_reqs = kBatch,
  a.decode_query_len = 1;
  a.q_dtype = DType::bf16, a.kv_dtype = DType::bf16, a.scale_mode = ScaleMode::none;
  a.sm_scale = 1.f / std::sqrt(float(D));
  a.workspace_bytes = rt->decode_workspace_bytes(total_q, H, KVH, D, kTopk);
  EXPECT_EQ(ws.allocate(a.workspace_bytes), "");
  a.workspace = ws.get();
  auto st = rt->sparse_attn_decode(a, nullptr);
  EXPECT_TRUE(st.ok) << st.message;
  EXPECT_EQ(gputest::synchronize(), "");
  std::vector<std::uint16_t> host(std::size_t(total_q) * H * D);
  EXPECT_EQ(out.download(host.data()), "");
  return host;
}

void expect_finite(const std::vector<std::uint16_t>& out, const char* what) {
  int bad = 0;
  for (auto b : out) bad += !std::isfinite(float_of_bf16(b));
  EXPECT_EQ(bad, 0) << what << ": non-finite outputs";
}

TEST_F(GpuOutOfRange, PrefillMasksIdsBeyondTheBlockTableAndPagesBeyondTheCache) {
  const auto topk = hostile_topk(6);
  const auto bt = hostile_block_table();
  const std::vector<std::int32_t> seq_lens = {3 * kBlock + 5, 2 * kBlock}, prefix_lens = {3 * kBlock, 2 * kBlock - 3};
  auto hostile = run_prefill(rt_, kv_, topk, bt, seq_lens, prefix_lens);
  auto padded = run_prefill(rt_, kv_, as_padding(topk, kMaxBlocks), as_padding(bt, kPages), seq_lens, prefix_lens);
  expect_finite(hostile, "prefill");
  EXPECT_EQ(hostile, padded) << "out-of-range ids/pages must behave exactly like padding";
}

TEST_F(GpuOutOfRange, PrefillNegativeAndHugeSeqLens) {
  const auto topk = hostile_topk(6);
  const auto bt = hostile_block_table();
  // Negative: nothing visible (zeros). Huge: visibility is bounded by the query position and the page itself.
  auto out = run_prefill(rt_, kv_, topk, bt, {-1000, INT_MAX}, {INT_MIN / 2, INT_MAX - 8});
  expect_finite(out, "prefill with negative/huge seq_lens");
  for (std::size_t i = 0; i < std::size_t(3) * H * D; ++i) ASSERT_EQ(float_of_bf16(out[i]), 0.f) << "request 0 sees nothing";
}

TEST_F(GpuOutOfRange, DecodeMasksIdsPagesAndNegativeOrHugeSeqLens) {
  const auto topk = hostile_topk(kBatch);
  const auto bt = hostile_block_table();
  const std::vector<std::int32_t> seq_lens = {3 * kBlock + 1, 2 * kBlock + 17};
  auto hostile = run_decode(rt_, kv_, topk, bt, seq_lens);
  auto padded = run_decode(rt_, kv_, as_padding(topk, kMaxBlocks), as_padding(bt, kPages), seq_lens);
  expect_finite(hostile, "decode");
  EXPECT_EQ(hostile, padded) << "out-of-range ids/pages must behave exactly like padding";

  auto extreme = run_decode(rt_, kv_, topk, bt, {-7, INT_MAX});
  expect_finite(extreme, "decode with negative/huge seq_lens");
  for (std::size_t i = 0; i < std::size_t(H) * D; ++i) ASSERT_EQ(float_of_bf16(extreme[i]), 0.f) << "a negative seq_len sees nothing";
}

}  // namespace
}  // namespace sparsejit
