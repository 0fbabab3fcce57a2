// CUDA driver API, dlopen'd: no cuda.h or libcuda at build time, so one binary
// runs on machines with an NVIDIA driver, an AMD one, or none.

#include <atomic>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "device/device.h"
#include "util/dynlib.h"

namespace sparsejit {
namespace {

// ---- the slice of cuda.h we use (ABI-identical declarations) ----
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;  // 64-bit since CUDA 3.2 (the _v2 entry points)
struct CUctx_st;
struct CUmod_st;
struct CUfunc_st;
struct CUstream_st;
using CUcontext = CUctx_st*;
using CUmodule = CUmod_st*;
using CUfunction = CUfunc_st*;
using CUstream = CUstream_st*;

// cuLaunchKernelEx's config (CUlaunchConfig) and one attribute (CUlaunchAttribute: id, 4 bytes of padding, a 64-byte value union).
struct CuLaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    int value;
    void* align;
  } value;
};
static_assert(sizeof(CuLaunchAttribute) == 72, "CUlaunchAttribute is 72 bytes");
struct CuLaunchConfig {
  unsigned grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes;
  CUstream stream;
  CuLaunchAttribute* attrs;
  unsigned num_attrs;
};
constexpr int kLaunchAttributeProgrammaticStreamSerialization = 6;

constexpr CUresult kCudaSuccess = 0;
constexpr CUresult kCudaErrorInvalidContext = 201;
constexpr int kAttrMultiprocessorCount = 16;
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrComputeCapabilityMinor = 76;
constexpr int kAttrMaxSharedPerBlockOptin = 97;
constexpr int kFuncMaxThreadsPerBlock = 0;
constexpr int kFuncSharedSizeBytes = 1;
constexpr int kFuncLocalSizeBytes = 3;
constexpr int kFuncNumRegs = 4;
constexpr int kFuncMaxDynamicSharedSizeBytes = 8;
constexpr int kFuncPreferredSharedMemoryCarveout = 9;
constexpr int kJitErrorLogBuffer = 5;
constexpr int kJitErrorLogBufferSizeBytes = 6;

struct CudaApi {
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
  CUresult (*cuDeviceGetCount)(int*) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease_v2)(CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuCtxGetCurrent)(CUcontext*) = nullptr;
  CUresult (*cuCtxGetDevice)(CUdevice*) = nullptr;
  CUresult (*cuCtxSynchronize)() = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*cuModuleLoadDataEx)(CUmodule*, const void*, unsigned, int*, void**) = nullptr;  // optional
  CUresult (*cuModuleUnload)(CUmodule) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                             void**, void**) = nullptr;
  CUresult (*cuLaunchKernelEx)(const CuLaunchConfig*, CUfunction, void**, void**) = nullptr;  // optional (CUDA >= 11.8)
  CUresult (*cuFuncGetAttribute)(int*, int, CUfunction) = nullptr;
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int) = nullptr;
  CUresult (*cuMemAlloc_v2)(CUdeviceptr*, std::size_t) = nullptr;
  CUresult (*cuMemFree_v2)(CUdeviceptr) = nullptr;
  CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void*, std::size_t) = nullptr;
  CUresult (*cuMemcpyDtoH_v2)(void*, CUdeviceptr, std::size_t) = nullptr;
  CUresult (*cuMemsetD8_v2)(CUdeviceptr, unsigned char, std::size_t) = nullptr;
  CUresult (*cuStreamIsCapturing)(CUstream, int*) = nullptr;  // optional (CUDA >= 10)
  // optional (CUDA >= 12): tensorMap, dataType, rank, address, dims, strides, box, elementStrides,
  // interleave, swizzle, l2Promotion, oobFill (the enums as int)
  CUresult (*cuTensorMapEncodeTiled)(void*, int, unsigned, void*, const std::uint64_t*, const std::uint64_t*, const std::uint32_t*,
                                     const std::uint32_t*, int, int, int, int) = nullptr;
};

// "CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected"
std::string cuda_error_text(const CudaApi& api, CUresult rc) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (api.cuGetErrorName) api.cuGetErrorName(rc, &name);
  if (api.cuGetErrorString) api.cuGetErrorString(rc, &text);
  std::string s = name ? name : "CUDA error";
  s += " (" + std::to_string(rc) + ")";
  if (text) s += std::string(": ") + text;
  return s;
}

