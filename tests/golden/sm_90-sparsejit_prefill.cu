// sparsejit generated kernel: sparsejit_prefill for sm_90 (do not edit; `sparsejit emit` reproduces it)
// config: {"arch":"sm_90","gqa_group":16,"head_dim":128,"kv_dtype":"bf16","launch":{"cluster":1,"min_blocks":3,"stages":1,"threads":128,"waves_per_eu":1,"wgmma":true},"num_topk_chunks":1,"op":"prefill","q_dtype":"bf16","q_tile":4,"scale_mode":"none","sub_k":64,"template":"attention_nv.cu","topk":16}
// config-key: d4c7af1a9c6c5067
// template: attention_nv.cu + prelude_cuda.cuh (configs/archs/sm_90.json)
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

// ---- block-sparse GQA attention, NVIDIA tensor-core kernel (sm_80+) ----
// One workgroup = Q_TILE consecutive queries of one request (prefill) or one
// query (decode) x one kv head x one top-k chunk (decode with KV_HEAD_SPLIT > 1:
// x 1/KV_HEAD_SPLIT of the kv head's query heads; its other workgroups read the same blocks). It walks the UNION of the
// blocks its queries selected, each selected block once: K/V sub-tiles of SUB_K
// keys are streamed into shared memory with 16-byte cp.async copies STAGES deep
// (fp8: their raw bytes, dequantized in shared memory; fp8 decode on sm_89+ reads K's raw
// bytes directly, kRawK; kQRegs keeps Q's fragments in registers where it pays), and every warp reads them
// from there with ldmatrix for mma.sync, or (WGMMA, sm_90a prefill) each
// warpgroup's 64 rows multiply with wgmma from 128-byte swizzled tiles. Decode's
// tensor copies (kTmaSplitKV) and the fp8 large launch (kWarpPipe) wait for a
// stage's V apart from its K, so S = Q K^T runs while V is still coming.
//
// Warps: the rows of the tile are the G heads of each query, packed 16 to a row
// group (G = 8 packs two queries, G = 16 one); warp w owns row group
// w % ROW_GROUPS and the key slice w / ROW_GROUPS of every sub-tile (KEY_SPLIT
// slices). A warp keeps S, P and O in registers (the C fragments of S are the A
// fragments of P), runs the online softmax (base 2) per sub-tile, and skips a
// sub-tile none of its queries selected (under wgmma it adds P = 0 instead: the
// warpgroup multiplies together). Key slices are merged by LSE at the end.
// Decode with tensor copies (one query, DIM_SPLIT) instead shares each sub-tile's P:
// warp w computes S and P for key slice w and O for head-dim slice w, so nothing is
// left to merge.
//
// A query that selected a block k times weighs it k times (the reference walks
// the top-k list entry by entry); with Q_TILE = 1 duplicates stay separate entries.
namespace {
constexpr int kHeadDim = 128;
constexpr int kGroup = 16;
constexpr int kTopk = 16;
constexpr int kChunks = 1;
constexpr int kSubK = 64;
constexpr int kThreads = 128;
constexpr int kStages = 1;
constexpr int kQTile = 4;
constexpr int kQDtype = 0;
constexpr int kKvDtype = 0;
constexpr int kScaleMode = 0;
constexpr bool kDecode = 0;
constexpr int kCluster = 1;  // decode: the chunks of one (query, kv head) form a cluster and merge in it (sm_90)
constexpr int kKvHeadSplit = 1;  // decode: workgroups per kv head, each with kGroup of its query heads
constexpr bool kWgmma = true;      // prefill on sm_90a: each warpgroup's 64 rows multiply with wgmma
constexpr bool kTma = false;       // decode on sm_90: the last warp streams K/V with tensor copies on mbarriers
constexpr int kBlock = 128;
constexpr int kSubs = kBlock / kSubK;
constexpr int kChunkSize = (kTopk + kChunks - 1) / kChunks;
constexpr int kWarps = kThreads / 32;                      // every warp of the workgroup
constexpr int kMathWarps = kWarps - (kTma ? 1 : 0);       // the warps that multiply (kTma: all but the producer)
constexpr int kMathThreads = kMathWarps * 32;
constexpr int kQPerRG = 16 / kGroup;                       // queries per 16-row group
constexpr int kRowGroups = (kQTile + kQPerRG - 1) / kQPerRG;
constexpr int kKeySplit = kMathWarps / kRowGroups;
constexpr int kKeysPerWarp = kSubK / kKeySplit;
constexpr int kSNT = kKeysPerWarp / 8;                     // S n-tiles per warp and sub-tile
constexpr int kONT = kHeadDim / 8;                         // O n-tiles
constexpr int kLd = kHeadDim + 8;                          // padded row (halves): conflict-free ldmatrix
constexpr int kEntries = kQTile * kChunkSize;              // top-k entries the workgroup reads
constexpr int kListCap = kEntries < 256 ? kEntries : 256;  // entries per segment of the block list
constexpr bool kBf16 = kQDtype == SJ_BF16;
constexpr bool kRawCopy = kKvDtype == kQDtype;             // K/V bits go to shared memory unchanged
// fp8 K/V: each stage also holds the sub-tile's raw bytes (K rows, then V rows, head_dim
// bytes each), copied with 16-byte cp.async and dequantized in shared memory before use.
constexpr bool kFp8 = kKvDtype == SJ_FP8_E4M3FN || kKvDtype == SJ_FP8_E5M2 || kKvDtype == SJ_FP8_E4M3FNUZ || kKvDtype == SJ_FP8_E5M2FNUZ;
constexpr int kRawVecPerRow = kHeadDim / 16;
constexpr int kRawRowsPerPass = kThreads / kRawVecPerRow;
constexpr bool kFp8Staged = kFp8 && kThreads % kRawVecPerRow == 0 && kSubK % kRawRowsPerPass == 0;
// The decode form that reads K's and V's MMA fragments straight from fp8's staged raw bytes
// (kRawV below, on sm_89+ with e4m3fn or e5m2): cp.async stages that 16-byte copies tile, and
// head_dim a multiple of 128.
constexpr bool kRawShape = kDecode && !kTma && kFp8Staged && kHeadDim % 128 == 0;
// fp8 K/V in e4m3fn or e5m2 on sm_89+ with at most one scale per tensor, or with per-token
// scales where decode reads K and V from the raw bytes (kRawV, which folds them into S and P):
// the tiles hold the exact fp8 values in fp16 (one cvt per two values, nothing else), the MMAs
// run in fp16, the K scale multiplies the scores' scale and the V scale the output, unrounded
// (the contract rounds value x scale to q's dtype first: the results differ by at most that
// rounding of K and V). q becomes fp16 in shared memory, scaled by a power of two when it is
// large (sj_q_to_half): exact but below 2^-14, where fp16's subnormal steps (2^-24) round it.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
constexpr bool kFp8Half = (kKvDtype == SJ_FP8_E4M3FN || kKvDtype == SJ_FP8_E5M2) &&
                          (kScaleMode != SJ_SCALE_PER_TOKEN_HEAD || kRawShape);
#else
constexpr bool kFp8Half = false;
#endif
constexpr bool kMmaBf16 = kBf16 && !kFp8Half;  // the dtype of the K/V tiles, of Q in shared memory, of P and of the MMAs
constexpr int kTileDtype = kFp8Half ? SJ_FP16 : kQDtype;           // what sj_load_kv makes of K/V elements
constexpr int kTileScale = kFp8Half ? SJ_SCALE_NONE : kScaleMode;  // and whether it scales them
// kTma with one query and a segment within a warp: the producer warp loads the top-k entries,
// writes the block list and starts copying while the math warps wait for the list alone.
constexpr bool kProducerList = kTma && kQTile == 1 && kListCap <= 32;
static_assert(!kProducerList || kListCap == kEntries, "the producer's list is the one segment");
constexpr bool kSwTiles = kWgmma || kTma;                  // K/V tiles in the 128-byte swizzle (mma_layout.h), else padded rows
constexpr int kKvHalves = kSwTiles ? kSubK * kHeadDim : kSubK * kLd;  // the K (then the V) part of a staged sub-tile
// kFp8Half decode (mma.sync): S = Q K^T takes its K fragments straight from the staged raw
// bytes (a 16-byte load and 8 cvt give one key's 4 k-steps over 64 dims), so only V goes
// through the fp16 tile. The fragments' dims are then dims 64G + 16c + 4j + {0..3} for lane
// quad c and k-step j of group G, so Q sits in shared memory in that order (sj_q_to_half);
// without 16-byte copies the raw bytes are loaded one by one.
constexpr bool kRawK = kFp8Half && kDecode && !kTma && kFp8Staged && kHeadDim % 64 == 0;
// And O += P V takes V's fragments from the raw bytes too (kRawV, head_dim a multiple of 128):
// lane quad c reads keys 2c, 2c + 1, 2c + 8, 2c + 9 of each 16-key step (P's k order), lane
// group g the 16 bytes at 128G + 16g of each; byte_perm pairs the keys and one cvt gives a
// B fragment, so n-tile 16G + i holds dim 128G + 16n + i (sj_o_dim). Nothing is converted
// into the tile. The raw rows' 16-byte chunks are then swizzled (sj_raw_col) so that these
// loads, K's (keys g of 8, chunks c of 4) and the copies hit every bank once.
constexpr bool kRawV = kFp8Half && kRawShape;  // (kRawK's conditions, and head_dim a multiple of 128)
static_assert(!kRawV || kRawK, "kRawV reads K from the raw bytes too");
#ifndef SJ_Q_REGS
#define SJ_Q_REGS 1  // -DSJ_Q_REGS=0 (SPARSEJIT_EXTRA_FLAGS) keeps Q in shared memory everywhere
#endif
// kRawK with one workgroup per SM's registers (head_dim <= 128): every warp keeps all of Q's A
// fragments in registers, in kRawK's dim order. It loads them from global memory with the
// scales while the request is found, and converts them to fp16 before the sub-tile loop, by
// itself (each warp holds the whole tile, so each finds the same power of two): Q takes no
// shared memory, no barrier and no ldmatrix per sub-tile. Only where it was measured faster on
// the H100 (docs/PERF.md, fifteenth session): at most 4 math warps (with 8, each loading and
// converting all of Q cost 1-1.5%) and G = 16 (all 16 rows live; at G = 8 it was as often
// slower as faster).
constexpr bool kQRegs = SJ_Q_REGS && kRawK && kHeadDim <= 128 && 3 == 1 && kMathWarps <= 4 && kGroup == 16;
constexpr int kQRegGroups = kQRegs ? kHeadDim / 64 : 1;
#ifndef SJ_SCALES_LATE
#define SJ_SCALES_LATE 1  // -DSJ_SCALES_LATE=0 (SPARSEJIT_EXTRA_FLAGS): off, for A/B runs
#endif
// kQRegs with scalar scales: the K and V scales are loaded with Q, ahead of the request's
// dependent loads, but only turned into SjScales after them, so no arithmetic on the scales
// stands between the first load and the request chain (the B=1 timeline of the sixteenth
// session found the fp8 position known 0.5 us after bf16's). H100, fp8 decode: TP1 B=1
// 8.05 -> 7.82 us, TP4 B=1/B=8/ragged -2.1..-2.7%, the rest within noise (docs/PERF.md).
constexpr bool kScalesLate = SJ_SCALES_LATE && kQRegs && kScaleMode == SJ_SCALE_SCALAR;
struct SjQRegs {
  unsigned a[kQRegGroups][4][4];  // [64-dim group][k-step][A register]
};
// kFp8Half with one stage (and Q in shared memory): Q becomes fp16 before the sub-tile loop
// (inside it, the conversion's registers made the wgmma prefill loop spill).
constexpr bool kQHalfEarly = kFp8Half && kStages == 1 && !kTma && !kQRegs;
// kRawV with per-token scales: each stage's raw bytes end with the sub-tile's K scales, then its
// V scales (a float per key, zeros past the query). A warp multiplies its S columns by the K
// scales; it multiplies P's columns by the V scales over 2^e (e: the exponent of the largest V
// scale it has seen; O scales by 2^(e_old - e) when e grows, and by 2^e at the end), so P stays
// below 2 in fp16 and keeps its precision whatever the scales' magnitude.
constexpr bool kPthRaw = kRawV && kScaleMode == SJ_SCALE_PER_TOKEN_HEAD;
#ifndef SJ_WARP_PIPE
#define SJ_WARP_PIPE 1  // -DSJ_WARP_PIPE=0 (SPARSEJIT_EXTRA_FLAGS): the workgroup-wide copies and barriers everywhere, for A/B runs
#endif
// kRawK decode with 16-byte copies (sj_fp8_staged) and stages: warp ks copies its own key
// slice's raw K and V rows (and their per-token scales), the only ones it reads, so it waits
// for its own copies alone: the sub-tile loop has no workgroup barrier (one before the first
// sub-tile, where Q sits in shared memory), and each warp streams at its own pace. Under kRawV
// a stage's K and V are two copy groups (kSplitKV): S = Q K^T starts before V is in. Only
// where the H100 measured it faster (docs/PERF.md, sixteenth session): 8 math warps and one
// workgroup per SM (the large launch, 3-5% faster); with 4 math warps (the small and base
// launches) and with two workgroups per SM it was 1-3% slower.
constexpr int kRawRowsPerWarpPass = 32 / kRawVecPerRow;
constexpr bool kWarpPipe = SJ_WARP_PIPE && kRawK && kStages >= 2 && kRowGroups == 1 && 32 % kRawVecPerRow == 0 &&
                           kKeysPerWarp % kRawRowsPerWarpPass == 0 && kMathWarps >= 8 && 3 == 1;
constexpr bool kSplitKV = kWarpPipe && kRawV;
#ifndef SJ_TMA_SPLIT_KV
#define SJ_TMA_SPLIT_KV 1  // -DSJ_TMA_SPLIT_KV=0 (SPARSEJIT_EXTRA_FLAGS): K and V of a stage on one barrier, for A/B runs
#endif
// kTma: a stage's K and V tensor copies complete on barriers of their own (full, V-full), so
// S = Q K^T and the softmax run while V is still coming; V is waited for (and zeroed past the
// query) just before P V.
constexpr bool kTmaSplitKV = SJ_TMA_SPLIT_KV && kTma;
#ifndef SJ_FP8_V_LATE
#define SJ_FP8_V_LATE 1  // -DSJ_FP8_V_LATE=0 (SPARSEJIT_EXTRA_FLAGS): convert V before S, for A/B runs
#endif
// fp8 prefill under wgmma (kFp8Staged): the workgroup converts a sub-tile's K, starts S = Q K^T,
// and converts V while the tensor cores multiply.
constexpr bool kVLate = SJ_FP8_V_LATE && kWgmma && kFp8Staged;
constexpr int kRawBytes = kFp8 ? 2 * kSubK * kHeadDim + (kPthRaw ? 2 * kSubK * 4 : 0) : 0;
static_assert(kThreads % 32 == 0 && kWarps <= 32, "whole warps");
static_assert(kMathWarps >= 1 && kMathWarps % kRowGroups == 0, "Q_TILE's row groups must divide the math warps");
static_assert(kSubK % (16 * kKeySplit) == 0, "each warp's key slice is whole 16-key steps");
static_assert(kBlock % kSubK == 0 && kHeadDim % 16 == 0, "tile shapes");
static_assert(kQTile <= 16 && (!kDecode || (kQTile == 1 && kRowGroups == 1)), "Q_TILE (decode: one query, one row group; each warp its own key slice)");
static_assert(kQTile == 1 || kChunkSize <= 255, "multiplicities are bytes");
static_assert(kStages >= 1, "STAGES");
static_assert(kCluster == 1 || (kDecode && kCluster == kChunks && kCluster <= 8), "a merge cluster is the chunks of one decode query");
static_assert(kKvHeadSplit >= 1 && (kKvHeadSplit == 1 || kDecode), "only decode splits a kv head's query heads over workgroups");
static_assert(!kWgmma || (SJ_HAS_WGMMA && !kDecode && kKeySplit == 1 && kWarps % 4 == 0 && (kSubK == 32 || kSubK == 64 || kSubK == 128) &&
                          (kHeadDim == 64 || kHeadDim == 128)),
              "wgmma: sm_90a, prefill, one warp per row group, whole warpgroups, wgmma N shapes, 128-byte swizzle rows");
static_assert(!kTma || (kDecode && kRawCopy && !kWgmma && kHeadDim % 64 == 0), "tensor copies: decode, K/V in q's dtype, 128-byte swizzle rows");

// Dynamic shared memory layout; KernelConfig::dynamic_shared_bytes mirrors it
// and the kernel traps if it was given less.
constexpr int kQRows = kRowGroups * 16;
constexpr int kQBytes = kQRows * (kWgmma ? kHeadDim : kLd) * 2;
constexpr int kTileBytes = kRawV ? 0 : 2 * kKvHalves * 2;  // K then V of one sub-tile (kRawV: the raw bytes alone)
// Key-split merge: each split's O rows [kOStride] (8 floats of padding: a warp's float2 stores of
// 8 rows x 4 quads fill all 32 banks twice, where unpadded rows hit 4 banks 8 times), then m, l, weights.
constexpr int kOStride = kHeadDim + 8;
constexpr int kScratchBytes = kKeySplit > 1 ? kKeySplit * kRowGroups * 16 * (kOStride + 3) * 4 : 0;
constexpr int kPartBytes = kCluster > 1 ? (kGroup * kHeadDim + 16) * 4 : 0;  // this chunk's normalized output + LSE, read by the cluster
constexpr int kStageBytes = kTileBytes + kRawBytes;
constexpr int kRegionBytes = kStages * kStageBytes > kScratchBytes + kPartBytes ? kStages * kStageBytes : kScratchBytes + kPartBytes;
constexpr int kListBytes = (6 * kListCap * 4 + kListCap * kQTile + 15) / 16 * 16;
// kTma: the stages' full, empty, then V-full barriers; a multiple of 16 bytes (kDimSplit's P follows, read by ldmatrix)
constexpr int kMiscBytes = (16 * 8 * 2 + 32 * 4 + (kTma ? 3 * kStages * 8 : 0) + 15) / 16 * 16;
constexpr int kOffTiles = kTma ? (kQBytes + 1023) / 1024 * 1024 : kQBytes;  // swizzled tiles: 1024-byte aligned
constexpr int kOffList = kOffTiles + kRegionBytes;
constexpr int kOffMisc = kOffList + kListBytes;
#ifndef SJ_DIM_SPLIT
#define SJ_DIM_SPLIT 1  // -DSJ_DIM_SPLIT=0 (SPARSEJIT_EXTRA_FLAGS): the key-split form, for A/B runs
#endif
// Decode with tensor copies, one query: the math warps split each sub-tile's keys for S = Q K^T
// and the head dims for O += P V, sharing the sub-tile's P (and its row max) through shared
// memory; a warp ends with finished output dims, and no key-split merge is left. Two math-warp
// barriers per sub-tile buy it (docs/PERF.md, ninth session).
constexpr bool kDimSplit = SJ_DIM_SPLIT && kTma && kDecode && kRowGroups == 1 && kKeySplit > 1 && (kHeadDim / kKeySplit) % 16 == 0;
constexpr int kDimsPerWarp = kHeadDim / kKeySplit;
static_assert(!(kDimSplit && kQRegs), "the dim split reads Q from shared memory");
constexpr int kPLd = kSubK + 8;  // P rows (halves): conflict-free stores of C fragments and ldmatrix
// kDimSplit: P and the row maxima of one sub-tile, or of two by parity where a workgroup may
// take more than one sub-tile (one barrier per sub-tile, kLazy); then each warp's row sums.
constexpr int kDsBufs = kChunkSize * kSubs > 1 ? 2 : 1;
constexpr int kDsBytes = kDimSplit ? kDsBufs * 16 * kPLd * 2 + (kDsBufs + 1) * kKeySplit * 16 * 4 : 0;
constexpr int kOffDs = kOffMisc + kMiscBytes;                        // [kDsBufs][16][kPLd] P
constexpr int kOffDsMax = kOffDs + kDsBufs * 16 * kPLd * 2;          // [kDsBufs][KEY_SPLIT][16] row maxima
constexpr int kOffDsSum = kOffDsMax + kDsBufs * kKeySplit * 16 * 4;  // [KEY_SPLIT][16] row sums
#ifndef SJ_LAZY_MAX
#define SJ_LAZY_MAX 1  // -DSJ_LAZY_MAX=0 (SPARSEJIT_EXTRA_FLAGS): agree on every sub-tile's max first, for A/B runs
#endif
// kLazy: P is exp2 of the scores less a running max m that every warp holds alike. m moves only
// when some row's max exceeds it by more than kLazyMax (base 2), so P <= 2^kLazyMax.
constexpr bool kLazy = SJ_LAZY_MAX && kDimSplit && kDsBufs == 2;
constexpr float kLazyMax = 8.f;
constexpr int kSmemBytes = kOffDs + kDsBytes;
static_assert(kOffDs % 16 == 0 && kOffDsMax % 16 == 0, "the shared P rows and the maxima: 16-byte aligned (ldmatrix)");
static_assert(!kSwTiles || (kOffTiles % 1024 == 0 && kTileBytes % 1024 == 0), "swizzled tiles: their atoms start 1024-byte aligned");

// Developer timeline of decode (bench/timeline.py): compiled with -DSJ_TIMELINE (through
// SPARSEJIT_EXTRA_FLAGS, so the cache keeps it apart), every thread reads %globaltimer at the
// numbered steps and thread 0 of each workgroup prints its marks at the end. Without the flag
// the marks are nothing.
#ifdef SJ_TIMELINE
#define SJ_MARK(i) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(sj_marks[i]))
#else
#define SJ_MARK(i) do {} while (0)
#endif

// Row r of row group rg: query index in the tile, or -1 for a padding row.
SJ_DEVICE int sj_row_query(int rg, int r) {
  if (r >= kQPerRG * kGroup) return -1;
  const int q = rg * kQPerRG + r / kGroup;
  return q < kQTile ? q : -1;
}

// Offset (halves) of row n, dim d in a buffer of kRows rows (the K or V part of a
// staged sub-tile: keys; Q: its rows). Padded: rows of head_dim + 8 halves
// (conflict-free ldmatrix). Swizzled: the 128-byte swizzle (mma_layout.h), dims
// [64r, 64r + 64) of every row in region r (kRows x 128 bytes): 8 lanes writing
// one row hit every bank once, wgmma reads Q and K K-major, V N-major from it, a
// tensor copy (TMA, SWIZZLE_128B) writes it, and ldmatrix reads it conflict-free.
template <int kRows, bool kSwizzled>
SJ_DEVICE int sj_off(int n, int d) {
  return kSwizzled ? SjWgmmaSw128::off(kRows, n, d) : n * kLd + d;
}
// Q (swizzled under wgmma) and the K/V tiles (swizzled under wgmma and tensor copies).
template <int kRows>
SJ_DEVICE int sj_row_off(int n, int d) { return sj_off<kRows, kWgmma>(n, d); }
SJ_DEVICE int sj_tile_off(int n, int d) { return sj_off<kSubK, kSwTiles>(n, d); }

// Where byte `b` of raw row `r` (K rows, then V rows) sits in its row of a stage's raw bytes
// (the row starts at r x head_dim). kRawV: row r's 16-byte chunk k sits at k ^ f(r),
// f(r) = 4 (r & 1) ^ 2 ((r >> 1) & 3), which spreads keys 2c (c < 4) and each pair of
// neighbouring keys over the 8 chunks of 128 bytes. Otherwise at b.
SJ_DEVICE int sj_raw_col(int r, int b) { return kRawV ? b ^ (((r & 1) << 6) ^ (((r >> 1) & 3) << 5)) : b; }

// Head dim of O fragment element e (0, 1; the same for rows a and b) of n-tile t for a lane
// of C fragment column c0 = 2 (lane % 4): c0 + e, under kRawV through sj_subtile's V order.
SJ_DEVICE int sj_o_dim(int t, int e, int c0) {
  if constexpr (kRawV) return 128 * (t / 16) + 16 * c0 + 16 * e + t % 16;
  return t * 8 + c0 + e;
}

// Whether fp8 K/V go through the staging bytes (16-byte copies need the strides to allow them).
SJ_DEVICE bool sj_fp8_staged(const SjAttnParams& p) { return kFp8Staged && (p.flags & SJ_FLAG_KV_VEC16); }

// Element offset of the first K row of sub-tile `sub` of page `page`, kv head `kvh`.
SJ_DEVICE long long sj_subtile_row(const SjAttnParams& p, long long kvh, long long page, int sub) {
  return page * p.kv_stride[0] + kvh * p.kv_stride[1] + (long long)(sub * kSubK) * p.kv_stride[2];
}

// Per-(kv head, token) scales: the index of physical token slot `slot`'s scale in
// v_scale (is_v) or k_scale.
SJ_DEVICE long long sj_scale_index(const SjAttnParams& p, bool is_v, long long kvh, long long slot) {
  return is_v ? kvh * p.vs_stride[0] + slot * p.vs_stride[1] : kvh * p.ks_stride[0] + slot * p.ks_stride[1];
}

#ifndef SJ_L2_EVICT_FIRST
#define SJ_L2_EVICT_FIRST 1  // -DSJ_L2_EVICT_FIRST=0 (SPARSEJIT_EXTRA_FLAGS): no cache policy, for A/B runs
#endif
// Decode reads each selected K/V row once per call: under kKvEvictFirst its copies (16-byte and
// tensor copies) carry an L2 evict-first policy, so the stream does not push the small index
// tensors (top-k, block table, lengths), Q and the split partials out of L2. On the H100
// (eighteenth session) every decode launch gained: bf16 B=32 2-5%, B=128 1-2.5%, fp8 B=128
// 2.7-6%. Prefill re-reads a block from many workgroups: never there. (A wider L2 fetch for the
// 16-byte copies, .L2::128B / 256B, gained nothing there and was dropped.)
constexpr bool kKvEvictFirst = SJ_L2_EVICT_FIRST && kDecode;
SJ_DEVICE unsigned long long sj_l2_evict_first() {
  unsigned long long policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
// A 16-byte K/V copy: sj_cp_async16, under kKvEvictFirst with the evict-first policy.
SJ_DEVICE void sj_cp_async16_kv(unsigned dst, const void* src, int src_bytes) {
  if constexpr (kKvEvictFirst)
    sj_cp_async16_hint(dst, src, src_bytes, sj_l2_evict_first());
  else
    sj_cp_async16(dst, src, src_bytes);
}
// A K/V tensor copy: sj_tma_load_5d, under kKvEvictFirst with the evict-first policy.
SJ_DEVICE void sj_tma_load_5d_kv(unsigned dst, const void* map, const int (&c)[5], unsigned bar) {
  if constexpr (kKvEvictFirst)
    sj_tma_load_5d_hint(dst, map, c, bar, sj_l2_evict_first());
  else
    sj_tma_load_5d(dst, map, c, bar);
}

// Copies sub-tile `sub` of page `page` to `tile` with batched element loads, dequantized
// to q's dtype (any strides and dtypes); keys past `hi` are zeros. kN threads share it,
// this one being number t; `row` is the element offset of the sub-tile's first K row.
template <int kN>
SJ_DEVICE void sj_load_subtile_elems(const SjAttnParams& p, sj_u16* tile, long long kvh, long long page, int sub, long long n0,
                                     long long hi, int t, long long row) {
  constexpr int kElems = 2 * kSubK * kHeadDim;
  constexpr int kBatch = SJ_STAGE_BATCH;
  const float* k_scale = (const float*)p.k_scale;
  const float* v_scale = (const float*)p.v_scale;
  const long long slot0 = page * kBlock + sub * kSubK;  // physical token slot of key 0 (per-token scales)
  for (int i0 = t; i0 < kElems; i0 += kN * kBatch) {
    sj_u16 v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = i0 + u * kN;
      const int is_v = i >= kSubK * kHeadDim;
      const int ii = i - is_v * kSubK * kHeadDim;
      const int n = ii / kHeadDim, d = ii % kHeadDim;
      v[u] = 0;
      if (i < kElems && n0 + n <= hi) {
        const long long off = row + is_v * p.v_offset + n * p.kv_stride[2] + d * p.kv_stride[3];
        v[u] = is_v ? sj_load_kv<kTileDtype, kKvDtype, kTileScale>(p.kv, off, v_scale, sj_scale_index(p, true, kvh, slot0 + n))
                    : sj_load_kv<kTileDtype, kKvDtype, kTileScale>(p.kv, off, k_scale, sj_scale_index(p, false, kvh, slot0 + n));
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = i0 + u * kN;
      if (i < kElems) {
        const int is_v = i >= kSubK * kHeadDim;
        const int ii = i - is_v * kSubK * kHeadDim;
        tile[is_v * kKvHalves + sj_tile_off(ii / kHeadDim, ii % kHeadDim)] = v[u];
      }
    }
  }
}

// kPthRaw: sub-tile `sub` of page `page`'s K scales, then its V scales, after its raw rows in
// `raw` (4-byte cp.async; zeros for keys past `lim`, counted from the sub-tile's first).
SJ_DEVICE void sj_load_scales(const SjAttnParams& p, unsigned char* raw, long long kvh, long long page, int sub, long long lim) {
  if constexpr (kPthRaw) {
    const unsigned dst = sj_smem_addr(raw + 2 * kSubK * kHeadDim);
    for (int i = sj_tid(); i < 2 * kSubK; i += kThreads) {
      const int is_v = i >= kSubK, n = i - is_v * kSubK;
      const long long slot = page * kBlock + sub * kSubK + n;  // physical token slot
      const float* src = (const float*)(is_v ? p.v_scale : p.k_scale) + sj_scale_index(p, is_v, kvh, slot);
      sj_cp_async4(dst + 4 * i, src, n <= lim ? 4 : 0);
    }
  }
}

// Copies sub-tile `sub` of page `page` (keys n0 .. n0 + SUB_K - 1) to `tile`:
// 16-byte cp.async when K/V need no conversion and the strides allow it; fp8's
// raw bytes to `raw` the same way (sj_dequant_subtile converts them later);
// otherwise batched element loads dequantized to q's dtype. Keys past `hi` are
// zeros (never read past the sequence; a zero V keeps 0 * garbage out of P V).
SJ_DEVICE void sj_load_subtile(const SjAttnParams& p, sj_u16* tile, unsigned char* raw, long long kvh, long long page, int sub,
                               long long n0, long long hi) {
  const long long row = sj_subtile_row(p, kvh, page, sub);
  constexpr int kVecPerRow = kHeadDim / 8;
  constexpr int kRowsPerPass = kThreads / kVecPerRow;
  constexpr bool kMapOk = kThreads % kVecPerRow == 0 && (!kSwTiles || kRowsPerPass % 8 == 0);
  if (kRawCopy && kMapOk && kSubK % kRowsPerPass == 0 && (p.flags & SJ_FLAG_KV_VEC16)) {
    // Thread t copies 16 bytes at column (t % kVecPerRow) * 8 of rows t / kVecPerRow + i * kRowsPerPass:
    // addresses advance by a constant (whole swizzle atoms under wgmma), the per-copy
    // work is two adds and a compare.
    const int n_first = sj_tid() / kVecPerRow, d = (sj_tid() % kVecPerRow) * 8;
    const long long lim = hi - n0;  // keys n <= lim are visible to some query of the tile
    const sj_u16* src = (const sj_u16*)p.kv + row + n_first * p.kv_stride[2] + d;
    const long long src_step = kRowsPerPass * p.kv_stride[2];
    const unsigned dst = sj_smem_addr(tile + sj_tile_off(n_first, d));
    constexpr unsigned kDstStep = kRowsPerPass * (kSwTiles ? 128 : kLd * 2);  // sj_tile_off(kRowsPerPass, 0) bytes
#pragma unroll
    for (int i = 0; i < kSubK / kRowsPerPass; ++i) {
      const int bytes = n_first + i * kRowsPerPass <= lim ? 16 : 0;
      sj_cp_async16_kv(dst + i * kDstStep, src + i * src_step, bytes);
      sj_cp_async16_kv(dst + kKvHalves * 2 + i * kDstStep, src + p.v_offset + i * src_step, bytes);
    }
  } else if (sj_fp8_staged(p)) {
    const int n_first = sj_tid() / kRawVecPerRow, d = (sj_tid() % kRawVecPerRow) * 16;
    const long long lim = hi - n0;
    const sj_u8* src = (const sj_u8*)p.kv + row + n_first * p.kv_stride[2] + d;
    const long long src_step = kRawRowsPerPass * p.kv_stride[2];
    const unsigned dst = sj_smem_addr(raw + n_first * kHeadDim + (kRawV ? sj_raw_col(n_first, d) : d));  // (this form keeps the other objects as they were)
#pragma unroll
    for (int i = 0; i < kSubK / kRawRowsPerPass; ++i) {
      const int bytes = n_first + i * kRawRowsPerPass <= lim ? 16 : 0;
      // Rows 8 apart share their swizzle: then the step is a constant.
      const int step = !kRawV || kRawRowsPerPass % 8 == 0 ? i * kRawRowsPerPass * kHeadDim
                                                          : i * kRawRowsPerPass * kHeadDim + sj_raw_col(n_first + i * kRawRowsPerPass, d) - sj_raw_col(n_first, d);
      sj_cp_async16_kv(dst + step, src + i * src_step, bytes);
      sj_cp_async16_kv(dst + kSubK * kHeadDim + step, src + p.v_offset + i * src_step, bytes);
    }
    sj_load_scales(p, raw, kvh, page, sub, lim);
  } else if constexpr (kRawK) {
    // The raw bytes one by one (dense rows; keys past `hi` zero, as the copies' zero fill).
    const sj_u8* kv = (const sj_u8*)p.kv;
    for (int i0 = sj_tid(); i0 < 2 * kSubK * kHeadDim; i0 += kThreads * SJ_STAGE_BATCH) {
      sj_u8 v[SJ_STAGE_BATCH];
#pragma unroll
      for (int u = 0; u < SJ_STAGE_BATCH; ++u) {
        const int i = i0 + u * kThreads, is_v = i >= kSubK * kHeadDim, ii = i - is_v * kSubK * kHeadDim, n = ii / kHeadDim;
        v[u] = i < 2 * kSubK * kHeadDim && n0 + n <= hi ? kv[row + is_v * p.v_offset + n * p.kv_stride[2] + (ii % kHeadDim) * p.kv_stride[3]] : 0;
      }
#pragma unroll
      for (int u = 0; u < SJ_STAGE_BATCH; ++u) {
        const int i = i0 + u * kThreads;
        if (i < 2 * kSubK * kHeadDim) raw[kRawV ? i / kHeadDim * kHeadDim + sj_raw_col(i / kHeadDim, i % kHeadDim) : i] = v[u];
      }
    }
    sj_load_scales(p, raw, kvh, page, sub, hi - n0);
  } else {
    sj_load_subtile_elems<kThreads>(p, tile, kvh, page, sub, n0, hi, sj_tid(), row);
  }
}

// kWarpPipe: warp ks's share of sub-tile `sub` of page `page` (keys n0 ..): the raw K rows of
// its key slice (and their K scales), then its raw V rows (and V scales), each lane 16 bytes of
// a row per pass, as sj_load_subtile lays them out; keys past `hi` zero-filled. kSplitKV
// commits the K part as a copy group of its own (the caller commits the V part).
// sj_load_subtile's staged branch is this loop's workgroup-wide twin. One loop for both changed
// every fp8 object and was slower on the H100 (TP4 B=8 +1.6%, seventeenth session): kept apart.
SJ_DEVICE void sj_load_subtile_warp(const SjAttnParams& p, unsigned char* raw, long long kvh, long long page, int sub, long long n0,
                                    long long hi, int ks, int lane) {
  if constexpr (kWarpPipe) {
    const long long lim = hi - n0;
    const int n_first = ks * kKeysPerWarp + lane / kRawVecPerRow, d = (lane % kRawVecPerRow) * 16;
    const sj_u8* src = (const sj_u8*)p.kv + sj_subtile_row(p, kvh, page, sub) + n_first * p.kv_stride[2] + d;
    const long long src_step = kRawRowsPerWarpPass * p.kv_stride[2];
    const unsigned dst = sj_smem_addr(raw);
    auto part = [&](int is_v) {
#pragma unroll
      for (int i = 0; i < kKeysPerWarp / kRawRowsPerWarpPass; ++i) {
        const int n = n_first + i * kRawRowsPerWarpPass;
        sj_cp_async16_kv(dst + is_v * kSubK * kHeadDim + n * kHeadDim + sj_raw_col(n, d), src + is_v * p.v_offset + i * src_step,
                      n <= lim ? 16 : 0);
      }
      if constexpr (kPthRaw) {
        for (int i = lane; i < kKeysPerWarp; i += 32) {
          const int n = ks * kKeysPerWarp + i;
          const float* s = (const float*)(is_v ? p.v_scale : p.k_scale) + sj_scale_index(p, is_v, kvh, page * kBlock + sub * kSubK + n);
          sj_cp_async4(dst + 2 * kSubK * kHeadDim + 4 * (is_v * kSubK + n), s, n <= lim ? 4 : 0);
        }
      }
    };
    part(0);
    if constexpr (kSplitKV) sj_cp_async_commit();
    part(1);
  }
}

// kTma, the producer warp: sub-tile `sub` of page `page` to `tile`, completing on the
// stage's `full` barrier (one arrival), and under kTmaSplitKV its V part on `full_v`. With
// the host's tensor maps (SJ_FLAG_KV_TMA): lane 0 copies the K part, then the V part, each
// one tensor copy of SUB_K keys x head_dim that lands in the 128-byte swizzle (dims 64r.. of
// the keys in region r). Keys past the query are copied too (they lie inside the page); the
// math warps mask them (K) and zero them (V) before use. Without the maps the warp loads
// elements.
SJ_DEVICE void sj_tma_subtile(const SjAttnParams& p, const SjTmaMaps& maps, sj_u16* tile, unsigned full, unsigned full_v, long long kvh,
                              long long page, int sub, long long n0, long long hi, int lane) {
  if (p.flags & SJ_FLAG_KV_TMA) {
    if (lane == 0) {
      const int c[5] = {0, sub * kSubK, 0, (int)kvh, (int)page};  // dims within 64, key, 64-dim group, kv head, page
      sj_mbar_arrive_expect_tx(full, kTmaSplitKV ? kTileBytes / 2 : kTileBytes);
      sj_tma_load_5d_kv(sj_smem_addr(tile), maps.k, c, full);
      if (kTmaSplitKV) sj_mbar_arrive_expect_tx(full_v, kTileBytes / 2);
      sj_tma_load_5d_kv(sj_smem_addr(tile + kKvHalves), maps.v, c, kTmaSplitKV ? full_v : full);
    }
  } else {
    sj_load_subtile_elems<32>(p, tile, kvh, page, sub, n0, hi, lane, sj_subtile_row(p, kvh, page, sub));
    __syncwarp();  // every lane's stores, then the release
    if (lane == 0) sj_mbar_arrive(full);
    if (kTmaSplitKV && lane == 0) sj_mbar_arrive(full_v);
  }
}

// Two fp8 values (the low byte first) to packed fp16, exactly, on sm_89+ for e4m3fn and
// e5m2 (one instruction; both are exact in fp16): kFp8Half's tiles, and sj_fp8x2_to_f32's.
SJ_DEVICE unsigned sj_fp8x2_to_half2(unsigned two) {
  unsigned h2 = 0u;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const unsigned short b = (unsigned short)two;
  if constexpr (kKvDtype == SJ_FP8_E4M3FN)
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(b));
  else if constexpr (kKvDtype == SJ_FP8_E5M2)
    asm("cvt.rn.f16x2.e5m2x2 %0, %1;" : "=r"(h2) : "h"(b));
#endif
  return h2;
}

// Two fp8 values (the low byte first) to floats, exactly: sm_89+ converts e4m3fn
// and e5m2 pairs in one instruction (sj_fp8x2_to_half2); the fnuz formats and older
// targets decode in software.
SJ_DEVICE void sj_fp8x2_to_f32(unsigned two, float& lo, float& hi) {
#if __CUDA_ARCH__ >= 890
  if constexpr (kKvDtype == SJ_FP8_E4M3FN || kKvDtype == SJ_FP8_E5M2) {
    const unsigned h2 = sj_fp8x2_to_half2(two);
    lo = sj_f16_to_f32((sj_u16)(h2 & 0xffffu));
    hi = sj_f16_to_f32((sj_u16)(h2 >> 16));
    return;
  }
#endif
  lo = sj_fp8_to_f32<kKvDtype>((sj_u8)two);
  hi = sj_fp8_to_f32<kKvDtype>((sj_u8)(two >> 8));
}

// fp8 staged: keys row0 .. row0 + ROWS - 1 of sub-tile `sub` of page `page`, K and V,
// from their raw bytes to the tiles' dtype in `tile`, 16 elements a step, by threads t,
// t + N, ... of N: under kFp8Half the exact values in fp16, else sj_load_kv's arithmetic
// (the exact fp8 value times the scale, rounded once to nearest even). Keys past `hi`
// become zeros whatever their bytes and scales.
// kK, kV: which parts (kRawK reads K from the raw bytes; wgmma prefill converts V while S multiplies).
template <int kRows, int kN, bool kK = true, bool kV = true>
SJ_DEVICE void sj_dequant_rows(const SjAttnParams& p, const unsigned char* raw, sj_u16* tile, long long kvh, long long page, int sub,
                               long long n0, long long hi, int row0, int t) {
  constexpr int kPart = kRows * kRawVecPerRow;  // 16-byte chunks of K (then of V)
  const float* k_scale = (const float*)p.k_scale;
  const float* v_scale = (const float*)p.v_scale;
  const float k_sc = kTileScale == SJ_SCALE_SCALAR ? k_scale[0] : 1.f, v_sc = kTileScale == SJ_SCALE_SCALAR ? v_scale[0] : 1.f;
  for (int c = t + (kK ? 0 : kPart); c < (kV ? 2 : 1) * kPart; c += kN) {
    const int is_v = c >= kPart, cc = c - is_v * kPart;
    const int n = row0 + cc / kRawVecPerRow, d = (cc % kRawVecPerRow) * 16;
    unsigned out[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
    if (n0 + n <= hi) {
      const uint4 b = *(const uint4*)(raw + (is_v * kSubK + n) * kHeadDim + sj_raw_col(is_v * kSubK + n, d));
      const unsigned w[4] = {b.x, b.y, b.z, b.w};
      float sc = is_v ? v_sc : k_sc;
      if (kTileScale == SJ_SCALE_PER_TOKEN_HEAD) {
        const long long slot = page * kBlock + sub * kSubK + n;  // physical token slot
        sc = is_v ? v_scale[sj_scale_index(p, true, kvh, slot)] : k_scale[sj_scale_index(p, false, kvh, slot)];
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if constexpr (kFp8Half) {
          out[j] = sj_fp8x2_to_half2(w[j / 2] >> (16 * (j % 2)));
        } else {
          float f0, f1;
          sj_fp8x2_to_f32(w[j / 2] >> (16 * (j % 2)), f0, f1);
          if (kTileScale != SJ_SCALE_NONE) f0 = f0 * sc, f1 = f1 * sc;
          out[j] = sj_pack_half2<kMmaBf16>(f0, f1);  // round to nearest even, as sj_f32_to_half
        }
      }
    }
    sj_u16* dst = tile + is_v * kKvHalves;
    *(uint4*)(dst + sj_tile_off(n, d)) = make_uint4(out[0], out[1], out[2], out[3]);
    *(uint4*)(dst + sj_tile_off(n, d + 8)) = make_uint4(out[4], out[5], out[6], out[7]);
  }
}
// The whole sub-tile (or its K or V part), by every thread of the workgroup.
template <bool kK = true, bool kV = true>
SJ_DEVICE void sj_dequant_subtile(const SjAttnParams& p, const unsigned char* raw, sj_u16* tile, long long kvh, long long page, int sub,
                                  long long n0, long long hi) {
  sj_dequant_rows<kSubK, kThreads, kK, kV>(p, raw, tile, kvh, page, sub, n0, hi, 0, sj_tid());
}

// kFp8Half, Q to fp16 (sj_q_to_half, sj_q_regs_convert): a packed pair of q's elements,
// folded into the running max |q|, and converted times f.
SJ_DEVICE float sj_q_absmax2(float mx, unsigned two) {
  return fmaxf(mx, fmaxf(fabsf(sj_half_to_f32<kQDtype>((sj_u16)(two & 0xffffu))), fabsf(sj_half_to_f32<kQDtype>((sj_u16)(two >> 16)))));
}
SJ_DEVICE unsigned sj_q_half2(unsigned two, float f) {
  return sj_pack_half2<false>(sj_half_to_f32<kQDtype>((sj_u16)(two & 0xffffu)) * f, sj_half_to_f32<kQDtype>((sj_u16)(two >> 16)) * f);
}
// The e of 2^-e that brings a largest |q| of mx (2^15 or more) below 2^15; 0 for inf or NaN.
SJ_DEVICE int sj_q_half_exp(float mx) { return isfinite(mx) ? ilogbf(mx) - 14 : 0; }

// kFp8Half: Q in shared memory (every row, zeros for padding) from q's dtype to fp16, times
// `mult` (sj_scales) and a power of two 2^-e that brings the tile's largest |q| below 2^15
// (e = 0 unless some |q| is that large), so the conversion rounds nothing in fp16's normal
// range and overflows nothing; returns 2^e, which the scores' scale takes. Under kRawK each
// group of 64 dims is stored in the order of sj_qk's raw K fragments. By every thread, once
// Q is in; `s_max` holds one word per warp (used only when some |q| >= 2^15).
SJ_DEVICE float sj_q_to_half(sj_u16* sq, float mult, int* s_max) {
  const int tid = sj_tid();
  constexpr int kVecs = kQRows * kHeadDim / 8, kPer = (kVecs + kThreads - 1) / kThreads;
  auto chunk = [&](int c) { return (uint4*)(sq + sj_row_off<kQRows>(c / (kHeadDim / 8), (c % (kHeadDim / 8)) * 8)); };
  unsigned w[kPer][4];
  float mx = 0.f;  // fmaxf passes over NaN: a NaN q stays NaN below
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = tid + i * kThreads;
    const uint4 v = c < kVecs ? *chunk(c) : make_uint4(0u, 0u, 0u, 0u);
    w[i][0] = v.x, w[i][1] = v.y, w[i][2] = v.z, w[i][3] = v.w;
#pragma unroll
    for (int j = 0; j < 4; ++j) mx = sj_q_absmax2(mx, w[i][j]);
  }
  int e = 0;
  if (__syncthreads_or(mx >= 32768.f)) {  // rare: the tile's largest |q|, through shared memory
#pragma unroll
    for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (tid % 32 == 0) s_max[tid / 32] = __float_as_int(mx);
    sj_sync();
#pragma unroll
    for (int k = 0; k < kWarps; ++k) mx = fmaxf(mx, __int_as_float(s_max[k]));
    e = sj_q_half_exp(mx);
  }
  const float f = ldexpf(mult, -e);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = tid + i * kThreads;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      w[i][j] = sj_q_half2(w[i][j], f);
    if (c >= kVecs) continue;
    if constexpr (kRawK) {
      // Dim p = 64G + 16c + 4j + r goes to column 64G + 16j + 2c + (r & 1) + 8 (r >> 1): the
      // k-step j fragment slot of lane quad c (every thread read its chunks before the barrier).
      const int row = c / (kHeadDim / 8), d0 = (c % (kHeadDim / 8)) * 8;
#pragma unroll
      for (int h = 0; h < 8; ++h) {
        const int pd = d0 + h, g = pd % 64;
        const int col = pd - g + 16 * ((g % 16) / 4) + 2 * (g / 16) + (g & 1) + 8 * ((g >> 1) & 1);
        sq[sj_row_off<kQRows>(row, col)] = (sj_u16)(w[i][h / 2] >> (16 * (h % 2)));
      }
    } else {
      *chunk(c) = make_uint4(w[i][0], w[i][1], w[i][2], w[i][3]);
    }
  }
  return ldexpf(1.f, e);
}

