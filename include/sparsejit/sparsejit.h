/* sparsejit C ABI: block-sparse GQA attention (MiniMax-M3 semantics, vLLM's
 * minimax_m3_sparse_attn / minimax_m3_sparse_attn_decode) with kernels
 * generated, compiled and cached at run time. Plain C99; libsparsejit.so.
 *
 * Conventions
 * - Every call returns an sj_status; on failure sj_last_error() gives this
 *   thread's message (it names the argument and what was expected, or carries
 *   the compiler/driver log). Successful calls leave it unchanged.
 * - No exception, abort or exit crosses this boundary.
 * - Tensors are device pointers with element strides; int tensors are int32.
 *   Nothing is copied or allocated on the launch path and launches go to the
 *   caller's stream (a CUstream / hipStream_t, NULL = the legacy stream).
 * - A runtime is thread-safe; one runtime serves one device.
 * - Graph capture: warm first (sj_warm_*, or one eager call). A kernel that is
 *   not loaded when a capturing stream needs it is refused with
 *   SJ_ERROR_GRAPH_CAPTURE, never compiled inside the capture.
 */
#ifndef SPARSEJIT_SPARSEJIT_H
#define SPARSEJIT_SPARSEJIT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define SJ_API
#elif defined(__GNUC__)
#define SJ_API __attribute__((visibility("default")))
#else
#define SJ_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of the structs or functions below. */
#define SJ_ABI_VERSION 1

typedef enum sj_status {
  SJ_OK = 0,
  SJ_ERROR_INVALID_ARGUMENT = 1, /* an argument or shape is invalid: the message names it */
  SJ_ERROR_NO_DEVICE = 2,        /* no usable GPU or driver (the message says why) */
  SJ_ERROR_COMPILE = 3,          /* rendering or compiling a kernel failed (message has the log) */
  SJ_ERROR_LOAD = 4,             /* the driver could not load a code object */
  SJ_ERROR_LAUNCH = 5,           /* the driver refused a launch */
  SJ_ERROR_GRAPH_CAPTURE = 6,    /* a kernel is not warm and the stream is capturing a graph */
  SJ_ERROR_CACHE = 7,            /* the kernel cache failed */
  SJ_ERROR_BUFFER_TOO_SMALL = 8, /* an output buffer is too small: *needed says how big */
  SJ_ERROR_IO = 9,               /* a file could not be read or written (manifest, ...) */
  SJ_ERROR_INTERNAL = 10         /* anything else (out of memory, a bug) */
} sj_status;

/* Same codes as sparsejit::DType (include/sparsejit/types.hpp). */
typedef enum sj_dtype {
  SJ_DTYPE_BF16 = 0,
  SJ_DTYPE_FP16 = 1,
  SJ_DTYPE_FP8_E4M3FN = 2,
  SJ_DTYPE_FP8_E5M2 = 3,
  SJ_DTYPE_FP8_E4M3FNUZ = 4,
  SJ_DTYPE_FP8_E5M2FNUZ = 5
} sj_dtype;

/* Same codes as sparsejit::ScaleMode. Scales are float32 and apply to fp8 KV only. fp8 K/V are
   dequantized as vLLM does (value x scale rounded to q's dtype), except on NVIDIA sm_89+ with
   e4m3fn/e5m2 and no or a scalar scale (and per-token-head scales in decode with head_dim a
   multiple of 128), where value x scale is used exactly: within one such rounding of the same
   result. */
typedef enum sj_scale_mode {
  SJ_SCALE_NONE = 0,
  SJ_SCALE_SCALAR = 1,        /* one float each for K and V */
  SJ_SCALE_PER_TOKEN_HEAD = 2 /* [num_kv_heads, tokens] floats, physical token index (page*128 + pos) */
} sj_scale_mode;

typedef struct sj_runtime sj_runtime;

typedef struct sj_runtime_options {
  uint32_t struct_size; /* sizeof(sj_runtime_options): set by sj_runtime_options_init */
  int32_t device;       /* device ordinal; -1: the calling thread's current device */
} sj_runtime_options;

/* Field layout mirrors sparsejit::PrefillArgs. Strides are in elements. */
typedef struct sj_prefill_args {
  const void* q; /* [total_q, num_heads, head_dim], q_dtype */
  int64_t q_stride[3];
  const void* kv_cache; /* K (page, kv_head, pos, d) at page*s0 + kv_head*s1 + pos*s2 + d*s3; V at that + v_offset */
  int64_t kv_stride[4];
  int64_t v_offset;
  int64_t num_pages;
  const void* topk_idx; /* [num_kv_heads, total_q, topk] logical block ids, < 0 = padding */
  int64_t topk_stride[3];
  const void* block_table; /* [batch, max_blocks] */
  int64_t block_table_stride;
  int64_t max_blocks;
  const void* cu_seqlens_q; /* [batch + 1] */
  const void* seq_lens;     /* [batch] */
  const void* prefix_lens;  /* [batch] */
  const void* k_scale;      /* see sj_scale_mode; NULL for SJ_SCALE_NONE */
  const void* v_scale;
  int64_t k_scale_stride[2];
  int64_t v_scale_stride[2];
  void* output; /* [total_q, num_heads, head_dim], q_dtype */
  int64_t output_stride[3];
  int64_t total_q, num_heads, num_kv_heads, head_dim, topk, batch, max_query_len;
  int32_t q_dtype;    /* sj_dtype: bf16 or fp16 */
  int32_t kv_dtype;   /* sj_dtype */
  int32_t scale_mode; /* sj_scale_mode */
  float sm_scale;
} sj_prefill_args;

