// The C ABI (include/sparsejit/sparsejit.h) over the C++ API. The boundary
// turns CallStatus/Error values into status codes plus a thread-local message,
// and catches everything: no exception crosses into C (or ctypes).
#include "sparsejit/sparsejit.h"

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include <nlohmann/json.hpp>

#include "kernel_builder.h"
#include "knobs.h"
#include "runtime_internal.h"
#include "sparsejit/sparsejit.hpp"

struct sj_runtime {
  std::unique_ptr<sparsejit::Runtime> rt;
};

namespace sparsejit {
namespace {

static_assert(int(DType::bf16) == SJ_DTYPE_BF16 && int(DType::fp16) == SJ_DTYPE_FP16 &&
              int(DType::fp8_e4m3fn) == SJ_DTYPE_FP8_E4M3FN && int(DType::fp8_e5m2) == SJ_DTYPE_FP8_E5M2 &&
              int(DType::fp8_e4m3fnuz) == SJ_DTYPE_FP8_E4M3FNUZ && int(DType::fp8_e5m2fnuz) == SJ_DTYPE_FP8_E5M2FNUZ);
static_assert(int(ScaleMode::none) == SJ_SCALE_NONE && int(ScaleMode::scalar) == SJ_SCALE_SCALAR &&
              int(ScaleMode::per_token_head) == SJ_SCALE_PER_TOKEN_HEAD);
// Bindings (python/sparsejit/_abi.py) lay these out by hand: pin the layout.
static_assert(sizeof(void*) == 8, "the ABI assumes 64-bit pointers");
static_assert(offsetof(sj_prefill_args, q_dtype) == 8 * 38 && sizeof(sj_prefill_args) == 8 * 38 + 16);
static_assert(offsetof(sj_decode_args, q_dtype) == 8 * 36 && sizeof(sj_decode_args) == 8 * 36 + 48);
static_assert(sizeof(sj_kernel_shape) == 48);

thread_local std::string t_last_error;

sj_status fail(sj_status code, std::string message) {
  t_last_error = std::move(message);
  return code;
}

sj_status code_for_stage(const std::string& stage) {
  if (stage == "validate" || stage == "config") return SJ_ERROR_INVALID_ARGUMENT;
  if (stage == "capture") return SJ_ERROR_GRAPH_CAPTURE;
  if (stage == "compile" || stage == "render" || stage == "template") return SJ_ERROR_COMPILE;
  if (stage == "load") return SJ_ERROR_LOAD;
  if (stage == "launch") return SJ_ERROR_LAUNCH;
  if (stage == "cache") return SJ_ERROR_CACHE;
  if (stage == "driver") return SJ_ERROR_NO_DEVICE;
  if (stage == "record" || stage == "manifest") return SJ_ERROR_IO;
  return SJ_ERROR_INTERNAL;
}

sj_status from_status(const Status& st) {
  if (st) return SJ_OK;
  return fail(code_for_stage(st.error().stage), st.error().describe(false));
}

sj_status from_call(const CallStatus& st) {
  if (st.ok) return SJ_OK;
  return fail(code_for_stage(st.stage), st.message);
}

// Runs `body` with every exception turned into a status: the C boundary.
template <class Body>
sj_status guarded(const char* fn, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(SJ_ERROR_INTERNAL, std::string(fn) + ": out of host memory");
  } catch (const std::exception& e) {
    return fail(SJ_ERROR_INTERNAL, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return fail(SJ_ERROR_INTERNAL, std::string(fn) + ": internal error (unknown exception)");
  }
}

sj_status null_arg(const char* fn, const char* arg) {
  return fail(SJ_ERROR_INVALID_ARGUMENT, std::string(fn) + ": argument " + arg + " must not be NULL");
}

void copy3(std::int64_t (&dst)[3], const int64_t (&src)[3]) { std::memcpy(dst, src, sizeof dst); }
void copy2(std::int64_t (&dst)[2], const int64_t (&src)[2]) { std::memcpy(dst, src, sizeof dst); }

template <class CArgs, class Args>
void copy_common(const CArgs& c, Args& a) {
  a.q = c.q;
  copy3(a.q_stride, c.q_stride);
  a.kv_cache = c.kv_cache;
  std::memcpy(a.kv_stride, c.kv_stride, sizeof a.kv_stride);
  a.v_offset = c.v_offset;
  a.num_pages = c.num_pages;
  a.topk_idx = c.topk_idx;
  copy3(a.topk_stride, c.topk_stride);
  a.block_table = c.block_table;
  a.block_table_stride = c.block_table_stride;
  a.max_blocks = c.max_blocks;
  a.seq_lens = c.seq_lens;
  a.k_scale = c.k_scale;
  a.v_scale = c.v_scale;
  copy2(a.k_scale_stride, c.k_scale_stride);
  copy2(a.v_scale_stride, c.v_scale_stride);
  a.output = c.output;
  copy3(a.output_stride, c.output_stride);
  a.total_q = c.total_q;
  a.num_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.topk = c.topk;
  // Out-of-range codes reach validate(), which names them.
  a.q_dtype = static_cast<DType>(c.q_dtype);
  a.kv_dtype = static_cast<DType>(c.kv_dtype);
  a.scale_mode = static_cast<ScaleMode>(c.scale_mode);
  a.sm_scale = c.sm_scale;
}

KernelShape to_shape(const sj_kernel_shape& s) {
  KernelShape k;
  k.num_heads = s.num_heads;
  k.num_kv_heads = s.num_kv_heads;
  k.head_dim = s.head_dim;
  k.topk = s.topk;
  k.q_dtype = static_cast<DType>(s.q_dtype);
  k.kv_dtype = static_cast<DType>(s.kv_dtype);
  k.scale_mode = static_cast<ScaleMode>(s.scale_mode);
  return k;
}

}  // namespace
}  // namespace sparsejit

