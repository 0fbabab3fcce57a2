// A per-key cross-process lock with flock(2), taken on a cache miss only.
// flock locks die with their holder's open file, so a killed holder never
// hangs anyone. The lock file is removed on release while still locked; an
// acquirer re-checks after locking that the path still names the inode it
// locked (else the file was removed under it and it retries on the new one),
// which closes the classic unlink race.
#pragma once

#include <optional>
#include <string>

#include "util/fs.h"
#include "util/result.h"

namespace sparsejit {

class FileLock {
 public:
  // Blocks until the lock at `path` is held (the file is created if needed).
  static Result<FileLock> acquire(const std::string& path);
  // Returns nullopt when another live process holds it (`*busy` set) or on
  // any error (`*busy` clear: e.g. the lock file cannot be created).
  static std::optional<FileLock> try_acquire(const std::string& path, bool* busy = nullptr);

  FileLock(FileLock&&) noexcept = default;
  FileLock& operator=(FileLock&& o) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() { release(); }

  // Removes the lock file, then unlocks (by closing). Idempotent.
  void release();
  bool held() const { return fd_.valid(); }
  const std::string& path() const { return path_; }

 private:
  FileLock(std::string path, fs::UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  static Result<FileLock> lock(const std::string& path, bool wait, bool* busy);

  std::string path_;
  fs::UniqueFd fd_;
};

}  // namespace sparsejit