// kQRegs: this lane's raw Q elements, rows lane/4 and lane/4 + 8 (h = 0, 1), dims
// 64G + 16 (lane % 4) + [0, 16) of each 64-dim group G, as 8 packed pairs; zeros for padding rows.
SJ_DEVICE void sj_q_regs_load(const SjAttnParams& p, long long token, long long qh, unsigned (&raw)[kQRegGroups][2][8]) {
  const int lane = sj_tid() % 32;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = lane / 4 + 8 * h;
    const bool live = sj_row_query(0, r) >= 0;
    const sj_u16* src = (const sj_u16*)p.q + token * p.q_stride[0] + (qh * kGroup + r % kGroup) * p.q_stride[1];
#pragma unroll
    for (int g = 0; g < kQRegGroups; ++g) {
      const int d0 = 64 * g + 16 * (lane % 4);
      if (live && (p.flags & SJ_FLAG_Q_VEC16)) {
        const uint4 x0 = *(const uint4*)(src + d0), x1 = *(const uint4*)(src + d0 + 8);
        raw[g][h][0] = x0.x, raw[g][h][1] = x0.y, raw[g][h][2] = x0.z, raw[g][h][3] = x0.w;
        raw[g][h][4] = x1.x, raw[g][h][5] = x1.y, raw[g][h][6] = x1.z, raw[g][h][7] = x1.w;
      } else {
#pragma unroll
        for (int w = 0; w < 8; ++w)
          raw[g][h][w] = live ? (unsigned)src[(d0 + 2 * w) * p.q_stride[2]] | (unsigned)src[(d0 + 2 * w + 1) * p.q_stride[2]] << 16 : 0u;
      }
    }
  }
}