// "  a: why\n  b: why\n" -> "a: why; b: why" (the reason is shown on one line).
std::string one_line(const std::string& log) {
  std::string out;
  std::size_t start = 0;
  while (start < log.size()) {
    std::size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    std::size_t first = log.find_first_not_of(' ', start);
    if (first < end) {
      std::string line = log.substr(first, end - first);
      // dlerror() already starts with the name: "x.so: x.so: cannot open ..."
      std::size_t colon = line.find(": ");
      if (colon != std::string::npos && line.compare(colon + 2, colon + 1, line, 0, colon + 1) == 0) {
        line.erase(0, colon + 2);
      }
      out += (out.empty() ? "" : "; ") + line;
    }
    start = end + 1;
  }
  return out;
}

Error cuda_error(const CudaApi& api, const char* stage, const std::string& what, CUresult rc) {
  return make_error(stage, what + ": " + cuda_error_text(api, rc));
}

// Makes `want` current for the scope. A context that was current before is
// restored; if none was, `want` stays current, as the runtime API would leave
// it, so later launches on this thread with the legacy default stream find it.
class ContextGuard {
 public:
  ContextGuard(const CudaApi& api, CUcontext want) : api_(api) {
    CUcontext current = nullptr;
    rc_ = api_.cuCtxGetCurrent(&current);
    if (rc_ != kCudaSuccess || current == want) return;
    rc_ = api_.cuCtxSetCurrent(want);
    if (rc_ == kCudaSuccess && current != nullptr) previous_ = current;
  }
  ContextGuard(const ContextGuard&) = delete;
  ContextGuard& operator=(const ContextGuard&) = delete;
  ~ContextGuard() {
    if (previous_) api_.cuCtxSetCurrent(previous_);
  }
  CUresult rc() const { return rc_; }

 private:
  const CudaApi& api_;
  CUresult rc_ = kCudaSuccess;
  CUcontext previous_ = nullptr;
};

// One retained primary context; released on destruction.
class PrimaryContext {
 public:
  PrimaryContext() = default;
  PrimaryContext(const PrimaryContext&) = delete;
  PrimaryContext& operator=(const PrimaryContext&) = delete;
  ~PrimaryContext() {
    if (ctx_.load()) api_->cuDevicePrimaryCtxRelease_v2(device_);
  }
  // Retains on first success; failures are not cached (e.g. out of memory may pass).
  Result<CUcontext> get(const CudaApi& api, CUdevice device) {
    if (CUcontext c = ctx_.load(std::memory_order_acquire)) return c;
    std::lock_guard<std::mutex> lock(mutex_);
    if (CUcontext c = ctx_.load(std::memory_order_relaxed)) return c;
    CUcontext c = nullptr;
    CUresult rc = api.cuDevicePrimaryCtxRetain(&c, device);
    if (rc != kCudaSuccess) {
      return cuda_error(api, "driver", "cuDevicePrimaryCtxRetain(device " + std::to_string(device) + ")", rc);
    }
    api_ = &api;
    device_ = device;
    ctx_.store(c, std::memory_order_release);
    return c;
  }

 private:
  std::mutex mutex_;
  std::atomic<CUcontext> ctx_{nullptr};
  const CudaApi* api_ = nullptr;
  CUdevice device_ = 0;
};

// A CUmodule, shared by the Module and every Kernel taken from it, so a Kernel
// held past its Module never launches unloaded code.
struct LoadedCudaModule {
  const CudaApi* api;
  CUcontext ctx;
  CUmodule module;
  int ordinal;
  LoadedCudaModule(const CudaApi* a, CUcontext c, CUmodule m, int o) : api(a), ctx(c), module(m), ordinal(o) {}
  LoadedCudaModule(const LoadedCudaModule&) = delete;
  LoadedCudaModule& operator=(const LoadedCudaModule&) = delete;
  ~LoadedCudaModule() {
    // At process exit the driver may already be torn down: the call then
    // fails harmlessly (CUDA_ERROR_DEINITIALIZED) and there is no one to tell.
    ContextGuard guard(*api, ctx);
    api->cuModuleUnload(module);
  }
};

class CudaKernel final : public Kernel {
 public:
  CudaKernel(std::shared_ptr<const LoadedCudaModule> module, CUfunction fn, std::string name)
      : module_(std::move(module)), fn_(fn), name_(std::move(name)) {}

