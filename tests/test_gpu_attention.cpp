// Correctness of the generated attention kernels against the float64 CPU
// reference (tests/reference.*), on random inputs with a fresh seed per run.
//
//   Reference.*          CPU only, runs everywhere: the reference itself (fp8
//                        decoding of known bit patterns, bf16/fp16 rounding,
//                        hand-computed attention, masking rules, layouts).
//   GpuCaseGenerator.*   CPU only: the random problems cover what they claim.
//   */GpuPrefill.*       GPU: Runtime::sparse_attn_prefill vs the reference.
//   */GpuDecode.*        GPU: Runtime::sparse_attn_decode vs the reference.
//
// GPU cases skip visibly without a CUDA device. Set SPARSEJIT_TEST_SEED=<n> to
// replay a failing run (the seed is printed with every failure and in the summary).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "arch_table.h"
#include "config.h"
#include "cuda_min.h"  // bench/: the driver entry points for the tests' own streams
#include "fp8_encode.h"  // bench/: the benchmark's fp8 K/V
#include "knobs.h"
#include "ops/config_select.h"
#include "reliability_util.h"
#include "device/device.h"
#include "gpu_harness.h"
#include "reference.h"
#include "sparsejit/sparsejit.hpp"

namespace sparsejit {
namespace {

using gputest::DeviceBuffer;
constexpr std::int64_t kBlock = 128;
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// ============================================================== reference (CPU)

bool same_double(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

TEST(Reference, Fp8DecodesKnownBitPatterns) {
  struct Known {
    DType f;
    std::uint8_t bits;
    double value;
  };
  const Known known[] = {
      // e4m3fn: bias 7, no inf, S.1111.111 is NaN
      {DType::fp8_e4m3fn, 0x00, 0.0},
      {DType::fp8_e4m3fn, 0x80, -0.0},
      {DType::fp8_e4m3fn, 0x01, std::ldexp(1.0, -9)},
      {DType::fp8_e4m3fn, 0x07, 7 * std::ldexp(1.0, -9)},
      {DType::fp8_e4m3fn, 0x08, std::ldexp(1.0, -6)},
      {DType::fp8_e4m3fn, 0x38, 1.0},
      {DType::fp8_e4m3fn, 0x3C, 1.5},
      {DType::fp8_e4m3fn, 0xC0, -2.0},
      {DType::fp8_e4m3fn, 0x78, 256.0},
      {DType::fp8_e4m3fn, 0x7E, 448.0},
      {DType::fp8_e4m3fn, 0xFE, -448.0},
      {DType::fp8_e4m3fn, 0x7F, kNaN},
      {DType::fp8_e4m3fn, 0xFF, kNaN},
      // e5m2: bias 15, IEEE specials
      {DType::fp8_e5m2, 0x00, 0.0},
      {DType::fp8_e5m2, 0x01, std::ldexp(1.0, -16)},
      {DType::fp8_e5m2, 0x03, 3 * std::ldexp(1.0, -16)},
      {DType::fp8_e5m2, 0x04, std::ldexp(1.0, -14)},
      {DType::fp8_e5m2, 0x3C, 1.0},
      {DType::fp8_e5m2, 0x3E, 1.5},
      {DType::fp8_e5m2, 0xBC, -1.0},
      {DType::fp8_e5m2, 0x7B, 57344.0},
      {DType::fp8_e5m2, 0x7C, kInf},
      {DType::fp8_e5m2, 0xFC, -kInf},
      {DType::fp8_e5m2, 0x7D, kNaN},
      {DType::fp8_e5m2, 0x7F, kNaN},
      {DType::fp8_e5m2, 0xFE, kNaN},
      // e4m3fnuz: bias 8, 0x80 the only NaN, no inf, no -0
      {DType::fp8_e4m3fnuz, 0x00, 0.0},
      {DType::fp8_e4m3fnuz, 0x80, kNaN},
      {DType::fp8_e4m3fnuz, 0x01, std::ldexp(1.0, -10)},
      {DType::fp8_e4m3fnuz, 0x40, 1.0},
      {DType::fp8_e4m3fnuz, 0xC0, -1.0},
      {DType::fp8_e4m3fnuz, 0x7F, 240.0},
      {DType::fp8_e4m3fnuz, 0xFF, -240.0},
      // e5m2fnuz: bias 16, 0x80 the only NaN, no inf
      {DType::fp8_e5m2fnuz, 0x00, 0.0},
      {DType::fp8_e5m2fnuz, 0x80, kNaN},
      {DType::fp8_e5m2fnuz, 0x01, std::ldexp(1.0, -17)},
      {DType::fp8_e5m2fnuz, 0x40, 1.0},
      {DType::fp8_e5m2fnuz, 0x7C, 32768.0},
      {DType::fp8_e5m2fnuz, 0x7F, 57344.0},
      {DType::fp8_e5m2fnuz, 0xFF, -57344.0},
  };
  for (const auto& k : known) {
    const double got = ref::fp8_to_double(k.bits, k.f);
    EXPECT_TRUE(same_double(got, k.value)) << "format " << static_cast<int>(k.f) << " bits 0x" << std::hex << int(k.bits) << std::dec
                                           << ": got " << got << ", want " << k.value;
  }
}

TEST(Reference, Fp8CodesAreMonotoneAndSymmetric) {
  for (DType f : {DType::fp8_e4m3fn, DType::fp8_e5m2, DType::fp8_e4m3fnuz, DType::fp8_e5m2fnuz}) {
    SCOPED_TRACE(static_cast<int>(f));
    double prev = -1.0;
    int nan_count = 0;
    for (int b = 0; b < 256; ++b) {
      const double v = ref::fp8_to_double(static_cast<std::uint8_t>(b), f);
      if (std::isnan(v)) {
        ++nan_count;
        continue;
      }
      if (b < 0x80) {
        EXPECT_GT(v, prev) << "code 0x" << std::hex << b;  // positive codes increase strictly
        prev = v;
        const double neg = ref::fp8_to_double(static_cast<std::uint8_t>(b | 0x80), f);
        if (!std::isnan(neg) && b != 0) EXPECT_EQ(neg, -v) << "code 0x" << std::hex << b;
      }
    }
    // NaN codes per format: e4m3fn 2 (S.1111.111), e5m2 6 (S.11111.{01,10,11}), fnuz 1 (0x80).
    const int want = f == DType::fp8_e4m3fn ? 2 : f == DType::fp8_e5m2 ? 6 : 1;
    EXPECT_EQ(nan_count, want);
  }
}

TEST(Reference, HalfEncodingRoundsToNearestEven) {
  struct Case {
    double x;
    std::uint16_t bf16, fp16;
  };
  const double e = std::ldexp(1.0, 0);
  const Case cases[] = {
      {0.0, 0x0000, 0x0000},
      {-0.0, 0x8000, 0x8000},
      {1.0, 0x3F80, 0x3C00},
      {-2.5, 0xC020, 0xC100},
      {0.1, 0x3DCD, 0x2E66},
      {e + std::ldexp(1.0, -8), 0x3F80, 0x3C04},                         // bf16 tie -> even (down)
      {e + 3 * std::ldexp(1.0, -8), 0x3F82, 0x3C0C},                     // bf16 tie -> even (up)
      {e + std::ldexp(1.0, -8) + std::ldexp(1.0, -20), 0x3F81, 0x3C04},  // just above the bf16 tie
      {e + std::ldexp(1.0, -11), 0x3F80, 0x3C00},                        // fp16 tie -> even (down)
      {e + 3 * std::ldexp(1.0, -11), 0x3F80, 0x3C02},                    // fp16 tie -> even (up)
      {65504.0, 0x4780, 0x7BFF},                                         // fp16 max
      {65519.0, 0x4780, 0x7BFF},                                         // below fp16's overflow threshold
      {65520.0, 0x4780, 0x7C00},                                         // fp16 overflow threshold -> inf
      {1e6, 0x4974, 0x7C00},
      {std::ldexp(1.0, -14), 0x3880, 0x0400},  // fp16 min normal
      {std::ldexp(1.0, -24), 0x3380, 0x0001},  // fp16 min subnormal
      {std::ldexp(1.0, -25), 0x3300, 0x0000},  // tie with 0 -> even (0)
      {std::ldexp(3.0, -26), 0x3340, 0x0001},  // above the tie
      {std::ldexp(2.0 - std::ldexp(1.0, -7), 127), 0x7F7F, 0x7C00},  // bf16 max
      {std::ldexp(2.0 - std::ldexp(1.0, -8), 127), 0x7F80, 0x7C00},  // bf16 overflow threshold: tie -> inf
      {std::ldexp(1.0, -133), 0x0001, 0x0000},                       // bf16 min subnormal
      {std::ldexp(1.0, -134), 0x0000, 0x0000},                       // bf16 tie with 0 -> 0
      {kInf, 0x7F80, 0x7C00},
      {-kInf, 0xFF80, 0xFC00},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ref::double_to_bf16(c.x), c.bf16) << "bf16(" << c.x << ")";
    EXPECT_EQ(ref::double_to_fp16(c.x), c.fp16) << "fp16(" << c.x << ")";
  }
  EXPECT_TRUE(std::isnan(ref::bf16_to_double(ref::double_to_bf16(kNaN))));
  EXPECT_TRUE(std::isnan(ref::fp16_to_double(ref::double_to_fp16(kNaN))));
  EXPECT_EQ(ref::fp16_to_double(0x7BFF), 65504.0);
  EXPECT_EQ(ref::fp16_to_double(0x0001), std::ldexp(1.0, -24));
  EXPECT_EQ(ref::fp16_to_double(0xFC00), -kInf);
  EXPECT_EQ(ref::bf16_to_double(0x3F81), 1.0 + std::ldexp(1.0, -7));
}

TEST(Reference, HalfCodesRoundTripAndMatchIndependentConversions) {
  for (int b = 0; b < 65536; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const double vb = ref::bf16_to_double(bits), vh = ref::fp16_to_double(bits);
    if (!std::isnan(vb)) ASSERT_EQ(ref::double_to_bf16(vb), bits) << std::hex << b;
    if (!std::isnan(vh)) ASSERT_EQ(ref::double_to_fp16(vh), bits) << std::hex << b;
  }
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> mant(-2.0, 2.0);
  std::uniform_int_distribution<int> ex(-30, 20);
  for (int i = 0; i < 200000; ++i) {
    const double x = std::ldexp(mant(rng), ex(rng));
    // bf16 from a float by the integer formula (RNE on the dropped 16 bits); compare on float inputs.
    const float f = static_cast<float>(x);
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const auto bf = static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    ASSERT_EQ(ref::double_to_bf16(static_cast<double>(f)), bf) << x;
#ifdef __FLT16_MAX__
    const _Float16 h = static_cast<_Float16>(x);  // the compiler's (correctly rounded) conversion
    std::uint16_t hb;
    std::memcpy(&hb, &h, sizeof hb);
    ASSERT_EQ(ref::double_to_fp16(x), hb) << x;
#endif
  }
}

TEST(Reference, Fp8KvIsDequantizedThroughQDtype) {
  const std::uint8_t one_e4m3 = 0x38;  // 1.0
  const float scale = 0.1f;
  EXPECT_EQ(ref::kv_to_q_dtype(&one_e4m3, 0, DType::fp8_e4m3fn, DType::bf16, ScaleMode::scalar, &scale, 0), ref::bf16_to_double(0x3DCD));
  EXPECT_EQ(ref::kv_to_q_dtype(&one_e4m3, 0, DType::fp8_e4m3fn, DType::fp16, ScaleMode::scalar, &scale, 0), ref::fp16_to_double(0x2E66));
  const float per_token[3] = {7.f, 3.f, 1.f / 3.f};
  const std::uint8_t e5m2_three = 0x42;  // 3.0
  EXPECT_EQ(ref::kv_to_q_dtype(&e5m2_three, 0, DType::fp8_e5m2, DType::bf16, ScaleMode::per_token_head, per_token, 2),
            ref::round_to(static_cast<double>(3.0f * (1.f / 3.f)), DType::bf16));
  EXPECT_EQ(ref::kv_to_q_dtype(&e5m2_three, 0, DType::fp8_e5m2, DType::bf16, ScaleMode::per_token_head, per_token, 0), 21.0);
  // fp16 K into a bf16 query: rounded to bf16.
  const std::uint16_t h = ref::double_to_fp16(1.0 + std::ldexp(1.0, -10));  // exact in fp16, not in bf16
  EXPECT_EQ(ref::kv_to_q_dtype(&h, 0, DType::fp16, DType::bf16, ScaleMode::none, nullptr, 0), 1.0);
}

// The benchmark's fp8 encoder (bench/fp8_encode.h, sparsejit_bench --kv-fp8) against the
// reference's decoder: every finite code comes back, a midpoint goes to the even code, and
// nothing becomes NaN.
TEST(Reference, BenchFp8EncoderIsNearestEven) {
  for (int c = 0; c < 256; ++c) {
    const double v = ref::fp8_to_double(static_cast<std::uint8_t>(c), DType::fp8_e4m3fn);
    if (std::isnan(v)) continue;
    ASSERT_EQ(sjbench::to_e4m3fn(static_cast<float>(v)), c) << v;
  }
  for (int c = 0; c < 0x7E; ++c) {  // halfway between c and c + 1 (both positive), and a little either side
    const double lo = ref::fp8_to_double(static_cast<std::uint8_t>(c), DType::fp8_e4m3fn);
    const double hi = ref::fp8_to_double(static_cast<std::uint8_t>(c + 1), DType::fp8_e4m3fn);
    const double mid = 0.5 * (lo + hi), eps = (hi - lo) / 64;
    ASSERT_EQ(sjbench::to_e4m3fn(static_cast<float>(mid)), c % 2 == 0 ? c : c + 1) << mid;
    ASSERT_EQ(sjbench::to_e4m3fn(static_cast<float>(mid - eps)), c) << mid;
    ASSERT_EQ(sjbench::to_e4m3fn(static_cast<float>(-(mid + eps))), (c + 1) | 0x80) << mid;
  }
  EXPECT_EQ(sjbench::to_e4m3fn(1e6f), 0x7E);    // 448, not NaN
  EXPECT_EQ(sjbench::to_e4m3fn(-500.f), 0xFE);  // -448
  EXPECT_EQ(sjbench::to_e4m3fn(std::nanf("")) & 0x7F, 0);
  EXPECT_EQ(sjbench::to_e4m3fn(1e-9f), 0x00);
}

// A tiny hand-written problem: one page (layout A, one kv head), D = 16, G = 2.
struct Tiny {
  static constexpr int D = 16, H = 2, KVH = 1;
  std::vector<std::uint16_t> q, kv;
  std::vector<std::int32_t> topk, bt, cu, seq, prefix;
  std::int64_t total_q = 0, topk_n = 2;

