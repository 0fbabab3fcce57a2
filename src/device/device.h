// The driver layer: CUDA driver API / HIP module API, both dlopen'd. A Module
// is loaded per device context; functions are looked up by their lowered name;
// launches go to the caller's stream. Errors carry the driver's own message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "util/result.h"

namespace sparsejit {

enum class Vendor { nvidia, amd };

struct DeviceInfo {
  int ordinal = 0;
  std::string name;       // "NVIDIA H100 80GB HBM3"
  std::string target;     // "sm_90" / full AMD target id "gfx942:sramecc+:xnack-"
  int multiprocessors = 0;
  std::size_t shared_mem_per_block_optin = 0;
};

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

class Kernel;

// One loaded code object in one device context. Unloaded on destruction.
class Module {
 public:
  virtual ~Module() = default;
  // nullptr-free: an Error names the missing symbol.
  virtual Result<std::shared_ptr<Kernel>> function(const std::string& lowered_name) = 0;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // args: pointers to each argument's value (cuLaunchKernel/hipModuleLaunchKernel convention).
  virtual Status launch(Dim3 grid, Dim3 block, unsigned dynamic_shared_bytes, void* stream, void** args) const = 0;
  // Like launch, but the kernel may start while the stream's previous kernel is still
  // running (NVIDIA programmatic dependent launch, sm_90+): it must wait for that
  // kernel (griddepcontrol.wait, sj_grid_dependency_wait) before reading its results.
  // Drivers without it launch normally, which is the same result.
  virtual Status launch_dependent(Dim3 grid, Dim3 block, unsigned dynamic_shared_bytes, void* stream, void** args) const {
    return launch(grid, block, dynamic_shared_bytes, stream, args);
  }
  // Registers, static shared/LDS bytes, local/private bytes, max threads per block (from the driver).
  virtual std::string attributes_json() const = 0;
  // Allows launches with up to `bytes` of dynamic shared memory: above 48 KiB
  // NVIDIA needs an opt-in per function. Called once at load; drivers without
  // such a limit (HIP, test fakes) keep this default, and the launch reports a
  // request beyond the hardware.
  virtual Status set_max_dynamic_shared_bytes(unsigned /*bytes*/) { return ok_status(); }
};

// A vendor driver. Thread-safe.
class Driver {
 public:
  virtual ~Driver() = default;
  virtual Vendor vendor() const = 0;
  virtual bool available() const = 0;            // library loaded and init succeeded
  virtual std::string unavailable_reason() const = 0;
  virtual int device_count() const = 0;
  virtual Result<DeviceInfo> device_info(int ordinal) const = 0;
  // The device that is current for the calling thread (CUDA: the context's device; HIP: hipGetDevice).
  virtual Result<int> current_device() const = 0;
  // Loads a code object into `ordinal`'s (primary) context.
  virtual Result<std::unique_ptr<Module>> load(int ordinal, const std::vector<std::uint8_t>& code_object) const = 0;
  // Whether `stream` is capturing a graph (cuStreamIsCapturing / hipStreamIsCapturing).
  // The runtime asks before building a kernel: loading a module inside a capture
  // would invalidate it. An Error when the driver cannot tell (e.g. the legacy
  // stream during a global-mode capture elsewhere). Drivers without the query: false.
  virtual Result<bool> stream_is_capturing(void* stream) const {
    (void)stream;
    return false;
  }

  // A tiled tensor map for the copy engine (CUDA cuTensorMapEncodeTiled, sm_90): `rank`
  // dimensions of 16-bit elements, innermost first, at `base` (16-byte aligned); strides in
  // bytes of dimensions 1.. (multiples of 16); a box of `box` elements landing in shared
  // memory with the 128-byte swizzle. Written to `out` (128 bytes, 64-byte aligned).
  // Drivers without tensor maps: an Error (the caller loads another way).
  struct TensorMap16 {
    const void* base = nullptr;
    unsigned rank = 0;
    std::uint64_t dims[5] = {};
    std::uint64_t strides[4] = {};
    std::uint32_t box[5] = {};
  };
  virtual Status encode_tensor_map(const TensorMap16& m, void* out) const {
    (void)m, (void)out;
    return make_error("device", "this driver has no tensor maps");
  }

  // Memory helpers for tests, benchmarks and the examples (not on the hot path).
  virtual Result<void*> malloc(int ordinal, std::size_t bytes) const = 0;
  virtual Status free(int ordinal, void* ptr) const = 0;
  virtual Status copy_to_device(int ordinal, void* dst, const void* src, std::size_t bytes) const = 0;
  virtual Status copy_to_host(int ordinal, void* dst, const void* src, std::size_t bytes) const = 0;
  virtual Status memset(int ordinal, void* dst, int byte, std::size_t bytes) const = 0;
  virtual Status synchronize(int ordinal) const = 0;
};

// Process-wide drivers (lazily dlopen'd; never null, may be unavailable).
const Driver& cuda_driver();
const Driver& hip_driver();

}  // namespace sparsejit
