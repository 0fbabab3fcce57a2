// sparsejit generated kernel: sparsejit_merge for sm_90 (do not edit; `sparsejit emit` reproduces it)
// config: {"arch":"sm_90","gqa_group":0,"head_dim":128,"kv_dtype":"bf16","launch":{"cluster":1,"min_blocks":1,"stages":1,"threads":128,"waves_per_eu":1},"num_topk_chunks":4,"op":"merge","q_dtype":"bf16","q_tile":1,"scale_mode":"none","sub_k":0,"template":"merge.cu","topk":0}
// config-key: cc8105977c0f11e9
// template: merge.cu + prelude_cuda.cuh (configs/archs/sm_90.json)
// ---- vendor primitives: NVIDIA (NVRTC) ----
#define SJ_GLOBAL extern "C" __global__
#define SJ_DEVICE static __device__ __forceinline__
#define SJ_SHARED __shared__
// Global loads a thread batches in registers when staging a K/V tile (latency hiding).
#define SJ_STAGE_BATCH 16
#define SJ_KERNEL_ATTRS(threads, waves_per_eu) __launch_bounds__(threads)
typedef unsigned short sj_u16;
typedef unsigned char sj_u8;

SJ_DEVICE int sj_tid() { return (int)threadIdx.x; }
SJ_DEVICE long long sj_bid_x() { return (long long)blockIdx.x; }
SJ_DEVICE long long sj_bid_y() { return (long long)blockIdx.y; }
SJ_DEVICE long long sj_bid_z() { return (long long)blockIdx.z; }
SJ_DEVICE void sj_sync() { __syncthreads(); }
// One MUFU.EX2: exp2f adds a range fix-up for subnormal results (a compare, a
// select and two multiplies), and softmax weights below 2^-126 are zeros anyway.
SJ_DEVICE float sj_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// Programmatic dependent launch (sm_90+; no-ops below, and when the launch did not ask for it):
// the dependent kernel waits for the previous grid's results; the previous grid lets it start early.
SJ_DEVICE void sj_grid_dependency_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
SJ_DEVICE void sj_grid_launch_dependents() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
SJ_DEVICE float sj_log2(float x) { return log2f(x); }
SJ_DEVICE float sj_neg_inf() { return __int_as_float(0xff800000); }
SJ_DEVICE float sj_bits_to_float(unsigned u) { return __uint_as_float(u); }
SJ_DEVICE unsigned sj_float_to_bits(float f) { return __float_as_uint(f); }
SJ_DEVICE float sj_f16_to_f32(sj_u16 h) {
  float f;
  asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
  return f;
}
SJ_DEVICE sj_u16 sj_f32_to_f16(float f) {
  sj_u16 h;
  asm("{ .reg .f16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f));
  return h;
}

// m16n8k16 on packed registers (a: 4, b: 2), c += a * b.
template <bool kBf16>
SJ_DEVICE void sj_mma_u32(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  if constexpr (kBf16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Tensor-core tile product: one warp computes c += a * b for an m16n8k16 tile.
// Fragments are per-lane element arrays in the order of SjMmaNvM16N8K16
// (mma_layout.h); pairs pack low half first, as the PTX fragments specify.
#define SJ_WARP 32
#define SJ_MMA SjMmaNvM16N8K16
template <bool kBf16>
SJ_DEVICE void sj_mma(float (&c)[4], const sj_u16 (&a)[8], const sj_u16 (&b)[4]) {
  unsigned ra[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) ra[i] = (unsigned)a[2 * i] | ((unsigned)a[2 * i + 1] << 16);
  sj_mma_u32<kBf16>(c, ra, (unsigned)b[0] | ((unsigned)b[1] << 16), (unsigned)b[2] | ((unsigned)b[3] << 16));
}

// ---- sm_80+ data movement for the pipelined kernel (attention_nv.cu) ----
SJ_DEVICE unsigned sj_smem_addr(const void* p) {
  unsigned a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
SJ_DEVICE unsigned sj_dynamic_smem_bytes() {
  unsigned r;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
  return r;
}
// 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros and reads nothing.
SJ_DEVICE void sj_cp_async16(unsigned dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
// sj_cp_async16 with an L2 cache policy (createpolicy) for the copied line.
SJ_DEVICE void sj_cp_async16_hint(unsigned dst, const void* src, int src_bytes, unsigned long long policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;" ::"r"(dst), "l"(src), "r"(src_bytes), "l"(policy) : "memory");
}
// 4 bytes (an fp8 sub-tile's per-token scale), src_bytes 0 or 4 (0: zeros).
SJ_DEVICE void sj_cp_async4(unsigned dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
SJ_DEVICE void sj_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int kPending>
SJ_DEVICE void sj_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}
// Four 8x8 16-bit matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8.
SJ_DEVICE void sj_ldsm_x4(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
SJ_DEVICE void sj_ldsm_x4_trans(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// Two floats -> packed bf16/fp16 (round to nearest even), lo in the low half.
template <bool kBf16>
SJ_DEVICE unsigned sj_pack_half2(float lo, float hi) {
  unsigned r;
  if constexpr (kBf16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// ---- sm_90a warpgroup MMA (attention_nv.cu with launch.wgmma; compiled for sm_90a) ----
// D[64 x N] (+)= A[64 x 16] x B[16 x N]: the 4 warps of a warpgroup each hold 16 rows
// of A in registers (the m16n8k16 A fragment) and of D (N/8 C fragments); B is read
// from shared memory through a descriptor. Asynchronous: wgmma_fence before the
// first of a batch, commit, then wait before D is read.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SJ_HAS_WGMMA 1
#else
#define SJ_HAS_WGMMA 0
#endif
// Descriptor of a no-swizzle operand: 8x16-byte core matrices, `lbo` bytes apart
// along K and `sbo` bytes apart along M/N (PTX ISA, "Matrix Descriptor Format").
SJ_DEVICE unsigned long long sj_wgmma_desc(unsigned addr, unsigned lbo, unsigned sbo) {
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)(lbo >> 4) << 16) | ((unsigned long long)(sbo >> 4) << 32);
}
// The same for a 128-byte swizzled operand (1024-byte atoms of 8 rows; `sbo`: atom to atom).
SJ_DEVICE unsigned long long sj_wgmma_desc_sw128(unsigned addr, unsigned lbo, unsigned sbo) {
  return sj_wgmma_desc(addr, lbo, sbo) | (1ull << 62);
}
#if SJ_HAS_WGMMA
SJ_DEVICE void sj_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
SJ_DEVICE void sj_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
SJ_DEVICE void sj_wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
#else
SJ_DEVICE void sj_wgmma_fence() { __trap(); }
SJ_DEVICE void sj_wgmma_commit() { __trap(); }
SJ_DEVICE void sj_wgmma_wait() { __trap(); }
#endif
// Pins accumulators after a wait: the compiler may not move them across it.
template <int N>
SJ_DEVICE void sj_wgmma_pin(float (&d)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j) asm volatile("" : "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])::"memory");
}
#define SJ_WG_D4(d, j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define SJ_WGMMA_N32(ty)                                                                        \
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %21, 0;\n\t"                                  \
               "wgmma.mma_async.sync.aligned.m64n32k16.f32." ty "." ty " "                        \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "  \
               "{%16, %17, %18, %19}, %20, p, 1, 1, %22; }"                     \
               : SJ_WG_D4(d, 0), SJ_WG_D4(d, 1), SJ_WG_D4(d, 2), SJ_WG_D4(d, 3) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))
#define SJ_WGMMA_N64(ty)                                                                        \
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %37, 0;\n\t"                                  \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." ty "." ty " "                        \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "  \
               "{%32, %33, %34, %35}, %36, p, 1, 1, %38; }"                     \
               : SJ_WG_D4(d, 0), SJ_WG_D4(d, 1), SJ_WG_D4(d, 2), SJ_WG_D4(d, 3), SJ_WG_D4(d, 4), SJ_WG_D4(d, 5), SJ_WG_D4(d, 6), SJ_WG_D4(d, 7) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))
#define SJ_WGMMA_N128(ty)                                                                        \
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %69, 0;\n\t"                                  \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." ty "." ty " "                        \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "  \
               "{%64, %65, %66, %67}, %68, p, 1, 1, %70; }"                     \
               : SJ_WG_D4(d, 0), SJ_WG_D4(d, 1), SJ_WG_D4(d, 2), SJ_WG_D4(d, 3), SJ_WG_D4(d, 4), SJ_WG_D4(d, 5), SJ_WG_D4(d, 6), SJ_WG_D4(d, 7), SJ_WG_D4(d, 8), SJ_WG_D4(d, 9), SJ_WG_D4(d, 10), SJ_WG_D4(d, 11), SJ_WG_D4(d, 12), SJ_WG_D4(d, 13), SJ_WG_D4(d, 14), SJ_WG_D4(d, 15) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))
// d (+)= a x B; accumulate = 0 overwrites d. kTransB: B is N-major (its N elements contiguous).
template <int N, bool kBf16, int kTransB>
SJ_DEVICE void sj_wgmma(float (&d)[N / 8][4], const unsigned (&a)[4], unsigned long long desc_b, int accumulate) {
#if SJ_HAS_WGMMA
  static_assert(N == 32 || N == 64 || N == 128, "wgmma N");
  if constexpr (N == 32) {
    if constexpr (kBf16) SJ_WGMMA_N32("bf16"); else SJ_WGMMA_N32("f16");
  } else if constexpr (N == 64) {
    if constexpr (kBf16) SJ_WGMMA_N64("bf16"); else SJ_WGMMA_N64("f16");
  } else {
    if constexpr (kBf16) SJ_WGMMA_N128("bf16"); else SJ_WGMMA_N128("f16");
  }
#else
  __trap();
#endif
}
#define SJ_WGMMA_SS_N32(ty)                                                                     \
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %18, 0;\n\t"                                  \
               "wgmma.mma_async.sync.aligned.m64n32k16.f32." ty "." ty " "                        \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "  \
               "%16, %17, p, 1, 1, 0, 0; }"                                                  \
               : SJ_WG_D4(d, 0), SJ_WG_D4(d, 1), SJ_WG_D4(d, 2), SJ_WG_D4(d, 3) \
               : "l"(desc_a), "l"(desc_b), "r"(accumulate))
#define SJ_WGMMA_SS_N64(ty)                                                                     \
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %34, 0;\n\t"                                  \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." ty "." ty " "                        \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "  \
               "%32, %33, p, 1, 1, 0, 0; }"                                                  \
               : SJ_WG_D4(d, 0), SJ_WG_D4(d, 1), SJ_WG_D4(d, 2), SJ_WG_D4(d, 3), SJ_WG_D4(d, 4), SJ_WG_D4(d, 5), SJ_WG_D4(d, 6), SJ_WG_D4(d, 7) \
               : "l"(desc_a), "l"(desc_b), "r"(accumulate))
#define SJ_WGMMA_SS_N128(ty)                                                                     \
  asm volatile("{ .reg .pred p; setp.ne.b32 p, %66, 0;\n\t"                                  \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." ty "." ty " "                        \
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "  \
               "%64, %65, p, 1, 1, 0, 0; }"                                                  \
               : SJ_WG_D4(d, 0), SJ_WG_D4(d, 1), SJ_WG_D4(d, 2), SJ_WG_D4(d, 3), SJ_WG_D4(d, 4), SJ_WG_D4(d, 5), SJ_WG_D4(d, 6), SJ_WG_D4(d, 7), SJ_WG_D4(d, 8), SJ_WG_D4(d, 9), SJ_WG_D4(d, 10), SJ_WG_D4(d, 11), SJ_WG_D4(d, 12), SJ_WG_D4(d, 13), SJ_WG_D4(d, 14), SJ_WG_D4(d, 15) \
               : "l"(desc_a), "l"(desc_b), "r"(accumulate))
// d (+)= A x B with A (K-major, 64 x 16) in shared memory too.
template <int N, bool kBf16>
SJ_DEVICE void sj_wgmma_ss(float (&d)[N / 8][4], unsigned long long desc_a, unsigned long long desc_b, int accumulate) {
#if SJ_HAS_WGMMA
  static_assert(N == 32 || N == 64 || N == 128, "wgmma N");
  if constexpr (N == 32) {
    if constexpr (kBf16) SJ_WGMMA_SS_N32("bf16"); else SJ_WGMMA_SS_N32("f16");
  } else if constexpr (N == 64) {
    if constexpr (kBf16) SJ_WGMMA_SS_N64("bf16"); else SJ_WGMMA_SS_N64("f16");
  } else {
    if constexpr (kBf16) SJ_WGMMA_SS_N128("bf16"); else SJ_WGMMA_SS_N128("f16");
  }
#else
  __trap();
#endif
}
#undef SJ_WGMMA_SS_N32
#undef SJ_WGMMA_SS_N64
#undef SJ_WGMMA_SS_N128
#undef SJ_WGMMA_N32
#undef SJ_WGMMA_N64
#undef SJ_WGMMA_N128
#undef SJ_WG_D4

// Shared memory written by this thread (st.shared, cp.async) is ordered before the async
// proxy's accesses to it (wgmma's reads, later tensor copies); sm_90.
SJ_DEVICE void sj_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// ---- sm_90 tensor copies (TMA) completing on mbarriers (decode with launch.tma) ----
// A producer warp has the copy engine move whole K/V sub-tiles (no registers, no
// per-thread requests); a stage is full when its barrier's arrival and its expected
// bytes are both in, and empty when every math warp has arrived.
SJ_DEVICE void sj_mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// The initialized barriers are visible to the copy engine and to the other threads (after a barrier).
SJ_DEVICE void sj_mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
SJ_DEVICE void sj_mbar_arrive(unsigned bar) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory"); }
// Arrives and adds `bytes` to the transfer count the phase waits for.
SJ_DEVICE void sj_mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
// Waits until the phase of parity `parity` has completed.
SJ_DEVICE void sj_mbar_wait(unsigned bar, unsigned parity) {
  unsigned done = 0;
  do {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
  } while (!done);
}
// The box of tensor map `map` (a CUtensorMap in parameter space) at coordinates c
// (elements, innermost first) to this workgroup's shared memory at dst; completes its
// bytes on `bar`'s transfer count.
SJ_DEVICE void sj_tma_load_5d(unsigned dst, const void* map, const int (&c)[5], unsigned bar) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, %6}], [%7];" ::"r"(dst),
      "l"(map), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4]), "r"(bar)
      : "memory");
}
// sj_tma_load_5d with an L2 cache policy (createpolicy) for the copied lines.
SJ_DEVICE void sj_tma_load_5d_hint(unsigned dst, const void* map, const int (&c)[5], unsigned bar, unsigned long long policy) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%2, %3, %4, %5, %6}], [%7], %8;" ::"r"(dst),
      "l"(map), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4]), "r"(bar), "l"(policy)
      : "memory");
}
// Brings a tensor map (kernel parameter space) into the descriptor cache ahead of its first copy.
SJ_DEVICE void sj_prefetch_tensormap(const void* map) { asm volatile("prefetch.tensormap [%0];" ::"l"(map) : "memory"); }
// A barrier of the first `threads` threads of the workgroup (id 1: __syncthreads is 0).
SJ_DEVICE void sj_named_sync(unsigned threads) { asm volatile("bar.sync 1, %0;" ::"r"(threads) : "memory"); }
// The same barrier, returning whether any of those threads passed `pred`.
SJ_DEVICE bool sj_named_sync_or(unsigned threads, bool pred) {
  unsigned any;
  asm volatile("{ .reg .pred p, q; setp.ne.u32 p, %1, 0; bar.red.or.pred q, 1, %2, p; selp.u32 %0, 1, 0, q; }"
               : "=r"(any)
               : "r"((unsigned)pred), "r"(threads)
               : "memory");
  return any != 0;
}
// Barrier 2 as a one-way hand-off: the producer arrives (its shared-memory writes are then
// visible to the waiters) and goes on; the waiters sync. `threads` counts both sides.
SJ_DEVICE void sj_handoff_arrive(unsigned threads) { asm volatile("bar.arrive 2, %0;" ::"r"(threads) : "memory"); }
SJ_DEVICE void sj_handoff_wait(unsigned threads) { asm volatile("bar.sync 2, %0;" ::"r"(threads) : "memory"); }

// ---- sm_90 thread-block clusters (decode's one-launch merge) ----
SJ_DEVICE void sj_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
SJ_DEVICE unsigned sj_cluster_rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
// A float at the same shared-memory offset as `local`, in workgroup `rank` of this cluster.
SJ_DEVICE float sj_ld_cluster_f32(const float* local, unsigned rank) {
  unsigned remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(sj_smem_addr(local)), "r"(rank));
  float v;
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
  return v;
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

// ---- split-K merge: out = sum_c 2^(lse_c - M) o_c / sum_c 2^(lse_c - M) ----
// grid: (total_q, num_heads). Rows whose chunks are all empty (padded requests) get zeros, never NaN.
namespace {
constexpr int kHeadDim = 128;
constexpr int kChunks = 4;
constexpr int kThreads = 128;
constexpr int kQDtype = 0;
}  // namespace

SJ_GLOBAL void SJ_KERNEL_ATTRS(128, 1) sparsejit_merge(SjMergeParams p) {
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