// kQRegs: the fp16 A fragments of Q from sj_q_regs_load's elements, as sj_q_to_half makes them
// (times mult, and over 2^e when the tile's largest |q| is 2^15 or more: the warp holds the
// whole tile, so its own maximum is the tile's). k-step j of group G takes dims
// 64G + 16 (lane % 4) + 4j + {0, 1} (registers 0: row lane/4, 1: row lane/4 + 8) and + {2, 3}
// (registers 2, 3). Returns 2^e, the factor of the scores' scale.
SJ_DEVICE float sj_q_regs_convert(const unsigned (&raw)[kQRegGroups][2][8], float mult, SjQRegs& qr) {
  float mx = 0.f;  // fmaxf passes over NaN: a NaN q stays NaN below
#pragma unroll
  for (int g = 0; g < kQRegGroups; ++g)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int w = 0; w < 8; ++w) mx = sj_q_absmax2(mx, raw[g][h][w]);
  int e = 0;
  if (__any_sync(0xffffffffu, mx >= 32768.f)) {  // rare
#pragma unroll
    for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    e = sj_q_half_exp(mx);
  }
  const float f = ldexpf(mult, -e);
#pragma unroll
  for (int g = 0; g < kQRegGroups; ++g)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      qr.a[g][j][0] = sj_q_half2(raw[g][0][2 * j], f);
      qr.a[g][j][1] = sj_q_half2(raw[g][1][2 * j], f);
      qr.a[g][j][2] = sj_q_half2(raw[g][0][2 * j + 1], f);
      qr.a[g][j][3] = sj_q_half2(raw[g][1][2 * j + 1], f);
    }
  return ldexpf(1.f, e);
}

