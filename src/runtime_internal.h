// Runtime internals shared with the C ABI, the host-overhead benchmark and the
// tests: creation that returns the reason on failure, and a test runtime whose
// driver and kernels are injected (no GPU, no compiler), so everything but the
// driver's launch can be exercised and timed on a machine without a GPU.
#pragma once

#include <functional>
#include <memory>

#include "config.h"
#include "device/device.h"
#include "sparsejit/sparsejit.hpp"
#include "util/result.h"

namespace sparsejit {

struct RuntimeTestHooks {
  const Driver* driver = nullptr;  // required: answers stream_is_capturing (its launch is the injected kernels')
  DeviceInfo info;                 // info.target selects the arch table ("sm_90")
  int device = 0;
  // Replaces build + load: returns the kernel for a config. Called on a miss only.
  std::function<Result<std::shared_ptr<Kernel>>(const KernelConfig&)> make_kernel;
};

struct RuntimeAccess {
  // Runtime::create, with the reason when no runtime can be made (no GPU, bad ordinal, no arch table).
  static Result<std::unique_ptr<Runtime>> create(const RuntimeOptions& options);
  static Result<std::unique_ptr<Runtime>> create_for_testing(RuntimeTestHooks hooks);
  // Kernels loaded by this runtime (the in-memory tier of the hot path).
  static std::size_t loaded_kernels(const Runtime& rt);
  static const Driver& driver(const Runtime& rt);
};

}  // namespace sparsejit
