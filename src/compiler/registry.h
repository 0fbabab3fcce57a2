// The process-wide set of compiler backends and the policy that turns one into
// the compiler a caller uses: first supporting backend in a preference list,
// isolated in a helper process when the knobs say so, and failing every
// compile under SPARSEJIT_DISABLE_COMPILE (proves a run is served from cache).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compiler/compiler.h"
#include "util/result.h"

namespace sparsejit {

// One row of `sparsejit archs`.
struct BackendStatus {
  std::string name;
  bool available = false;
  std::string reason;   // why unavailable; empty when available
  std::string version;  // probed; empty when unavailable
  bool prefers_isolation = false;
};

class CompilerRegistry {
 public:
  // nvrtc, hiprtc, clang. Backends load their libraries lazily, on first use.
  static CompilerRegistry& instance();
  // For tests: a registry over given backends (e.g. fakes).
  explicit CompilerRegistry(std::vector<std::shared_ptr<const Compiler>> backends);

  // The raw in-process backends, in default preference order.
  const std::vector<std::shared_ptr<const Compiler>>& all() const { return backends_; }
  // Raw backend by name; nullptr if unknown.
  std::shared_ptr<const Compiler> by_name(const std::string& name) const;

  // The first available backend in `preference` (all backends if empty) whose
  // supports(target) is ok, wrapped by use_policy(). The Error lists every
  // backend's reason.
  Result<std::shared_ptr<const Compiler>> choose(const std::string& target,
                                                 const std::vector<std::string>& preference = {}) const;

  // Applies the knobs to a raw backend: SPARSEJIT_COMPILE_ISOLATION (helper
  // process or not) and SPARSEJIT_DISABLE_COMPILE (checked at compile time).
  Result<std::shared_ptr<const Compiler>> use_policy(std::shared_ptr<const Compiler> backend) const;

  // Every backend's status (loads each library and probes its version).
  std::vector<BackendStatus> describe() const;

 private:
  std::vector<std::shared_ptr<const Compiler>> backends_;
};

}  // namespace sparsejit
