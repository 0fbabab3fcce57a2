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
