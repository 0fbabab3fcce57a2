#include "util/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>

namespace sparsejit::fs {

IoStatus IoStatus::from_errno(int e, const std::string& what) {
  IoStatus s;
  s.err = e ? e : EIO;
  s.message = what + ": " + errno_text(s.err);
  return s;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer (which may not be buf).
  return std::string(strerror_r(err, buf, sizeof buf));
}

std::string random_hex(std::size_t n_chars) {
  thread_local std::mt19937_64 rng;
  thread_local pid_t seeded_for = -1;
  // A forked child inherits the generator's state: reseed, or parent and
  // children would pick the same "unique" temp names.
  if (seeded_for != ::getpid()) {
    seeded_for = ::getpid();
    rng.seed(std::random_device{}() ^ (static_cast<std::uint64_t>(seeded_for) << 32) ^
             static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  }
  static const char* digits = "0123456789abcdef";
  std::string s(n_chars, '0');
  for (auto& c : s) c = digits[rng() & 15];
  return s;
}

std::string unique_suffix() { return std::to_string(::getpid()) + "-" + random_hex(12); }

IoStatus read_file(const std::string& path, std::string& out, bool nofollow, struct stat* st) {
  int flags = O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0);
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd.valid()) return IoStatus::from_errno(errno, "open " + path);
  struct stat local;
  if (::fstat(fd.get(), &local) != 0) return IoStatus::from_errno(errno, "stat " + path);
  if (!S_ISREG(local.st_mode)) return IoStatus::from_errno(EINVAL, path + " is not a regular file");
  if (st) *st = local;
  out.clear();
  out.reserve(static_cast<std::size_t>(local.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoStatus::from_errno(errno, "read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return IoStatus::success();
}

IoStatus write_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return IoStatus::from_errno(errno, "write");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return IoStatus::success();
}

IoStatus fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return IoStatus::from_errno(errno, "open " + dir);
  // Some filesystems (and network mounts) refuse fsync on a directory; the
  // rename is still atomic there, only its durability is weaker.
  if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != ENOTSUP) return IoStatus::from_errno(errno, "fsync " + dir);
  return IoStatus::success();
}

IoStatus make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return IoStatus::from_errno(ENOENT, "create directory ''");
  std::size_t pos = 0;
  for (;;) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    bool last = pos == std::string::npos;
    if (!prefix.empty() && prefix != "/") {
      struct stat st;
      if (::stat(prefix.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
          IoStatus s;
          s.err = ENOTDIR;
          s.message = prefix + " exists and is not a directory";
          return s;
        }
      } else if (errno == ENOENT) {
        if (::mkdir(prefix.c_str(), mode) != 0) {
          int e = errno;
          // Another process may have created it meanwhile.
          if (!(e == EEXIST && ::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)))
            return IoStatus::from_errno(e, "create directory " + prefix);
        }
      } else {
        return IoStatus::from_errno(errno, "stat " + prefix);
      }
    }
    if (last) break;
  }
  return IoStatus::success();
}

namespace {

// Removes the temp file unless the rename committed it.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }
  void commit() { committed_ = true; }

 private:
  std::string path_;
  bool committed_ = false;
};

}  // namespace

IoStatus write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
  std::string dir = dirname_of(path);
  std::string tmp_path = dir + "/" + std::string(kTempPrefix) + basename_of(path) + "-" + unique_suffix();
  UniqueFd fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd.valid()) return IoStatus::from_errno(errno, "create " + tmp_path);
  TempFile guard(tmp_path);
  // The umask may have removed bits; entries must be readable as asked (shipped caches).
  if (::fchmod(fd.get(), mode) != 0) return IoStatus::from_errno(errno, "chmod " + tmp_path);
  if (auto s = write_all(fd.get(), data.data(), data.size()); !s.ok()) {
    s.message = "write " + tmp_path + ": " + errno_text(s.err);
    return s;
  }
  if (::fsync(fd.get()) != 0) return IoStatus::from_errno(errno, "fsync " + tmp_path);
  // close() can report a deferred write error (NFS, quota).
  if (::close(fd.release()) != 0) return IoStatus::from_errno(errno, "close " + tmp_path);
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) return IoStatus::from_errno(errno, "rename to " + path);
  guard.commit();
  return fsync_dir(dir);
}

IoStatus touch_now(const std::string& path) {
  if (::utimensat(AT_FDCWD, path.c_str(), nullptr, AT_SYMLINK_NOFOLLOW) != 0)
    return IoStatus::from_errno(errno, "touch " + path);
  return IoStatus::success();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (!d) return names;
  while (struct dirent* e = ::readdir(d.get())) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  return names;
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

std::string dirname_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string basename_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace sparsejit::fs
