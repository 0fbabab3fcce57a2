// HIP module API, dlopen'd: no HIP headers or libamdhip64 at build time, so one
// binary runs on machines with an AMD driver, an NVIDIA one, or none.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "device/device.h"
#include "util/dynlib.h"

namespace sparsejit {
namespace detail {
std::string hip_target_from_properties(const unsigned char* props, std::size_t size, std::size_t arch_name_offset);
}  // namespace detail

namespace {

// ---- the slice of hip_runtime_api.h we use (ABI-identical declarations) ----
using hipError = int;  // hipError_t, hipDeviceAttribute_t, hipFunction_attribute, hipMemcpyKind: int-sized enums
struct ihipModule_t;
struct ihipModuleSymbol_t;
struct ihipStream_t;
using hipModule = ihipModule_t*;
using hipFunction = ihipModuleSymbol_t*;
using hipStream = ihipStream_t*;

constexpr hipError kHipSuccess = 0;
// hipDeviceAttribute_t: the CUDA-compatible block has kept these values from
// ROCm 5.0 through 6.x (checked against both headers).
constexpr int kAttrMultiprocessorCount = 63;
constexpr int kAttrMaxSharedMemoryPerBlock = 74;
constexpr int kAttrSharedMemPerBlockOptin = 75;
constexpr int kFuncMaxThreadsPerBlock = 0;
constexpr int kFuncSharedSizeBytes = 1;
constexpr int kFuncLocalSizeBytes = 3;
constexpr int kFuncNumRegs = 4;
constexpr int kMemcpyHostToDevice = 1;
constexpr int kMemcpyDeviceToHost = 2;

// hipDeviceProp_t's byte offset of gcnArchName[256]. ROCm 6 froze and renamed
// layouts by symbol: hipGetDevicePropertiesR0600 fills the R0600 layout, the
// ROCm 5 hipGetDeviceProperties (and R0000 in ROCm 6) the older one.
constexpr std::size_t kArchNameOffsetR0000 = 396;
constexpr std::size_t kArchNameOffsetR0600 = 1160;
// Both layouts are under 1.5 KiB; the slack absorbs any growth a future runtime
// writes through an old entry point.
constexpr std::size_t kPropertiesBufferBytes = 16384;

struct HipApi {
  hipError (*hipInit)(unsigned) = nullptr;
  const char* (*hipGetErrorName)(hipError) = nullptr;
  const char* (*hipGetErrorString)(hipError) = nullptr;
  hipError (*hipGetDeviceCount)(int*) = nullptr;
  hipError (*hipGetDevice)(int*) = nullptr;
  hipError (*hipSetDevice)(int) = nullptr;
  hipError (*hipDeviceGetName)(char*, int, int) = nullptr;
  hipError (*hipDeviceGetAttribute)(int*, int, int) = nullptr;
  hipError (*hipGetDevicePropertiesR0600)(void*, int) = nullptr;  // ROCm >= 6
  hipError (*hipGetDevicePropertiesR0000)(void*, int) = nullptr;  // ROCm >= 6, old layout
  hipError (*hipGetDeviceProperties)(void*, int) = nullptr;       // ROCm 5
  hipError (*hipRuntimeGetVersion)(int*) = nullptr;
  hipError (*hipModuleLoadData)(hipModule*, const void*) = nullptr;
  hipError (*hipModuleUnload)(hipModule) = nullptr;
  hipError (*hipModuleGetFunction)(hipFunction*, hipModule, const char*) = nullptr;
  hipError (*hipModuleLaunchKernel)(hipFunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                    hipStream, void**, void**) = nullptr;
  hipError (*hipFuncGetAttribute)(int*, int, hipFunction) = nullptr;
  hipError (*hipMalloc)(void**, std::size_t) = nullptr;
  hipError (*hipFree)(void*) = nullptr;
  hipError (*hipMemcpy)(void*, const void*, std::size_t, int) = nullptr;
  hipError (*hipMemset)(void*, int, std::size_t) = nullptr;
  hipError (*hipDeviceSynchronize)() = nullptr;
  hipError (*hipStreamIsCapturing)(hipStream, int*) = nullptr;  // optional (ROCm >= 5.0)
};

// "hipErrorNoDevice (100): no ROCm-capable device is detected"
std::string hip_error_text(const HipApi& api, hipError rc) {
  const char* name = api.hipGetErrorName ? api.hipGetErrorName(rc) : nullptr;
  const char* text = api.hipGetErrorString ? api.hipGetErrorString(rc) : nullptr;
  std::string s = name ? name : "HIP error";
  s += " (" + std::to_string(rc) + ")";
  // ROCm 5 returns the name again as the string.
  if (text && (!name || std::strcmp(name, text) != 0)) s += std::string(": ") + text;
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

Error hip_error(const HipApi& api, const char* stage, const std::string& what, hipError rc) {
  return make_error(stage, what + ": " + hip_error_text(api, rc));
}

// Makes `want` the calling thread's device for the scope and restores the
// previous one: the current device is the caller's setting (hipSetDevice), not ours.
class DeviceGuard {
 public:
  DeviceGuard(const HipApi& api, int want) : api_(api) {
    rc_ = api_.hipGetDevice(&previous_);
    if (rc_ != kHipSuccess || previous_ == want) return;
    rc_ = api_.hipSetDevice(want);
    restore_ = rc_ == kHipSuccess;
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  ~DeviceGuard() {
    if (restore_) api_.hipSetDevice(previous_);
  }
  hipError rc() const { return rc_; }

 private:
  const HipApi& api_;
  hipError rc_ = kHipSuccess;
  int previous_ = 0;
  bool restore_ = false;
};

// A hipModule, shared by the Module and every Kernel taken from it, so a Kernel
// held past its Module never launches unloaded code.
struct LoadedHipModule {
  const HipApi* api;
  hipModule module;
  int ordinal;
  LoadedHipModule(const HipApi* a, hipModule m, int o) : api(a), module(m), ordinal(o) {}
  LoadedHipModule(const LoadedHipModule&) = delete;
  LoadedHipModule& operator=(const LoadedHipModule&) = delete;
  ~LoadedHipModule() {
    // At process exit the runtime may already be torn down; the call then
    // fails and there is no one to tell.
    DeviceGuard guard(*api, ordinal);
    api->hipModuleUnload(module);
  }
};

class HipKernel final : public Kernel {
 public:
  HipKernel(std::shared_ptr<const LoadedHipModule> module, hipFunction fn, std::string name)
      : module_(std::move(module)), fn_(fn), name_(std::move(name)) {}

  Status launch(Dim3 grid, Dim3 block, unsigned dynamic_shared_bytes, void* stream, void** args) const override {
    const HipApi& api = *module_->api;
    hipError rc;
    if (stream != nullptr) {
      // Hot path: an explicit stream names its device; one runtime call.
      rc = api.hipModuleLaunchKernel(fn_, grid.x, grid.y, grid.z, block.x, block.y, block.z, dynamic_shared_bytes,
                                     static_cast<hipStream>(stream), args, nullptr);
    } else {
      // The null stream is the *current* device's: switch to the module's device.
      DeviceGuard guard(api, module_->ordinal);
      rc = guard.rc() != kHipSuccess ? guard.rc()
                                     : api.hipModuleLaunchKernel(fn_, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                                                                 dynamic_shared_bytes, nullptr, args, nullptr);
    }
    if (rc == kHipSuccess) return ok_status();
    return launch_failed(rc, grid, block, dynamic_shared_bytes);
  }

  std::string attributes_json() const override {
    const HipApi& api = *module_->api;
    nlohmann::json j;
    const std::pair<const char*, int> attrs[] = {{"registers", kFuncNumRegs},
                                                 {"shared_bytes", kFuncSharedSizeBytes},
                                                 {"local_bytes", kFuncLocalSizeBytes},
                                                 {"max_threads", kFuncMaxThreadsPerBlock}};
    for (const auto& [key, attr] : attrs) {
      int value = 0;
      hipError rc = api.hipFuncGetAttribute(&value, attr, fn_);
      if (rc != kHipSuccess) {
        j["error"] = "hipFuncGetAttribute(" + std::string(key) + "): " + hip_error_text(api, rc);
        break;
      }
      j[key] = value;
    }
    return j.dump();
  }

 private:
  Status launch_failed(hipError rc, Dim3 grid, Dim3 block, unsigned shared) const {
    auto dims = [](Dim3 d) { return std::to_string(d.x) + "x" + std::to_string(d.y) + "x" + std::to_string(d.z); };
    return hip_error(*module_->api, "launch",
                     "hipModuleLaunchKernel(" + name_ + ", grid " + dims(grid) + ", block " + dims(block) +
                         ", dynamic shared " + std::to_string(shared) + " B, device " +
                         std::to_string(module_->ordinal) + ")",
                     rc);
  }

  std::shared_ptr<const LoadedHipModule> module_;
  hipFunction fn_;
  std::string name_;
};

class HipModule final : public Module {
 public:
  explicit HipModule(std::shared_ptr<const LoadedHipModule> loaded) : loaded_(std::move(loaded)) {}

  Result<std::shared_ptr<Kernel>> function(const std::string& lowered_name) override {
    const HipApi& api = *loaded_->api;
    DeviceGuard guard(api, loaded_->ordinal);
    if (guard.rc() != kHipSuccess) return hip_error(api, "load", "hipSetDevice", guard.rc());
    hipFunction fn = nullptr;
    hipError rc = api.hipModuleGetFunction(&fn, loaded_->module, lowered_name.c_str());
    if (rc != kHipSuccess) {
      return hip_error(api, "load", "hipModuleGetFunction(\"" + lowered_name + "\"): no such kernel in the module", rc);
    }
    return std::shared_ptr<Kernel>(std::make_shared<HipKernel>(loaded_, fn, lowered_name));
  }

 private:
  std::shared_ptr<const LoadedHipModule> loaded_;
};

// hipModuleLoadData takes no size and trusts the image's headers; the runtime
// is not robust to arbitrary bytes. Accept only what it can load (an AMDGPU
// ELF or a clang offload bundle) and check the headers against the real size.
Status check_hip_image(const std::vector<std::uint8_t>& image) {
  auto read = [&](std::size_t offset, std::size_t bytes) {
    std::uint64_t v = 0;
    std::memcpy(&v, image.data() + offset, bytes);  // little-endian host and images
    return v;
  };
  const std::size_t n = image.size();
  if (n == 0) return make_error("load", "empty code object");
  const std::string truncated = "code object is truncated (" + std::to_string(n) + " bytes)";
  if (n >= 4 && std::memcmp(image.data(),
                            "\x7f"
                            "ELF",
                            4) == 0) {
    if (n < 64 || image[4] != 2) return make_error("load", "truncated or 32-bit ELF code object");
    std::uint64_t phoff = read(0x20, 8), shoff = read(0x28, 8);
    std::uint64_t phsize = read(0x36, 2) * read(0x38, 2), shsize = read(0x3A, 2) * read(0x3C, 2);
    if (phoff > n || phsize > n - phoff || shoff > n || shsize > n - shoff)
      return make_error("load", "ELF " + truncated);
    return ok_status();
  }
  static constexpr char kBundleMagic[] = "__CLANG_OFFLOAD_BUNDLE__";
  constexpr std::size_t kMagicBytes = sizeof(kBundleMagic) - 1;
  if (n >= kMagicBytes && std::memcmp(image.data(), kBundleMagic, kMagicBytes) == 0) {
    // u64 entry count, then per entry: u64 offset, u64 size, u64 triple length, triple.
    std::size_t pos = kMagicBytes;
    if (n - pos < 8) return make_error("load", "offload bundle " + truncated);
    std::uint64_t entries = read(pos, 8);
    pos += 8;
    for (std::uint64_t i = 0; i < entries; ++i) {
      if (n - pos < 24) return make_error("load", "offload bundle " + truncated);
      std::uint64_t offset = read(pos, 8), size = read(pos + 8, 8), triple = read(pos + 16, 8);
      pos += 24;
      if (triple > n - pos || offset > n || size > n - offset) return make_error("load", "offload bundle " + truncated);
      pos += triple;
    }
    return ok_status();
  }
  if (n >= 4 && std::memcmp(image.data(), "CCOB", 4) == 0) {
    // Compressed bundle: its header carries the sizes the runtime checks itself.
    if (n < 24) return make_error("load", "compressed offload bundle " + truncated);
    return ok_status();
  }
  return make_error(
      "load", "not an AMDGPU code object (expected an ELF or a clang offload bundle, " + std::to_string(n) + " bytes)");
}

class HipDriver final : public Driver {
 public:
  Vendor vendor() const override { return Vendor::amd; }
  bool available() const override { return init().available; }
  std::string unavailable_reason() const override { return init().reason; }
  int device_count() const override { return init().available ? init().count : 0; }

  Result<DeviceInfo> device_info(int ordinal) const override {
    const State& s = init();
    if (auto st = check_ordinal(s, ordinal, "driver"); !st) return std::move(st).error();
    const HipApi& api = s.api;
    DeviceInfo info;
    info.ordinal = ordinal;
    char name[256] = {};
    // hipDevice_t is the ordinal (hipDeviceGet(&d, i) yields i).
    if (hipError rc = api.hipDeviceGetName(name, sizeof(name) - 1, ordinal); rc != kHipSuccess) {
      return hip_error(api, "driver", "hipDeviceGetName", rc);
    }
    info.name = name;
    int sms = 0;
    if (hipError rc = api.hipDeviceGetAttribute(&sms, kAttrMultiprocessorCount, ordinal); rc != kHipSuccess) {
      return hip_error(api, "driver", "hipDeviceGetAttribute(multiprocessor count)", rc);
    }
    info.multiprocessors = sms;
    // The opt-in limit is a CUDA notion some ROCm versions leave at 0 or reject;
    // on AMD every block may use the whole per-block LDS anyway.
    int shared = 0;
    if (api.hipDeviceGetAttribute(&shared, kAttrSharedMemPerBlockOptin, ordinal) != kHipSuccess || shared <= 0) {
      if (hipError rc = api.hipDeviceGetAttribute(&shared, kAttrMaxSharedMemoryPerBlock, ordinal); rc != kHipSuccess) {
        return hip_error(api, "driver", "hipDeviceGetAttribute(max shared memory per block)", rc);
      }
    }
    info.shared_mem_per_block_optin = static_cast<std::size_t>(shared);
    auto target = arch_name(s, ordinal);
    if (!target) return std::move(target).error();
    info.target = std::move(*target);
    return info;
  }

  Result<int> current_device() const override {
    const State& s = init();
    if (!s.available) return make_error("driver", "HIP unavailable: " + s.reason);
    int device = 0;
    if (hipError rc = s.api.hipGetDevice(&device); rc != kHipSuccess) {
      return hip_error(s.api, "driver", "hipGetDevice", rc);
    }
    return device;
  }

  Result<std::unique_ptr<Module>> load(int ordinal, const std::vector<std::uint8_t>& code_object) const override {
    const State& s = init();
    if (auto st = check_ordinal(s, ordinal, "load"); !st) return std::move(st).error();
    if (auto st = check_hip_image(code_object); !st) return std::move(st).error();
    const HipApi& api = s.api;
    DeviceGuard guard(api, ordinal);
    if (guard.rc() != kHipSuccess) return hip_error(api, "load", "hipSetDevice", guard.rc());
    hipModule module = nullptr;
    if (hipError rc = api.hipModuleLoadData(&module, code_object.data()); rc != kHipSuccess) {
      Error e = hip_error(
          api, "load",
          "hipModuleLoadData (" + std::to_string(code_object.size()) + " bytes) on device " + std::to_string(ordinal),
          rc);
      if (auto target = arch_name(s, ordinal)) e.target = *target;
      return e;
    }
    auto loaded = std::make_shared<const LoadedHipModule>(&api, module, ordinal);
    return std::unique_ptr<Module>(std::make_unique<HipModule>(std::move(loaded)));
  }

  Result<bool> stream_is_capturing(void* stream) const override {
    const State& s = init();
    if (!s.available || !s.api.hipStreamIsCapturing) return false;
    int status = 0;  // hipStreamCaptureStatusNone / Active / Invalidated
    if (hipError rc = s.api.hipStreamIsCapturing(static_cast<hipStream>(stream), &status); rc != kHipSuccess) {
      return make_error("capture", "hipStreamIsCapturing: " + hip_error_text(s.api, rc));
    }
    return status != 0;
  }

  Result<void*> malloc(int ordinal, std::size_t bytes) const override {
    void* ptr = nullptr;
    Status st = on_device(ordinal, "hipMalloc", [&](const HipApi& api) { return api.hipMalloc(&ptr, bytes); });
    if (!st) return std::move(st).error();
    return ptr;
  }
  Status free(int ordinal, void* ptr) const override {
    return on_device(ordinal, "hipFree", [&](const HipApi& api) { return api.hipFree(ptr); });
  }
  Status copy_to_device(int ordinal, void* dst, const void* src, std::size_t bytes) const override {
    return on_device(ordinal, "hipMemcpy(host to device)",
                     [&](const HipApi& api) { return api.hipMemcpy(dst, src, bytes, kMemcpyHostToDevice); });
  }
  Status copy_to_host(int ordinal, void* dst, const void* src, std::size_t bytes) const override {
    return on_device(ordinal, "hipMemcpy(device to host)",
                     [&](const HipApi& api) { return api.hipMemcpy(dst, src, bytes, kMemcpyDeviceToHost); });
  }
  Status memset(int ordinal, void* dst, int byte, std::size_t bytes) const override {
    return on_device(ordinal, "hipMemset", [&](const HipApi& api) { return api.hipMemset(dst, byte, bytes); });
  }
  Status synchronize(int ordinal) const override {
    return on_device(ordinal, "hipDeviceSynchronize", [&](const HipApi& api) { return api.hipDeviceSynchronize(); });
  }

 private:
  struct State {
    DynamicLibrary library;
    HipApi api;
    bool available = false;
    std::string reason;
    int count = 0;
  };

  const State& init() const {
    std::call_once(once_, [this] { initialize(state_); });
    return state_;
  }

  static void initialize(State& s) {
    auto library = DynamicLibrary::open({"libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so"});
    if (!library) {
      s.reason = "cannot load the HIP runtime library: " + one_line(library.error().log);
      return;
    }
    s.library = std::move(*library);
    HipApi& a = s.api;
    const char* missing = nullptr;
    auto need = [&](const char* name, auto*& fn) {
      fn = s.library.function<std::remove_reference_t<decltype(fn)>>(name);
      if (!fn && !missing) missing = name;
    };
    need("hipInit", a.hipInit);
    need("hipGetErrorName", a.hipGetErrorName);
    need("hipGetErrorString", a.hipGetErrorString);
    need("hipGetDeviceCount", a.hipGetDeviceCount);
    need("hipGetDevice", a.hipGetDevice);
    need("hipSetDevice", a.hipSetDevice);
    need("hipDeviceGetName", a.hipDeviceGetName);
    need("hipDeviceGetAttribute", a.hipDeviceGetAttribute);
    need("hipModuleLoadData", a.hipModuleLoadData);
    need("hipModuleUnload", a.hipModuleUnload);
    need("hipModuleGetFunction", a.hipModuleGetFunction);
    need("hipModuleLaunchKernel", a.hipModuleLaunchKernel);
    need("hipFuncGetAttribute", a.hipFuncGetAttribute);
    need("hipMalloc", a.hipMalloc);
    need("hipFree", a.hipFree);
    need("hipMemcpy", a.hipMemcpy);
    need("hipMemset", a.hipMemset);
    need("hipDeviceSynchronize", a.hipDeviceSynchronize);
    a.hipGetDevicePropertiesR0600 =
        s.library.function<decltype(a.hipGetDevicePropertiesR0600)>("hipGetDevicePropertiesR0600");
    a.hipGetDevicePropertiesR0000 =
        s.library.function<decltype(a.hipGetDevicePropertiesR0000)>("hipGetDevicePropertiesR0000");
    a.hipGetDeviceProperties = s.library.function<decltype(a.hipGetDeviceProperties)>("hipGetDeviceProperties");
    a.hipRuntimeGetVersion = s.library.function<decltype(a.hipRuntimeGetVersion)>("hipRuntimeGetVersion");
    a.hipStreamIsCapturing = s.library.function<decltype(a.hipStreamIsCapturing)>("hipStreamIsCapturing");
    if (!missing && !a.hipGetDevicePropertiesR0600 && !a.hipGetDevicePropertiesR0000 && !a.hipGetDeviceProperties) {
      missing = "hipGetDeviceProperties";
    }
    if (missing) {
      s.reason = s.library.path() + " lacks " + missing;
      return;
    }
    hipError init_rc = a.hipInit(0);
    int count = 0;
    hipError count_rc = init_rc == kHipSuccess ? a.hipGetDeviceCount(&count) : kHipSuccess;
    if (init_rc != kHipSuccess || count_rc != kHipSuccess || count <= 0) {
      // With no GPU, ROCm 5 fails hipInit with hipErrorInvalidDevice, which
      // says little: name the likely cause too.
      s.reason = init_rc != kHipSuccess    ? "hipInit failed: " + hip_error_text(a, init_rc)
                 : count_rc != kHipSuccess ? "hipGetDeviceCount failed: " + hip_error_text(a, count_rc)
                                           : std::string("the HIP runtime reports no devices");
      s.reason += " (" + s.library.path();
      s.reason += access("/dev/kfd", R_OK | W_OK) != 0 ? "; /dev/kfd is not accessible: no AMD GPU or no permission)"
                                                       : "; no AMD GPU visible, check HIP_VISIBLE_DEVICES)";
      return;
    }
    s.count = count;
    s.available = true;
  }

  // The full target id ("gfx942:sramecc+:xnack-") is only in hipDeviceProp_t's
  // gcnArchName, whose offset moved in ROCm 6. Why this way:
  // - the layout is chosen by the entry point we call (R0600 vs the ROCm 5 /
  //   R0000 one), which is exactly how HIP versions the struct, so no version
  //   number has to be interpreted;
  // - the buffer is oversized, so a larger struct can't overrun it;
  // - the field is validated; if it doesn't look like a target id we scan the
  //   struct for one (a future layout), else report an error.
  // Rejected: hipDeviceAttributeGcnArch (an int without the sramecc/xnack
  // features, gone in ROCm 6) and KFD sysfs (gfx_target_version lacks the
  // features too, and mapping HIP ordinals to KFD nodes under
  // HIP/ROCR_VISIBLE_DEVICES is fragile).
  static Result<std::string> arch_name(const State& s, int ordinal) {
    const HipApi& api = s.api;
    hipError (*get)(void*, int) = nullptr;
    std::size_t offset = kArchNameOffsetR0000;
    if (api.hipGetDevicePropertiesR0600) {
      get = api.hipGetDevicePropertiesR0600;
      offset = kArchNameOffsetR0600;
    } else if (api.hipGetDevicePropertiesR0000) {
      get = api.hipGetDevicePropertiesR0000;
    } else {
      get = api.hipGetDeviceProperties;
      // Only a ROCm >= 6 runtime without the versioned names would mean R0600 here.
      int version = 0;
      if (api.hipRuntimeGetVersion && api.hipRuntimeGetVersion(&version) == kHipSuccess && version >= 60000000) {
        offset = kArchNameOffsetR0600;
      }
    }
    std::vector<unsigned char> props(kPropertiesBufferBytes, 0);
    if (hipError rc = get(props.data(), ordinal); rc != kHipSuccess) {
      return hip_error(api, "driver", "hipGetDeviceProperties(" + std::to_string(ordinal) + ")", rc);
    }
    std::string target = detail::hip_target_from_properties(props.data(), props.size(), offset);
    if (target.empty()) {
      return make_error("driver", "device " + std::to_string(ordinal) +
                                      ": no gcnArchName found in hipDeviceProp_t (unknown HIP runtime layout)");
    }
    return target;
  }

  static Status check_ordinal(const State& s, int ordinal, const char* stage) {
    if (!s.available) return make_error(stage, "HIP unavailable: " + s.reason);
    if (ordinal < 0 || ordinal >= s.count) {
      return make_error(stage, "device ordinal " + std::to_string(ordinal) + " out of range (" +
                                   std::to_string(s.count) + " HIP devices)");
    }
    return ok_status();
  }

  // Runs one runtime call with `ordinal` as the current device.
  template <class Call>
  Status on_device(int ordinal, const char* what, Call&& call) const {
    const State& s = init();
    if (auto st = check_ordinal(s, ordinal, "driver"); !st) return st;
    DeviceGuard guard(s.api, ordinal);
    if (guard.rc() != kHipSuccess) return hip_error(s.api, "driver", "hipSetDevice", guard.rc());
    if (hipError rc = call(s.api); rc != kHipSuccess) {
      return hip_error(s.api, "driver", std::string(what) + " on device " + std::to_string(ordinal), rc);
    }
    return ok_status();
  }

  mutable std::once_flag once_;
  mutable State state_;
};

// A target id: "gfx" then lower-case alphanumerics and feature flags, NUL-terminated within `max`.
bool looks_like_target(const unsigned char* p, std::size_t max) {
  if (max < 4 || std::memcmp(p, "gfx", 3) != 0) return false;
  std::size_t i = 3;
  for (; i < max && p[i] != 0; ++i) {
    unsigned char c = p[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return i < max && i >= 6;  // shortest real one: "gfx900"
}

}  // namespace

namespace detail {

// The arch name at `arch_name_offset` if it validates, else the first target id
// found after `name[256]`, else "". Exposed for tests (no AMD GPU to test on).
std::string hip_target_from_properties(const unsigned char* props, std::size_t size, std::size_t arch_name_offset) {
  constexpr std::size_t kField = 256;  // char gcnArchName[256]
  if (arch_name_offset + kField <= size && looks_like_target(props + arch_name_offset, kField)) {
    return reinterpret_cast<const char*>(props + arch_name_offset);
  }
  // Skip name[256] (a marketing name may say anything); a field starts after
  // a zero byte (the preceding int/reserved words), not inside another string.
  for (std::size_t i = kField; i + 6 < size; ++i) {
    if (props[i - 1] == 0 && looks_like_target(props + i, std::min(kField, size - i))) {
      return reinterpret_cast<const char*>(props + i);
    }
  }
  return "";
}

}  // namespace detail

const Driver& hip_driver() {
  // Never destroyed: modules held in other statics may be released after this
  // one would be, and dlclose'ing libamdhip64 during exit has crashed processes.
  static const HipDriver* driver = new HipDriver();
  return *driver;
}

}  // namespace sparsejit
