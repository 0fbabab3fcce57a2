// Shared helpers of the reliability and fuzz tests: a soak multiplier, RAII
// temp dirs and mounts, and a forked child whose stderr is captured.
//
// Bounded by default (the README's test command runs these); SPARSEJIT_SOAK=1
// multiplies counts and time budgets by 10, SPARSEJIT_SOAK=N (N >= 2) by N.
// Test-only: it is not a runtime knob, so it is not in the knob registry.
#pragma once

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace sparsejit::testing_util {

inline int soak_factor() {
  const char* s = std::getenv("SPARSEJIT_SOAK");
  if (!s || !*s) return 1;
  int v = std::atoi(s);
  if (v == 1) return 10;
  return v >= 2 ? v : 1;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A fresh directory under /tmp, removed (permissions restored first) at the end.
struct ScratchDir {
  std::string path;
  explicit ScratchDir(const char* tag = "rel") {
    std::string tmpl = std::string("/tmp/sparsejit-") + tag + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const char* p = ::mkdtemp(buf.data());
    path = p ? p : "";
  }
  ~ScratchDir() {
    namespace stdfs = std::filesystem;
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(path, ec); !ec && it != stdfs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
    ::chmod(path.c_str(), 0700);
    stdfs::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string sub(const std::string& name) const { return path + "/" + name; }
};

// A tmpfs mounted on `dir` for the scope; `error` says why not when mounting is not permitted.
struct TmpfsMount {
  std::string dir;
  bool mounted = false;
  std::string error;
  TmpfsMount(const std::string& where, const std::string& options) : dir(where) {
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0) mounted = true;
    else error = std::string("mount -t tmpfs -o ") + options + " " + dir + ": " + std::strerror(errno);
  }
  bool remount_read_only() {
    return ::mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }
  ~TmpfsMount() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

struct ChildResult {
  int status = -1;
  std::string err;  // the child's stderr (the cache's log lines)
  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
};

// Runs `body` in a forked child with stderr captured; its return value is the
// exit code. An alarm turns a hang into a failure.
inline ChildResult run_in_child(const std::string& scratch_dir, const std::function<int()>& body, unsigned alarm_s = 120) {
  ChildResult out;
  std::string log = scratch_dir + "/child-stderr.txt";
  pid_t pid = ::fork();
  if (pid < 0) return out;
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) ::dup2(fd, 2);
    ::alarm(alarm_s);
    int rc = body();
    std::fflush(stderr);
    ::_exit(rc);
  }
  while (::waitpid(pid, &out.status, 0) < 0 && errno == EINTR) {
  }
  out.err = read_text(log);
  ::unlink(log.c_str());
  return out;
}

inline int count_lines_with(const std::string& text, const std::string& needle) {
  int n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

}  // namespace sparsejit::testing_util