  Tiny() : kv(2 * kBlock * KVH * D, 0) {}
  void set_kv(int which, int n, int d, double x) { kv[which * kBlock * KVH * D + n * KVH * D + d] = ref::double_to_bf16(x); }
  void set_q(int token, int h, int d, double x) { q[(token * H + h) * D + d] = ref::double_to_bf16(x); }
  template <class A>
  void fill(A& a) const {
    a.q = q.data();
    a.q_stride[0] = H * D, a.q_stride[1] = D, a.q_stride[2] = 1;
    a.kv_cache = kv.data();
    a.kv_stride[0] = 2 * kBlock * KVH * D, a.kv_stride[1] = D, a.kv_stride[2] = KVH * D, a.kv_stride[3] = 1;
    a.v_offset = kBlock * KVH * D;
    a.num_pages = 1;
    a.topk_idx = topk.data();
    a.topk_stride[0] = total_q * topk_n, a.topk_stride[1] = topk_n, a.topk_stride[2] = 1;
    a.block_table = bt.data();
    a.block_table_stride = 1;
    a.max_blocks = 1;
    a.seq_lens = seq.data();
    a.total_q = total_q, a.num_heads = H, a.num_kv_heads = KVH, a.head_dim = D, a.topk = topk_n;
    a.q_dtype = DType::bf16, a.kv_dtype = DType::bf16, a.scale_mode = ScaleMode::none;
    a.sm_scale = 1.0f;
  }
};

// keys (dims 0..2): k0 = (1,0,0) k1 = (2,1,0) k2 = (0,3,0); values v0 = (1,0,0) v1 = (3,1,0) v2 = (0,0,5).
void tiny_keys(Tiny& t) {
  t.set_kv(0, 0, 0, 1), t.set_kv(0, 1, 0, 2), t.set_kv(0, 1, 1, 1), t.set_kv(0, 2, 1, 3);
  t.set_kv(1, 0, 0, 1), t.set_kv(1, 1, 0, 3), t.set_kv(1, 1, 1, 1), t.set_kv(1, 2, 2, 5);
}

TEST(Reference, TinyPrefillMatchesAnalyticSoftmax) {
  Tiny t;
  tiny_keys(t);
  t.total_q = 2;
  t.q.assign(t.total_q * Tiny::H * Tiny::D, 0);
  t.set_q(0, 0, 0, 1), t.set_q(0, 1, 1, 2);  // token 0: head 0 q = e0, head 1 q = 2 e1
  t.set_q(1, 0, 0, 1), t.set_q(1, 1, 1, 2);
  t.topk = {0, -1, /* token 1 */ -1, 0};     // padding first on token 1
  t.bt = {0};
  t.cu = {0, 2};
  t.seq = {3};
  t.prefix = {1};  // token 0 at p = 1 (keys 0, 1), token 1 at p = 2 (keys 0, 1, 2)
  PrefillArgs a;
  t.fill(a);
  a.cu_seqlens_q = t.cu.data(), a.prefix_lens = t.prefix.data(), a.batch = 1, a.max_query_len = 2;
  const ref::Result r = ref::prefill(a);
  const double E = std::exp(1.0), E2 = std::exp(2.0);
  // token 0 head 0: scores (1, 2)
  EXPECT_NEAR(r.at(0, 0, 0), (1 + 3 * E) / (1 + E), 1e-12);
  EXPECT_NEAR(r.at(0, 0, 1), E / (1 + E), 1e-12);
  EXPECT_EQ(r.at(0, 0, 2), 0.0);
  // token 0 head 1: scores (0, 2)
  EXPECT_NEAR(r.at(0, 1, 0), (1 + 3 * E2) / (1 + E2), 1e-12);
  EXPECT_NEAR(r.at(0, 1, 1), E2 / (1 + E2), 1e-12);
  // token 1 head 0: scores (1, 2, 0)
  const double Z = E + E2 + 1;
  EXPECT_NEAR(r.at(1, 0, 0), (E + 3 * E2) / Z, 1e-12);
  EXPECT_NEAR(r.at(1, 0, 1), E2 / Z, 1e-12);
  EXPECT_NEAR(r.at(1, 0, 2), 5 / Z, 1e-12);
  // token 1 head 1: scores (0, 2, 6)
  const double Z1 = 1 + E2 + std::exp(6.0);
  EXPECT_NEAR(r.at(1, 1, 2), 5 * std::exp(6.0) / Z1, 1e-12);
  EXPECT_EQ(r.visible(0, 0), 2);
  EXPECT_EQ(r.visible(1, 1), 3);

  // seq_lens also bounds the keys: with seq_len 2, token 1 (p = 2) sees keys 0 and 1 only.
  t.seq = {2};
  const ref::Result r2 = ref::prefill(a);
  EXPECT_EQ(r2.visible(1, 0), 2);
  EXPECT_NEAR(r2.at(1, 0, 0), (1 + 3 * E) / (1 + E), 1e-12);
}

TEST(Reference, TinyDecodeMasksByPositionAndPaddedRowsAreZero) {
  Tiny t;
  tiny_keys(t);
  t.total_q = 4;  // 2 requests x decode_query_len 2
  t.q.assign(t.total_q * Tiny::H * Tiny::D, 0);
  for (int tok = 0; tok < 4; ++tok) t.set_q(tok, 0, 0, 1), t.set_q(tok, 1, 1, 2);
  t.topk = {0, -1, /* token 1 */ -1, 0, /* padded request */ 0, -1, 0, -3};
  t.bt = {0, 0};
  t.seq = {2, 0};  // request 0: queries at p = 0, 1; request 1 padded (seq_len 0)
  DecodeArgs a;
  t.fill(a);
  a.block_table_stride = 1;
  a.num_reqs = 2, a.decode_query_len = 2;
  const ref::Result r = ref::decode(a);
  const double E = std::exp(1.0);
  EXPECT_EQ(r.visible(0, 0), 1);
  EXPECT_EQ(r.at(0, 0, 0), 1.0);  // only key 0: out = v0 exactly
  EXPECT_EQ(r.at(0, 0, 1), 0.0);
  EXPECT_EQ(r.visible(1, 0), 2);
  EXPECT_NEAR(r.at(1, 0, 0), (1 + 3 * E) / (1 + E), 1e-12);
  for (int tok = 2; tok < 4; ++tok)
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ(r.visible(tok, h), 0);
      for (int d = 0; d < Tiny::D; ++d) EXPECT_EQ(r.at(tok, h, d), 0.0);
    }
}

TEST(Reference, PaddingOutOfRangeIdsAndUnmappedBlocksSelectNothing) {
  Tiny t;
  tiny_keys(t);
  t.total_q = 3;
  t.q.assign(t.total_q * Tiny::H * Tiny::D, 0);
  for (int tok = 0; tok < 3; ++tok) t.set_q(tok, 0, 0, 1);
  t.topk = {-1, -7, /* out of range */ 1, 5, /* unmapped via block table */ 0, -1};
  t.cu = {0, 1, 2, 3};
  t.seq = {100, 100, 100};
  t.prefix = {99, 99, 99};
  t.bt = {0, 0, -1};  // batch 3, one column each; request 2 maps block 0 to nothing
  PrefillArgs a;
  t.fill(a);
  a.cu_seqlens_q = t.cu.data(), a.prefix_lens = t.prefix.data(), a.batch = 3, a.max_query_len = 1;
  const ref::Result r = ref::prefill(a);
  for (int tok = 0; tok < 3; ++tok) {
    EXPECT_EQ(r.visible(tok, 0), 0) << tok;
    for (int d = 0; d < Tiny::D; ++d) EXPECT_EQ(r.at(tok, 0, d), 0.0);
  }
}

// ============================================================== random problems

// A: [pages, 2, 128, KVH, D]; B (vLLM's newer): [pages, KVH, 128, 2*D]; B_padded: B with rows of
// 2*D + 4 elements (K/V rows not 16-byte aligned: the kernels' element-load paths).
enum class KvLayout { A, B, B_padded };
enum class Io {
  contiguous,  // q, output [T, H, D]; top-k [KVH, T, topk]; block table [B, max_blocks]
  strided,     // q a slice of a fused qkv buffer [T, H + 2 KVH, D]; output token stride padded; padded top-k and block-table rows
  transposed,  // q and output stored [T, D, H] (head stride 1, dim stride H)
};

struct CaseSpec {
  std::string name;
  std::int64_t H = 0, KVH = 0, D = 0, topk = 0;
  DType q = DType::bf16, kv = DType::bf16;
  ScaleMode scale = ScaleMode::none;
  KvLayout layout = KvLayout::A;
  Io io = Io::contiguous;
  bool scales_token_major = false;  // per-token-head scales stored [tokens, KVH] instead of [KVH, tokens]
  // Scalar scales: negative K and V scales (sm_89+ folds the K scale into the scores' scale and
  // gives its sign to q), or a zero K scale (every visible key scores 0).
  bool negative_scales = false, zero_k_scale = false;
  // q times 2^q_pow2 and sm_scale times 2^-q_pow2: the same scores, from a q beyond fp16's range
  // at 15 (the sm_89+ fp8 path scales such a q tile down by a power of two first).
  int q_pow2 = 0;
  bool junk_ids = false;            // some top-k ids >= max_blocks
  bool dup_ids = false;             // some rows select a block twice (it then counts twice, like the reference's entry-by-entry walk)
  bool unmapped_block = false;      // one mapped block of one request set to -1 in the block table
  int short_seq = 0;                // prefill: request 0's seq_len is prefix + q_len - short_seq (its last queries see keys < seq_len only)
  // prefill
  std::vector<int> q_lens, prefix_lens;
  // decode
  std::vector<int> seq_lens;  // one per request; 0 = a padded request row
  std::int64_t dql = 1;
  std::vector<int> ragged_qlens;  // decode: per-request query counts (query_start_loc / token_to_req_indices); empty: dql each
  enum class Chunks { any, one, many } chunks = Chunks::any;
  bool small_batch = false;  // decode: meant to cover the arch table's small-batch launch (where the table has one)
  bool huge_batch = false;   // decode: meant to cover the arch table's huge-batch launch (where the table has one)
  bool wide_scales = false;  // per-token-head: |scale| log-uniform in [2^-20, 2^0] (K) or [2^-20, 2^4] (V), a quarter negative, some zero
  // bf16/fp16 K/V: the K rows of ~3% of the tokens times 24, so a row's max jumps by far more than
  // 2^8 (base 2) in later sub-tiles too (the decode's lazily moved running max, kDimSplit).
  bool spiky_keys = false;
};

std::ostream& operator<<(std::ostream& os, const CaseSpec& c) { return os << c.name; }

struct Problem {
  bool decode = false;
  std::int64_t total_q = 0, batch = 0, max_query_len = 0;
  std::vector<std::int32_t> seq_lens, prefix_lens, cu;
  std::vector<std::int32_t> qsl, t2r;  // decode: query_start_loc / token_to_req_indices (used when the case is ragged)
  std::vector<std::uint16_t> q;
  std::int64_t q_stride[3] = {};
  std::vector<std::uint8_t> kv;
  std::int64_t kv_stride[4] = {}, v_offset = 0, num_pages = 0;
  std::vector<std::int32_t> topk;
  std::int64_t topk_stride[3] = {};
  std::vector<std::int32_t> bt;
  std::int64_t bt_stride = 0, max_blocks = 0;
  std::vector<float> k_scale, v_scale;
  std::int64_t ks_stride[2] = {}, vs_stride[2] = {};
  std::size_t out_elems = 0;
  std::int64_t out_stride[3] = {};
  float sm_scale = 0.f;
  // What the random top-k rows contain (coverage facts).
  int rows_all_padding = 0, rows_padding_not_last = 0, rows_unsorted = 0, rows_future_only = 0, rows_junk = 0, rows_dup = 0;
};

using Rng = std::mt19937_64;

std::uint64_t fresh_seed() {
  if (const char* s = std::getenv("SPARSEJIT_TEST_SEED"); s && *s) return std::strtoull(s, nullptr, 0);
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

std::int64_t uniform_int(Rng& rng, std::int64_t lo, std::int64_t hi) {  // [lo, hi]
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}
double uniform(Rng& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
bool chance(Rng& rng, double p) { return uniform(rng, 0.0, 1.0) < p; }

// fp8 codes whose value is finite with |value| in [lo, hi].
std::vector<std::uint8_t> fp8_codes(DType f, double lo, double hi) {
  std::vector<std::uint8_t> out;
  for (int b = 0; b < 256; ++b) {
    const double v = ref::fp8_to_double(static_cast<std::uint8_t>(b), f);
    if (std::isfinite(v) && std::fabs(v) >= lo && std::fabs(v) <= hi) out.push_back(static_cast<std::uint8_t>(b));
  }
  return out;
}

std::int32_t padding_value(Rng& rng) {
  const double u = uniform(rng, 0, 1);
  if (u < 0.8) return -1;
  if (u < 0.95) return static_cast<std::int32_t>(uniform_int(rng, -100000, -2));
  return std::numeric_limits<std::int32_t>::min();
}

Problem make_problem(const CaseSpec& s, bool decode, Rng& rng) {
  Problem p;
  p.decode = decode;
  const std::int64_t H = s.H, KVH = s.KVH, D = s.D, K = s.topk;
  // ---- requests and query positions
  std::vector<std::int64_t> tok_req, tok_pos, tok_limit;
  if (decode) {
    p.batch = static_cast<std::int64_t>(s.seq_lens.size());
    p.seq_lens.assign(s.seq_lens.begin(), s.seq_lens.end());
    p.total_q = 0;
    p.qsl.push_back(0);
    for (std::int64_t r = 0; r < p.batch; ++r) {
      const std::int64_t n = s.ragged_qlens.empty() ? s.dql : s.ragged_qlens[r];
      p.total_q += n;
      p.qsl.push_back(static_cast<std::int32_t>(p.total_q));
      for (std::int64_t j = 0; j < n; ++j) {
        p.t2r.push_back(static_cast<std::int32_t>(r));
        tok_req.push_back(r);
        tok_pos.push_back(p.seq_lens[r] - n + j);
        tok_limit.push_back(std::numeric_limits<std::int64_t>::max());
      }
    }
  } else {
    p.batch = static_cast<std::int64_t>(s.q_lens.size());
    p.cu.push_back(0);
    for (std::int64_t b = 0; b < p.batch; ++b) {
      p.prefix_lens.push_back(s.prefix_lens[b]);
      p.seq_lens.push_back(s.prefix_lens[b] + s.q_lens[b] - (b == 0 ? s.short_seq : 0));
      p.cu.push_back(p.cu.back() + s.q_lens[b]);
      p.max_query_len = std::max<std::int64_t>(p.max_query_len, s.q_lens[b]);
      for (int i = 0; i < s.q_lens[b]; ++i) {
        tok_req.push_back(b);
        tok_pos.push_back(s.prefix_lens[b] + i);
        tok_limit.push_back(p.seq_lens[b]);
      }
    }
    p.total_q = p.cu.back();
  }
  const std::int64_t T = p.total_q;

  // ---- block table over shuffled physical pages
  std::vector<std::int64_t> nblocks(p.batch);
  std::int64_t used = 0;
  for (std::int64_t r = 0; r < p.batch; ++r) {
    nblocks[r] = (p.seq_lens[r] + kBlock - 1) / kBlock;
    used += nblocks[r];
    p.max_blocks = std::max(p.max_blocks, nblocks[r]);
  }
  p.max_blocks += 2;  // logical blocks past every sequence exist (unmapped: -1)
  p.num_pages = used + 3;
  std::vector<std::int32_t> perm(p.num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  p.bt_stride = p.max_blocks + (s.io == Io::strided ? 5 : 0);
  p.bt.assign(static_cast<std::size_t>(p.batch * p.bt_stride), 0x7eadbeef);  // gaps: never read
  std::vector<std::int64_t> valid(p.num_pages, 0);  // tokens of real data per page
  std::int64_t next = 0;
  for (std::int64_t r = 0; r < p.batch; ++r) {
    for (std::int64_t b = 0; b < p.max_blocks; ++b) {
      std::int32_t page = -1;
      if (b < nblocks[r]) {
        page = perm[next++];
        valid[page] = std::min<std::int64_t>(kBlock, p.seq_lens[r] - b * kBlock);
      } else if (p.seq_lens[r] == 0) {
        page = static_cast<std::int32_t>(uniform_int(rng, 0, p.num_pages - 1));  // padded row: real pages, nothing visible
      }
      p.bt[r * p.bt_stride + b] = page;
    }
  }
  if (s.unmapped_block) {
    std::vector<std::int64_t> candidates;
    for (std::int64_t r = 0; r < p.batch; ++r)
      if (nblocks[r] >= 2) candidates.push_back(r);
    if (!candidates.empty()) {
      const std::int64_t r = candidates[uniform_int(rng, 0, candidates.size() - 1)];
      const std::int64_t b = uniform_int(rng, 0, nblocks[r] - 2);
      valid[p.bt[r * p.bt_stride + b]] = 0;  // its page now holds garbage
      p.bt[r * p.bt_stride + b] = -1;
    }
  }

  // ---- KV cache: real data where a sequence lives, large finite garbage elsewhere
  const std::size_t es = ref::element_bytes(s.kv);
  const std::int64_t tok = s.layout == KvLayout::B_padded ? 2 * D + 4 : 2 * D;  // B layouts: one token's K and V
  const std::int64_t elems = p.num_pages * kBlock * KVH * tok;
  p.kv.assign(static_cast<std::size_t>(elems) * es, 0);
  if (s.layout == KvLayout::A) {
    p.kv_stride[0] = 2 * kBlock * KVH * D, p.kv_stride[1] = D, p.kv_stride[2] = KVH * D, p.kv_stride[3] = 1;
    p.v_offset = kBlock * KVH * D;
  } else {
    p.kv_stride[0] = KVH * kBlock * tok, p.kv_stride[1] = kBlock * tok, p.kv_stride[2] = tok, p.kv_stride[3] = 1;
    p.v_offset = D;
  }
  const bool fp8 = ref::is_fp8(s.kv);
  const std::vector<std::uint8_t> real_codes = fp8 ? fp8_codes(s.kv, 0.0, 4.0) : std::vector<std::uint8_t>{};
  const std::vector<std::uint8_t> junk_codes = fp8 ? fp8_codes(s.kv, 64.0, 240.0) : std::vector<std::uint8_t>{};
  std::vector<char> spike(static_cast<std::size_t>(p.num_pages * KVH * kBlock), 0);  // per (page, kv head, token)
  if (s.spiky_keys)
    for (auto& x : spike) x = chance(rng, 0.03);
  for (std::int64_t pg = 0; pg < p.num_pages; ++pg)
    for (std::int64_t h = 0; h < KVH; ++h)
      for (std::int64_t n = 0; n < kBlock; ++n)
        for (int which = 0; which < 2; ++which)
          for (std::int64_t d = 0; d < D; ++d) {
            const std::int64_t off = pg * p.kv_stride[0] + h * p.kv_stride[1] + n * p.kv_stride[2] + d * p.kv_stride[3] + which * p.v_offset;
            const bool garbage = n >= valid[pg];
            if (fp8) {
              const auto& codes = garbage ? junk_codes : real_codes;
              p.kv[off] = codes[uniform_int(rng, 0, codes.size() - 1)];
            } else {
              // Garbage: large finite values, and a quarter NaN (a cache slot never written may hold
              // anything; a kernel must not let 0 x NaN into P V).
              const double big = which == 0 && spike[static_cast<std::size_t>((pg * KVH + h) * kBlock + n)] ? 24.0 : 1.0;
              const double x = garbage ? (chance(rng, 0.5) ? -1 : 1) * uniform(rng, 100, 1000) : big * uniform(rng, -1, 1);
              const std::uint16_t nan_bits = s.kv == DType::bf16 ? 0x7fc0 : 0x7e00;
              const std::uint16_t bits = garbage && chance(rng, 0.25) ? nan_bits : ref::double_to_half(x, s.kv);
              std::memcpy(&p.kv[static_cast<std::size_t>(off) * 2], &bits, 2);
            }
          }

  // ---- fp8 scales
  if (s.scale == ScaleMode::scalar) {
    const double sign = s.negative_scales ? -1.0 : 1.0;
    p.k_scale = {s.zero_k_scale ? 0.f : static_cast<float>(sign * uniform(rng, 0.5, 2.0))};
    p.v_scale = {static_cast<float>(sign * uniform(rng, 0.5, 2.0))};
  } else if (s.scale == ScaleMode::per_token_head) {
    const std::int64_t tokens = p.num_pages * kBlock;
    p.k_scale.resize(static_cast<std::size_t>(KVH * tokens));
    p.v_scale.resize(p.k_scale.size());
    // Wide K scales stay at most 1: larger ones make scores so large that the contract's
    // rounding of each K element (the second reference) moves the softmax by more than its bound.
    for (auto* v : {&p.k_scale, &p.v_scale})
      for (auto& x : *v) {
        x = static_cast<float>(uniform(rng, 0.25, 2.0));
        if (s.wide_scales) {
          x = static_cast<float>(std::exp2(uniform(rng, -20.0, v == &p.k_scale ? 0.0 : 4.0)) * (chance(rng, 0.25) ? -1.0 : 1.0));
          if (chance(rng, 0.02)) x = 0.f;
        }
      }
    if (s.scales_token_major) {
      p.ks_stride[0] = 1, p.ks_stride[1] = KVH;
    } else {
      p.ks_stride[0] = tokens, p.ks_stride[1] = 1;
    }
    p.vs_stride[0] = p.ks_stride[0], p.vs_stride[1] = p.ks_stride[1];
  }

  // ---- q and output layouts
  std::size_t q_elems = 0;
  switch (s.io) {
    case Io::contiguous:
      p.q_stride[0] = H * D, p.q_stride[1] = D, p.q_stride[2] = 1;
      p.out_stride[0] = H * D, p.out_stride[1] = D, p.out_stride[2] = 1;
      q_elems = p.out_elems = static_cast<std::size_t>(T * H * D);
      break;
    case Io::strided:
      p.q_stride[0] = (H + 2 * KVH) * D, p.q_stride[1] = D, p.q_stride[2] = 1;
      p.out_stride[0] = H * D + 24, p.out_stride[1] = D, p.out_stride[2] = 1;
      q_elems = static_cast<std::size_t>(T * (H + 2 * KVH) * D);
      p.out_elems = static_cast<std::size_t>(T * (H * D + 24));
      break;
    case Io::transposed:
      p.q_stride[0] = H * D, p.q_stride[1] = 1, p.q_stride[2] = H;
      p.out_stride[0] = H * D, p.out_stride[1] = 1, p.out_stride[2] = H;
      q_elems = p.out_elems = static_cast<std::size_t>(T * H * D);
      break;
  }
  p.q.resize(std::max<std::size_t>(q_elems, 1));
  for (auto& x : p.q) x = ref::double_to_half(std::ldexp(uniform(rng, -3, 3), s.q_pow2), s.q);  // k/v parts of a fused buffer too (never read)
  p.sm_scale = static_cast<float>(std::ldexp(1.0 / std::sqrt(static_cast<double>(D)), -s.q_pow2));

  // ---- top-k rows
  const std::int64_t row_stride = K + (s.io == Io::strided ? 3 : 0);
  p.topk_stride[0] = T * row_stride + (s.io == Io::strided ? 7 : 0), p.topk_stride[1] = row_stride, p.topk_stride[2] = 1;
  p.topk.assign(static_cast<std::size_t>(std::max<std::int64_t>(KVH * p.topk_stride[0], 1)), 0x7eadbeef);
  std::vector<std::int32_t> row, pool;
  // The last row with keys is an ordinary one if no earlier row was: a case of one or two rows
  // must not come out degenerate (every output zero).
  std::int64_t last_with_keys = -1;
  for (std::int64_t t = 0; t < T; ++t)
    if (p.seq_lens[tok_req[t]] > 0 && std::min(tok_pos[t], tok_limit[t] - 1) >= 0) last_with_keys = t;
  bool any_ordinary = false;
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t r = tok_req[t], pos = tok_pos[t];
    const std::int64_t hi = std::min(pos, tok_limit[t] - 1);  // last visible key position
    const std::int64_t nvis = hi >= 0 ? hi / kBlock + 1 : 0;  // blocks that hold a visible key
    for (std::int64_t h = 0; h < KVH; ++h) {
      row.clear();
      const double u = uniform(rng, 0, 1);
      bool any_padding = false;
      if (p.seq_lens[r] == 0) {
        // Padded decode row: real block ids with real pages; only seq_len 0 hides them.
        pool.resize(p.max_blocks);
        std::iota(pool.begin(), pool.end(), 0);
        std::shuffle(pool.begin(), pool.end(), rng);
        for (std::int64_t i = 0; i < std::min(K, p.max_blocks); ++i) row.push_back(pool[i]);
      } else if (const bool force = !any_ordinary && t == last_with_keys && h == KVH - 1; u < 0.05 && !force) {
        ++p.rows_all_padding;  // no visible key: the output must be zeros
      } else if (u < 0.09 && !force && p.max_blocks > nvis) {
        ++p.rows_future_only;  // only blocks wholly after the query (masked out entirely)
        for (std::int64_t b = nvis; b < p.max_blocks && static_cast<std::int64_t>(row.size()) < K; ++b)
          if (chance(rng, 0.7)) row.push_back(static_cast<std::int32_t>(b));
      } else {
        any_ordinary = any_ordinary || nvis > 0;
        std::int64_t nreal = std::min(K, nvis);
        if (nreal > 1 && chance(rng, 0.4)) nreal -= uniform_int(rng, 1, std::min<std::int64_t>(3, nreal - 1));
        pool.resize(nvis);
        std::iota(pool.begin(), pool.end(), 0);
        std::shuffle(pool.begin(), pool.end(), rng);
        if (nvis > 0 && chance(rng, 0.8)) {  // usually the local block, like the indexer
          auto it = std::find(pool.begin(), pool.end(), static_cast<std::int32_t>(nvis - 1));
          std::iter_swap(pool.begin(), it);
        }
        row.assign(pool.begin(), pool.begin() + nreal);
        if (static_cast<std::int64_t>(row.size()) < K && p.max_blocks > nvis && chance(rng, 0.25))
          row.push_back(static_cast<std::int32_t>(uniform_int(rng, nvis, p.max_blocks - 1)));  // a future block
        if (s.junk_ids && static_cast<std::int64_t>(row.size()) < K && chance(rng, 0.15)) {
          row.push_back(static_cast<std::int32_t>(p.max_blocks + uniform_int(rng, 0, 1000)));  // outside the table
          ++p.rows_junk;
        }
        if (s.dup_ids && !row.empty() && static_cast<std::int64_t>(row.size()) < K && chance(rng, 0.5)) {
          row.push_back(row[uniform_int(rng, 0, static_cast<std::int64_t>(row.size()) - 1)]);
          ++p.rows_dup;
        }
      }
      any_padding = static_cast<std::int64_t>(row.size()) < K;
      while (static_cast<std::int64_t>(row.size()) < K) row.push_back(padding_value(rng));
      std::shuffle(row.begin(), row.end(), rng);  // padding anywhere, ids in no order
      if (any_padding && row.back() >= 0) ++p.rows_padding_not_last;
      bool sorted = true;
      std::int32_t prev = std::numeric_limits<std::int32_t>::min();
      for (auto v : row)
        if (v >= 0) {
          if (v < prev) sorted = false;
          prev = v;
        }
      if (!sorted) ++p.rows_unsorted;
      for (std::int64_t k = 0; k < K; ++k) p.topk[h * p.topk_stride[0] + t * p.topk_stride[1] + k * p.topk_stride[2]] = row[k];
    }
  }
  return p;
}

// The problem's arguments with the given pointers (host ones for the reference, device ones for the runtime).
struct Pointers {
  const void *q, *kv, *topk, *bt, *cu, *seq, *prefix, *ks, *vs;
  void* out;
  const void *qsl = nullptr, *t2r = nullptr;  // ragged decode
};

template <class A>
void fill_common(A& a, const CaseSpec& s, const Problem& p, const Pointers& ptr) {
  a.q = ptr.q;
  for (int i = 0; i < 3; ++i) a.q_stride[i] = p.q_stride[i], a.topk_stride[i] = p.topk_stride[i], a.output_stride[i] = p.out_stride[i];
  a.kv_cache = ptr.kv;
  for (int i = 0; i < 4; ++i) a.kv_stride[i] = p.kv_stride[i];
  a.v_offset = p.v_offset;
  a.num_pages = p.num_pages;
  a.topk_idx = ptr.topk;
  a.block_table = ptr.bt;
  a.block_table_stride = p.bt_stride;
  a.max_blocks = p.max_blocks;
  a.seq_lens = ptr.seq;
  a.k_scale = s.scale == ScaleMode::none ? nullptr : ptr.ks;
  a.v_scale = s.scale == ScaleMode::none ? nullptr : ptr.vs;
  for (int i = 0; i < 2; ++i) a.k_scale_stride[i] = p.ks_stride[i], a.v_scale_stride[i] = p.vs_stride[i];
  a.output = ptr.out;
  a.total_q = p.total_q, a.num_heads = s.H, a.num_kv_heads = s.KVH, a.head_dim = s.D, a.topk = s.topk;
  a.q_dtype = s.q, a.kv_dtype = s.kv, a.scale_mode = s.scale;
  a.sm_scale = p.sm_scale;
}

PrefillArgs prefill_args(const CaseSpec& s, const Problem& p, const Pointers& ptr) {
  PrefillArgs a;
  fill_common(a, s, p, ptr);
  a.cu_seqlens_q = ptr.cu;
  a.prefix_lens = ptr.prefix;
  a.batch = p.batch;
  a.max_query_len = p.max_query_len;
  return a;
}

DecodeArgs decode_args(const CaseSpec& s, const Problem& p, const Pointers& ptr) {
  DecodeArgs a;
  fill_common(a, s, p, ptr);
  a.num_reqs = p.batch;
  a.decode_query_len = s.dql;
  if (!s.ragged_qlens.empty()) a.query_start_loc = ptr.qsl, a.token_to_req_indices = ptr.t2r;
  return a;
}

Pointers host_pointers(const Problem& p) {
  return {p.q.data(),        p.kv.data(),      p.topk.data(),    p.bt.data(), p.cu.data(), p.seq_lens.data(), p.prefix_lens.data(),
          p.k_scale.data(), p.v_scale.data(), nullptr,       p.qsl.data(),     p.t2r.data()};
}

// ============================================================== cases

std::vector<int> random_seq_lens(std::uint32_t seed, int n, int lo, int hi) {  // fixed shapes: kernels and chunk counts stay the same per run
  std::mt19937 g(seed);
  std::vector<int> v(n);
  for (auto& x : v) x = std::uniform_int_distribution<int>(lo, hi)(g);
  return v;
}

std::vector<CaseSpec> prefill_cases() {
  std::vector<CaseSpec> v;
  auto add = [&](CaseSpec c) { v.push_back(std::move(c)); };
  CaseSpec c;
  // MiniMax-M3 at TP4: 16 heads, 1 kv head (G 16), D 128, topk 16. Ragged, prefixes, an empty request.
  c = {};
  c.name = "m3tp4_G16_D128_k16_bf16_bf16_A", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 16;
  c.q_lens = {7, 40, 1, 0, 22}, c.prefix_lens = {0, 900, 4999, 128, 1663}, c.junk_ids = true, c.dup_ids = true;
  add(c);
  // TP8 shape (G 8), layout B, q a slice of a fused qkv buffer, padded output/top-k/block-table rows.
  c = {};
  c.name = "m3tp8_G8_D128_k16_bf16_bf16_B_strided", c.H = 8, c.KVH = 1, c.D = 128, c.topk = 16;
  c.layout = KvLayout::B, c.io = Io::strided, c.junk_ids = true, c.unmapped_block = true;
  c.q_lens = {33, 5, 12}, c.prefix_lens = {257, 3000, 0}, c.short_seq = 20;  // request 0: queries past seq_len
  add(c);
  // TP1 shape (64 heads, 4 kv heads), fp8 e4m3fn with scalar scales.
  c = {};
  c.name = "m3tp1_G16_D128_k16_bf16_e4m3fn_scalar_A", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::scalar;
  c.q_lens = {3, 9}, c.prefix_lens = {2100, 511};
  add(c);
  // G 4, D 64, topk 8, fp16, transposed q/output.
  c = {};
  c.name = "G4_D64_k8_fp16_fp16_A_transposed", c.H = 8, c.KVH = 2, c.D = 64, c.topk = 8, c.q = DType::fp16, c.kv = DType::fp16;
  c.io = Io::transposed, c.unmapped_block = true;
  c.q_lens = {17, 1, 30, 4}, c.prefix_lens = {0, 1, 700, 1300};
  add(c);
  // G 1, D 256, topk 32, layout B.
  c = {};
  c.name = "G1_D256_k32_bf16_bf16_B", c.H = 4, c.KVH = 4, c.D = 256, c.topk = 32, c.layout = KvLayout::B;
  c.q_lens = {11, 25}, c.prefix_lens = {4500, 60}, c.junk_ids = true;
  add(c);
  // fp8 e5m2 with per-token-head scales (stored token-major), fp16 q, layout B.
  c = {};
  c.name = "G8_D128_k16_fp16_e5m2_pth_B", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16, c.q = DType::fp16;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::per_token_head, c.layout = KvLayout::B, c.scales_token_major = true;
  c.q_lens = {20, 6, 13}, c.prefix_lens = {1000, 3333, 0};
  add(c);
  // fp8 e5m2 per-token-head scales, bf16 q, layout A, strided q/output.
  c = {};
  c.name = "G16_D128_k16_bf16_e5m2_pth_A_strided", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 16;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::per_token_head, c.io = Io::strided;
  c.q_lens = {9, 1, 26}, c.prefix_lens = {640, 2222, 31};
  add(c);
  // fp8 e4m3fn per-token-head scales, fp16 q, D 256, G 4.
  c = {};
  c.name = "G4_D256_k16_fp16_e4m3fn_pth_A", c.H = 8, c.KVH = 2, c.D = 256, c.topk = 16, c.q = DType::fp16;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::per_token_head, c.junk_ids = true;
  c.q_lens = {9, 14}, c.prefix_lens = {777, 2048};
  add(c);
  // fp8 e4m3fn scalar scales, D 64, topk 32, layout B.
  c = {};
  c.name = "G16_D64_k32_bf16_e4m3fn_scalar_B", c.H = 16, c.KVH = 1, c.D = 64, c.topk = 32;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::scalar, c.layout = KvLayout::B;
  c.q_lens = {15, 2, 19}, c.prefix_lens = {4097, 100, 1500};
  add(c);
  // K/V rows not 16-byte aligned (the element-load path), TP1 shape.
  c = {};
  c.name = "m3tp1_G16_D128_k16_bf16_bf16_Bpadded", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.layout = KvLayout::B_padded;
  c.q_lens = {10, 3}, c.prefix_lens = {1300, 129};
  add(c);
  // fp8 e5m2, negative scalar scales, G 8 (wgmma on sm_90a), ragged prefixes, |q| up to 3 x 2^15.
  c = {};
  c.name = "G8_D128_k16_bf16_e5m2_negscale_bigq_A", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::scalar, c.negative_scales = true, c.dup_ids = true, c.q_pow2 = 15;
  c.q_lens = {21, 4, 9}, c.prefix_lens = {2500, 0, 130};
  add(c);
  // Mixed: fp16 q over a bf16 cache.
  c = {};
  c.name = "G8_D128_k16_fp16_bf16kv_A", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16, c.q = DType::fp16, c.kv = DType::bf16;
  c.q_lens = {12, 7}, c.prefix_lens = {300, 1900};
  add(c);
  return v;
}

std::vector<CaseSpec> decode_cases() {
  std::vector<CaseSpec> v;
  auto add = [&](CaseSpec c) { v.push_back(std::move(c)); };
  CaseSpec c;
  // TP4 shape, one query per request, a padded request row, chunks > 1.
  c = {};
  c.name = "m3tp4_G16_D128_k16_bf16_bf16_A_q1_split", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.seq_lens = {4000, 0, 129, 1000, 2047, 5}, c.chunks = CaseSpec::Chunks::many, c.junk_ids = true, c.dup_ids = true;
  add(c);
  // TP1 shape, two queries per request (one request shorter than that), fp8 per-token-head, layout B.
  c = {};
  c.name = "m3tp1_G16_D128_k16_bf16_e4m3fn_pth_B_q2_split", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 2;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::per_token_head, c.layout = KvLayout::B;
  c.seq_lens = {1500, 1, 0, 3001}, c.chunks = CaseSpec::Chunks::many;
  add(c);
  // Big batch: one chunk. G 8, fp16, strided q/output.
  c = {};
  c.name = "G8_D128_k16_fp16_fp16_B_q1_onechunk_strided", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16, c.dql = 1;
  c.q = DType::fp16, c.kv = DType::fp16, c.layout = KvLayout::B, c.io = Io::strided, c.unmapped_block = true;
  c.seq_lens = random_seq_lens(1, 80, 1, 2600), c.seq_lens[7] = 0, c.seq_lens[50] = 0, c.chunks = CaseSpec::Chunks::one;
  add(c);
  // G 4, D 64, topk 8, e5m2 scalar, two queries per request, one chunk, transposed q/output.
  c = {};
  c.name = "G4_D64_k8_bf16_e5m2_scalar_A_q2_onechunk_transposed", c.H = 8, c.KVH = 2, c.D = 64, c.topk = 8, c.dql = 2;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::scalar, c.io = Io::transposed, c.junk_ids = true;
  c.seq_lens = random_seq_lens(2, 40, 2, 1500), c.seq_lens[3] = 0, c.chunks = CaseSpec::Chunks::one;
  add(c);
  // G 1, D 256, topk 32: as many chunks as top-k entries.
  c = {};
  c.name = "G1_D256_k32_bf16_bf16_B_q1_split", c.H = 2, c.KVH = 2, c.D = 256, c.topk = 32, c.dql = 1, c.layout = KvLayout::B;
  c.seq_lens = {4200, 3000, 77}, c.chunks = CaseSpec::Chunks::many;
  add(c);
  // G 16, D 256, fp16 q, e4m3fn scalar, two queries per request.
  c = {};
  c.name = "G16_D256_k16_fp16_e4m3fn_scalar_A_q2_split", c.H = 16, c.KVH = 1, c.D = 256, c.topk = 16, c.dql = 2;
  c.q = DType::fp16, c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::scalar;
  c.seq_lens = {2, 900, 0, 2500, 128}, c.chunks = CaseSpec::Chunks::many;
  add(c);
  // e4m3fn with negative scalar scales, big batch, one chunk (the large launch), |q| up to 3 x 2^15.
  c = {};
  c.name = "m3tp4_G16_D128_k16_bf16_e4m3fn_negscale_bigq_A_q1_onechunk", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::scalar, c.negative_scales = true, c.junk_ids = true, c.q_pow2 = 15;
  c.seq_lens = random_seq_lens(7, 140, 1, 3000), c.chunks = CaseSpec::Chunks::one;
  add(c);
  // e5m2, a zero K scale: every visible key scores 0 (a plain mean of V), split.
  c = {};
  c.name = "G8_D128_k16_fp16_e5m2_zerok_A_q1_split", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16, c.dql = 1, c.q = DType::fp16;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::scalar, c.zero_k_scale = true;
  c.seq_lens = {3000, 129, 0, 1024}, c.chunks = CaseSpec::Chunks::many;
  add(c);
  // G 8, e5m2 per-token-head (token-major scales), big batch, one chunk.
  c = {};
  c.name = "G8_D128_k16_bf16_e5m2_pth_A_q1_onechunk", c.H = 8, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::per_token_head, c.scales_token_major = true;
  c.seq_lens = random_seq_lens(3, 140, 1, 2200), c.chunks = CaseSpec::Chunks::one;
  add(c);
  c = {};
  // 32 x 2 (query, kv head) pairs: 2 chunks, which sm_90 merges inside a cluster (one launch); its 128
  // workgroups of 8 entries take the large-batch launch (tensor copies, 128-key sub-tiles).
  c.name = "G8_D128_k16_bf16_bf16_A_q1_twochunks_cluster", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16, c.dql = 1;
  c.seq_lens = random_seq_lens(5, 32, 0, 3000), c.chunks = CaseSpec::Chunks::many, c.dup_ids = true;
  add(c);
  c = {};
  // Ragged decode (vLLM's query_start_loc / token_to_req_indices): 1-4 queries per request, a padded row.
  c.name = "m3tp1_G16_D128_k16_bf16_bf16_A_ragged", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.seq_lens = {3000, 0, 130, 2049, 7}, c.ragged_qlens = {3, 1, 4, 1, 2};
  add(c);
  c = {};
  // TP1 at batch 2: 16 chunks of one entry each, the merge kernel launched while they run (sm_90: programmatic
  // dependent launch). seq 8191 ends mid-block; seq 70 sees 70 keys of block 0.
  c.name = "m3tp1_G16_D128_k16_bf16_bf16_B_q1_16chunks", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.layout = KvLayout::B, c.seq_lens = {8191, 70}, c.chunks = CaseSpec::Chunks::many, c.dup_ids = true, c.junk_ids = true;
  add(c);
  c = {};
  // K/V rows not 16-byte aligned: sm_90's producer warp loads elements instead of tensor copies.
  c.name = "m3tp1_G16_D128_k16_bf16_bf16_Bpadded_q1_split", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.layout = KvLayout::B_padded, c.seq_lens = {2500, 0, 131, 1024}, c.chunks = CaseSpec::Chunks::many, c.dup_ids = true;
  add(c);
  c = {};
  // top-k 300: each workgroup walks its entries in two segments of the block list (256 + 44),
  // through sm_90's large launch (130 workgroups, tensor copies); ids spread over both.
  c.name = "G16_D128_k300_bf16_bf16_B_q1_twosegments", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 300, c.dql = 1;
  c.layout = KvLayout::B, c.seq_lens = random_seq_lens(11, 130, 1, 1500), c.chunks = CaseSpec::Chunks::one;
  c.dup_ids = true, c.junk_ids = true;
  add(c);
  c = {};
  // Small batches (sm_90: <= 64 workgroups take the small-batch launch, a producer warp copying whole
  // 128-key blocks; fp8 keeps cp.async with the same sub-tiles). One TP1 request: 4 x 16 one-entry
  // chunks; seq 5000 ends mid-block.
  c.name = "m3tp1_G16_D128_k16_bf16_bf16_A_q1_smallbatch", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.seq_lens = {5000}, c.chunks = CaseSpec::Chunks::many, c.small_batch = true, c.dup_ids = true, c.junk_ids = true;
  add(c);
  c = {};
  // TP8, three requests (one padded row): 48 workgroups.
  c.name = "m3tp8_G8_D128_k16_bf16_bf16_B_q1_smallbatch", c.H = 8, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.layout = KvLayout::B, c.seq_lens = {300, 0, 7001}, c.chunks = CaseSpec::Chunks::many, c.small_batch = true, c.junk_ids = true;
  add(c);
  c = {};
  // head_dim 256 (one stage fits), G 1, top-k 32: 2 x 32 chunks.
  c.name = "G1_D256_k32_bf16_bf16_A_q1_smallbatch", c.H = 2, c.KVH = 2, c.D = 256, c.topk = 32, c.dql = 1;
  c.seq_lens = {6100}, c.chunks = CaseSpec::Chunks::many, c.small_batch = true, c.dup_ids = true;
  add(c);
  c = {};
  // fp16, head_dim 64, G 4, fp8 e4m3fn per-token-head scales: the cp.async form of the small launch.
  c.name = "G4_D64_k16_fp16_e4m3fn_pth_B_q1_smallbatch", c.H = 16, c.KVH = 4, c.D = 64, c.topk = 16, c.dql = 1;
  c.q = DType::fp16, c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::per_token_head, c.layout = KvLayout::B;
  c.seq_lens = {3000}, c.chunks = CaseSpec::Chunks::many, c.small_batch = true, c.junk_ids = true;
  add(c);
  c = {};
  // fp8 with a scalar scale at small batch (the small launch's sub-tiles through cp.async): TP1,
  // one request ending mid-block, G 16.
  c.name = "m3tp1_G16_D128_k16_bf16_e5m2_scalar_A_q1_smallbatch", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::scalar, c.seq_lens = {4100}, c.chunks = CaseSpec::Chunks::many, c.small_batch = true;
  c.junk_ids = true, c.dup_ids = true;
  add(c);
  c = {};
  // fp8 without scales, fp16 q, 32 x 2 pairs: two chunks merged in their cluster.
  c.name = "G8_D128_k16_fp16_e4m3fn_none_B_q1_twochunks_cluster", c.H = 16, c.KVH = 2, c.D = 128, c.topk = 16, c.dql = 1;
  c.q = DType::fp16, c.kv = DType::fp8_e4m3fn, c.layout = KvLayout::B, c.seq_lens = random_seq_lens(13, 32, 0, 3000);
  c.chunks = CaseSpec::Chunks::many;
  add(c);
  c = {};
  // fp8 K/V rows not 16-byte aligned (no 16-byte copies: element loads, dequantized one by one), large batch.
  c.name = "m3tp4_G16_D128_k16_bf16_e4m3fn_scalar_Bpadded_q1_onechunk", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::scalar, c.layout = KvLayout::B_padded;
  c.seq_lens = random_seq_lens(17, 130, 1, 2000), c.chunks = CaseSpec::Chunks::one, c.junk_ids = true;
  add(c);
  c = {};
  // G 1 and G 4 with fp8 (sm_89+: K and V fragments from the raw bytes; one live row, then four, of
  // the 16), e4m3fn without scales, split, layout B; unsorted ids with padding.
  c.name = "G1_D128_k16_bf16_e4m3fn_none_B_q1_split", c.H = 4, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e4m3fn, c.layout = KvLayout::B, c.seq_lens = {2900, 1, 0, 640}, c.chunks = CaseSpec::Chunks::many;
  c.junk_ids = true, c.dup_ids = true;
  add(c);
  c = {};
  // 70 x 4 = 280 workgroups: sm_90's huge-batch launch (two workgroups per SM).
  c.name = "G4_D128_k16_fp16_e5m2_scalar_A_q1_hugebatch", c.H = 16, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1, c.q = DType::fp16;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::scalar, c.seq_lens = random_seq_lens(19, 70, 1, 3100), c.chunks = CaseSpec::Chunks::one;
  c.huge_batch = true;
  add(c);
  c = {};
  // fp8 with per-token scales over 24 octaves (some negative, some zero), token-major: the raw
  // path folds them into S and P (sm_89+), here through the huge-batch launch (280 workgroups).
  c.name = "G4_D128_k16_bf16_e4m3fn_pthwide_B_q1_hugebatch", c.H = 16, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::per_token_head, c.layout = KvLayout::B, c.scales_token_major = true;
  c.wide_scales = true, c.seq_lens = random_seq_lens(23, 70, 1, 3100), c.chunks = CaseSpec::Chunks::one, c.huge_batch = true;
  c.junk_ids = true;
  add(c);
  c = {};
  // head_dim 256 with per-token scales (two 128-dim groups of V fragments), fp16 q, split.
  c.name = "G16_D256_k16_fp16_e5m2_pth_B_q1_split", c.H = 16, c.KVH = 1, c.D = 256, c.topk = 16, c.dql = 1, c.q = DType::fp16;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::per_token_head, c.layout = KvLayout::B, c.seq_lens = {3100, 0, 700, 129};
  c.chunks = CaseSpec::Chunks::many, c.junk_ids = true;
  add(c);
  c = {};
  // ... and at small batch, split (one TP1 request), e5m2.
  c.name = "m3tp1_G16_D128_k16_bf16_e5m2_pthwide_A_q1_smallbatch", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e5m2, c.scale = ScaleMode::per_token_head, c.wide_scales = true, c.seq_lens = {4100};
  c.chunks = CaseSpec::Chunks::many, c.small_batch = true, c.dup_ids = true;
  add(c);
  c = {};
  // fp16 q and K/V through the tensor copies, G 16 at TP4: one request of 129 keys (block 1 holds one).
  c.name = "m3tp4_G16_D128_k16_fp16_fp16_A_q1_smallbatch", c.H = 16, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.q = DType::fp16, c.kv = DType::fp16, c.seq_lens = {129}, c.chunks = CaseSpec::Chunks::many, c.small_batch = true;
  add(c);
  c = {};
  // Spiky keys (scores up to ~35 in base 2): the running max moves in later sub-tiles too, which the
  // one-query tensor-copy decode (kLazy) handles with a second barrier. TP1, 32 requests (the
  // large launch; one chunk under the shipped table, two under decode_cp_async), and TP8 at small
  // batch (16 one-block chunks: every workgroup sets its max at once), padded rows, unaligned lengths.
  c.name = "m3tp1_G16_D128_k16_bf16_bf16_A_q1_spiky_largebatch", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.seq_lens = random_seq_lens(29, 32, 0, 9000), c.spiky_keys = true, c.junk_ids = true;
  add(c);
  c = {};
  c.name = "m3tp8_G8_D128_k16_fp16_fp16_B_q1_spiky_smallbatch", c.H = 8, c.KVH = 1, c.D = 128, c.topk = 16, c.dql = 1;
  c.q = DType::fp16, c.kv = DType::fp16, c.layout = KvLayout::B, c.seq_lens = {6000, 0, 2100}, c.chunks = CaseSpec::Chunks::many;
  c.small_batch = true, c.spiky_keys = true, c.dup_ids = true;
  add(c);
  c = {};
  // 120 x 4 (query, kv head) pairs: one chunk, >= 400 workgroups, sm_90's large-batch launch (256 threads, 128-key stages).
  c.name = "G4_D128_k16_bf16_bf16_B_q1_largebatch", c.H = 16, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1, c.layout = KvLayout::B;
  c.seq_lens = random_seq_lens(9, 120, 0, 2500), c.chunks = CaseSpec::Chunks::one, c.dup_ids = true;
  add(c);
  c = {};
  // fp8 through the large launch: 40 x 4 = 160 workgroups of 8 math warps, where each warp
  // copies its own keys' raw K and V (and per-token scales) and waits for them alone (kWarpPipe).
  c.name = "m3tp1_G16_D128_k16_bf16_e4m3fn_pth_A_q1_largebatch", c.H = 64, c.KVH = 4, c.D = 128, c.topk = 16, c.dql = 1;
  c.kv = DType::fp8_e4m3fn, c.scale = ScaleMode::per_token_head, c.seq_lens = random_seq_lens(31, 40, 0, 5000);
  c.chunks = CaseSpec::Chunks::one, c.junk_ids = true;
  add(c);
  return v;
}

// ============================================================== case generator (CPU)

TEST(GpuCaseGenerator, ProblemsCoverTheContract) {
  // The random rows really contain what the GPU cases claim to test, and the
  // reference accepts them. Small fixed seeds: this runs everywhere.
  int all_padding = 0, padding_not_last = 0, unsorted = 0, future_only = 0, junk = 0, dup = 0;
  const CaseSpec specs[] = {prefill_cases()[0], prefill_cases()[3], decode_cases()[0]};
  for (const CaseSpec& s : specs) {
    const bool decode = !s.seq_lens.empty();
    Rng rng(7);
    const Problem p = make_problem(s, decode, rng);
    all_padding += p.rows_all_padding, padding_not_last += p.rows_padding_not_last, unsorted += p.rows_unsorted;
    future_only += p.rows_future_only, junk += p.rows_junk, dup += p.rows_dup;
    const Pointers hp = host_pointers(p);
    const ref::Result r = decode ? ref::decode(decode_args(s, p, hp)) : ref::prefill(prefill_args(s, p, hp));
    int zero_rows = 0, nonzero_rows = 0;
    for (std::int64_t t = 0; t < p.total_q; ++t)
      for (std::int64_t h = 0; h < s.H; ++h) (r.visible(t, h) == 0 ? zero_rows : nonzero_rows)++;
    EXPECT_GT(nonzero_rows, zero_rows) << s.name;
    EXPECT_GT(zero_rows, 0) << s.name;
  }
  EXPECT_GT(all_padding, 0);
  EXPECT_GT(padding_not_last, 0);
  EXPECT_GT(unsorted, 0);
  EXPECT_GT(future_only, 0);
  EXPECT_GT(junk, 0);
  EXPECT_GT(dup, 0);
}

TEST(GpuCaseGenerator, ExactFp8DequantDiffersFromTheContractByOneRounding) {
  // ref::Options::exact_fp8_dequant (the sm_89+ kernels' fp16 path): with power-of-two scales,
  // value x scale is exact in bf16, so both references agree bit for bit; with others they
  // differ, by little, and exact mode matches the contract's with the scale folded in by hand.
  CaseSpec s = prefill_cases()[2];  // TP1, e4m3fn, scalar scales
  ASSERT_EQ(s.scale, ScaleMode::scalar);
  Rng rng(11);
  Problem p = make_problem(s, false, rng);
  ref::Options exact;
  exact.exact_fp8_dequant = true;
  auto both = [&](float ks, float vs) {
    p.k_scale = {ks}, p.v_scale = {vs};
    const Pointers hp = host_pointers(p);
    return std::make_pair(ref::prefill(prefill_args(s, p, hp)), ref::prefill(prefill_args(s, p, hp), exact));
  };
  auto [c1, e1] = both(0.5f, -0.25f);
  EXPECT_TRUE(c1.out == e1.out);
  auto [c2, e2] = both(0.1f, 0.3f);
  double max_diff = 0, max_ref = 0;
  for (std::size_t i = 0; i < c2.out.size(); ++i) max_diff = std::max(max_diff, std::fabs(c2.out[i] - e2.out[i])), max_ref = std::max(max_ref, std::fabs(c2.out[i]));
  EXPECT_GT(max_diff, 0.0);
  EXPECT_LT(max_diff, 1e-2 * max_ref);
  // Per-token-head scales (fp16 q, e5m2): the same, token by token.
  CaseSpec t = prefill_cases()[5];
  ASSERT_EQ(t.scale, ScaleMode::per_token_head);
  Problem q = make_problem(t, false, rng);
  auto both_pth = [&] {
    const Pointers hp = host_pointers(q);
    return std::make_pair(ref::prefill(prefill_args(t, q, hp)), ref::prefill(prefill_args(t, q, hp), exact));
  };
  auto [c3, e3] = both_pth();  // the generator's scales
  max_diff = 0, max_ref = 0;
  for (std::size_t i = 0; i < c3.out.size(); ++i) max_diff = std::max(max_diff, std::fabs(c3.out[i] - e3.out[i])), max_ref = std::max(max_ref, std::fabs(c3.out[i]));
  EXPECT_GT(max_diff, 0.0);
  EXPECT_LT(max_diff, 1e-2 * max_ref);
  for (std::size_t i = 0; i < q.k_scale.size(); ++i) q.k_scale[i] = i % 2 ? 0.25f : 4.f;
  for (std::size_t i = 0; i < q.v_scale.size(); ++i) q.v_scale[i] = i % 3 ? 0.5f : -2.f;
  auto [c4, e4] = both_pth();
  EXPECT_TRUE(c4.out == e4.out);
}

TEST(GpuCaseGenerator, ReferenceAgreesAcrossKvLayoutsAndIoStrides) {
  // The same logical data through layout A / contiguous and layout B / strided or
  // transposed strides: the reference must give bit-identical results.
  CaseSpec a = prefill_cases()[3];  // fp16, D 64
  a.io = Io::contiguous, a.layout = KvLayout::A, a.unmapped_block = false;
  CaseSpec b = a;
  b.layout = KvLayout::B, b.io = Io::strided;
  CaseSpec c = a;
  c.io = Io::transposed;
  Rng ra(99), rb(99), rc(99);
  const Problem pa = make_problem(a, false, ra), pb = make_problem(b, false, rb), pc = make_problem(c, false, rc);
  const ref::Result x = ref::prefill(prefill_args(a, pa, host_pointers(pa)));
  // Layout B / strided: the generator draws the same random stream only for equal buffer shapes,
  // so compare against a copy of pa re-laid-out instead.
  Problem pb2 = pb;
  pb2.kv.assign(pb.kv.size(), 0);
  for (std::int64_t pg = 0; pg < pa.num_pages; ++pg)
    for (std::int64_t h = 0; h < a.KVH; ++h)
      for (std::int64_t n = 0; n < kBlock; ++n)
        for (int w = 0; w < 2; ++w)
          for (std::int64_t d = 0; d < a.D; ++d) {
            const std::int64_t src = pg * pa.kv_stride[0] + h * pa.kv_stride[1] + n * pa.kv_stride[2] + d + w * pa.v_offset;
            const std::int64_t dst = pg * pb.kv_stride[0] + h * pb.kv_stride[1] + n * pb.kv_stride[2] + d + w * pb.v_offset;
            std::memcpy(&pb2.kv[dst * 2], &pa.kv[src * 2], 2);
          }
  pb2.q.assign(pb.q.size(), 0);
  for (std::int64_t t = 0; t < pa.total_q; ++t)
    for (std::int64_t h = 0; h < a.H; ++h)
      for (std::int64_t d = 0; d < a.D; ++d)
        pb2.q[t * pb.q_stride[0] + h * pb.q_stride[1] + d] = pa.q[t * pa.q_stride[0] + h * pa.q_stride[1] + d];
  for (std::int64_t h = 0; h < a.KVH; ++h)
    for (std::int64_t t = 0; t < pa.total_q; ++t)
      for (std::int64_t k = 0; k < a.topk; ++k)
        pb2.topk[h * pb.topk_stride[0] + t * pb.topk_stride[1] + k] = pa.topk[h * pa.topk_stride[0] + t * pa.topk_stride[1] + k];
  for (std::int64_t r = 0; r < pa.batch; ++r)
    for (std::int64_t blk = 0; blk < pa.max_blocks; ++blk) pb2.bt[r * pb.bt_stride + blk] = pa.bt[r * pa.bt_stride + blk];
  const ref::Result y = ref::prefill(prefill_args(b, pb2, host_pointers(pb2)));
  Problem pc2 = pc;  // same buffer sizes as pa: only q needs transposing
  pc2.kv = pa.kv, pc2.topk = pa.topk, pc2.bt = pa.bt;
  for (std::int64_t t = 0; t < pa.total_q; ++t)
    for (std::int64_t h = 0; h < a.H; ++h)
      for (std::int64_t d = 0; d < a.D; ++d)
        pc2.q[t * pc.q_stride[0] + h * pc.q_stride[1] + d * pc.q_stride[2]] = pa.q[t * pa.q_stride[0] + h * pa.q_stride[1] + d];
  const ref::Result z = ref::prefill(prefill_args(c, pc2, host_pointers(pc2)));
  ASSERT_EQ(x.out.size(), y.out.size());
  ASSERT_EQ(x.out.size(), z.out.size());
  EXPECT_TRUE(x.out == y.out);
  EXPECT_TRUE(x.out == z.out);
  EXPECT_TRUE(x.visible_keys == y.visible_keys);
}

// ============================================================== GPU

// Compares the downloaded output buffer with the reference: error bound, NaN/Inf
// anywhere, exact zeros for rows that see no key, and untouched bytes outside the tensor.
void check_output(const CaseSpec& s, const Problem& p, const ref::Result& r, const std::vector<std::uint16_t>& out, std::uint64_t seed,
                  double bound = 1e-2, const std::string& against = "") {
  const std::int64_t T = p.total_q, H = s.H, D = s.D;
  std::vector<char> covered(out.size(), 0);
  double max_err = 0, max_ref = 0;
  std::int64_t nonfinite = 0, nonzero_empty = 0, worst_t = -1, worst_h = -1, worst_d = -1;
  std::string first_nonfinite, first_nonzero_empty;
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) {
      const bool empty = r.visible(t, h) == 0;
      for (std::int64_t d = 0; d < D; ++d) {
        const std::size_t off = static_cast<std::size_t>(t * p.out_stride[0] + h * p.out_stride[1] + d * p.out_stride[2]);
        covered[off] = 1;
        const double got = ref::half_to_double(out[off], s.q), want = r.at(t, h, d);
        auto where = [&] { return "(token " + std::to_string(t) + ", head " + std::to_string(h) + ", d " + std::to_string(d) + ")"; };
        if (!std::isfinite(got)) {
          if (nonfinite++ == 0) {
            std::ostringstream o;
            o << where() << " bits 0x" << std::hex << out[off];
            first_nonfinite = o.str();
          }
          continue;
        }
        if (empty && got != 0.0 && nonzero_empty++ == 0) first_nonzero_empty = where() + " = " + std::to_string(got);
        max_ref = std::max(max_ref, std::fabs(want));
        const double e = std::fabs(got - want);
        if (e > max_err) max_err = e, worst_t = t, worst_h = h, worst_d = d;
      }
    }
  std::int64_t clobbered = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (!covered[i] && out[i] != 0xFFFF) ++clobbered;
  const double rel = max_err / std::max(max_ref, 1e-6);

  std::cout << "[ accuracy ] " << s.name << against << ": max rel err " << rel << " (max abs err " << max_err << ", max |ref| " << max_ref
            << ", seed " << seed << ")\n";
  ::testing::Test::RecordProperty("max_rel_err", std::to_string(rel));
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  if (against.empty()) gputest::record_case_error(s.name, rel, seed);

  EXPECT_EQ(nonfinite, 0) << nonfinite << " NaN/Inf outputs; first at " << first_nonfinite;
  EXPECT_EQ(nonzero_empty, 0) << nonzero_empty << " outputs of queries that see no key are not zero; first " << first_nonzero_empty;
  EXPECT_EQ(clobbered, 0) << clobbered << " elements outside the output tensor (stride gaps) were written";
  EXPECT_LE(rel, bound) << "worst at token " << worst_t << " head " << worst_h << " d " << worst_d << ": got "
                        << (worst_t >= 0 ? ref::half_to_double(out[worst_t * p.out_stride[0] + worst_h * p.out_stride[1] +
                                                                   worst_d * p.out_stride[2]],
                                                               s.q)
                                         : 0.0)
                        << ", want " << (worst_t >= 0 ? r.at(worst_t, worst_h, worst_d) : 0.0);
  EXPECT_GT(max_ref, 0.0) << "degenerate case: every query saw no key";
}

// Whether this device's kernels dequantize case s's fp8 K/V exactly (attention_nv.cu's
// kFp8Half: sm_89+, e4m3fn or e5m2, no or a scalar scale, or per-token scales in decode with
// head_dim a multiple of 128) instead of rounding value x scale to q's dtype first, as the
// contract does.
bool exact_fp8_on_device(const CaseSpec& s, bool decode) {
  if (s.kv != DType::fp8_e4m3fn && s.kv != DType::fp8_e5m2) return false;
  // Per-token scales: decode that reads K and V from the raw bytes (kRawV: head_dim a multiple
  // of 128; every launch of the sm_90 table stages them with 16-byte copies).
  if (s.scale == ScaleMode::per_token_head && !(decode && s.D % 128 == 0)) return false;
  auto info = cuda_driver().device_info(0);
  return info.ok() && nvidia_sm(info->target) >= 89;
}

// The downloaded output against the reference. Where the kernels dequantize fp8 exactly, the
// bound holds against the reference that does the same, and the contract's (rounded K and V:
// one bf16 rounding of every input apart) gets twice it. Returns the contract's reference.
ref::Result check_against_reference(const CaseSpec& s, const Problem& p, bool decode, const std::vector<std::uint16_t>& out,
                                    std::uint64_t seed) {
  const Pointers hp = host_pointers(p);
  auto reference = [&](const ref::Options& o) { return decode ? ref::decode(decode_args(s, p, hp), o) : ref::prefill(prefill_args(s, p, hp), o); };
  ref::Result contract = reference({});
  if (!exact_fp8_on_device(s, decode)) {
    check_output(s, p, contract, out, seed);
    return contract;
  }
  ref::Options exact;
  exact.exact_fp8_dequant = true;
  check_output(s, p, reference(exact), out, seed);
  check_output(s, p, contract, out, seed, 2e-2, " (against the contract's rounded K/V)");
  return contract;
}

struct DeviceProblem {
  DeviceBuffer q, kv, topk, bt, cu, seq, prefix, ks, vs, out, qsl, t2r;
};

// Uploads everything and poisons the output with 0xFF bytes (NaN in bf16 and fp16).
std::string upload(const Problem& p, DeviceProblem& d) {
  std::string e;
  if (e = gputest::upload_vector(d.q, p.q); !e.empty()) return "q: " + e;
  if (e = gputest::upload_vector(d.kv, p.kv); !e.empty()) return "kv: " + e;
  if (e = gputest::upload_vector(d.topk, p.topk); !e.empty()) return "topk: " + e;
  if (e = gputest::upload_vector(d.bt, p.bt); !e.empty()) return "block_table: " + e;
  if (e = gputest::upload_vector(d.seq, p.seq_lens); !e.empty()) return "seq_lens: " + e;
  if (p.decode) {
    if (e = gputest::upload_vector(d.qsl, p.qsl); !e.empty()) return "query_start_loc: " + e;
    if (e = gputest::upload_vector(d.t2r, p.t2r); !e.empty()) return "token_to_req_indices: " + e;
  }
  if (!p.decode) {
    if (e = gputest::upload_vector(d.cu, p.cu); !e.empty()) return "cu_seqlens_q: " + e;
    if (e = gputest::upload_vector(d.prefix, p.prefix_lens); !e.empty()) return "prefix_lens: " + e;
  }
  if (!p.k_scale.empty()) {
    if (e = gputest::upload_vector(d.ks, p.k_scale); !e.empty()) return "k_scale: " + e;
    if (e = gputest::upload_vector(d.vs, p.v_scale); !e.empty()) return "v_scale: " + e;
  }
  if (e = d.out.allocate(p.out_elems * 2); !e.empty()) return "output: " + e;
  if (e = d.out.fill(0xFF); !e.empty()) return "output poison: " + e;
  return {};
}

Pointers device_pointers(const DeviceProblem& d) {
  return {d.q.get(), d.kv.get(), d.topk.get(), d.bt.get(), d.cu.get(), d.seq.get(), d.prefix.get(), d.ks.get(), d.vs.get(), d.out.get(),
          d.qsl.get(), d.t2r.get()};
}

class GpuAttention : public ::testing::TestWithParam<CaseSpec> {
 protected:
  void SetUp() override {
    std::string reason;
    if (!gputest::gpu_available(&reason)) GTEST_SKIP() << "no GPU: " << reason;
    rt_ = gputest::shared_runtime();
    ASSERT_NE(rt_, nullptr) << "a CUDA device is present but Runtime::create failed (see the log above)";
    seed_ = fresh_seed();
  }
  Runtime* rt_ = nullptr;
  std::uint64_t seed_ = 0;
};

class GpuPrefill : public GpuAttention {};
class GpuDecode : public GpuAttention {};

// One prefill case on `rt` from `seed`: random inputs, poisoned output, compared with the reference.
void run_prefill_case(Runtime& rt, const CaseSpec& s, std::uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: SPARSEJIT_TEST_SEED=" + std::to_string(seed) + ")");
  Rng rng(seed);
  const Problem p = make_problem(s, false, rng);
  DeviceProblem d;
  ASSERT_EQ(upload(p, d), "");
  const CallStatus st = rt.sparse_attn_prefill(prefill_args(s, p, device_pointers(d)), nullptr);
  ASSERT_TRUE(st.ok) << st.stage << ": " << st.message;
  ASSERT_EQ(gputest::synchronize(), "");
  std::vector<std::uint16_t> out(p.out_elems);
  ASSERT_EQ(d.out.download(out.data()), "");
  check_against_reference(s, p, false, out, seed);
}

TEST_P(GpuPrefill, MatchesReference) { run_prefill_case(*rt_, GetParam(), seed_); }

void run_decode_case(Runtime& rt, const CaseSpec& s, std::uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: SPARSEJIT_TEST_SEED=" + std::to_string(seed) + ")");
  Rng rng(seed);
  const Problem p = make_problem(s, true, rng);
  const int chunks = rt.decode_num_chunks(p.total_q, s.H, s.KVH, s.topk);
  std::cout << "[ info     ] " << s.name << ": decode_num_chunks = " << chunks << "\n";
  if (s.chunks == CaseSpec::Chunks::one) EXPECT_EQ(chunks, 1) << "case meant to cover the single-chunk path";
  if (s.chunks == CaseSpec::Chunks::many) EXPECT_GT(chunks, 1) << "case meant to cover split-K";
  if (s.small_batch || s.huge_batch) {
    auto info = cuda_driver().device_info(0);
    ASSERT_TRUE(info.ok()) << info.error().describe();
    auto table = load_arch_table(info->target);
    ASSERT_TRUE(table.ok()) << table.error().describe();
    const DecodeLaunch launch = decode_launch(*table, p.total_q, s.KVH, chunks, s.topk);
    std::cout << "[ info     ] " << s.name << ": decode launch " << to_string(launch) << "\n";
    if (s.small_batch && table->decode.small_max_workgroups > 0) EXPECT_EQ(launch, DecodeLaunch::small) << "case meant to cover the small-batch launch";
    // (huge_batch applies only where large_batch does: a table whose large threshold is higher has the last word)
    if (s.huge_batch && table->decode.huge_min_workgroups >= table->decode.large_min_workgroups && table->decode.large_min_workgroups > 0)
      EXPECT_EQ(launch, DecodeLaunch::huge) << "case meant to cover the huge-batch launch";
  }
  DeviceProblem d;
  ASSERT_EQ(upload(p, d), "");
  const std::size_t ws_bytes = rt.decode_workspace_bytes(p.total_q, s.H, s.KVH, s.D, s.topk);
  DeviceBuffer ws;
  ASSERT_EQ(ws.allocate(ws_bytes), "");
  ASSERT_EQ(ws.fill(0xFF), "");  // stale partials/LSEs are NaN: every chunk must write its share
  DecodeArgs a = decode_args(s, p, device_pointers(d));
  a.workspace = ws.get();
  a.workspace_bytes = ws_bytes;
  const CallStatus st = rt.sparse_attn_decode(a, nullptr);
  ASSERT_TRUE(st.ok) << st.stage << ": " << st.message;
  ASSERT_EQ(gputest::synchronize(), "");
  std::vector<std::uint16_t> out(p.out_elems);
  ASSERT_EQ(d.out.download(out.data()), "");
  const ref::Result r = check_against_reference(s, p, true, out, seed);
  // Padded request rows (seq_len 0): exactly zero (covered by the empty-row check; asserted here by name).
  for (std::int64_t req = 0; req < p.batch; ++req)
    if (p.seq_lens[req] == 0)
      for (std::int64_t t = p.qsl[req]; t < p.qsl[req + 1]; ++t)
        for (std::int64_t h = 0; h < s.H; ++h) ASSERT_EQ(r.visible(t, h), 0);
}

