// config -> rendered source -> backend -> cache key -> (cache hit | compile) -> code object.
#pragma once

#include <memory>
#include <string>

#include "cache/kernel_cache.h"
#include "config.h"
#include "util/result.h"

namespace sparsejit {

struct BuildOutcome {
  std::shared_ptr<const CachedObject> object;
  CacheOrigin origin = CacheOrigin::compiled;
  std::string backend;
  std::string key;
  std::string kernel_name;
  double seconds = 0;  // wall time of this build() call
};

class KernelBuilder {
 public:
  explicit KernelBuilder(std::shared_ptr<KernelCache> cache);
  // `backend` forces one backend ("clang", "hiprtc", ...) instead of the arch table's preference order.
  Result<BuildOutcome> build(const KernelConfig& config, const std::string& backend = "");
  KernelCache& cache() { return *cache_; }
  std::shared_ptr<KernelCache> shared_cache() { return cache_; }

 private:
  std::shared_ptr<KernelCache> cache_;
};

// The process-wide cache built from the knobs (created on first use).
std::shared_ptr<KernelCache> default_cache();

}  // namespace sparsejit
