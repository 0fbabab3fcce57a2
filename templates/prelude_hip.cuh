// ---- vendor primitives: AMD (HIPRTC or Clang -nogpuinc; compiler builtins only) ----
#define SJ_GLOBAL extern "C" __attribute__((global)) __attribute__((visibility("default")))
#define SJ_DEVICE static __attribute__((device)) __attribute__((always_inline)) inline
#define SJ_SHARED __attribute__((shared))
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
SJ_DEVICE float sj_bits_to_float(unsigned u) { return __builtin_bit_cast(float, u); }
SJ_DEVICE unsigned sj_float_to_bits(float f) { return __builtin_bit_cast(unsigned, f); }
SJ_DEVICE float sj_neg_inf() { return sj_bits_to_float(0xff800000u); }
SJ_DEVICE float sj_f16_to_f32(sj_u16 h) { return (float)__builtin_bit_cast(_Float16, h); }
SJ_DEVICE sj_u16 sj_f32_to_f16(float f) { return __builtin_bit_cast(sj_u16, (_Float16)f); }
