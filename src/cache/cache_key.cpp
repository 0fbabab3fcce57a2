#include <algorithm>

#include "cache/kernel_cache.h"
#include "util/hash.h"

namespace sparsejit {

CacheKey make_cache_key(const std::string& source, const std::string& backend, const std::string& compiler_version,
                        const std::string& target, std::vector<std::string> options,
                        const std::map<std::string, std::string>& knob_inputs) {
  // Option order is irrelevant to the key by design: callers assemble them from several places.
  std::sort(options.begin(), options.end());
  CacheKey key;
  key.inputs = {
      {"source_sha256", sha256_hex(source)},
      {"backend", backend},
      {"compiler_version", compiler_version},
      {"target", target},
      {"options", options},
      {"schema", kCacheSchemaVersion},
      {"knobs", knob_inputs},
  };
  // nlohmann::json objects keep keys sorted and dump() without indent is
  // compact, so the text is canonical. Invalid UTF-8 (never seen in flags)
  // is replaced rather than thrown.
  key.hex = sha256_hex(key.inputs.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  return key;
}

}  // namespace sparsejit