// kFp8Half: the scores' scale (base 2) for sj_softmax, the factor of Q for sj_q_to_half and
// of the output. With a scalar K scale, S scales by |k_scale| and Q takes its sign (so the
// scale stays positive); a zero k_scale zeroes Q, an infinite or NaN one makes Q NaN. The V
// scale multiplies the output. (Otherwise only `o` is used, and it is 1: the other kernels
// read sm_scale_log2 where they use it, and their code stays as it was.)
struct SjScales {
  float qk, q_mult, o;
};
// From the scalar K scale k, and the V scale that v() gives (kScalesLate: both as loaded ahead).
// v is a callable so that sj_scales loads V after K's arithmetic, as it always did. Passing the
// loaded value instead changes 24 of the 54 preset objects; it timed neutral on the H100
// (nineteenth session, docs/PERF.md) and waits for its GPU correctness run.
template <typename V>
SJ_DEVICE SjScales sj_scales_of(const SjAttnParams& p, float k, V&& v) {
  SjScales r{0.f, 1.f, 1.f};
  if constexpr (kFp8Half) r.qk = p.sm_scale_log2;
  if constexpr (kFp8Half && kScaleMode == SJ_SCALE_SCALAR) {
    const bool normal = isfinite(k) && k != 0.f;
    r.qk = normal ? p.sm_scale_log2 * fabsf(k) : p.sm_scale_log2;
    r.q_mult = normal ? copysignf(1.f, k) : k == 0.f ? 0.f : sj_bits_to_float(0x7fffffffu);
    r.o = v();
  }
  return r;
}
SJ_DEVICE SjScales sj_scales(const SjAttnParams& p) {
  if constexpr (kFp8Half && kScaleMode == SJ_SCALE_SCALAR) return sj_scales_of(p, ((const float*)p.k_scale)[0], [&] { return ((const float*)p.v_scale)[0]; });
  return sj_scales_of(p, 1.f, [] { return 1.f; });
}
// kScalesLate: the scalar K and V scales as loaded, for sj_scales_of later.
struct SjScaleValues {
  float k, v;
};
SJ_DEVICE SjScaleValues sj_scale_values(const SjAttnParams& p) {
  if constexpr (kFp8Half && kScaleMode == SJ_SCALE_SCALAR) return {((const float*)p.k_scale)[0], ((const float*)p.v_scale)[0]};
  return {1.f, 1.f};
}

// kFp8Half: Q to fp16 (sj_q_to_half), by every thread once Q's copies are in and a barrier
// passed; the scores' scale takes the returned power of two, and Q is ready for the MMAs.
SJ_DEVICE void sj_q_half_once(sj_u16* sq, float q_mult, int* counts, float& qk_scale, bool& q_half) {
  qk_scale *= sj_q_to_half(sq, q_mult, counts);  // the block list's counts are read by now
  if constexpr (kWgmma) sj_fence_proxy_async();
  sj_sync();
  q_half = true;
}

// Per-thread state of the online softmax: a thread holds rows lane/4 (a) and lane/4 + 8 (b).
constexpr int kNoVExp = -1000;  // SjRowState::v_exp before any V scale
struct SjRowState {
  float m_a, m_b;  // running max (base 2), equal across the quad
  float l_a, l_b;  // this thread's part of the running sum
  int v_exp = kNoVExp;  // kPthRaw: this warp's O holds (O / 2^v_exp), P the V scales / 2^v_exp (equal across the warp)
};

// Multiplies this thread's elements of N C fragments by its rows' factors (a: elements 0-1, b: 2-3).
template <int N>
SJ_DEVICE void sj_scale_rows(float (&f)[N][4], float fa, float fb) {
#pragma unroll
  for (int t = 0; t < N; ++t) {
    f[t][0] *= fa;
    f[t][1] *= fa;
    f[t][2] *= fb;
    f[t][3] *= fb;
  }
}

// Multiplies this thread's elements of N C fragments by its columns' factors: n-tile t's
// columns 2 (lane % 4) + {0, 1} by f[t].x and f[t].y, rows a and b alike.
template <int N>
SJ_DEVICE void sj_scale_cols(float (&s)[N][4], const float2 (&f)[N]) {
#pragma unroll
  for (int t = 0; t < N; ++t) {
    s[t][0] *= f[t].x;
    s[t][1] *= f[t].y;
    s[t][2] *= f[t].x;
    s[t][3] *= f[t].y;
  }
}

// kPthRaw: the K (is_v false) or V scales of this lane's S columns in warp ks's key slice of a
// stage (`raw`): n-tile t's columns are keys 8t + 2 (lane % 4) + {0, 1}.
SJ_DEVICE void sj_key_scales(const unsigned char* raw, int ks, bool is_v, float2 (&f)[kSNT]) {
  const float* scales = (const float*)(raw + 2 * kSubK * kHeadDim) + (is_v ? kSubK : 0) + ks * kKeysPerWarp + 2 * (sj_tid() % 4);
#pragma unroll
  for (int t = 0; t < kSNT; ++t) f[t] = *(const float2*)(scales + 8 * t);
}