/* Field layout mirrors sparsejit::DecodeArgs. total_q = num_reqs * decode_query_len (uniform) or query_start_loc[num_reqs] (ragged). */
typedef struct sj_decode_args {
  const void* q;
  int64_t q_stride[3];
  const void* kv_cache;
  int64_t kv_stride[4];
  int64_t v_offset;
  int64_t num_pages;
  const void* topk_idx;
  int64_t topk_stride[3];
  const void* block_table;
  int64_t block_table_stride;
  int64_t max_blocks;
  const void* seq_lens; /* [num_reqs] */
  const void* k_scale;
  const void* v_scale;
  int64_t k_scale_stride[2];
  int64_t v_scale_stride[2];
  void* output;
  int64_t output_stride[3];
  int64_t total_q, num_heads, num_kv_heads, head_dim, topk, num_reqs, decode_query_len;
  int32_t q_dtype;
  int32_t kv_dtype;
  int32_t scale_mode;
  float sm_scale;
  /* Split-K scratch, caller-owned (16-byte aligned), at least sj_decode_workspace_bytes(). */
  void* workspace;
  uint64_t workspace_bytes;
  /* Ragged decode, both or neither (NULL): int32 [num_reqs + 1] query starts and int32
   * [total_q] request per query row; query j of request r sits at seq_lens[r] - n_r + j. */
  const void* query_start_loc;
  const void* token_to_req_indices;
} sj_decode_args;

/* The shapes that select a call's kernels (what sj_warm_* builds ahead of time). */
typedef struct sj_kernel_shape {
  int64_t num_heads, num_kv_heads, head_dim, topk;
  int32_t q_dtype, kv_dtype, scale_mode;
  int32_t reserved; /* 0 */
} sj_kernel_shape;

/* Library identity: SJ_ABI_VERSION it was built with, and "MAJOR.MINOR.PATCH". */
SJ_API int sj_abi_version(void);
SJ_API const char* sj_version(void);
/* sizeof the structs as the library sees them (for bindings that lay them out by hand). */
SJ_API size_t sj_struct_size(const char* struct_name); /* "sj_prefill_args", "sj_decode_args", ...; 0 if unknown */

/* This thread's message for its last failed call ("" if none). Valid until the next failing call on this thread. */
SJ_API const char* sj_last_error(void);
SJ_API const char* sj_status_string(sj_status status);

SJ_API void sj_runtime_options_init(sj_runtime_options* options);
/* options may be NULL (defaults). *out is NULL on failure. */
SJ_API sj_status sj_runtime_create(const sj_runtime_options* options, sj_runtime** out);
SJ_API void sj_runtime_destroy(sj_runtime* runtime); /* NULL is a no-op */
SJ_API int sj_runtime_device(const sj_runtime* runtime);

SJ_API sj_status sj_sparse_attn_prefill(sj_runtime* runtime, const sj_prefill_args* args, void* stream);
SJ_API sj_status sj_sparse_attn_decode(sj_runtime* runtime, const sj_decode_args* args, void* stream);
/* Bytes of decode scratch for these shapes (a pure function of them); 0 when decode runs in one
 * chunk (the attention kernel then writes the output itself and the workspace may be NULL). */
SJ_API sj_status sj_decode_workspace_bytes(const sj_runtime* runtime, int64_t total_q, int64_t num_heads, int64_t num_kv_heads,
                                           int64_t head_dim, int64_t topk, uint64_t* bytes);

/* Build and load a call's kernels ahead of time (e.g. before a graph capture).
 * Decode: total_q picks the split-K chunk count; total_q <= 0 warms every count. */
SJ_API sj_status sj_warm_prefill(sj_runtime* runtime, const sj_kernel_shape* shape);
SJ_API sj_status sj_warm_decode(sj_runtime* runtime, const sj_kernel_shape* shape, int64_t total_q);

/* The kernel cache's state as a JSON object (NUL-terminated) in buf. With a
 * runtime it adds that runtime's device and loaded kernels; runtime may be NULL.
 * *needed (may be NULL) gets the size including the NUL; SJ_ERROR_BUFFER_TOO_SMALL if buf_size < that. */
SJ_API sj_status sj_cache_status_json(const sj_runtime* runtime, char* buf, size_t buf_size, size_t* needed);

/* Device memory helpers on the runtime's device, for examples and tests (an
 * engine uses its own allocator; none of these is on the launch path). */
/* bytes == 0 gives *ptr = NULL and SJ_OK (a one-chunk decode needs no workspace). */
SJ_API sj_status sj_device_malloc(sj_runtime* runtime, size_t bytes, void** ptr);
SJ_API sj_status sj_device_free(sj_runtime* runtime, void* ptr);
SJ_API sj_status sj_copy_to_device(sj_runtime* runtime, void* dst, const void* src, size_t bytes);
SJ_API sj_status sj_copy_to_host(sj_runtime* runtime, void* dst, const void* src, size_t bytes);
SJ_API sj_status sj_synchronize(sj_runtime* runtime);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPARSEJIT_SPARSEJIT_H */
