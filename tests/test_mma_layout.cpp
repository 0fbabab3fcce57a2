// Host proof of the matrix-instruction lane layouts in templates/mma_layout.h.
//
// Each instruction has a software model written from its vendor documentation,
// in the opposite direction to mma_layout.h (matrix element -> lane, register,
// as AMD's Matrix Instruction Calculator --get-register and the PTX fragment
// tables read), so a slip in either is caught. A test distributes random A and B
// into per-lane fragments through mma_layout.h (as the kernel does), runs the
// model (the wave/warp-wide instruction), gathers D through mma_layout.h and
// compares with a plain matrix product. Values are small integers, so every
// summation order is exact. The H100 GPU tests confirm the NVIDIA map on hardware.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <utility>
#include <vector>

#define SPARSEJIT_MMA_LAYOUT_HOST
#include "mma_layout.h"

namespace {

using Matrix = std::vector<std::vector<double>>;  // [row][col]
Matrix zeros(int r, int c) { return Matrix(r, std::vector<double>(c, 0.0)); }

Matrix random_matrix(std::mt19937& rng, int r, int c) {
  std::uniform_int_distribution<int> v(-8, 8);
  Matrix m = zeros(r, c);
  for (auto& row : m)
    for (auto& x : row) x = v(rng);
  return m;
}

Matrix product(const Matrix& a, const Matrix& b, const Matrix& c) {
  Matrix d = c;
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < b[0].size(); ++j)
      for (size_t k = 0; k < b.size(); ++k) d[i][j] += a[i][k] * b[k][j];
  return d;
}

// Per-lane fragments: regs[lane][element].
using Fragments = std::vector<std::vector<double>>;

// ---- instruction models, from the vendor documents (element -> lane, element index) ----

struct Slot {
  int lane, elem;
};

// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type" (.bf16/.f16 A and B,
// .f32 C/D). A: a0..a7 over 4 .b32 registers; row groupID (+8 for a2,a3,a6,a7), column
// 2*threadID_in_group + (i & 1) (+8 for a4..a7). B: b0..b3; row (k) 2*threadID_in_group +
// (i & 1) (+8 for b2,b3), column groupID. C/D: c0..c3; row groupID (+8 for c2,c3), column
// 2*threadID_in_group + (i & 1). groupID = lane >> 2, threadID_in_group = lane % 4.
struct NvModel {
  static constexpr int M = 16, N = 8, K = 16, lanes = 32, na = 8, nb = 4, nc = 4;
  static Slot a_slot(int row, int col) { return {(row % 8) * 4 + (col % 8) / 2, (col % 2) + 2 * (row / 8) + 4 * (col / 8)}; }
  static Slot b_slot(int k, int n) { return {n * 4 + (k % 8) / 2, (k % 2) + 2 * (k / 8)}; }
  static Slot c_slot(int row, int col) { return {(row % 8) * 4 + col / 2, (col % 2) + 2 * (row / 8)}; }
};

// AMD v_mfma_f32_16x16x16_f16 / v_mfma_f32_16x16x16_bf16 (bf16_1k on gfx90a) on wave64: CDNA3
// ISA guide, section "Dependency and layout of MFMA operands", AMD Matrix Instruction
// Calculator (--get-register), AMD lab notes matrix-cores/src/mfma_fp32_16x16x16fp16.cpp.
// A[i][k]: lane i + 16 * (k / 4), item k % 4. B[k][j]: lane j + 16 * (k / 4), item k % 4.
// D[i][j]: lane j + 16 * (i / 4), register i % 4.
struct AmdModel {
  static constexpr int M = 16, N = 16, K = 16, lanes = 64, na = 4, nb = 4, nc = 4;
  static Slot a_slot(int i, int k) { return {i + 16 * (k / 4), k % 4}; }
  static Slot b_slot(int k, int j) { return {j + 16 * (k / 4), k % 4}; }
  static Slot c_slot(int i, int j) { return {j + 16 * (i / 4), i % 4}; }
};