using namespace sparsejit;

extern "C" {

int sj_abi_version(void) { return SJ_ABI_VERSION; }

const char* sj_version(void) { return SPARSEJIT_VERSION; }

size_t sj_struct_size(const char* name) {
  if (!name) return 0;
  const std::string n = name;
  if (n == "sj_prefill_args") return sizeof(sj_prefill_args);
  if (n == "sj_decode_args") return sizeof(sj_decode_args);
  if (n == "sj_kernel_shape") return sizeof(sj_kernel_shape);
  if (n == "sj_runtime_options") return sizeof(sj_runtime_options);
  return 0;
}

const char* sj_last_error(void) { return t_last_error.c_str(); }

const char* sj_status_string(sj_status status) {
  switch (status) {
    case SJ_OK: return "SJ_OK";
    case SJ_ERROR_INVALID_ARGUMENT: return "SJ_ERROR_INVALID_ARGUMENT";
    case SJ_ERROR_NO_DEVICE: return "SJ_ERROR_NO_DEVICE";
    case SJ_ERROR_COMPILE: return "SJ_ERROR_COMPILE";
    case SJ_ERROR_LOAD: return "SJ_ERROR_LOAD";
    case SJ_ERROR_LAUNCH: return "SJ_ERROR_LAUNCH";
    case SJ_ERROR_GRAPH_CAPTURE: return "SJ_ERROR_GRAPH_CAPTURE";
    case SJ_ERROR_CACHE: return "SJ_ERROR_CACHE";
    case SJ_ERROR_BUFFER_TOO_SMALL: return "SJ_ERROR_BUFFER_TOO_SMALL";
    case SJ_ERROR_IO: return "SJ_ERROR_IO";
    case SJ_ERROR_INTERNAL: return "SJ_ERROR_INTERNAL";
  }
  return "SJ_ERROR_UNKNOWN";
}

void sj_runtime_options_init(sj_runtime_options* options) {
  if (!options) return;
  std::memset(options, 0, sizeof *options);
  options->struct_size = sizeof *options;
  options->device = -1;
}

sj_status sj_runtime_create(const sj_runtime_options* options, sj_runtime** out) {
  return guarded("sj_runtime_create", [&]() -> sj_status {
    if (!out) return null_arg("sj_runtime_create", "out");
    *out = nullptr;
    RuntimeOptions o;
    if (options) {
      if (options->struct_size < offsetof(sj_runtime_options, device) + sizeof(options->device))
        return fail(SJ_ERROR_INVALID_ARGUMENT,
                    "sj_runtime_create: options->struct_size is " + std::to_string(options->struct_size) +
                        "; call sj_runtime_options_init first");
      o.device = options->device;
    }
    auto rt = RuntimeAccess::create(o);
    if (!rt) return fail(code_for_stage(rt.error().stage), rt.error().describe(false));
    *out = new sj_runtime{std::move(*rt)};
    return SJ_OK;
  });
}

void sj_runtime_destroy(sj_runtime* runtime) {
  try {
    delete runtime;
  } catch (...) {
  }
}

int sj_runtime_device(const sj_runtime* runtime) { return runtime ? runtime->rt->device() : -1; }

sj_status sj_sparse_attn_prefill(sj_runtime* runtime, const sj_prefill_args* c, void* stream) {
  return guarded("sj_sparse_attn_prefill", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_sparse_attn_prefill", "runtime");
    if (!c) return null_arg("sj_sparse_attn_prefill", "args");
    PrefillArgs a;
    copy_common(*c, a);
    a.cu_seqlens_q = c->cu_seqlens_q;
    a.prefix_lens = c->prefix_lens;
    a.batch = c->batch;
    a.max_query_len = c->max_query_len;
    return from_call(runtime->rt->sparse_attn_prefill(a, stream));
  });
}

sj_status sj_sparse_attn_decode(sj_runtime* runtime, const sj_decode_args* c, void* stream) {
  return guarded("sj_sparse_attn_decode", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_sparse_attn_decode", "runtime");
    if (!c) return null_arg("sj_sparse_attn_decode", "args");
    DecodeArgs a;
    copy_common(*c, a);
    a.num_reqs = c->num_reqs;
    a.decode_query_len = c->decode_query_len;
    a.workspace = c->workspace;
    a.workspace_bytes = static_cast<std::size_t>(c->workspace_bytes);
    a.query_start_loc = c->query_start_loc;
    a.token_to_req_indices = c->token_to_req_indices;
    return from_call(runtime->rt->sparse_attn_decode(a, stream));
  });
}