TEST_P(GpuDecode, MatchesReference) { run_decode_case(*rt_, GetParam(), seed_); }

// The sm_90 prefill and decode under launch variants of their arch table (the ones docs/PERF.md
// times): each must match the reference as the shipped table does. A Runtime of its own reads the variant
// table (SPARSEJIT_CONFIG_DIR); on other devices the variant changes nothing and the check still holds.
struct TableVariant {
  std::string name;
  nlohmann::json prefill, decode;  // merged into ops.prefill / ops.decode of sm_90.json (null: unchanged; a key set to null: removed)
};

class GpuTableVariant : public ::testing::TestWithParam<TableVariant> {};

TEST_P(GpuTableVariant, MatchesReference) {
  std::string reason;
  if (!gputest::gpu_available(&reason)) GTEST_SKIP() << "no GPU: " << reason;
  testing_util::ScratchDir t("table-variant");
  std::filesystem::copy(std::string(SPARSEJIT_SOURCE_DIR) + "/configs", t.path, std::filesystem::copy_options::recursive);
  const std::string path = t.sub("archs/sm_90.json");
  auto table = nlohmann::json::parse(testing_util::read_text(path));
  for (const char* op : {"prefill", "decode"}) {
    const nlohmann::json& v = std::string(op) == "prefill" ? GetParam().prefill : GetParam().decode;
    if (!v.is_object()) continue;
    table["ops"][op].update(v);
    for (auto it = v.begin(); it != v.end(); ++it)
      if (it.value().is_null()) table["ops"][op].erase(it.key());  // null: the variant has no such key
  }
  testing_util::write_text(path, table.dump(1));
  ScopedKnob dir("SPARSEJIT_CONFIG_DIR", t.path);
  RuntimeOptions opt;
  opt.device = 0;
  auto rt = Runtime::create(opt);
  ASSERT_NE(rt, nullptr);
  if (GetParam().prefill.is_object())
    for (const CaseSpec& s : prefill_cases()) {
      if (s.name.rfind("m3", 0) != 0) continue;  // the MiniMax-M3 shapes (G 16 and 8, bf16 and fp8)
      SCOPED_TRACE(s.name);
      run_prefill_case(*rt, s, fresh_seed());
      if (::testing::Test::HasFatalFailure()) return;
    }
  if (GetParam().decode.is_object())
    for (const CaseSpec& s : decode_cases()) {  // every decode case: chunk counts and the large-batch launch vary
      SCOPED_TRACE(s.name);
      run_decode_case(*rt, s, fresh_seed());
      if (::testing::Test::HasFatalFailure()) return;
    }
}