// The whole warp/wave executing one instruction: d = a * b + c, read and written per lane.
template <class Model>
Fragments run_model(const Fragments& a, const Fragments& b, const Fragments& c) {
  Matrix A = zeros(Model::M, Model::K), B = zeros(Model::K, Model::N), C = zeros(Model::M, Model::N);
  for (int r = 0; r < Model::M; ++r)
    for (int k = 0; k < Model::K; ++k) A[r][k] = a[Model::a_slot(r, k).lane][Model::a_slot(r, k).elem];
  for (int k = 0; k < Model::K; ++k)
    for (int n = 0; n < Model::N; ++n) B[k][n] = b[Model::b_slot(k, n).lane][Model::b_slot(k, n).elem];
  for (int r = 0; r < Model::M; ++r)
    for (int n = 0; n < Model::N; ++n) C[r][n] = c[Model::c_slot(r, n).lane][Model::c_slot(r, n).elem];
  const Matrix D = product(A, B, C);
  Fragments d(Model::lanes, std::vector<double>(Model::nc));
  for (int r = 0; r < Model::M; ++r)
    for (int n = 0; n < Model::N; ++n) d[Model::c_slot(r, n).lane][Model::c_slot(r, n).elem] = D[r][n];
  return d;
}

// ---- the kernel's side: fragments built and read through mma_layout.h ----

template <class L>
Fragments distribute_a(const Matrix& m) {
  Fragments f(L::kLanes, std::vector<double>(L::kA));
  for (int l = 0; l < L::kLanes; ++l)
    for (int i = 0; i < L::kA; ++i) f[l][i] = m[L::a_row(l, i)][L::a_col(l, i)];
  return f;
}
template <class L>
Fragments distribute_b(const Matrix& m) {
  Fragments f(L::kLanes, std::vector<double>(L::kB));
  for (int l = 0; l < L::kLanes; ++l)
    for (int i = 0; i < L::kB; ++i) f[l][i] = m[L::b_row(l, i)][L::b_col(l, i)];
  return f;
}
template <class L>
Fragments distribute_c(const Matrix& m) {
  Fragments f(L::kLanes, std::vector<double>(L::kC));
  for (int l = 0; l < L::kLanes; ++l)
    for (int i = 0; i < L::kC; ++i) f[l][i] = m[L::c_row(l, i)][L::c_col(l, i)];
  return f;
}
template <class L>
Matrix gather_c(const Fragments& f) {
  Matrix m = zeros(L::kM, L::kN);
  for (int l = 0; l < L::kLanes; ++l)
    for (int i = 0; i < L::kC; ++i) m[L::c_row(l, i)][L::c_col(l, i)] = f[l][i];
  return m;
}

// Every (lane, element) of an operand names a distinct in-range matrix element: a bijection.
template <class Row, class Col>
void expect_bijection(const char* what, int lanes, int per_lane, int rows, int cols, Row row, Col col) {
  SCOPED_TRACE(what);
  ASSERT_EQ(lanes * per_lane, rows * cols);
  std::set<std::pair<int, int>> seen;
  for (int l = 0; l < lanes; ++l)
    for (int i = 0; i < per_lane; ++i) {
      const int r = row(l, i), c = col(l, i);
      ASSERT_TRUE(r >= 0 && r < rows && c >= 0 && c < cols) << "lane " << l << " element " << i << " -> (" << r << ", " << c << ")";
      EXPECT_TRUE(seen.insert({r, c}).second) << "lane " << l << " element " << i << " duplicates (" << r << ", " << c << ")";
    }
}

template <class L>
void check_bijections() {
  expect_bijection("A", L::kLanes, L::kA, L::kM, L::kK, L::a_row, L::a_col);
  expect_bijection("B", L::kLanes, L::kB, L::kK, L::kN, L::b_row, L::b_col);
  expect_bijection("C", L::kLanes, L::kC, L::kM, L::kN, L::c_row, L::c_col);
}

// One instruction on random data through the layouts equals the plain product.
template <class L, class Model>
bool one_tile_matches(std::mt19937& rng) {
  static_assert(L::kM == Model::M && L::kN == Model::N && L::kK == Model::K && L::kLanes == Model::lanes, "shapes");
  const Matrix a = random_matrix(rng, L::kM, L::kK), b = random_matrix(rng, L::kK, L::kN), c = random_matrix(rng, L::kM, L::kN);
  const Fragments d = run_model<Model>(distribute_a<L>(a), distribute_b<L>(b), distribute_c<L>(c));
  return gather_c<L>(d) == product(a, b, c);
}

