// The code-object cache: a memory tier in front of read-only system dirs and
// the read-write user dir. Entries are immutable files (temp + fsync + rename,
// header with length, key and checksum); a bad entry is moved aside and
// rebuilt, never loaded. Concurrent misses on one key compile once: in-process
// through a map of shared futures, across processes through a per-key flock
// taken on a miss only (readers never lock; the kernel drops a dead holder's lock).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compiler/compiler.h"
#include "knobs.h"
#include "util/result.h"

namespace sparsejit {

inline constexpr int kCacheSchemaVersion = 1;

struct CacheKey {
  std::string hex;        // sha256 hex of the canonical key inputs
  nlohmann::json inputs;  // what went in: source_sha256, backend, compiler_version, target, options (sorted), schema, knobs
};

// Builds the key from everything that changes the output.
CacheKey make_cache_key(const std::string& source, const std::string& backend, const std::string& compiler_version,
                        const std::string& target, std::vector<std::string> options,
                        const std::map<std::string, std::string>& knob_inputs);

struct CacheSettings {
  std::string user_dir;                  // empty: no disk tier for writes
  std::vector<std::string> system_dirs;  // read-only, searched first
  CacheMode mode = CacheMode::readwrite;
  std::uint64_t max_bytes = 4ull << 30;
  bool allow_shared = false;
  static CacheSettings from_knobs(const Knobs& k);
};

enum class CacheOrigin { memory, system_dir, user_dir, compiled };
const char* to_string(CacheOrigin o);

struct CachedObject {
  std::string key;
  std::vector<std::uint8_t> binary;
  nlohmann::json sidecar;  // config, key inputs, log, compile_seconds, resources...
};

struct CacheResult {
  std::shared_ptr<const CachedObject> object;
  CacheOrigin origin = CacheOrigin::compiled;
};

struct CacheEntryInfo {
  std::string key;
  std::string dir;  // which cache dir holds it
  std::string path;
  std::uint64_t bytes = 0;
  std::int64_t last_used_unix = 0;
  nlohmann::json sidecar;  // may be null when unreadable
  bool read_only = false;
};

struct VerifyReport {
  int checked = 0;
  std::vector<std::string> bad;      // "path: why"
  std::vector<std::string> cleaned;  // leftovers (temp files, orphaned sidecars) removed when fix=true
};

struct CacheStatus {
  std::string user_dir;  // effective (empty when memory-only)
  std::vector<std::string> system_dirs;
  std::string mode;  // "readwrite", "read", "off", "memory-only (reason)"
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;               // this schema's entries
  std::uint64_t older_schema_bytes = 0;  // files of older schemas' trees: counted by the cap, evicted oldest first
  std::uint64_t max_bytes = 0;
  std::uint64_t memory_entries = 0;
};
// The fields above as one JSON object (`cache status --json`, Runtime::cache_status_json).
nlohmann::json to_json(const CacheStatus& s);

class KernelCache {
 public:
  explicit KernelCache(CacheSettings settings);
  ~KernelCache();
  KernelCache(const KernelCache&) = delete;
  KernelCache& operator=(const KernelCache&) = delete;

  // Finds `key`; on a miss calls `compile` (exactly once across threads and
  // processes sharing the dir), stores the result with `sidecar` (+ log,
  // compile time) and returns it.
  Result<CacheResult> get_or_build(const CacheKey& key, const nlohmann::json& sidecar,
                                   const std::function<Result<CodeObject>()>& compile);
  // Lookup only (memory, then disk); nullptr on a miss.
  std::shared_ptr<const CachedObject> find(const std::string& key_hex);

  CacheStatus status() const;
  std::vector<CacheEntryInfo> list() const;
  VerifyReport verify(bool fix) const;
  // Evicts LRU entries (older schemas' too) until the user dir is at most
  // `max_bytes`; returns bytes freed.
  std::uint64_t prune(std::uint64_t max_bytes);
  // The memory tier and the user dir's entries, older schemas' included; a key
  // being written right now is left whole (see DiskStore::clear).
  Status clear();
  Status export_to(const std::string& file) const;
  Result<int> import_from(const std::string& file);  // returns entries imported

  const CacheSettings& settings() const;
  // The effective user dir, or empty when the disk tier degraded to memory only.
  std::string effective_user_dir() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparsejit
