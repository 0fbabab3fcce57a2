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