// The kernel's two products as attention.cu walks them: S = Q K^T over N tiles of
// SUB_K keys and K steps of head_dim, and O += P V over N tiles of head_dim and K
// steps of SUB_K, with the G heads padded to the 16 M rows (rows >= G read as zero,
// never stored), fragments read from the shared-memory layouts q[g][d], kv[n][d], p[g][n].
template <class L, class Model>
void kernel_products_match(int G, int D, int SUB_K, std::mt19937& rng) {
  SCOPED_TRACE("G " + std::to_string(G) + " D " + std::to_string(D) + " SUB_K " + std::to_string(SUB_K));
  const Matrix q = random_matrix(rng, G, D), kv = random_matrix(rng, SUB_K, D), p = random_matrix(rng, G, SUB_K);
  Matrix kt = zeros(D, SUB_K);
  for (int n = 0; n < SUB_K; ++n)
    for (int d = 0; d < D; ++d) kt[d][n] = kv[n][d];
  const Matrix s_want = product(q, kt, zeros(G, SUB_K)), o_want = product(p, kv, zeros(G, D));
  Matrix s = zeros(G, SUB_K), o = zeros(G, D);
  for (int nt = 0; nt < SUB_K / L::kN; ++nt) {  // sj_scores
    Fragments c(L::kLanes, std::vector<double>(L::kC, 0.0));
    for (int k0 = 0; k0 < D; k0 += L::kK) {
      Fragments a(L::kLanes, std::vector<double>(L::kA)), b(L::kLanes, std::vector<double>(L::kB));
      for (int l = 0; l < L::kLanes; ++l) {
        for (int i = 0; i < L::kA; ++i) {
          const int g = L::a_row(l, i);
          a[l][i] = g < G ? q[g][k0 + L::a_col(l, i)] : 0.0;
        }
        for (int i = 0; i < L::kB; ++i) b[l][i] = kv[nt * L::kN + L::b_col(l, i)][k0 + L::b_row(l, i)];
      }
      c = run_model<Model>(a, b, c);
    }
    for (int l = 0; l < L::kLanes; ++l)
      for (int i = 0; i < L::kC; ++i)
        if (L::c_row(l, i) < G) s[L::c_row(l, i)][nt * L::kN + L::c_col(l, i)] = c[l][i];
  }
  for (int tile = 0; tile < D / L::kN; ++tile) {  // sj_accumulate_pv
    Fragments c(L::kLanes, std::vector<double>(L::kC, 0.0));
    for (int k0 = 0; k0 < SUB_K; k0 += L::kK) {
      Fragments a(L::kLanes, std::vector<double>(L::kA)), b(L::kLanes, std::vector<double>(L::kB));
      for (int l = 0; l < L::kLanes; ++l) {
        for (int i = 0; i < L::kA; ++i) {
          const int g = L::a_row(l, i);
          a[l][i] = g < G ? p[g][k0 + L::a_col(l, i)] : 0.0;
        }
        for (int i = 0; i < L::kB; ++i) b[l][i] = kv[k0 + L::b_row(l, i)][tile * L::kN + L::b_col(l, i)];
      }
      c = run_model<Model>(a, b, c);
    }
    for (int l = 0; l < L::kLanes; ++l)
      for (int i = 0; i < L::kC; ++i) {
        const int g = L::c_row(l, i), d = tile * L::kN + L::c_col(l, i);
        if (g < G) o[g][d] = c[l][i];
        else EXPECT_EQ(c[l][i], 0.0) << "a padded row accumulated something";
      }
  }
  EXPECT_EQ(s, s_want);
  EXPECT_EQ(o, o_want);
}

// A layout with A's row and column swapped: the models must reject it.
struct SwappedAmd : SjMmaAmd16x16x16 {
  static constexpr int a_row(int lane, int i) { return SjMmaAmd16x16x16::a_col(lane, i); }
  static constexpr int a_col(int lane, int i) { return SjMmaAmd16x16x16::a_row(lane, i); }
};
// The NVIDIA C map with its row halves exchanged (c0,c1 <-> c2,c3).
struct SwappedNvC : SjMmaNvM16N8K16 {
  static constexpr int c_row(int lane, int i) { return SjMmaNvM16N8K16::c_row(lane, i ^ 2); }
};

}  // namespace

TEST(MmaLayout, NvidiaM16N8K16OperandsAreBijections) { check_bijections<SjMmaNvM16N8K16>(); }
TEST(MmaLayout, AmdMfma16x16x16OperandsAreBijections) { check_bijections<SjMmaAmd16x16x16>(); }

TEST(MmaLayout, NvidiaM16N8K16ModelComputesTheProduct) {
  std::mt19937 rng(1);
  for (int t = 0; t < 200; ++t) ASSERT_TRUE((one_tile_matches<SjMmaNvM16N8K16, NvModel>(rng))) << sj_mma_layout_name((SjMmaNvM16N8K16*)nullptr);
}