// decode.dependent_launch (sm_90): the decode kernel may be placed while the stream's previous
// kernel still runs. That kernel here lets its dependents start at once
// (griddepcontrol.launch_dependents), waits 2 ms and only then writes the top-k ids decode
// reads; until then they are all -1 (nothing selected). Decode must see the written ids: every
// global access in it comes after griddepcontrol.wait. The decode kernels are built and loaded
// by a first call before the timed pair: a first call compiles for far longer than the wait,
// and the race this test looks for could not happen.
constexpr char kDelayedCopyPtx[] = R"(.version 7.8
.target sm_90
.address_size 64
.visible .entry sj_test_delayed_copy(.param .u64 dst, .param .u64 src, .param .u32 n, .param .u64 delay_ns) {
  .reg .pred %p<3>;
  .reg .b32 %r<6>;
  .reg .b64 %rd<12>;
  griddepcontrol.launch_dependents;
  ld.param.u64 %rd1, [dst];
  ld.param.u64 %rd2, [src];
  ld.param.u32 %r1, [n];
  ld.param.u64 %rd3, [delay_ns];
  mov.u64 %rd4, %globaltimer;
  add.u64 %rd5, %rd4, %rd3;
WAIT:
  mov.u64 %rd6, %globaltimer;
  setp.lt.u64 %p1, %rd6, %rd5;
  @%p1 bra WAIT;
  mov.u32 %r2, %tid.x;
  mov.u32 %r3, %ntid.x;
LOOP:
  setp.ge.u32 %p2, %r2, %r1;
  @%p2 bra DONE;
  mul.wide.u32 %rd7, %r2, 4;
  add.u64 %rd8, %rd2, %rd7;
  add.u64 %rd9, %rd1, %rd7;
  ld.global.u32 %r4, [%rd8];
  st.global.u32 [%rd9], %r4;
  add.u32 %r2, %r2, %r3;
  bra LOOP;
DONE:
  ret;
}
)";

// A non-blocking stream of device 0's primary context (programmatic dependent launch does
// not overlap kernels on the legacy default stream), through the driver library itself.
class TestStream {
 public:
  TestStream() {
    sjbench::Cuda& cu = sjbench::cuda();
    static const bool loaded = cu.load();  // once per process; cu.error says what is missing
    if (!loaded || cu.cuDeviceGet(&dev_, 0) != 0) return;
    sjbench::CUcontext ctx = nullptr;
    if (cu.cuDevicePrimaryCtxRetain(&ctx, dev_) != 0) return;
    retained_ = true;
    if (cu.cuCtxSetCurrent(ctx) != 0 || cu.cuStreamCreate(&stream_, 1 /* CU_STREAM_NON_BLOCKING */) != 0) stream_ = nullptr;
  }
  ~TestStream() {
    sjbench::Cuda& cu = sjbench::cuda();
    if (stream_) cu.cuStreamDestroy(stream_);
    if (retained_) cu.cuDevicePrimaryCtxRelease(dev_);  // the runtime holds its own reference
  }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  void* get() const { return stream_; }
  bool synchronize() const { return sjbench::cuda().cuStreamSynchronize(stream_) == 0; }
  static const std::string& load_error() { return sjbench::cuda().error; }

 private:
  sjbench::CUstream stream_ = nullptr;
  sjbench::CUdevice dev_ = 0;
  bool retained_ = false;
};

TEST(GpuDependentLaunch, DecodeWaitsForThePreviousKernelsWrites) {
  std::string reason;
  if (!gputest::gpu_available(&reason)) GTEST_SKIP() << "no GPU: " << reason;
  const Driver& drv = cuda_driver();
  auto info = drv.device_info(0);
  ASSERT_TRUE(info.ok()) << info.error().describe();
  if (nvidia_sm(info->target) < 90) GTEST_SKIP() << info->target << ": programmatic dependent launch needs sm_90";
  auto module = drv.load(0, std::vector<std::uint8_t>(kDelayedCopyPtx, kDelayedCopyPtx + std::strlen(kDelayedCopyPtx)));
  ASSERT_TRUE(module.ok()) << module.error().describe();
  auto writer = (*module)->function("sj_test_delayed_copy");
  ASSERT_TRUE(writer.ok()) << writer.error().describe();
  Runtime& rt = *gputest::shared_runtime();
  TestStream stream;
  ASSERT_NE(stream.get(), nullptr) << "cuStreamCreate through libcuda.so.1: " << TestStream::load_error();
  int ran = 0;
  for (const CaseSpec& s : decode_cases()) {
    // The 4-warp launch with a merge kernel, and the tensor-copy launch.
    if (s.name != "m3tp1_G16_D128_k16_bf16_bf16_B_q1_16chunks" && s.name != "G4_D128_k16_bf16_bf16_B_q1_largebatch") continue;
    SCOPED_TRACE(s.name);
    ++ran;
    const std::uint64_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    Rng rng(seed);
    const Problem p = make_problem(s, true, rng);
    DeviceProblem d;
    ASSERT_EQ(upload(p, d), "");
    DeviceBuffer ids;  // the real ids, copied over d.topk by the writer
    ASSERT_EQ(gputest::upload_vector(ids, p.topk), "");
    ASSERT_EQ(d.topk.fill(0xFF), "");  // -1 everywhere until the writer runs
    const std::size_t ws_bytes = rt.decode_workspace_bytes(p.total_q, s.H, s.KVH, s.D, s.topk);
    DeviceBuffer ws;
    ASSERT_EQ(ws.allocate(ws_bytes), "");
    ASSERT_EQ(ws.fill(0xFF), "");
    ASSERT_EQ(gputest::synchronize(), "");
    DecodeArgs a = decode_args(s, p, device_pointers(d));
    a.workspace = ws.get();
    a.workspace_bytes = ws_bytes;
    const CallStatus warm = rt.sparse_attn_decode(a, stream.get());  // builds and loads the kernels
    ASSERT_TRUE(warm.ok) << warm.stage << ": " << warm.message;
    ASSERT_TRUE(stream.synchronize());
    ASSERT_EQ(d.out.fill(0xFF), "");  // NaN: the timed call must write every element
    ASSERT_EQ(gputest::synchronize(), "");
    void* dst = d.topk.get();
    void* src = ids.get();
    unsigned n = unsigned(p.topk.size());
    unsigned long long delay_ns = 2000000;
    void* args[] = {&dst, &src, &n, &delay_ns};
    ASSERT_TRUE((*writer)->launch(Dim3{1}, Dim3{256}, 0, stream.get(), args).ok());
    const CallStatus st = rt.sparse_attn_decode(a, stream.get());  // same stream, no sync in between
    ASSERT_TRUE(st.ok) << st.stage << ": " << st.message;
    ASSERT_TRUE(stream.synchronize());
    std::vector<std::uint16_t> out(p.out_elems);
    ASSERT_EQ(d.out.download(out.data()), "");
    check_against_reference(s, p, true, out, seed);
  }
  EXPECT_EQ(ran, 2) << "the two decode cases this test names are gone";
}

