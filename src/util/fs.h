// Small POSIX filesystem helpers with errno kept as a value, so callers can
// tell ENOSPC or EROFS from other failures and degrade instead of failing.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sparsejit::fs {

// An OS-level outcome: errno (0 = success) plus what was being done.
struct IoStatus {
  int err = 0;
  std::string message;  // "write /path: No space left on device"
  bool ok() const { return err == 0; }
  static IoStatus success() { return {}; }
  static IoStatus from_errno(int e, const std::string& what);
};

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

std::string errno_text(int err);

// Random lowercase hex (reseeded after fork).
std::string random_hex(std::size_t n_chars);
// "<pid>-<random hex>": unique among processes and threads, for temp names.
std::string unique_suffix();

// Reads a whole regular file; `nofollow` refuses a symlink (ELOOP). `st` gets its fstat.
IoStatus read_file(const std::string& path, std::string& out, bool nofollow = true, struct stat* st = nullptr);

IoStatus write_all(int fd, const void* data, std::size_t n);
IoStatus fsync_dir(const std::string& dir);

// Creates `path` and every missing parent with `mode` (existing ones are left
// alone). Fails with ENOTDIR when a component exists but is not a directory.
IoStatus make_dirs(const std::string& path, mode_t mode);

// Writes `data` to `path` atomically: a temp file in the same directory
// (".tmp-<name>-<random>"), fsync, rename over `path`, fsync of the directory.
// The temp file never survives a failure.
IoStatus write_file_atomic(const std::string& path, std::string_view data, mode_t mode);

// Prefix of every temp file write_file_atomic creates (verify cleans old ones).
inline constexpr std::string_view kTempPrefix = ".tmp-";

// Sets mtime (and atime) to now: the LRU clock, since atime is unreliable under noatime.
IoStatus touch_now(const std::string& path);

// Names in a directory (without "." and ".."); empty when it cannot be read.
std::vector<std::string> list_dir(const std::string& dir);

std::int64_t mtime_ns(const struct stat& st);
std::string dirname_of(const std::string& path);
std::string basename_of(const std::string& path);
bool ends_with(std::string_view s, std::string_view suffix);
bool starts_with(std::string_view s, std::string_view prefix);

}  // namespace sparsejit::fs
