// One cache directory on disk: `<root>/v<schema>/<first two hex>/<key>.bin`
// (the entry, see entry_format.h) beside `<key>.json` (the readable sidecar).
// The sidecar is written first and the entry's rename is the commit point, so
// an entry never exists without its sidecar; an orphaned sidecar is ignored.
// Bad entries are moved into `<root>/quarantine/`. LRU order is the entry's
// mtime, refreshed on every disk hit. The trees of older schemas (`<root>/v<N>`,
// N below ours) are never read but count toward the size cap and are evicted
// in the same LRU order; a newer schema's tree is left alone (a newer build
// may share the dir). Every removal holds the key's lock, as writers do.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/fs.h"

namespace sparsejit {

// Why a directory may not be used as a cache dir; nullopt when it may.
// `require_owner`: it must belong to the current user (the user dir).
// The check applies to the resolved directory when `dir` is a symlink; that
// resolved path is stored in `resolved` (use it, so a later swap of the link
// cannot redirect the cache).
std::optional<std::string> unsafe_dir_reason(const std::string& dir, bool require_owner, bool allow_shared,
                                             std::string* resolved = nullptr);

class DiskStore {
 public:
  DiskStore(std::string root, bool writable, bool allow_shared);

  const std::string& root() const { return root_; }
  bool writable() const { return writable_; }
  std::string version_dir() const;
  std::string shard_dir(const std::string& key) const;
  std::string entry_path(const std::string& key) const;
  std::string sidecar_path(const std::string& key) const;
  std::string lock_path(const std::string& key) const;
  std::string quarantine_dir() const;

  enum class Found { hit, missing, bad };
  struct ReadResult {
    Found found = Found::missing;
    std::vector<std::uint8_t> binary;
    nlohmann::json sidecar;
    std::string why;  // when bad
  };
  // Reads and validates the entry (header, length, checksum, key, permissions)
  // and its sidecar (parses, names the same key).
  ReadResult read(const std::string& key) const;

  // Moves a bad entry and its sidecar into quarantine/ and logs why (a read-only
  // store only logs). Under the key's lock, after reading the entry again: one
  // that another process rebuilt meanwhile is valid and stays; a key whose lock
  // someone else holds is being rewritten and is left to its writer, whose
  // commit replaces the bad file. `key_locked`: the caller holds the key's lock.
  void quarantine(const std::string& key, const std::string& why, bool key_locked = false) const;

  // Sidecar first, then the entry (the commit point); both atomic.
  fs::IoStatus write(const std::string& key, const nlohmann::json& sidecar, const std::vector<std::uint8_t>& binary) const;
  fs::IoStatus ensure_shard_dir(const std::string& key) const;
  void touch(const std::string& key) const;

  struct EntryStat {
    std::string key;
    std::string path;            // the .bin
    std::uint64_t bytes = 0;     // entry + sidecar
    std::int64_t mtime_ns = 0;   // last use
  };
  // Every `<key>.bin` under the version dir (no validation).
  std::vector<EntryStat> scan() const;
  // What the size cap counts: this schema's entries and the older schemas' files.
  std::uint64_t total_bytes() const;
  // The older schemas' files alone (never read by this build; evicted first as they age).
  std::uint64_t older_schema_bytes() const;

  // Removes least recently used entries of this and older schemas (never
  // `keep`, never a key whose lock is held: it is being written) until the
  // store holds at most `max_bytes`; returns bytes freed.
  std::uint64_t evict_to(std::uint64_t max_bytes, const std::string& keep) const;
  // Removes one entry under its key's lock: the entry first (so it reads as a
  // miss), then the sidecar. 0 when the lock is held or the entry is gone.
  std::uint64_t remove_entry(const EntryStat& e) const;

  struct VerifyOutcome {
    int checked = 0;
    std::vector<std::string> bad;
    std::vector<std::string> cleaned;
  };
  VerifyOutcome verify(bool fix) const;

  // Removes every entry, sidecar, stale temp and lock file, the older schemas'
  // trees and the quarantine; a key whose lock is held (it is being written)
  // is left whole.
  fs::IoStatus clear() const;

 private:
  void quarantine_files(const std::string& bin, const std::string& json, const std::string& why) const;
  void trim_quarantine() const;

  std::string root_;
  bool writable_;
  bool allow_shared_;
};

}  // namespace sparsejit
