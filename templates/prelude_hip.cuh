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