  Status launch(Dim3 grid, Dim3 block, unsigned dynamic_shared_bytes, void* stream, void** args) const override {
    // Hot path: one driver call. Everything else happens only on failure.
    CUresult rc = module_->api->cuLaunchKernel(fn_, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                                               dynamic_shared_bytes, static_cast<CUstream>(stream), args, nullptr);
    if (rc == kCudaSuccess) return ok_status();
    return launch_failed(rc, grid, block, dynamic_shared_bytes, stream, args);
  }

  Status launch_dependent(Dim3 grid, Dim3 block, unsigned dynamic_shared_bytes, void* stream, void** args) const override {
    const CudaApi& api = *module_->api;
    if (api.cuLaunchKernelEx) {
      CuLaunchAttribute attr;
      std::memset(&attr, 0, sizeof attr);
      attr.id = kLaunchAttributeProgrammaticStreamSerialization;
      attr.value.value = 1;
      const CuLaunchConfig config{grid.x, grid.y, grid.z, block.x, block.y, block.z, dynamic_shared_bytes, static_cast<CUstream>(stream), &attr, 1};
      if (api.cuLaunchKernelEx(&config, fn_, args, nullptr) == kCudaSuccess) return ok_status();
    }
    // Nothing was enqueued: an ordinary launch gives the same result (and reports any error).
    return launch(grid, block, dynamic_shared_bytes, stream, args);
  }

  std::string attributes_json() const override {
    const CudaApi& api = *module_->api;
    nlohmann::json j;
    const std::pair<const char*, int> attrs[] = {{"registers", kFuncNumRegs},
                                                 {"shared_bytes", kFuncSharedSizeBytes},
                                                 {"local_bytes", kFuncLocalSizeBytes},
                                                 {"max_threads", kFuncMaxThreadsPerBlock}};
    for (const auto& [key, attr] : attrs) {
      int value = 0;
      CUresult rc = api.cuFuncGetAttribute(&value, attr, fn_);
      if (rc != kCudaSuccess) {
        j["error"] = "cuFuncGetAttribute(" + std::string(key) + "): " + cuda_error_text(api, rc);
        break;
      }
      j[key] = value;
    }
    return j.dump();
  }

  Status set_max_dynamic_shared_bytes(unsigned bytes) override {
    if (bytes <= 48 * 1024) return ok_status();  // within the default limit
    const CudaApi& api = *module_->api;
    CUresult rc = api.cuFuncSetAttribute(fn_, kFuncMaxDynamicSharedSizeBytes, static_cast<int>(bytes));
    if (rc != kCudaSuccess)
      return cuda_error(api, "load", "cuFuncSetAttribute(" + name_ + ", MAX_DYNAMIC_SHARED_SIZE_BYTES, " + std::to_string(bytes) + ")", rc);
    // All of L1 as shared memory: left to itself the driver picked a 135 KiB
    // carveout for a 124 KiB kernel on the H100, one workgroup per SM.
    rc = api.cuFuncSetAttribute(fn_, kFuncPreferredSharedMemoryCarveout, 100);
    if (rc != kCudaSuccess)
      return cuda_error(api, "load", "cuFuncSetAttribute(" + name_ + ", PREFERRED_SHARED_MEMORY_CARVEOUT, 100)", rc);
    return ok_status();
  }

 private:
  Status launch_failed(CUresult rc, Dim3 grid, Dim3 block, unsigned shared, void* stream, void** args) const {
    const CudaApi& api = *module_->api;
    CUcontext current = nullptr;
    api.cuCtxGetCurrent(&current);
    // Retry once in the module's context when the launch ran in the wrong one. The hot path never pays for this.
    // - No context is current (a thread that never touched this device): the module's stays current, as the
    //   runtime API would leave it.
    // - Another device's context is current (an engine driving several GPUs, the caller's current device
    //   elsewhere): the caller's is given back.
    const bool none_current = rc == kCudaErrorInvalidContext && current == nullptr;
    const bool other_current = current != nullptr && current != module_->ctx;
    if ((none_current || other_current) && api.cuCtxSetCurrent(module_->ctx) == kCudaSuccess) {
      rc = api.cuLaunchKernel(fn_, grid.x, grid.y, grid.z, block.x, block.y, block.z, shared,
                              static_cast<CUstream>(stream), args, nullptr);
      if (other_current) api.cuCtxSetCurrent(current);
      if (rc == kCudaSuccess) return ok_status();
    }
    auto dims = [](Dim3 d) { return std::to_string(d.x) + "x" + std::to_string(d.y) + "x" + std::to_string(d.z); };
    std::string what = "cuLaunchKernel(" + name_ + ", grid " + dims(grid) + ", block " + dims(block) +
                       ", dynamic shared " + std::to_string(shared) + " B, device " + std::to_string(module_->ordinal) +
                       ")";
    if (current != nullptr && current != module_->ctx) {
      what += " with another context current (the module lives in the device's primary context)";
    }
    return cuda_error(api, "launch", what, rc);
  }

