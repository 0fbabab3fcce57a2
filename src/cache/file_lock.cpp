#include "cache/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace sparsejit {

FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
  }
  return *this;
}

void FileLock::release() {
  if (!fd_.valid()) return;
  // Unlink while holding the lock: anyone who opened this inode meanwhile
  // sees, once it gets the lock, that the path no longer names it and retries.
  ::unlink(path_.c_str());
  fd_.reset();
}

Result<FileLock> FileLock::lock(const std::string& path, bool wait, bool* busy) {
  if (busy) *busy = false;
  // Each retry means a holder released between our open and our flock; a
  // bounded loop only guards against a pathological livelock.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    fs::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) return make_error("cache", fs::IoStatus::from_errno(errno, "open lock file " + path).message);
    int rc;
    do {
      rc = ::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      if (errno == EWOULDBLOCK && busy) *busy = true;
      return make_error("cache", fs::IoStatus::from_errno(errno, "lock " + path).message);
    }
    struct stat held, now;
    if (::fstat(fd.get(), &held) != 0)
      return make_error("cache", fs::IoStatus::from_errno(errno, "stat lock file " + path).message);
    if (::lstat(path.c_str(), &now) == 0 && now.st_ino == held.st_ino && now.st_dev == held.st_dev)
      return FileLock(path, std::move(fd));
    // The previous holder removed this file after we opened it: lock the new one.
  }
  return make_error("cache", "could not lock " + path + ": the lock file kept being replaced");
}

Result<FileLock> FileLock::acquire(const std::string& path) { return lock(path, true, nullptr); }

std::optional<FileLock> FileLock::try_acquire(const std::string& path, bool* busy) {
  bool held_elsewhere = false;
  auto r = lock(path, false, &held_elsewhere);
  if (busy) *busy = held_elsewhere;
  if (!r.ok()) return std::nullopt;
  return std::move(r).value();
}

}  // namespace sparsejit