// Masks S (this warp's rows x its key slice, from key my_n0 on) and gives each row's max
// of the raw scores across the quad (rows lane/4: a, lane/4 + 8: b).
SJ_DEVICE void sj_mask_rowmax(float (&s)[kSNT][4], long long my_n0, long long hi_a, long long hi_b, float w_a, float w_b, float& mx_a,
                              float& mx_b) {
  const int lane = sj_tid() % 32;
  // Mask: key my_n0 + k is visible to a row iff k <= its limit (the row's hi, or
  // -1 when its query did not select the block), in 32 bits. A sub-tile every row
  // sees whole (the common case) skips the per-element compare.
  const long long span_a = w_a > 0.f ? hi_a - my_n0 : -1, span_b = w_b > 0.f ? hi_b - my_n0 : -1;
  const int lim_a = span_a < kKeysPerWarp ? (int)(span_a < -1 ? -1 : span_a) : kKeysPerWarp;
  const int lim_b = span_b < kKeysPerWarp ? (int)(span_b < -1 ? -1 : span_b) : kKeysPerWarp;
  if (!__all_sync(0xffffffffu, lim_a >= kKeysPerWarp - 1 && lim_b >= kKeysPerWarp - 1)) {
#pragma unroll
    for (int j = 0; j < kSNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (j * 8 + (lane & 3) * 2 + (i & 1) > (i < 2 ? lim_a : lim_b)) s[j][i] = sj_neg_inf();
  }
  mx_a = sj_neg_inf(), mx_b = sj_neg_inf();
#pragma unroll
  for (int j = 0; j < kSNT; ++j) {
    mx_a = fmaxf(mx_a, fmaxf(s[j][0], s[j][1]));
    mx_b = fmaxf(mx_b, fmaxf(s[j][2], s[j][3]));
  }
  mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
  mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
  mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
  mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
}

// Masks S (this warp's rows x its key slice, from key my_n0 on), runs the online
// softmax step and leaves P in s; rescales O when a row's max moved.
// c: the scores' scale, base 2 (sm_scale_log2; under kFp8Half times |k_scale|).
// P = 2^(s c - base) of one n-tile of scores (C registers 0, 1: row a; 2, 3: row b) into pr,
// which may be s: one FMA and one exp2 per score.
SJ_DEVICE void sj_exp_scores(const float (&s)[4], float (&pr)[4], float c, float base_a, float base_b) {
  pr[0] = sj_exp2(fmaf(s[0], c, -base_a));
  pr[1] = sj_exp2(fmaf(s[1], c, -base_a));
  pr[2] = sj_exp2(fmaf(s[2], c, -base_b));
  pr[3] = sj_exp2(fmaf(s[3], c, -base_b));
}

SJ_DEVICE void sj_softmax(float c, float (&s)[kSNT][4], long long my_n0, long long hi_a, long long hi_b, float w_a, float w_b, SjRowState& st,
                          float (&acc)[kONT][4]) {
  // Row max of the raw scores, then base 2: c > 0, so max(s) * c == max(s * c).
  float mx_a, mx_b;
  sj_mask_rowmax(s, my_n0, hi_a, hi_b, w_a, w_b, mx_a, mx_b);
  const float m_new_a = fmaxf(st.m_a, mx_a * c), m_new_b = fmaxf(st.m_b, mx_b * c);
  // All-masked rows keep m = -inf: subtract 0 instead (exp2(-inf) = 0), never -inf - -inf.
  const float base_a = m_new_a == sj_neg_inf() ? 0.f : m_new_a;
  const float base_b = m_new_b == sj_neg_inf() ? 0.f : m_new_b;
  const float alpha_a = sj_exp2(st.m_a - base_a), alpha_b = sj_exp2(st.m_b - base_b);
  // P = 2^(s c - m), weighted by the multiplicity only where some row selected the block more
  // than once (a masked row is 0 whatever its weight).
#pragma unroll
  for (int j = 0; j < kSNT; ++j) sj_exp_scores(s[j], s[j], c, base_a, base_b);
  if (__any_sync(0xffffffffu, w_a > 1.f || w_b > 1.f)) sj_scale_rows(s, w_a, w_b);
  float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
  for (int j = 0; j < kSNT; ++j) {
    sum_a += s[j][0] + s[j][1];
    sum_b += s[j][2] + s[j][3];
  }
  st.l_a = st.l_a * alpha_a + sum_a;
  st.l_b = st.l_b * alpha_b + sum_b;
  st.m_a = m_new_a;
  st.m_b = m_new_b;
  if (__any_sync(0xffffffffu, alpha_a != 1.f || alpha_b != 1.f)) sj_scale_rows(acc, alpha_a, alpha_b);  // the max moved: rescale O
}

// S = Q K^T (mma.sync) for row group rg and key slice ks of a staged sub-tile (kRawK: of its
// raw K bytes `raw`, keys past the copy's limit zero-filled).
SJ_DEVICE void sj_qk(const sj_u16* sq, const SjQRegs& qr, const sj_u16* tile, const unsigned char* raw, int rg, int ks, float (&s)[kSNT][4]) {
  const int lane = sj_tid() % 32;
  const unsigned q_base = sj_smem_addr(sq + rg * 16 * kLd);
  // Q's A fragment of the k-step at dims k0..: lane l gives row (l & 7) + 8 x bit 3, dims k0 + 8 x bit 4.
  auto q_frag = [&](unsigned (&a)[4], int k0) { sj_ldsm_x4(a, q_base + (((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + k0 + (lane >> 4) * 8) * 2); };
  if constexpr (kRawK) {
#pragma unroll
    for (int j = 0; j < kSNT; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int g0 = 0; g0 < kHeadDim; g0 += 64) {
      unsigned a[4][4];  // Q's A fragments of the group's 4 k-steps (in sj_q_to_half's column order)
      if constexpr (kQRegs) {
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) a[j][i] = qr.a[g0 / 64][j][i];
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) q_frag(a[j], g0 + 16 * j);
      }
#pragma unroll
      for (int t = 0; t < kSNT; ++t) {
        // Key 8t + lane/4 of the slice, bytes g0 + 16 (lane % 4)..: bytes 4j..4j+3 are k-step j's B fragment.
        const int key = ks * kKeysPerWarp + 8 * t + lane / 4;
        const uint4 b = *(const uint4*)(raw + key * kHeadDim + sj_raw_col(key, g0 + 16 * (lane % 4)));
        const unsigned w[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) sj_mma_u32<kMmaBf16>(s[t], a[j], sj_fp8x2_to_half2(w[j]), sj_fp8x2_to_half2(w[j] >> 16));
      }
    }
    return;
  }
  const unsigned k_base = sj_smem_addr(tile + ks * kKeysPerWarp * kLd), k_tile = sj_smem_addr(tile);
  // ldmatrix row addresses: lane l gives row (l & 7) + 8 x (one bit of l) of key step j, at
  // dims d0 + 8 x (another bit of l). Padded rows: one multiply-add; swizzled: sj_tile_off.
  auto k_row = [&](int j, int k0) -> unsigned {
    if constexpr (kSwTiles)
      return k_tile + 2 * sj_tile_off(ks * kKeysPerWarp + j * 16 + (lane & 7) + (lane >> 4) * 8, k0 + ((lane >> 3) & 1) * 8);
    else
      return k_base + ((j * 16 + (lane & 7) + (lane >> 4) * 8) * kLd + k0 + ((lane >> 3) & 1) * 8) * 2;
  };
#pragma unroll
  for (int j = 0; j < kSNT; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
  for (int k0 = 0; k0 < kHeadDim; k0 += 16) {
    unsigned a[4];
    q_frag(a, k0);
#pragma unroll
    for (int j = 0; j < kSNT / 2; ++j) {
      unsigned b[4];
      sj_ldsm_x4(b, k_row(j, k0));
      sj_mma_u32<kMmaBf16>(s[2 * j], a, b[0], b[1]);
      sj_mma_u32<kMmaBf16>(s[2 * j + 1], a, b[2], b[3]);
    }
  }
}

// One sub-tile for this warp: S = Q K^T over its key slice, masks, online softmax, O += P V.
// mma.sync: only warps whose rows selected the sub-tile (`live`) call it. wgmma: every
// warp of the warpgroup takes part in both products; a warp that is not live adds P = 0.
// c: the scores' scale (sj_softmax).
// `mid` runs while wgmma multiplies S = Q K^T (fp8 converts V there); under mma.sync, between
// the softmax and P V (kSplitKV waits for V there).
struct SjNoMid {
  __device__ __forceinline__ void operator()() const {}
};
template <typename Mid>
SJ_DEVICE void sj_subtile(float c, const sj_u16* sq, const SjQRegs& qr, const sj_u16* tile, const unsigned char* raw, long long n0, int rg, int ks, long long hi_a,
                          long long hi_b, float w_a, float w_b, bool live, SjRowState& st, float (&acc)[kONT][4], Mid&& mid) {
  const int lane = sj_tid() % 32;
  const long long my_n0 = n0 + ks * kKeysPerWarp;
  const unsigned v_base = sj_smem_addr(tile + kKvHalves + ks * kKeysPerWarp * kLd);
  // ldmatrix row addresses of V (as sj_qk's of K).
  const unsigned v_tile = sj_smem_addr(tile + kKvHalves);
  auto v_row = [&](int j, int dt) -> unsigned {
    if constexpr (kSwTiles)
      return v_tile + 2 * sj_tile_off(ks * kKeysPerWarp + j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dt * 16 + (lane >> 4) * 8);
    else
      return v_base + ((j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLd + dt * 16 + (lane >> 4) * 8) * 2;
  };
  float s[kSNT][4];
  if constexpr (kWgmma) {
    // A: the warpgroup's 64 rows of Q, B: the K part, both K-major: dims 16kk.. sit
    // in region kk / 4 at byte 32 (kk % 4) of each row; 8-row atoms 1024 bytes apart.
    const unsigned qa = sj_smem_addr(sq) + (rg / 4) * 64 * 128, ka = sj_smem_addr(tile);
    sj_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk)
      sj_wgmma_ss<kKeysPerWarp, kMmaBf16>(s, sj_wgmma_desc_sw128(qa + (kk / 4) * kQRows * 128 + (kk % 4) * 32, 16, 1024),
                                       sj_wgmma_desc_sw128(ka + (kk / 4) * kSubK * 128 + (kk % 4) * 32, 16, 1024), kk);
    sj_wgmma_commit();
    mid();
    sj_wgmma_wait();
    sj_wgmma_pin(s);
  } else {
    sj_qk(sq, qr, tile, raw, rg, ks, s);
  }
  if constexpr (kPthRaw) {  // S times the K scales
    float2 k2[kSNT];
    sj_key_scales(raw, ks, false, k2);
    sj_scale_cols(s, k2);
  }
  if (live) sj_softmax(c, s, my_n0, hi_a, hi_b, w_a, w_b, st, acc);
  if constexpr (!kWgmma) mid();
  if constexpr (kPthRaw) {  // P times the V scales over 2^v_exp (the row sums are taken by now)
    float2 v2[kSNT];
    sj_key_scales(raw, ks, true, v2);
    unsigned vmax = 0u;  // the largest |V scale| of the slice, as bits (non-negative floats order as integers)
#pragma unroll
    for (int t = 0; t < kSNT; ++t) vmax = max(vmax, max(__float_as_uint(fabsf(v2[t].x)), __float_as_uint(fabsf(v2[t].y))));
    const float vm = __uint_as_float(__reduce_max_sync(0xffffffffu, vmax));
    const int e = vm > 0.f && isfinite(vm) ? ilogbf(vm) : kNoVExp;
    if (e > st.v_exp) {  // warp-uniform: O to the new exponent
      if (st.v_exp != kNoVExp) {
        const float f = ldexpf(1.f, st.v_exp - e);
        sj_scale_rows(acc, f, f);
      }
      st.v_exp = e;
    }
    // Exact (a power of two, even for subnormal scales); no V scale above zero yet: each is 0 (or NaN).
#pragma unroll
    for (int t = 0; t < kSNT; ++t)
      v2[t] = st.v_exp == kNoVExp ? make_float2(v2[t].x * 0.f, v2[t].y * 0.f) : make_float2(ldexpf(v2[t].x, -st.v_exp), ldexpf(v2[t].y, -st.v_exp));
    sj_scale_cols(s, v2);
  }
  // O += P V: P's A fragments are S's C fragments of two neighbouring n-tiles.
  if constexpr (kWgmma) {
    // B: V, N-major: keys 16j.. are the two 8-row atoms from byte 2048 j, dims 64r.. in region r (sub_k x 128 bytes).
    // Every A fragment is packed before the fence: a register written between two
    // wgmma makes the compiler fence (and serialize) them.
    unsigned a[kSubK / 16][4];
#pragma unroll
    for (int j = 0; j < kSubK / 16; ++j) {
      a[j][0] = live ? sj_pack_half2<kMmaBf16>(s[2 * j][0], s[2 * j][1]) : 0u;
      a[j][1] = live ? sj_pack_half2<kMmaBf16>(s[2 * j][2], s[2 * j][3]) : 0u;
      a[j][2] = live ? sj_pack_half2<kMmaBf16>(s[2 * j + 1][0], s[2 * j + 1][1]) : 0u;
      a[j][3] = live ? sj_pack_half2<kMmaBf16>(s[2 * j + 1][2], s[2 * j + 1][3]) : 0u;
    }
    sj_wgmma_fence();
#pragma unroll
    for (int j = 0; j < kSubK / 16; ++j)
      sj_wgmma<kONT * 8, kMmaBf16, 1>(acc, a[j], sj_wgmma_desc_sw128(v_base + j * 2048, kSubK * 128, 1024), 1);
    sj_wgmma_commit();
    sj_wgmma_wait();
    sj_wgmma_pin(acc);
  } else {
#pragma unroll
    for (int j = 0; j < kKeysPerWarp / 16; ++j) {
      unsigned a[4];
      a[0] = sj_pack_half2<kMmaBf16>(s[2 * j][0], s[2 * j][1]);
      a[1] = sj_pack_half2<kMmaBf16>(s[2 * j][2], s[2 * j][3]);
      a[2] = sj_pack_half2<kMmaBf16>(s[2 * j + 1][0], s[2 * j + 1][1]);
      a[3] = sj_pack_half2<kMmaBf16>(s[2 * j + 1][2], s[2 * j + 1][3]);
      if constexpr (kRawV) {
        // P's k order: lane quad c holds keys 2c, 2c + 1 (B register 0) and 2c + 8, 2c + 9
        // (register 1) of the step; byte_perm pairs a dim's bytes of two keys, one cvt makes them
        // a register. Lane group g: dims 128G + 16g + 4w + {0..3} for n-tiles 16G + 4w + {0..3}.
        const int r0 = kSubK + ks * kKeysPerWarp + 16 * j + 2 * (lane % 4);  // V rows follow K's
#pragma unroll
        for (int g0 = 0; g0 < kHeadDim; g0 += 128) {
          const int b = g0 + 16 * (lane / 4);
          auto row = [&](int r) { return *(const uint4*)(raw + r * kHeadDim + sj_raw_col(r, b)); };
          const uint4 x0 = row(r0), x1 = row(r0 + 1), x2 = row(r0 + 8), x3 = row(r0 + 9);
          const unsigned k0[4] = {x0.x, x0.y, x0.z, x0.w}, k1[4] = {x1.x, x1.y, x1.z, x1.w};
          const unsigned k8[4] = {x2.x, x2.y, x2.z, x2.w}, k9[4] = {x3.x, x3.y, x3.z, x3.w};
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            // Bytes {key 0, key 1} of dims 4w, 4w + 1 (0x5140), then of dims 4w + 2, 4w + 3 (0x7362).
            const unsigned lo01 = __byte_perm(k0[w], k1[w], 0x5140), hi01 = __byte_perm(k0[w], k1[w], 0x7362);
            const unsigned lo89 = __byte_perm(k8[w], k9[w], 0x5140), hi89 = __byte_perm(k8[w], k9[w], 0x7362);
            const int t = g0 / 8 + 4 * w;
            sj_mma_u32<kMmaBf16>(acc[t], a, sj_fp8x2_to_half2(lo01), sj_fp8x2_to_half2(lo89));
            sj_mma_u32<kMmaBf16>(acc[t + 1], a, sj_fp8x2_to_half2(lo01 >> 16), sj_fp8x2_to_half2(lo89 >> 16));
            sj_mma_u32<kMmaBf16>(acc[t + 2], a, sj_fp8x2_to_half2(hi01), sj_fp8x2_to_half2(hi89));
            sj_mma_u32<kMmaBf16>(acc[t + 3], a, sj_fp8x2_to_half2(hi01 >> 16), sj_fp8x2_to_half2(hi89 >> 16));
          }
        }
        continue;
      }
#pragma unroll
      for (int dt = 0; dt < kHeadDim / 16; ++dt) {
        unsigned b[4];
        sj_ldsm_x4_trans(b, v_row(j, dt));
        sj_mma_u32<kMmaBf16>(acc[2 * dt], a, b[0], b[1]);
        sj_mma_u32<kMmaBf16>(acc[2 * dt + 1], a, b[2], b[3]);
      }
    }
  }
}

// Tensor copies bring whole sub-tiles: warp ks zeroes its V rows past key `hi` (0 x garbage
// is not 0; K there is masked), ordered before the producer's next copy into the stage.
SJ_DEVICE void sj_zero_v_past(sj_u16* tile, long long n0, int ks, long long hi, int lane) {
  const long long last = hi - (n0 + ks * kKeysPerWarp);  // rows r <= last are visible
  sj_u16* v = tile + kKvHalves;
  for (int i = lane; i < kKeysPerWarp * (kHeadDim / 8); i += 32) {
    const int r = i / (kHeadDim / 8), c = (i % (kHeadDim / 8)) * 8;
    if (r > last) *(uint4*)(v + sj_tile_off(ks * kKeysPerWarp + r, c)) = make_uint4(0u, 0u, 0u, 0u);
  }
  sj_fence_proxy_async();
}

// kDimSplit: P = exp2(S c - base) of warp ks's key slice into pr (which may be s) and into the
// shared P rows s_p; adds the slice's row sums to sum_a / sum_b.
SJ_DEVICE void sj_put_p(const float (&s)[kSNT][4], float (&pr)[kSNT][4], float c, float base_a, float base_b, int ks, sj_u16* s_p,
                        float& sum_a, float& sum_b) {
  const int lane = sj_tid() % 32;
#pragma unroll
  for (int j = 0; j < kSNT; ++j) {
    sj_exp_scores(s[j], pr[j], c, base_a, base_b);
    sum_a += pr[j][0] + pr[j][1];
    sum_b += pr[j][2] + pr[j][3];
    const int key = ks * kKeysPerWarp + j * 8 + (lane & 3) * 2;
    *(unsigned*)(s_p + (lane / 4) * kPLd + key) = sj_pack_half2<kMmaBf16>(pr[j][0], pr[j][1]);
    *(unsigned*)(s_p + (lane / 4 + 8) * kPLd + key) = sj_pack_half2<kMmaBf16>(pr[j][2], pr[j][3]);
  }
}

// kDimSplit, one sub-tile for warp ks (s_p, s_mx: its P and row-max buffers). S over its key
// slice (masked past the rows' hi); P of its slice to s_p under the warps' common running max
// m; after a barrier, O of its head dims += P V over all the sub-tile's keys. When some row's
// max exceeds m by more than kLazyMax (every warp learns it from the barrier's OR), the warps
// take the sub-tile's max from every warp's (s_mx), redo P, rescale O and meet again; without
// kLazy, and for the workgroup's `first` sub-tile, they do that at once. Every math warp calls
// it for every sub-tile (its barriers are the math warps'). `mid` runs before the first barrier
// (kTmaSplitKV: the wait for V and the zeroing of the warp's V rows past the query); without
// kTmaSplitKV those rows are zero by the call.
template <typename Mid>
SJ_DEVICE void sj_subtile_ds(const SjAttnParams& p, const sj_u16* sq, const sj_u16* tile, long long n0, int ks, long long hi_a,
                             long long hi_b, float w_a, float w_b, SjRowState& st, float (&acc)[kONT][4], sj_u16* s_p, float* s_mx, bool first,
                             Mid&& mid) {
  const int lane = sj_tid() % 32;
  const unsigned v_tile = sj_smem_addr(tile + kKvHalves);
  float s[kSNT][4];
  SjQRegs none;  // (unused: the dim split has tensor copies, kQRegs has none)
  sj_qk(sq, none, tile, nullptr, 0, ks, s);
  float mx_a, mx_b;
  sj_mask_rowmax(s, n0 + ks * kKeysPerWarp, hi_a, hi_b, w_a, w_b, mx_a, mx_b);
  if ((lane & 3) == 0) {
    s_mx[ks * 16 + lane / 4] = mx_a;
    s_mx[ks * 16 + lane / 4 + 8] = mx_b;
  }
  bool kept = false;  // P stands under the running max (kLazy)
  if (kLazy && !first) {  // the first sub-tile always sets m: no P under the old one
    const float c = p.sm_scale_log2;
    const bool over = mx_a * c > st.m_a + kLazyMax || mx_b * c > st.m_b + kLazyMax;
    float pr[kSNT][4];  // P under m (S stays for a second pass)
    float sum_a = 0.f, sum_b = 0.f;
    sj_put_p(s, pr, c, st.m_a == sj_neg_inf() ? 0.f : st.m_a, st.m_b == sj_neg_inf() ? 0.f : st.m_b, ks, s_p, sum_a, sum_b);
    mid();
    kept = !sj_named_sync_or(kMathThreads, over);  // all of P, every row max, every warp's zeroed V rows; any warp over?
    if (kept) st.l_a += sum_a, st.l_b += sum_b;
  } else {
    mid();
    sj_named_sync(kMathThreads);  // every slice's row max
  }
  if (!kept) {  // workgroup-uniform: the sub-tile's max from every warp's
#pragma unroll
    for (int k = 0; k < kKeySplit; ++k) {
      mx_a = fmaxf(mx_a, s_mx[k * 16 + lane / 4]);
      mx_b = fmaxf(mx_b, s_mx[k * 16 + lane / 4 + 8]);
    }
    // The online softmax step with that max: every warp keeps the same m, its own slice's
    // share of l, and its own dims of O.
    const float c = p.sm_scale_log2;
    const float m_new_a = fmaxf(st.m_a, mx_a * c), m_new_b = fmaxf(st.m_b, mx_b * c);
    const float base_a = m_new_a == sj_neg_inf() ? 0.f : m_new_a;
    const float base_b = m_new_b == sj_neg_inf() ? 0.f : m_new_b;
    const float alpha_a = sj_exp2(st.m_a - base_a), alpha_b = sj_exp2(st.m_b - base_b);
    float sum_a = 0.f, sum_b = 0.f;
    sj_put_p(s, s, c, base_a, base_b, ks, s_p, sum_a, sum_b);  // in place
    st.l_a = st.l_a * alpha_a + sum_a;
    st.l_b = st.l_b * alpha_b + sum_b;
    st.m_a = m_new_a;
    st.m_b = m_new_b;
    if (__any_sync(0xffffffffu, alpha_a != 1.f || alpha_b != 1.f)) {
#pragma unroll
      for (int t = 0; t < kDimsPerWarp / 8; ++t) acc[t][0] *= alpha_a, acc[t][1] *= alpha_a, acc[t][2] *= alpha_b, acc[t][3] *= alpha_b;
    }
    sj_named_sync(kMathThreads);  // all of P, and every warp's zeroed V rows
  }
  const unsigned p_base = sj_smem_addr(s_p);
#pragma unroll
  for (int j = 0; j < kSubK / 16; ++j) {
    unsigned a[4];
    sj_ldsm_x4(a, p_base + (((lane & 7) + ((lane >> 3) & 1) * 8) * kPLd + j * 16 + (lane >> 4) * 8) * 2);
#pragma unroll
    for (int dt = 0; dt < kDimsPerWarp / 16; ++dt) {
      unsigned b[4];
      sj_ldsm_x4_trans(b, v_tile + 2 * sj_tile_off(j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, ks * kDimsPerWarp + dt * 16 + (lane >> 4) * 8));
      sj_mma_u32<kMmaBf16>(acc[2 * dt], a, b[0], b[1]);
      sj_mma_u32<kMmaBf16>(acc[2 * dt + 1], a, b[2], b[3]);
    }
  }
}

// Stores one finished output element: bf16/fp16 into out (prefill, and decode
// with one chunk), the normalized float partial (decode split-K over two
// kernels), or this workgroup's part in shared memory (decode merged in its cluster).
SJ_DEVICE void sj_store(const SjAttnParams& p, float* s_part, long long token, long long head, int d, float o, long long chunk) {
  if (kDecode && kCluster > 1) {
    s_part[(head % kGroup) * kHeadDim + d] = o;
  } else if (kDecode && kChunks > 1) {
    ((float*)p.out)[((chunk * p.total_q + token) * p.num_heads + head) * kHeadDim + d] = o;
  } else {
    ((sj_u16*)p.out)[token * p.out_stride[0] + head * p.out_stride[1] + d * p.out_stride[2]] = sj_f32_to_half<kQDtype>(o);
  }
}
// Four consecutive dims d..d+3 (d a multiple of 4): one vector store where the layout allows.
SJ_DEVICE void sj_store4(const SjAttnParams& p, float* s_part, long long token, long long head, int d, const float (&o)[4], long long chunk) {
  if (kDecode && kChunks > 1 && kCluster == 1) {  // rows of head_dim floats: 16-byte aligned
    *(float4*)&((float*)p.out)[((chunk * p.total_q + token) * p.num_heads + head) * kHeadDim + d] = make_float4(o[0], o[1], o[2], o[3]);
    return;
  }
  if (!(kDecode && kCluster > 1) && p.out_stride[2] == 1) {
    sj_u16* dst = (sj_u16*)p.out + token * p.out_stride[0] + head * p.out_stride[1] + d;
    if (((unsigned long long)dst & 7u) == 0) {
      const unsigned lo = sj_f32_to_half<kQDtype>(o[0]) | (unsigned)sj_f32_to_half<kQDtype>(o[1]) << 16;
      const unsigned hi = sj_f32_to_half<kQDtype>(o[2]) | (unsigned)sj_f32_to_half<kQDtype>(o[3]) << 16;
      *(uint2*)dst = make_uint2(lo, hi);
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) sj_store(p, s_part, token, head, d + j, o[j], chunk);
}
SJ_DEVICE void sj_store_lse(const SjAttnParams& p, float* s_part, long long token, long long head, float m, float l, long long chunk) {
  const float lse = l > 0.f ? m + sj_log2(l) : sj_neg_inf();
  if (kDecode && kCluster > 1)
    s_part[kGroup * kHeadDim + head % kGroup] = lse;
  else if (kDecode && kChunks > 1)
    ((float*)p.lse)[(chunk * p.total_q + token) * p.num_heads + head] = lse;
}

// Decode, one launch: after every chunk of the cluster stored its part, each
// workgroup merges a share of the (head, dim) elements by LSE, reading its
// peers' shared memory, and writes the output.
SJ_DEVICE void sj_cluster_merge(const SjAttnParams& p, const float* s_part, long long token, long long qh) {
  if constexpr (kCluster > 1) {
    sj_cluster_sync();  // every part is stored
    const unsigned rank = sj_cluster_rank();
    for (int i = rank * kThreads + sj_tid(); i < kGroup * kHeadDim; i += kCluster * kThreads) {
      const int g = i / kHeadDim, d = i % kHeadDim;
      float lse[kCluster], w[kCluster];
#pragma unroll
      for (int c = 0; c < kCluster; ++c) lse[c] = sj_ld_cluster_f32(s_part + kGroup * kHeadDim + g, c);
      const float den = sj_lse_weights(lse, w);
      float num = 0.f;
#pragma unroll
      for (int c = 0; c < kCluster; ++c) num += w[c] * sj_ld_cluster_f32(s_part + g * kHeadDim + d, c);
      ((sj_u16*)p.out)[token * p.out_stride[0] + (qh * kGroup + g) * p.out_stride[1] + d * p.out_stride[2]] =
          sj_f32_to_half<kQDtype>(den > 0.f ? num / den : 0.f);  // padded request row: zeros
    }
    sj_cluster_sync();  // no workgroup leaves while a peer still reads its shared memory
  }
}

// Q of every row (zeros for padding rows) -> shared, by the first kMathThreads threads: 16-byte
// cp.async (waited for with the first K/V sub-tile) or batched loads. Never one dependent load
// per element: the compiler cannot reorder global loads across shared stores.
SJ_DEVICE void sj_load_q(const SjAttnParams& p, sj_u16* sq, const long long* q_token, long long qh, int tid) {
  if (p.flags & SJ_FLAG_Q_VEC16) {
    constexpr int kVecPerRow = kHeadDim / 8;
    for (int c = tid; c < kRowGroups * 16 * kVecPerRow; c += kMathThreads) {
      const int r = c / kVecPerRow, d = (c % kVecPerRow) * 8;
      const int q = sj_row_query(r / 16, r % 16);
      const bool live = q >= 0 && q_token[q] >= 0;
      const sj_u16* src = (const sj_u16*)p.q;
      if (live) src += q_token[q] * p.q_stride[0] + (qh * kGroup + (r % 16) % kGroup) * p.q_stride[1] + d;
      sj_cp_async16(sj_smem_addr(sq + sj_row_off<kQRows>(r, d)), src, live ? 16 : 0);
    }
  } else {
    constexpr int kElems = kRowGroups * 16 * kHeadDim, kBatch = 8;
    for (int i0 = tid; i0 < kElems; i0 += kMathThreads * kBatch) {
      sj_u16 v[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = i0 + u * kMathThreads, r = i / kHeadDim, d = i % kHeadDim;
        const int q = i < kElems ? sj_row_query(r / 16, r % 16) : -1;
        v[u] = 0;
        if (q >= 0 && q_token[q] >= 0)
          v[u] = ((const sj_u16*)p.q)[q_token[q] * p.q_stride[0] + (qh * kGroup + (r % 16) % kGroup) * p.q_stride[1] + d * p.q_stride[2]];
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = i0 + u * kMathThreads;
        if (i < kElems) sq[sj_row_off<kQRows>(i / kHeadDim, i % kHeadDim)] = v[u];
      }
    }
  }
}
}  // namespace

#if 1 > 1
#define SJ_CLUSTER_DIMS __cluster_dims__(1, 1, 1)
#else
#define SJ_CLUSTER_DIMS
#endif
#if false
#define SJ_KERNEL_PARAMS SjAttnParams p, const __grid_constant__ SjTmaMaps maps  // the maps' address is in parameter space
#else
#define SJ_KERNEL_PARAMS SjAttnParams p
#endif
SJ_GLOBAL void __launch_bounds__(128, 3) SJ_CLUSTER_DIMS sparsejit_prefill(SJ_KERNEL_PARAMS) {
  extern __shared__ __align__(16) unsigned char sj_smem[];
  if (sj_dynamic_smem_bytes() < (unsigned)kSmemBytes) __trap();  // host and template disagree: fail loudly
  if (kSwTiles && (sj_smem_addr(sj_smem) & 1023u)) __trap();     // the swizzle atoms need a 1024-byte aligned base
#if false
  const SjTmaMaps* tma_maps = &maps;
#else
  const SjTmaMaps* tma_maps = nullptr;  // no tensor copies
#endif
  // Decode lets the next kernel (the merge, or any programmatic dependent launch) be placed
  // now: it waits (griddepcontrol.wait) for this grid's end before it reads anything.
  if (kDecode) sj_grid_launch_dependents();
#ifdef SJ_TIMELINE
  unsigned long long sj_marks[11] = {};
#endif
  SJ_MARK(0);  // start
  sj_u16* sq = (sj_u16*)sj_smem;
  sj_u16* tiles = (sj_u16*)(sj_smem + kOffTiles);
  unsigned char* raws = sj_smem + kOffTiles + kStages * kTileBytes;  // fp8: the stages' raw bytes
  float* s_part = (float*)(sj_smem + kOffTiles + kScratchBytes);  // decode cluster merge: [G][head_dim] then [G] LSE
  int* l_blk = (int*)(sj_smem + kOffList);
  int* l_page = l_blk + kListCap;
  int* l_nsub = l_page + kListCap;
  int* l_qmask = l_nsub + kListCap;
  int* l_raw = l_qmask + kListCap;
  int* l_rawpage = l_raw + kListCap;
  unsigned char* l_mult = (unsigned char*)(l_rawpage + kListCap);
  long long* q_token = (long long*)(sj_smem + kOffMisc);  // [16]: token of each tile query, -1 if none
  long long* q_hi = q_token + 16;                          // [16]: last visible key position (-1: none)
  int* counts = (int*)(q_hi + 16);                         // [32]: per-warp counts for the list compaction
  const unsigned bars = sj_smem_addr(counts + 32);          // kTma: [STAGES] full barriers, then [STAGES] empty ones

  const int tid = sj_tid(), warp = tid / 32, lane = tid % 32;
  const long long qh = sj_bid_y();            // this workgroup's kGroup query heads start at qh * kGroup
  const long long kvh = qh / kKvHeadSplit;  // the kv head they read
  long long req, chunk = 0;
  int t_begin = 0, t_end = kTopk;
  int pre_blk = -1, pre_page = -1;  // decode: prefetched entry `tid` (block id in the table, its page)
  unsigned q_raw[kQRegGroups][2][8];  // kQRegs: this lane's Q elements, until they become q_regs
  SjQRegs q_regs;                     // kQRegs: Q's A fragments (fp16)
  SjScales q_regs_scales{};           // kQRegs: the scales, loaded with Q
  SjScaleValues q_scale_values{};     // kScalesLate: the scales as loaded with Q
  if (kDecode) {
    // grid: (total_q, num_kv_heads, chunks); sj_decode_row places each query row.
    const long long token = sj_bid_x();
    chunk = sj_bid_z();
    if constexpr (kTma) {
      if (tid == 0) {
        for (int s = 0; s < kStages; ++s) {
          sj_mbar_init(bars + 8 * s, 1);                       // full: the producer's arrival (and its bytes)
          sj_mbar_init(bars + 8 * (kStages + s), kMathWarps);  // empty: one arrival per math warp
          sj_mbar_init(bars + 8 * (2 * kStages + s), 1);       // V-full (kTmaSplitKV): the producer's, for the V part
        }
        sj_mbar_init_fence();
      }
      if (tid == kMathThreads) {
        sj_prefetch_tensormap(&tma_maps->k);
        sj_prefetch_tensormap(&tma_maps->v);
      }
    }
    // decode.dependent_launch: this grid may have started while the stream's previous kernel
    // still runs. Everything above touches only this workgroup's registers and shared memory
    // and the kernel parameters; every global access comes after this wait.
    sj_grid_dependency_wait();
    SJ_MARK(1);  // the previous kernel is done
    t_begin = (int)chunk * kChunkSize;
    t_end = t_begin + kChunkSize < kTopk ? t_begin + kChunkSize : kTopk;
    // Entry `tid` of the first segment: its block id is loaded first, since it depends on
    // the token alone, so its latency overlaps the request's loads (token_to_req, then
    // query_start_loc and seq_lens); its page then overlaps the second of those. The
    // entries are filtered by the query's position below.
    const int pf = kProducerList ? tid - kMathThreads : tid;  // the entry this thread prefetches
    long long b = -1;
    if (pf >= 0 && pf < kListCap && t_begin + pf < t_end)
      b = ((const int*)p.topk)[kvh * p.topk_stride[0] + token * p.topk_stride[1] + (t_begin + pf) * p.topk_stride[2]];
    if constexpr (kQRegs) {  // in flight while the request is found
      sj_q_regs_load(p, token, qh, q_raw);
      if constexpr (kScalesLate)
        q_scale_values = sj_scale_values(p);
      else
        q_regs_scales = sj_scales(p);
    }
    long long pos;
    sj_decode_row(p, token, req, pos);
    if constexpr (kScalesLate) q_regs_scales = sj_scales_of(p, q_scale_values.k, [&] { return q_scale_values.v; });
    if (b >= 0 && b < p.max_blocks) {
      pre_blk = (int)b;
      pre_page = ((const int*)p.block_table)[req * p.bt_stride + b];
    }
    if (tid == 0) {
      q_token[0] = token;
      q_hi[0] = pos;
      SJ_MARK(2);  // the query's position is known
    }
  } else {
    // grid: (ceil(max_query_len / Q_TILE), num_kv_heads, batch). Query i of request b sits at prefix_lens[b] + i.
    req = sj_bid_z();
    const long long q_start = ((const int*)p.cu_seqlens_q)[req];
    const long long q_len = ((const int*)p.cu_seqlens_q)[req + 1] - q_start;
    const long long i0 = sj_bid_x() * kQTile;
    if (i0 >= q_len) return;
    if (tid < kQTile) {
      const long long i = i0 + tid;
      const long long pos = ((const int*)p.prefix_lens)[req] + i;
      const long long last = ((const int*)p.seq_lens)[req] - 1;
      q_token[tid] = i < q_len ? q_start + i : -1;
      q_hi[tid] = i < q_len ? (pos < last ? pos : last) : -1;
    }
  }
  sj_sync();
  SJ_MARK(3);  // prologue done
  const SjScales scales = kQRegs ? q_regs_scales : sj_scales(p);
  bool q_half = !kFp8Half;     // kFp8Half: whether sj_q_to_half ran
  float qk_scale = scales.qk;  // kFp8Half: and then times its power of two
  if constexpr (kQRegs) {  // Q's loads are in by now
    qk_scale *= sj_q_regs_convert(q_raw, scales.q_mult, q_regs);
    q_half = true;
  }
  // kTma: the math warps load Q (they wait for it among themselves).
  if (!kQRegs && (!kTma || tid < kMathThreads)) sj_load_q(p, sq, q_token, qh, tid);

  // This thread's rows, and what its warp covers.
  const int rg = warp % kRowGroups, ks = warp / kRowGroups;
  const int qa = sj_row_query(rg, lane / 4), qb = sj_row_query(rg, lane / 4 + 8);
  const long long hi_a = qa >= 0 ? q_hi[qa] : -1, hi_b = qb >= 0 ? q_hi[qb] : -1;
  int warp_qmask = 0;
  long long warp_hi = -1, cta_hi = -1;
  for (int q = 0; q < kQTile; ++q) {
    if (q / kQPerRG == rg) {
      warp_qmask |= 1 << q;
      warp_hi = q_hi[q] > warp_hi ? q_hi[q] : warp_hi;
    }
    cta_hi = q_hi[q] > cta_hi ? q_hi[q] : cta_hi;
  }
  SjRowState st{sj_neg_inf(), sj_neg_inf(), 0.f, 0.f};
  float acc[kONT][4];
#pragma unroll
  for (int t = 0; t < kONT; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;

  const int* bt_row = (const int*)p.block_table + req * p.bt_stride;
  int pipe = 0;  // kTma: sub-tiles through the stages so far (stage pipe % STAGES, its phase pipe / STAGES)
  // Entry u of the block list: block b on `page`, selected by the queries of `qmask`, the
  // last of which sees key bhi (its sub-tiles past bhi are skipped). `page` by reference: the
  // general path's l_rawpage[i] is read after the stores, as it was written inline.
  auto list_put = [&](int u, int b, const int& page, long long bhi, int qmask) {
    const long long nsub = (bhi - (long long)b * kBlock) / kSubK + 1;
    l_blk[u] = b;
    l_page[u] = page;
    l_nsub[u] = nsub < kSubs ? (int)nsub : kSubs;
    l_qmask[u] = qmask;
  };
  for (int seg0 = 0; seg0 < kEntries; seg0 += kListCap) {
    int n_list = 0;
    if constexpr (kProducerList) {
      // 1-2. One segment. The producer warp: lane i holds entry i (prefetched); the valid
      // ones, in order, are the list (one query: duplicates stay separate entries).
      if (warp == kMathWarps) {
        int blk = -1, page = -1;
        if (pre_blk >= 0 && (long long)pre_blk * kBlock <= q_hi[0]) blk = pre_blk, page = pre_page;
        if (page < 0 || page >= p.num_pages) blk = -1;
        const unsigned valid = __ballot_sync(0xffffffffu, blk >= 0);
        if (blk >= 0) {
          const int u = __popc(valid & ((1u << lane) - 1u));
          list_put(u, blk, page, q_hi[0], 1);
          l_mult[u] = 1;
        }
        n_list = __popc(valid);
        if (lane == 0) counts[0] = n_list;
        __syncwarp();
        sj_handoff_arrive(kThreads);
      } else {
        sj_handoff_wait(kThreads);
        n_list = counts[0];
      }
    } else {
      // 1. The segment's top-k entries: block id, or -1 (padding, out of the block
      //    table, unmapped or beyond the cache, or wholly after the query).
      for (int i = tid; i < kListCap; i += kThreads) {
        const int e = seg0 + i, q = e / kChunkSize, t = t_begin + e % kChunkSize;
        int blk = -1, page = -1;
        if (kDecode && seg0 == 0 && i == tid) {  // prefetched
          if (pre_blk >= 0 && (long long)pre_blk * kBlock <= q_hi[0]) blk = pre_blk, page = pre_page;
        } else if (e < kEntries && t < t_end && q_token[q] >= 0) {
          const long long b = ((const int*)p.topk)[kvh * p.topk_stride[0] + q_token[q] * p.topk_stride[1] + t * p.topk_stride[2]];
          if (b >= 0 && b < p.max_blocks && b * kBlock <= q_hi[q]) blk = (int)b, page = bt_row[b];
        }
        if (page < 0 || page >= p.num_pages) blk = -1;  // unmapped or beyond the KV cache: masked
        l_raw[i] = blk;
        l_rawpage[i] = page;
      }
      sj_sync();
      // 2. Distinct blocks in first-occurrence order, with each query's multiplicity.
      for (int i0 = 0; i0 < kListCap; i0 += kThreads) {
        const int i = i0 + tid;
        const int b = i < kListCap ? l_raw[i] : -1;
        bool first = b >= 0;
        if (kQTile > 1 && first)
          for (int j = 0; j < i; ++j)
            if (l_raw[j] == b) {
              first = false;
              break;
            }
        const unsigned ballot = __ballot_sync(0xffffffffu, first);
        if (lane == 0) counts[warp] = __popc(ballot);
        sj_sync();
        int base = n_list, total = 0;
        for (int w = 0; w < kWarps; ++w) {
          base += w < warp ? counts[w] : 0;
          total += counts[w];
        }
        if (first) {
          const int u = base + __popc(ballot & ((1u << lane) - 1u));
          int qmask = 0;
          long long bhi = -1;
          for (int q = 0; q < kQTile; ++q) {
            int count = 1;  // Q_TILE = 1: duplicates stay separate entries
            if (kQTile > 1) {
              // Query q's entries are [q * CHUNK, (q + 1) * CHUNK) of the tile; earlier ones hold no b.
              const int j0 = i > q * kChunkSize - seg0 ? i : q * kChunkSize - seg0;
              const int j1 = kListCap < (q + 1) * kChunkSize - seg0 ? kListCap : (q + 1) * kChunkSize - seg0;
              count = 0;
              for (int j = j0; j < j1; ++j) count += l_raw[j] == b;
            }
            l_mult[u * kQTile + q] = (unsigned char)count;
            if (count) {
              qmask |= 1 << q;
              bhi = q_hi[q] > bhi ? q_hi[q] : bhi;
            }
          }
          list_put(u, b, l_rawpage[i], bhi, qmask);
        }
        n_list += total;
        sj_sync();
      }
    }
    SJ_MARK(4);  // the block list is ready
    // 3. Stream the sub-tiles of the list through the stages; every warp computes
    //    the ones its queries selected.
    int ld_u = 0, ld_sub = 0, cu_u = 0, cu_sub = 0;
    int ld_slot = 0, cu_slot = 0;
#define SJ_ADVANCE(u, sub)     \
  if (++sub >= l_nsub[u]) {    \
    ++u;                       \
    sub = 0;                   \
  }
    const bool warp_pipe = kWarpPipe && sj_fp8_staged(p);  // workgroup-uniform
    auto issue = [&](int slot) {
      if (ld_u < n_list) {
        if (kWarpPipe && warp_pipe)
          sj_load_subtile_warp(p, raws + slot * kRawBytes, kvh, l_page[ld_u], ld_sub, (long long)l_blk[ld_u] * kBlock + ld_sub * kSubK, cta_hi, ks,
                               lane);
        else
          sj_load_subtile(p, tiles + slot * (kTileBytes / 2), raws + slot * kRawBytes, kvh, l_page[ld_u], ld_sub,
                          (long long)l_blk[ld_u] * kBlock + ld_sub * kSubK, cta_hi);
        SJ_ADVANCE(ld_u, ld_sub)
      } else if (kSplitKV && warp_pipe) {
        sj_cp_async_commit();  // an empty K group: every stage counts two
      }
      sj_cp_async_commit();
    };
    auto compute = [&](int slot, int it) {  // it: the workgroup's sub-tiles before this one (kTma)
      if constexpr (kFp8Half && !kQHalfEarly && !kQRegs) {
        if (!q_half) sj_q_half_once(sq, scales.q_mult, counts, qk_scale, q_half);  // the first sub-tile
      }
      const int u = cu_u;
      const long long n0 = (long long)l_blk[u] * kBlock + cu_sub * kSubK;
      // kTma: this warp's V rows of the stage past the query zeroed (kTmaSplitKV: once they are in).
      auto v_ready = [&] {
        if constexpr (kTma) {
          if (kTmaSplitKV) sj_mbar_wait(bars + 8 * (2 * kStages + slot), (it / kStages) & 1);
          if (n0 + (ks + 1) * kKeysPerWarp - 1 > cta_hi) sj_zero_v_past(tiles + slot * (kTileBytes / 2), n0, ks, cta_hi, lane);
        }
      };
      if constexpr (kDimSplit) {
        // Every warp reads every key's V: each zeroes its own rows past the query (before the
        // barrier that shares P).
        if (!kTmaSplitKV) v_ready();
        const int buf = kDsBufs == 2 ? it & 1 : 0;
        sj_subtile_ds(p, sq, tiles + slot * (kTileBytes / 2), n0, ks, hi_a, hi_b, qa >= 0 ? 1.f : 0.f, qb >= 0 ? 1.f : 0.f, st, acc,
                      (sj_u16*)(sj_smem + kOffDs) + buf * 16 * kPLd, (float*)(sj_smem + kOffDsMax) + buf * kKeySplit * 16, it == 0, [&] {
                        if (kTmaSplitKV) v_ready();
                      });
        SJ_ADVANCE(cu_u, cu_sub)
        return;
      }
      const bool live = (l_qmask[u] & warp_qmask) && n0 + ks * kKeysPerWarp <= warp_hi;  // warp-uniform
      if (kRawK || sj_fp8_staged(p)) {  // workgroup-uniform
        if constexpr (kDecode) {
          // One row group: a warp multiplies only its own key slice, so it converts that
          // slice (K and V) alone, and no workgroup barrier sits between conversion and MMA.
          if (!kRawV && live) {
            sj_dequant_rows<kKeysPerWarp, 32, !kRawK>(p, raws + slot * kRawBytes, tiles + slot * (kTileBytes / 2), kvh, l_page[u], cu_sub,
                                                     n0, cta_hi, ks * kKeysPerWarp, lane);
            __syncwarp();
          }
        } else {  // every thread converts its share, then the tile is complete (kVLate: its K part; V follows)
          sj_dequant_subtile<true, !kVLate>(p, raws + slot * kRawBytes, tiles + slot * (kTileBytes / 2), kvh, l_page[u], cu_sub, n0, cta_hi);
          if constexpr (kWgmma) sj_fence_proxy_async();
          sj_sync();
        }
      }
      if (kTma && !kTmaSplitKV && live) {  // only this warp reads its V rows
        v_ready();
        __syncwarp();
      }
      if (kWgmma || live) {  // wgmma: the whole warpgroup multiplies
        const float w_a = qa >= 0 ? (float)l_mult[u * kQTile + qa] : 0.f;
        const float w_b = qb >= 0 ? (float)l_mult[u * kQTile + qb] : 0.f;
        const float c = kFp8Half ? qk_scale : p.sm_scale_log2;
        sj_u16* tile = tiles + slot * (kTileBytes / 2);
        const unsigned char* raw = raws + slot * kRawBytes;
        if constexpr (kVLate) {
          // V's conversion while wgmma multiplies S (fenced for wgmma's proxy, complete before P V).
          const int page = l_page[u], sub = cu_sub;
          const bool staged = sj_fp8_staged(p);  // workgroup-uniform
          sj_subtile(c, sq, q_regs, tile, raw, n0, rg, ks, hi_a, hi_b, w_a, w_b, live, st, acc, [=, &p] {
            if (!staged) return;
            sj_dequant_subtile<false, true>(p, raw, tile, kvh, page, sub, n0, cta_hi);
            sj_fence_proxy_async();
            sj_sync();
          });
        } else if constexpr (kTmaSplitKV) {
          sj_subtile(c, sq, q_regs, tile, raw, n0, rg, ks, hi_a, hi_b, w_a, w_b, live, st, acc, [&] {
            v_ready();
            __syncwarp();
          });
        } else if constexpr (kSplitKV) {
          // Between S and P V: this warp's V copies of the stage (the stage refilled last is
          // two groups younger).
          sj_subtile(c, sq, q_regs, tile, raw, n0, rg, ks, hi_a, hi_b, w_a, w_b, live, st, acc, [=] {
            if (!warp_pipe) return;
            sj_cp_async_wait<2 * (kStages - 1)>();
            __syncwarp();
          });
        } else {
          sj_subtile(c, sq, q_regs, tile, raw, n0, rg, ks, hi_a, hi_b, w_a, w_b, live, st, acc, SjNoMid{});
        }
      }
      SJ_ADVANCE(cu_u, cu_sub)
    };
    if constexpr (kTma) {
      // The producer warp fills each stage once every math warp released it; the math
      // warps take each stage once its bytes are in. No workgroup barrier in the loop.
      if (warp == kMathWarps) {
        while (ld_u < n_list) {
          const int slot = pipe % kStages;
          if (pipe >= kStages) sj_mbar_wait(bars + 8 * (kStages + slot), (pipe / kStages - 1) & 1);
#ifdef SJ_TIMELINE
          if (pipe == 0) {  // the first tensor copy: thread 0 prints it
            SJ_MARK(5);
            if (lane == 0) q_token[8] = (long long)sj_marks[5];
          }
#endif
          sj_tma_subtile(p, *tma_maps, tiles + slot * (kTileBytes / 2), bars + 8 * slot, bars + 8 * (2 * kStages + slot), kvh, l_page[ld_u], ld_sub,
                         (long long)l_blk[ld_u] * kBlock + ld_sub * kSubK, cta_hi, lane);
          SJ_ADVANCE(ld_u, ld_sub)
          ++pipe;
        }
      } else {
        if (seg0 == 0) {  // Q is in
          sj_cp_async_commit();
          sj_cp_async_wait<0>();
          sj_named_sync(kMathThreads);
        }
        while (cu_u < n_list) {
          const int slot = pipe % kStages;
          sj_mbar_wait(bars + 8 * slot, (pipe / kStages) & 1);
          if (pipe == 0) SJ_MARK(6);  // the first sub-tile is in
          compute(slot, pipe);
          // kTmaSplitKV, the key split: the V part is in before the stage is released, whether this
          // warp used it or not (under the dim split every warp waited for it in v_ready)
          if (kTmaSplitKV && !kDimSplit) sj_mbar_wait(bars + 8 * (2 * kStages + slot), (pipe / kStages) & 1);
          __syncwarp();
          if (lane == 0) sj_mbar_arrive(bars + 8 * (kStages + slot));
          ++pipe;
        }
      }
      SJ_MARK(7);  // this warp's last sub-tile is multiplied
      sj_sync();  // every warp is done with the stages and the list
    } else if constexpr (kStages == 1) {
      sj_cp_async_commit();  // Q (first segment)
      bool issued = false;
      if constexpr (kQHalfEarly) {
        if (!q_half) {  // Q to fp16 while the first sub-tile's copies fly
          issue(0);
          issued = true;
          sj_cp_async_wait<1>();
          sj_sync();
          sj_q_half_once(sq, scales.q_mult, counts, qk_scale, q_half);
        }
      }
      while (cu_u < n_list) {
        if (!issued) issue(0);
        issued = false;
        sj_cp_async_wait<0>();
        if constexpr (kWgmma) sj_fence_proxy_async();  // this thread's copies, visible to wgmma
        sj_sync();
        compute(0, 0);
        sj_sync();
      }
      sj_cp_async_wait<0>();
    } else {
      for (int s = 0; s < kStages - 1; ++s) {
        issue(ld_slot);
        ld_slot = ld_slot + 1 == kStages ? 0 : ld_slot + 1;
      }
      bool first = true;
      while (cu_u < n_list) {
        if (warp_pipe) {
          // This warp's copies of the stage to compute (kSplitKV: its K part) are in, and it is
          // done with the one refilled next; the first time, every thread's Q copies too.
          sj_cp_async_wait<(kSplitKV ? 2 * kStages - 3 : kStages - 2)>();
          if (!kQRegs && first)
            sj_sync();
          else
            __syncwarp();
          first = false;
        } else {
          sj_cp_async_wait<(kStages > 1 ? kStages - 2 : 0)>();
          if constexpr (kWgmma) sj_fence_proxy_async();  // this thread's copies, visible to wgmma
          sj_sync();  // the stage to compute is in; every warp is done with the one refilled next
        }
        issue(ld_slot);
        ld_slot = ld_slot + 1 == kStages ? 0 : ld_slot + 1;
        compute(cu_slot, 0);
        cu_slot = cu_slot + 1 == kStages ? 0 : cu_slot + 1;
      }
      sj_cp_async_wait<0>();
      sj_sync();
    }
#undef SJ_ADVANCE
  }

  if constexpr (kPthRaw) {  // O held O / 2^v_exp
    const float f = st.v_exp == kNoVExp ? 0.f : ldexpf(1.f, st.v_exp);
    sj_scale_rows(acc, f, f);
  }
  // Row sums across the quad; then store (merging the key slices by LSE first).
  st.l_a += __shfl_xor_sync(0xffffffffu, st.l_a, 1);
  st.l_a += __shfl_xor_sync(0xffffffffu, st.l_a, 2);
  st.l_b += __shfl_xor_sync(0xffffffffu, st.l_b, 1);
  st.l_b += __shfl_xor_sync(0xffffffffu, st.l_b, 2);
  const int c0 = (lane & 3) * 2;
  const bool math = !kTma || warp < kMathWarps;  // kTma: the producer warp holds no rows
  if constexpr (kDimSplit) {
    // Every warp holds all rows' O for its head dims, under the same running max: the row sum
    // is the sum of the warps' shares.
    float* s_l = (float*)(sj_smem + kOffDsSum);
    if (math && (lane & 3) == 0) {
      s_l[ks * 16 + lane / 4] = st.l_a;
      s_l[ks * 16 + lane / 4 + 8] = st.l_b;
    }
    sj_sync();
    if (math) {
      float l_a = 0.f, l_b = 0.f;
#pragma unroll
      for (int k = 0; k < kKeySplit; ++k) l_a += s_l[k * 16 + lane / 4], l_b += s_l[k * 16 + lane / 4 + 8];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = lane / 4 + half * 8, q = half ? qb : qa;
        if (q < 0 || q_token[q] < 0) continue;
        const float l = half ? l_b : l_a;
        const float inv = l > 0.f ? scales.o / l : 0.f;  // no visible key: zeros
        const long long head = qh * kGroup + r % kGroup;
#pragma unroll
        for (int t = 0; t < kDimsPerWarp / 8; ++t) {
          const int d = ks * kDimsPerWarp + t * 8 + c0;
          sj_store(p, s_part, q_token[q], head, d, acc[t][half * 2] * inv, chunk);
          sj_store(p, s_part, q_token[q], head, d + 1, acc[t][half * 2 + 1] * inv, chunk);
        }
        if (ks == 0 && (lane & 3) == 0) sj_store_lse(p, s_part, q_token[q], head, half ? st.m_b : st.m_a, l, chunk);
      }
    }
  } else if constexpr (kKeySplit == 1) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = lane / 4 + half * 8, q = half ? qb : qa;
      if (!math || q < 0 || q_token[q] < 0) continue;
      const float l = half ? st.l_b : st.l_a;
      const float inv = l > 0.f ? scales.o / l : 0.f;  // no visible key: zeros
      const long long head = qh * kGroup + r % kGroup;
#pragma unroll
      for (int t = 0; t < kONT; ++t) {
        sj_store(p, s_part, q_token[q], head, sj_o_dim(t, 0, c0), acc[t][half * 2] * inv, chunk);
        sj_store(p, s_part, q_token[q], head, sj_o_dim(t, 1, c0), acc[t][half * 2 + 1] * inv, chunk);
      }
      if ((lane & 3) == 0) sj_store_lse(p, s_part, q_token[q], head, half ? st.m_b : st.m_a, l, chunk);
    }
  } else {
    constexpr int kRows = kRowGroups * 16;
    float* s_o = (float*)(sj_smem + kOffTiles);  // [KEY_SPLIT][rows][kOStride], the stages are drained
    float* s_m = s_o + kKeySplit * kRows * kOStride;
    float* s_l = s_m + kKeySplit * kRows;
#pragma unroll
    for (int half = 0; half < 2 && math; ++half) {
      const int r = rg * 16 + lane / 4 + half * 8;
      float* o = s_o + (ks * kRows + r) * kOStride;
      if constexpr (kRawV) {  // dims 128G + 32 (lane % 4) + 16e + i hold n-tile 16G + i's element e
#pragma unroll
        for (int t = 0; t < kONT; t += 4)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            *(float4*)(o + sj_o_dim(t, e, c0)) = make_float4(acc[t][half * 2 + e], acc[t + 1][half * 2 + e], acc[t + 2][half * 2 + e], acc[t + 3][half * 2 + e]);
      } else {
#pragma unroll
        for (int t = 0; t < kONT; ++t) *(float2*)(o + t * 8 + c0) = make_float2(acc[t][half * 2], acc[t][half * 2 + 1]);
      }
      if ((lane & 3) == 0) {
        s_m[ks * kRows + r] = half ? st.m_b : st.m_a;
        s_l[ks * kRows + r] = half ? st.l_b : st.l_a;
      }
    }
    sj_sync();
    SJ_MARK(8);  // every split's O is in shared memory
    // Once per row: each split's weight 2^(m_k - m) / L (0 for a row with no visible key) and the
    // LSE; a barrier; then every element. (Every thread working out its rows' weights itself, with
    // no second barrier, was slower on the H100: fp8 B=1 +6.5%, eighteenth session.)
    float* s_w = s_l + kKeySplit * kRows;  // [KEY_SPLIT][rows]
    for (int r = tid; r < kRows; r += kThreads) {
      const int q = sj_row_query(r / 16, r % 16);
      if (q < 0 || q_token[q] < 0) continue;
      float m = sj_neg_inf();
#pragma unroll
      for (int k = 0; k < kKeySplit; ++k) m = fmaxf(m, s_m[k * kRows + r]);
      float w[kKeySplit], l = 0.f;
#pragma unroll
      for (int k = 0; k < kKeySplit; ++k) {
        w[k] = m == sj_neg_inf() ? 0.f : sj_exp2(s_m[k * kRows + r] - m);
        l += w[k] * s_l[k * kRows + r];
      }
      const float inv = l > 0.f ? scales.o / l : 0.f;
#pragma unroll
      for (int k = 0; k < kKeySplit; ++k) s_w[k * kRows + r] = w[k] * inv;
      sj_store_lse(p, s_part, q_token[q], qh * kGroup + (r % 16) % kGroup, m, l, chunk);
    }
    sj_sync();
    SJ_MARK(9);  // the splits' weights are known
    // 4 consecutive dims per thread: a weighted sum of the splits.
    for (int i = tid; i < kRows * kHeadDim / 4; i += kThreads) {
      const int r = i / (kHeadDim / 4), d = (i % (kHeadDim / 4)) * 4;
      const int q = sj_row_query(r / 16, r % 16);
      if (q < 0 || q_token[q] < 0) continue;
      float o[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int k = 0; k < kKeySplit; ++k) {
        const float w = s_w[k * kRows + r];
        const float4 v = *(const float4*)(s_o + (k * kRows + r) * kOStride + d);
        o[0] += w * v.x, o[1] += w * v.y, o[2] += w * v.z, o[3] += w * v.w;
      }
      const long long head = qh * kGroup + (r % 16) % kGroup;
      sj_store4(p, s_part, q_token[q], head, d, o, chunk);
    }
  }
  if (kDecode) sj_cluster_merge(p, s_part, q_token[0], qh);
  SJ_MARK(10);  // stored
#ifdef SJ_TIMELINE
  if (kDecode && tid == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    if (kTma) sj_marks[5] = (unsigned long long)q_token[8];
    printf("SJ_TIMELINE sparsejit_prefill %d %d %d %u %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n", (int)sj_bid_x(), (int)sj_bid_y(),
           (int)sj_bid_z(), smid, sj_marks[0], sj_marks[1], sj_marks[2], sj_marks[3], sj_marks[4], sj_marks[5], sj_marks[6], sj_marks[7],
           sj_marks[8], sj_marks[9], sj_marks[10]);
  }
#endif
}