  std::shared_ptr<const LoadedCudaModule> module_;
  CUfunction fn_;
  std::string name_;
};

class CudaModule final : public Module {
 public:
  explicit CudaModule(std::shared_ptr<const LoadedCudaModule> loaded) : loaded_(std::move(loaded)) {}

  Result<std::shared_ptr<Kernel>> function(const std::string& lowered_name) override {
    const CudaApi& api = *loaded_->api;
    ContextGuard guard(api, loaded_->ctx);
    if (guard.rc() != kCudaSuccess) return cuda_error(api, "load", "cuCtxSetCurrent", guard.rc());
    CUfunction fn = nullptr;
    CUresult rc = api.cuModuleGetFunction(&fn, loaded_->module, lowered_name.c_str());
    if (rc != kCudaSuccess) {
      return cuda_error(api, "load", "cuModuleGetFunction(\"" + lowered_name + "\"): no such kernel in the module", rc);
    }
    return std::shared_ptr<Kernel>(std::make_shared<CudaKernel>(loaded_, fn, lowered_name));
  }

 private:
  std::shared_ptr<const LoadedCudaModule> loaded_;
};

enum class CudaImage { elf, fatbin, ptx };

// cuModuleLoadData takes no size: it trusts the image's own headers, or reads
// PTX up to a NUL. Check those headers against the real size first, so a
// truncated file gives an Error instead of an out-of-bounds read.
Result<CudaImage> classify_cuda_image(const std::vector<std::uint8_t>& image) {
  auto read = [&](std::size_t offset, std::size_t bytes) {
    std::uint64_t v = 0;
    std::memcpy(&v, image.data() + offset, bytes);  // little-endian host and images
    return v;
  };
  const std::size_t n = image.size();
  if (n == 0) return make_error("load", "empty code object");
  if (n >= 4 && std::memcmp(image.data(),
                            "\x7f"
                            "ELF",
                            4) == 0) {
    if (n < 64 || image[4] != 2) return make_error("load", "truncated or 32-bit ELF code object");
    std::uint64_t phoff = read(0x20, 8), shoff = read(0x28, 8);
    std::uint64_t phsize = read(0x36, 2) * read(0x38, 2), shsize = read(0x3A, 2) * read(0x3C, 2);
    if (phoff > n || phsize > n - phoff || shoff > n || shsize > n - shoff) {
      return make_error("load", "ELF code object is truncated (" + std::to_string(n) + " bytes)");
    }
    return CudaImage::elf;
  }
  if (n >= 4 && read(0, 4) == 0xBA55ED50u) {  // fatbin: u32 magic, u16 version, u16 header size, u64 payload size
    if (n < 16 || read(8, 8) > n || read(6, 2) + read(8, 8) > n) {
      return make_error("load", "fatbin code object is truncated (" + std::to_string(n) + " bytes)");
    }
    return CudaImage::fatbin;
  }
  return CudaImage::ptx;
}

class CudaDriver final : public Driver {
 public:
  Vendor vendor() const override { return Vendor::nvidia; }
  bool available() const override { return init().available; }
  std::string unavailable_reason() const override { return init().reason; }
  int device_count() const override { return init().available ? init().count : 0; }

  Status encode_tensor_map(const TensorMap16& m, void* out) const override {
    const State& s = init();
    if (!s.available) return make_error("device", s.reason);
    if (!s.api.cuTensorMapEncodeTiled) return make_error("device", s.library.path() + " lacks cuTensorMapEncodeTiled (CUDA < 12)");
    constexpr int kUint16 = 1, kInterleaveNone = 0, kSwizzle128 = 3, kL2Promote256 = 3, kOobFillNone = 0;  // cuda.h's enum values
    const std::uint32_t element_strides[5] = {1, 1, 1, 1, 1};
    CUresult rc = s.api.cuTensorMapEncodeTiled(out, kUint16, m.rank, const_cast<void*>(m.base), m.dims, m.strides, m.box, element_strides,
                                               kInterleaveNone, kSwizzle128, kL2Promote256, kOobFillNone);
    if (rc != kCudaSuccess) return cuda_error(s.api, "launch", "cuTensorMapEncodeTiled", rc);
    return ok_status();
  }