sj_status sj_decode_workspace_bytes(const sj_runtime* runtime, int64_t total_q, int64_t num_heads, int64_t num_kv_heads,
                                    int64_t head_dim, int64_t topk, uint64_t* bytes) {
  return guarded("sj_decode_workspace_bytes", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_decode_workspace_bytes", "runtime");
    if (!bytes) return null_arg("sj_decode_workspace_bytes", "bytes");
    if (total_q < 0 || num_heads < 1 || num_kv_heads < 1 || head_dim < 1 || topk < 1)
      return fail(SJ_ERROR_INVALID_ARGUMENT, "sj_decode_workspace_bytes: total_q must be >= 0 and the other shapes >= 1, got total_q " +
                                                 std::to_string(total_q) + ", num_heads " + std::to_string(num_heads) +
                                                 ", num_kv_heads " + std::to_string(num_kv_heads) + ", head_dim " +
                                                 std::to_string(head_dim) + ", topk " + std::to_string(topk));
    *bytes = runtime->rt->decode_workspace_bytes(total_q, num_heads, num_kv_heads, head_dim, topk);
    return SJ_OK;
  });
}

sj_status sj_warm_prefill(sj_runtime* runtime, const sj_kernel_shape* shape) {
  return guarded("sj_warm_prefill", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_warm_prefill", "runtime");
    if (!shape) return null_arg("sj_warm_prefill", "shape");
    return from_call(runtime->rt->warm_prefill(to_shape(*shape)));
  });
}

sj_status sj_warm_decode(sj_runtime* runtime, const sj_kernel_shape* shape, int64_t total_q) {
  return guarded("sj_warm_decode", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_warm_decode", "runtime");
    if (!shape) return null_arg("sj_warm_decode", "shape");
    return from_call(runtime->rt->warm_decode(to_shape(*shape), total_q));
  });
}

sj_status sj_cache_status_json(const sj_runtime* runtime, char* buf, size_t buf_size, size_t* needed) {
  return guarded("sj_cache_status_json", [&]() -> sj_status {
    std::string text;
    if (runtime) {
      text = runtime->rt->cache_status_json();
    } else {
      nlohmann::json j = to_json(default_cache()->status());
      j["record"] = knobs().record;
      text = j.dump();
    }
    if (needed) *needed = text.size() + 1;
    if (!buf || buf_size < text.size() + 1)
      return fail(SJ_ERROR_BUFFER_TOO_SMALL, "sj_cache_status_json: needs a buffer of " + std::to_string(text.size() + 1) +
                                                 " bytes, got " + std::to_string(buf_size));
    std::memcpy(buf, text.c_str(), text.size() + 1);
    return SJ_OK;
  });
}

sj_status sj_device_malloc(sj_runtime* runtime, size_t bytes, void** ptr) {
  return guarded("sj_device_malloc", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_device_malloc", "runtime");
    if (!ptr) return null_arg("sj_device_malloc", "ptr");
    *ptr = nullptr;
    if (bytes == 0) return SJ_OK;  // nothing to allocate (e.g. a one-chunk decode's workspace): NULL, freed as a no-op
    auto p = RuntimeAccess::driver(*runtime->rt).malloc(runtime->rt->device(), bytes);
    if (!p) return fail(SJ_ERROR_INTERNAL, p.error().describe(false));
    *ptr = *p;
    return SJ_OK;
  });
}

sj_status sj_device_free(sj_runtime* runtime, void* ptr) {
  return guarded("sj_device_free", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_device_free", "runtime");
    if (!ptr) return SJ_OK;
    return from_status(RuntimeAccess::driver(*runtime->rt).free(runtime->rt->device(), ptr));
  });
}

sj_status sj_copy_to_device(sj_runtime* runtime, void* dst, const void* src, size_t bytes) {
  return guarded("sj_copy_to_device", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_copy_to_device", "runtime");
    return from_status(RuntimeAccess::driver(*runtime->rt).copy_to_device(runtime->rt->device(), dst, src, bytes));
  });
}

sj_status sj_copy_to_host(sj_runtime* runtime, void* dst, const void* src, size_t bytes) {
  return guarded("sj_copy_to_host", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_copy_to_host", "runtime");
    return from_status(RuntimeAccess::driver(*runtime->rt).copy_to_host(runtime->rt->device(), dst, src, bytes));
  });
}

sj_status sj_synchronize(sj_runtime* runtime) {
  return guarded("sj_synchronize", [&]() -> sj_status {
    if (!runtime) return null_arg("sj_synchronize", "runtime");
    return from_status(RuntimeAccess::driver(*runtime->rt).synchronize(runtime->rt->device()));
  });
}

}  // extern "C"