std::string case_name(const ::testing::TestParamInfo<CaseSpec>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Cases, GpuPrefill, ::testing::ValuesIn(prefill_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Cases, GpuDecode, ::testing::ValuesIn(decode_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Cases, GpuTableVariant,
                         ::testing::Values(TableVariant{"wgmma_k32_2stages", {{"sub_k", 32}, {"stages", 2}}, nullptr},
                                           TableVariant{"wgmma_k128_2blocks", {{"sub_k", 128}, {"min_blocks", 2}}, nullptr},
                                           TableVariant{"mma_sync", {{"wgmma", false}}, nullptr},
                                           // decode before tensor copies: cp.async at every batch, 2 stages, large launch from 400
                                           // workgroups, no small-batch launch, plain launches (no programmatic dependent launch)
                                           TableVariant{"decode_cp_async",
                                                        nullptr,
                                                        {{"target_grid", 256},
                                                         {"stages", 2},
                                                         {"small_batch", nullptr},
                                                         {"dependent_launch", false},
                                                         {"large_batch", {{"min_workgroups", 400}, {"threads", 256}, {"sub_k", 128}, {"stages", 2}}}}},
                                           // decode: up to 4 workgroups per kv head, each with a quarter (half...) of its query heads
                                           TableVariant{"decode_kv_head_split", nullptr, {{"kv_head_split", 4}}},
                                           // decode: tensor copies at every batch (64-key sub-tiles, 3 stages; 128 keys, 1 stage when large)
                                           TableVariant{"decode_tma_everywhere",
                                                        nullptr,
                                                        {{"threads", 160},
                                                         {"tma", true},
                                                         {"stages", 3},
                                                         {"large_batch",
                                                          {{"min_workgroups", 128}, {"threads", 288}, {"tma", true}, {"sub_k", 128}, {"stages", 1}}}}}),
                         [](const ::testing::TestParamInfo<TableVariant>& info) { return info.param.name; });

}  // namespace
}  // namespace sparsejit