  Result<DeviceInfo> device_info(int ordinal) const override {
    const State& s = init();
    if (auto st = check_ordinal(s, ordinal, "driver"); !st) return std::move(st).error();
    const CudaApi& api = s.api;
    CUdevice dev = s.devices[ordinal];
    DeviceInfo info;
    info.ordinal = ordinal;
    char name[256] = {};
    if (CUresult rc = api.cuDeviceGetName(name, sizeof(name) - 1, dev); rc != kCudaSuccess) {
      return cuda_error(api, "driver", "cuDeviceGetName", rc);
    }
    info.name = name;
    int major = 0, minor = 0, sms = 0, optin = 0;
    for (auto [attr, out] :
         {std::pair{kAttrComputeCapabilityMajor, &major}, std::pair{kAttrComputeCapabilityMinor, &minor},
          std::pair{kAttrMultiprocessorCount, &sms}, std::pair{kAttrMaxSharedPerBlockOptin, &optin}}) {
      if (CUresult rc = api.cuDeviceGetAttribute(out, attr, dev); rc != kCudaSuccess) {
        return cuda_error(api, "driver", "cuDeviceGetAttribute(" + std::to_string(attr) + ")", rc);
      }
    }
    info.target = "sm_" + std::to_string(major) + std::to_string(minor);
    info.multiprocessors = sms;
    info.shared_mem_per_block_optin = static_cast<std::size_t>(optin);
    return info;
  }

  Result<int> current_device() const override {
    const State& s = init();
    if (!s.available) return make_error("driver", "CUDA unavailable: " + s.reason);
    CUcontext ctx = nullptr;
    if (CUresult rc = s.api.cuCtxGetCurrent(&ctx); rc != kCudaSuccess) {
      return cuda_error(s.api, "driver", "cuCtxGetCurrent", rc);
    }
    if (!ctx) return 0;
    CUdevice dev = 0;
    if (CUresult rc = s.api.cuCtxGetDevice(&dev); rc != kCudaSuccess) {
      return cuda_error(s.api, "driver", "cuCtxGetDevice", rc);
    }
    // cuDeviceGet(&d, i) yields d == i, but map back explicitly rather than rely on it.
    for (int i = 0; i < s.count; ++i) {
      if (s.devices[i] == dev) return i;
    }
    return static_cast<int>(dev);
  }

  Result<std::unique_ptr<Module>> load(int ordinal, const std::vector<std::uint8_t>& code_object) const override {
    const State& s = init();
    if (auto st = check_ordinal(s, ordinal, "load"); !st) return std::move(st).error();
    auto kind = classify_cuda_image(code_object);
    if (!kind) return std::move(kind).error();
    auto ctx = context(s, ordinal);
    if (!ctx) return std::move(ctx).error();
    const CudaApi& api = s.api;

    const void* image = code_object.data();
    std::vector<std::uint8_t> terminated;  // the driver reads PTX up to a NUL
    if (*kind == CudaImage::ptx && code_object.back() != 0) {
      terminated.reserve(code_object.size() + 1);
      terminated.assign(code_object.begin(), code_object.end());
      terminated.push_back(0);
      image = terminated.data();
    }

    ContextGuard guard(api, *ctx);
    if (guard.rc() != kCudaSuccess) return cuda_error(api, "load", "cuCtxSetCurrent", guard.rc());
    CUmodule module = nullptr;
    CUresult rc;
    std::string jit_log(8192, '\0');
    if (api.cuModuleLoadDataEx) {
      // The error log says why a PTX JIT failed; the plain call only says that it did.
      int options[] = {kJitErrorLogBuffer, kJitErrorLogBufferSizeBytes};
      void* values[] = {jit_log.data(), reinterpret_cast<void*>(static_cast<std::uintptr_t>(jit_log.size()))};
      rc = api.cuModuleLoadDataEx(&module, image, 2, options, values);
    } else {
      rc = api.cuModuleLoadData(&module, image);
    }
    if (rc != kCudaSuccess) {
      Error e = cuda_error(
          api, "load",
          "cuModuleLoadData (" + std::to_string(code_object.size()) + " bytes) on device " + std::to_string(ordinal),
          rc);
      e.log = jit_log.c_str();
      if (auto info = device_info(ordinal)) e.target = info->target;
      return e;
    }
    auto loaded = std::make_shared<const LoadedCudaModule>(&api, *ctx, module, ordinal);
    return std::unique_ptr<Module>(std::make_unique<CudaModule>(std::move(loaded)));
  }