TEST(MmaLayout, AmdMfma16x16x16ModelComputesTheProduct) {
  std::mt19937 rng(2);
  for (int t = 0; t < 200; ++t) ASSERT_TRUE((one_tile_matches<SjMmaAmd16x16x16, AmdModel>(rng))) << sj_mma_layout_name((SjMmaAmd16x16x16*)nullptr);
}

TEST(MmaLayout, ModelsRejectWrongLayouts) {
  // The check has teeth: a transposed A or exchanged C rows give wrong products.
  std::mt19937 rng(3);
  EXPECT_FALSE((one_tile_matches<SwappedAmd, AmdModel>(rng)));
  EXPECT_FALSE((one_tile_matches<SwappedNvC, NvModel>(rng)));
}

TEST(MmaLayout, KernelTileLoopsComputeScoresAndOutput) {
  std::mt19937 rng(4);
  for (int G : {1, 4, 8, 16})
    for (int D : {64, 128})
      for (int SUB_K : {16, 32, 64}) {
        kernel_products_match<SjMmaNvM16N8K16, NvModel>(G, D, SUB_K, rng);
        kernel_products_match<SjMmaAmd16x16x16, AmdModel>(G, D, SUB_K, rng);
      }
}

// wgmma's 128-byte swizzled operands: the offsets attention_nv.cu stores at are a
// bijection, and they are where the hardware reads each element through the
// kernel's descriptors (start address, LBO, SBO) under the PTX ISA's canonical
// layouts and Swizzle<3,4,3> on the byte address (XOR bits 4-6 with bits 7-9).
TEST(MmaLayout, WgmmaSwizzle128MatchesTheDescriptorsTheKernelUses) {
  auto swizzle = [](int byte) { return byte ^ (((byte >> 7) & 7) << 4); };
  for (int rows : {32, 64, 128}) {
    for (int dims : {64, 128}) {
      std::set<int> seen;
      for (int r = 0; r < rows; ++r)
        for (int e = 0; e < dims; ++e) {
          const int o = SjWgmmaSw128::off(rows, r, e);
          ASSERT_GE(o, 0);
          ASSERT_LT(o, rows * dims);
          seen.insert(o);
        }
      EXPECT_EQ(static_cast<int>(seen.size()), rows * dims) << rows << "x" << dims;
      // The copy loop advances whole atoms: k rows further (k a multiple of 8) is k x 128 bytes
      // further for every element, whatever its chunk (attention_nv.cu's kDstStep).
      for (int k = 8; k < rows; k += 8)
        for (int r = 0; r + k < rows; ++r)
          for (int e = 0; e < dims; e += 8)
            ASSERT_EQ(SjWgmmaSw128::off(rows, r + k, e) - SjWgmmaSw128::off(rows, r, e), k * 64) << rows << " " << r << " " << k << " " << e;
      // K-major (Q and K, S = Q K^T): k-step kk reads dims 16kk .. 16kk + 15 of every row from
      // start = (kk / 4) x rows x 128 + (kk % 4) x 32, SBO 1024: ((8,m),(T,2k)):((8T,SBO),(1,T)).
      for (int kk = 0; kk < dims / 16; ++kk)
        for (int r = 0; r < rows; ++r)
          for (int k = 0; k < 16; ++k) {
            const int start = (kk / 4) * rows * 128 + (kk % 4) * 32;
            const int hw = swizzle(start + (r / 8) * 1024 + (r % 8) * 128 + k * 2);
            ASSERT_EQ(hw, SjWgmmaSw128::off(rows, r, kk * 16 + k) * 2) << "K-major rows " << rows << " kk " << kk << " r " << r << " k " << k;
          }
      // MN-major (V, O += P V): k-step j reads keys 16j .. 16j + 15 (K) x every dim (N) from
      // start = 2048 j, LBO = rows x 128 (next 64 dims), SBO 1024 (next 8 keys): ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)).
      for (int j = 0; j < rows / 16; ++j)
        for (int k = 0; k < 16; ++k)
          for (int n = 0; n < dims; ++n) {
            const int hw = swizzle(2048 * j + (n / 64) * rows * 128 + (n % 64) * 2 + (k / 8) * 1024 + (k % 8) * 128);
            ASSERT_EQ(hw, SjWgmmaSw128::off(rows, 16 * j + k, n) * 2) << "MN-major rows " << rows << " j " << j << " k " << k << " n " << n;
          }
    }
  }
}