  Result<bool> stream_is_capturing(void* stream) const override {
    const State& s = init();
    if (!s.available || !s.api.cuStreamIsCapturing) return false;
    int status = 0;  // CU_STREAM_CAPTURE_STATUS_NONE / ACTIVE / INVALIDATED
    if (CUresult rc = s.api.cuStreamIsCapturing(static_cast<CUstream>(stream), &status); rc != kCudaSuccess) {
      return cuda_error(s.api, "capture", "cuStreamIsCapturing", rc);
    }
    return status != 0;
  }

  Result<void*> malloc(int ordinal, std::size_t bytes) const override {
    CUdeviceptr ptr = 0;
    Status st = in_context(ordinal, "cuMemAlloc", [&](const CudaApi& api) { return api.cuMemAlloc_v2(&ptr, bytes); });
    if (!st) return std::move(st).error();
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(ptr));
  }
  Status free(int ordinal, void* ptr) const override {
    return in_context(ordinal, "cuMemFree", [&](const CudaApi& api) { return api.cuMemFree_v2(dptr(ptr)); });
  }
  Status copy_to_device(int ordinal, void* dst, const void* src, std::size_t bytes) const override {
    return in_context(ordinal, "cuMemcpyHtoD",
                      [&](const CudaApi& api) { return api.cuMemcpyHtoD_v2(dptr(dst), src, bytes); });
  }
  Status copy_to_host(int ordinal, void* dst, const void* src, std::size_t bytes) const override {
    return in_context(ordinal, "cuMemcpyDtoH",
                      [&](const CudaApi& api) { return api.cuMemcpyDtoH_v2(dst, dptr(src), bytes); });
  }
  Status memset(int ordinal, void* dst, int byte, std::size_t bytes) const override {
    return in_context(ordinal, "cuMemsetD8", [&](const CudaApi& api) {
      return api.cuMemsetD8_v2(dptr(dst), static_cast<unsigned char>(byte), bytes);
    });
  }
  Status synchronize(int ordinal) const override {
    return in_context(ordinal, "cuCtxSynchronize", [&](const CudaApi& api) { return api.cuCtxSynchronize(); });
  }

 private:
  struct State {
    DynamicLibrary library;
    CudaApi api;
    bool available = false;
    std::string reason;
    int count = 0;
    std::vector<CUdevice> devices;
    std::unique_ptr<PrimaryContext[]> contexts;  // one per device, retained on first use
  };

  static CUdeviceptr dptr(const void* p) { return static_cast<CUdeviceptr>(reinterpret_cast<std::uintptr_t>(p)); }

  const State& init() const {
    std::call_once(once_, [this] { initialize(state_); });
    return state_;
  }

  static void initialize(State& s) {
    auto library = DynamicLibrary::open({"libcuda.so.1", "libcuda.so"});
    if (!library) {
      s.reason = "cannot load the CUDA driver library: " + one_line(library.error().log);
      return;
    }
    s.library = std::move(*library);
    CudaApi& a = s.api;
    const char* missing = nullptr;
    auto need = [&](const char* name, auto*& fn) {
      fn = s.library.function<std::remove_reference_t<decltype(fn)>>(name);
      if (!fn && !missing) missing = name;
    };
    need("cuInit", a.cuInit);
    need("cuGetErrorName", a.cuGetErrorName);
    need("cuGetErrorString", a.cuGetErrorString);
    need("cuDeviceGetCount", a.cuDeviceGetCount);
    need("cuDeviceGet", a.cuDeviceGet);
    need("cuDeviceGetName", a.cuDeviceGetName);
    need("cuDeviceGetAttribute", a.cuDeviceGetAttribute);
    need("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain);
    need("cuDevicePrimaryCtxRelease_v2", a.cuDevicePrimaryCtxRelease_v2);
    need("cuCtxSetCurrent", a.cuCtxSetCurrent);
    need("cuCtxGetCurrent", a.cuCtxGetCurrent);
    need("cuCtxGetDevice", a.cuCtxGetDevice);
    need("cuCtxSynchronize", a.cuCtxSynchronize);
    need("cuModuleLoadData", a.cuModuleLoadData);
    need("cuModuleUnload", a.cuModuleUnload);
    need("cuModuleGetFunction", a.cuModuleGetFunction);
    need("cuLaunchKernel", a.cuLaunchKernel);
    need("cuFuncGetAttribute", a.cuFuncGetAttribute);
    need("cuFuncSetAttribute", a.cuFuncSetAttribute);
    need("cuMemAlloc_v2", a.cuMemAlloc_v2);
    need("cuMemFree_v2", a.cuMemFree_v2);
    need("cuMemcpyHtoD_v2", a.cuMemcpyHtoD_v2);
    need("cuMemcpyDtoH_v2", a.cuMemcpyDtoH_v2);
    need("cuMemsetD8_v2", a.cuMemsetD8_v2);
    a.cuModuleLoadDataEx = s.library.function<decltype(a.cuModuleLoadDataEx)>("cuModuleLoadDataEx");
    a.cuStreamIsCapturing = s.library.function<decltype(a.cuStreamIsCapturing)>("cuStreamIsCapturing");
    a.cuLaunchKernelEx = s.library.function<decltype(a.cuLaunchKernelEx)>("cuLaunchKernelEx");
    a.cuTensorMapEncodeTiled = s.library.function<decltype(a.cuTensorMapEncodeTiled)>("cuTensorMapEncodeTiled");
    if (missing) {
      s.reason = s.library.path() + " lacks " + missing + " (driver too old?)";
      return;
    }
    if (CUresult rc = a.cuInit(0); rc != kCudaSuccess) {
      s.reason = "cuInit failed: " + cuda_error_text(a, rc);
      return;
    }
    if (CUresult rc = a.cuDeviceGetCount(&s.count); rc != kCudaSuccess) {
      s.reason = "cuDeviceGetCount failed: " + cuda_error_text(a, rc);
      s.count = 0;
      return;
    }
    if (s.count <= 0) {
      s.count = 0;
      s.reason = "the CUDA driver reports no devices";
      return;
    }
    s.devices.resize(s.count);
    for (int i = 0; i < s.count; ++i) {
      if (CUresult rc = a.cuDeviceGet(&s.devices[i], i); rc != kCudaSuccess) {
        s.reason = "cuDeviceGet(" + std::to_string(i) + ") failed: " + cuda_error_text(a, rc);
        s.count = 0;
        return;
      }
    }
    s.contexts = std::make_unique<PrimaryContext[]>(s.count);
    s.available = true;
  }

  static Status check_ordinal(const State& s, int ordinal, const char* stage) {
    if (!s.available) return make_error(stage, "CUDA unavailable: " + s.reason);
    if (ordinal < 0 || ordinal >= s.count) {
      return make_error(stage, "device ordinal " + std::to_string(ordinal) + " out of range (" +
                                   std::to_string(s.count) + " CUDA devices)");
    }
    return ok_status();
  }

  static Result<CUcontext> context(const State& s, int ordinal) {
    return s.contexts[ordinal].get(s.api, s.devices[ordinal]);
  }

  // Runs one driver call with `ordinal`'s primary context current.
  template <class Call>
  Status in_context(int ordinal, const char* what, Call&& call) const {
    const State& s = init();
    if (auto st = check_ordinal(s, ordinal, "driver"); !st) return st;
    auto ctx = context(s, ordinal);
    if (!ctx) return std::move(ctx).error();
    ContextGuard guard(s.api, *ctx);
    if (guard.rc() != kCudaSuccess) return cuda_error(s.api, "driver", "cuCtxSetCurrent", guard.rc());
    if (CUresult rc = call(s.api); rc != kCudaSuccess) {
      return cuda_error(s.api, "driver", std::string(what) + " on device " + std::to_string(ordinal), rc);
    }
    return ok_status();
  }

  mutable std::once_flag once_;
  mutable State state_;
};

}  // namespace

const Driver& cuda_driver() {
  // Never destroyed: modules and kernels held in other statics may be released
  // after this one would be, and releasing contexts or dlclose'ing libcuda
  // while the driver's own exit handlers run has crashed processes at exit.
  static const CudaDriver* driver = new CudaDriver();
  return *driver;
}

}  // namespace sparsejit
