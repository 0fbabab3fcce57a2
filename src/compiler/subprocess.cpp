// Out-of-process compiles: the parent spawns `<helper> compile --helper ...`
// (the sparsejit CLI), writes the source to its stdin and reads one framed
// record from its stdout (format in helper_main.h). A toolchain that aborts,
// hangs or prints garbage becomes an Error here; the caller survives.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <tuple>
#include <utility>

#include "compiler/compiler.h"
#include "compiler/helper_main.h"
#include "knobs.h"
#include "log.h"
#include "util/dynlib.h"
#include "util/hash.h"

extern char** environ;

namespace sparsejit {
namespace {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A spawned helper in its own process group; killed and reaped if still alive
// when it goes out of scope (error paths, timeouts), so no zombie or stray compile remains.
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(-pid_, SIGKILL);
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  void kill_group() { ::kill(-pid_, SIGKILL); }
  // True once exited (status in *status); false while still running.
  bool try_wait(int* status) {
    if (reaped_) {
      *status = status_;
      return true;
    }
    pid_t r = ::waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      *status = status_;
      return true;
    }
    return false;
  }

 private:
  pid_t pid_;
  bool reaped_ = false;
  int status_ = 0;
};

struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { posix_spawnattr_init(&attr); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};
struct FileActions {
  posix_spawn_file_actions_t fa;
  FileActions() { posix_spawn_file_actions_init(&fa); }
  ~FileActions() { posix_spawn_file_actions_destroy(&fa); }
};

std::string signal_name(int sig) {
  switch (sig) {
    case SIGABRT: return "SIGABRT";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGTRAP: return "SIGTRAP";
    case SIGINT: return "SIGINT";
    case SIGPIPE: return "SIGPIPE";
    default: return "signal " + std::to_string(sig);
  }
}

struct ChildOutput {
  int status = 0;
  std::string out, err;
};

// Runs argv with `input` on stdin; stdout/stderr collected. Polling all three
// streams at once keeps a chatty child from deadlocking on a full pipe.
Result<ChildOutput> run_child(const std::vector<std::string>& argv, const std::string& input, int timeout_s) {
  // stdin is a socket so writes can use MSG_NOSIGNAL: a child that dies early must not SIGPIPE us.
  int sv[2], outp[2], errp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return make_error("compile", std::string("socketpair: ") + std::strerror(errno));
  UniqueFd in_parent(sv[0]), in_child(sv[1]);
  if (::pipe2(outp, O_CLOEXEC) != 0) return make_error("compile", std::string("pipe: ") + std::strerror(errno));
  UniqueFd out_parent(outp[0]), out_child(outp[1]);
  if (::pipe2(errp, O_CLOEXEC) != 0) return make_error("compile", std::string("pipe: ") + std::strerror(errno));
  UniqueFd err_parent(errp[0]), err_child(errp[1]);

  FileActions fa;
  posix_spawn_file_actions_adddup2(&fa.fa, in_child.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa.fa, out_child.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa.fa, err_child.get(), STDERR_FILENO);
  SpawnAttr sa;
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&sa.attr, &empty);
  posix_spawnattr_setsigdefault(&sa.attr, &defaults);
  posix_spawnattr_setpgroup(&sa.attr, 0);  // own group: a timeout kills the helper and anything it started
  posix_spawnattr_setflags(&sa.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  if (int rc = ::posix_spawn(&pid, argv[0].c_str(), &fa.fa, &sa.attr, cargv.data(), environ); rc != 0)
    return make_error("compile", "cannot start helper " + argv[0] + ": " + std::strerror(rc));
  ChildProcess child(pid);
  in_child.reset();
  out_child.reset();
  err_child.reset();

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  auto timed_out = [&] {
    child.kill_group();
    Error e = make_error("compile", "helper timed out after " + std::to_string(timeout_s) +
                                        " s and was killed (SPARSEJIT_COMPILE_TIMEOUT)");
    return e;
  };
  ChildOutput result;
  size_t written = 0;
  if (input.empty()) in_parent.reset();
  char buf[65536];
  while (out_parent.get() >= 0 || err_parent.get() >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      Error e = timed_out();
      e.log = result.err;
      return e;
    }
    pollfd fds[3];
    int n = 0;
    int in_i = -1, out_i = -1, err_i = -1;
    if (in_parent.get() >= 0) fds[in_i = n++] = {in_parent.get(), POLLOUT, 0};
    if (out_parent.get() >= 0) fds[out_i = n++] = {out_parent.get(), POLLIN, 0};
    if (err_parent.get() >= 0) fds[err_i = n++] = {err_parent.get(), POLLIN, 0};
    int pr = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (pr < 0 && errno != EINTR) return make_error("compile", std::string("poll: ") + std::strerror(errno));
    if (pr <= 0) continue;
    if (in_i >= 0 && fds[in_i].revents) {
      ssize_t w = ::send(in_parent.get(), input.data() + written, input.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) written += static_cast<size_t>(w);
      // Done, or the child stopped reading (it will report or exit on its own).
      if (written == input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) in_parent.reset();
    }
    for (auto [idx, fd, sink] : {std::tuple{out_i, &out_parent, &result.out}, std::tuple{err_i, &err_parent, &result.err}}) {
      if (idx < 0 || !fds[idx].revents) continue;
      ssize_t r = ::read(fd->get(), buf, sizeof buf);
      if (r > 0) sink->append(buf, static_cast<size_t>(r));
      else if (r == 0 || (errno != EINTR && errno != EAGAIN)) fd->reset();
    }
  }
  // Both streams closed: the child is exiting (or closed them and hangs: the deadline still applies).
  for (;;) {
    if (child.try_wait(&result.status)) return result;
    if (std::chrono::steady_clock::now() >= deadline) {
      Error e = timed_out();
      e.log = result.err;
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Common decoding of a helper run: a frame of `want` kind, or an Error that says what went wrong.
Result<Frame> run_helper(const std::vector<std::string>& argv, const std::string& input, FrameKind want) {
  auto r = run_child(argv, input, knobs().compile_timeout_s);
  if (!r) return std::move(r).error();
  const ChildOutput& c = r.value();
  if (WIFSIGNALED(c.status)) {
    Error e = make_error("compile", "helper crashed with " + signal_name(WTERMSIG(c.status)));
    e.log = c.err;
    return e;
  }
  int code = WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
  auto frame = decode_frame(c.out);
  if (!frame) {
    Error e = make_error("compile", "helper " + argv[0] + " exited with code " + std::to_string(code) +
                                        " without a valid result frame (" + std::to_string(c.out.size()) +
                                        " bytes on stdout; is it a sparsejit CLI of this version?)");
    e.log = c.err;
    return e;
  }
  if (frame->kind == FrameKind::error) {
    auto nul = frame->payload.find('\0');
    Error e = make_error("compile", frame->payload.substr(0, nul));
    if (nul != std::string::npos) e.source_path = frame->payload.substr(nul + 1);
    e.log = frame->log;
    return e;
  }
  if (frame->kind != want || code != 0) {
    Error e = make_error("compile", "helper returned an unexpected frame (exit code " + std::to_string(code) + ")");
    e.log = c.err;
    return e;
  }
  return std::move(frame).value();
}

// Identity (name, version, options) forwards to the inner backend: the cache key
// must not depend on where the compile ran. Backends that must not probe
// in-process (HIPRTC) route their probe through probe_version_in_helper() themselves.
class SubprocessCompiler final : public ForwardingCompiler {
 public:
  using ForwardingCompiler::ForwardingCompiler;

  Result<CodeObject> compile(const CompileRequest& req) const override {
    auto start = std::chrono::steady_clock::now();
    auto fail = [&](Error e) {
      e.stage = "compile";
      e.message = inner_->name() + " (helper process): " + e.message;
      e.target = req.target;
      e.options = inner_->default_options(req.target);
      e.options.insert(e.options.end(), req.options.begin(), req.options.end());
      if (e.source_path.empty()) e.source_path = dump_source(req.source, req.name_hint);
      return e;
    };
    // The helper trusts its target (a crash there is contained); refuse known-bad ones before spawning.
    if (Support s = inner_->supports(req.target); !s.ok) return fail(make_error("compile", s.reason));
    std::string helper = find_helper_executable();
    if (helper.empty())
      return fail(make_error("compile", "no helper executable found (set SPARSEJIT_HELPER to the sparsejit CLI)"));
    std::vector<std::string> argv = {helper, "compile", "--helper", "--backend", inner_->name(), "--target", req.target};
    for (const auto& o : req.options) argv.push_back("--option=" + o);
    if (!req.name_hint.empty()) {
      argv.push_back("--name");
      argv.push_back(req.name_hint);
    }
    auto frame = run_helper(argv, req.source, FrameKind::object);
    if (!frame) return fail(std::move(frame).error());
    CodeObject obj;
    obj.binary.assign(frame->payload.begin(), frame->payload.end());
    obj.log = std::move(frame->log);
    obj.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return obj;
  }
};

bool is_executable_file(const std::string& p) {
  struct stat st;
  return !p.empty() && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out.push_back((std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.') ? c : '_');
  return out;
}

}  // namespace

std::unique_ptr<Compiler> make_subprocess_compiler(std::shared_ptr<const Compiler> inner) {
  return std::make_unique<SubprocessCompiler>(std::move(inner));
}

Result<std::string> probe_version_in_helper(const std::string& backend) {
  std::string helper = find_helper_executable();
  if (helper.empty()) return make_error("compile", "no helper executable found (set SPARSEJIT_HELPER)");
  auto frame = run_helper({helper, "compile", "--helper", "--backend", backend, "--probe-version"}, "",
                          FrameKind::version);
  if (!frame) {
    Error e = std::move(frame).error();
    e.message = backend + " version probe (helper process): " + e.message;
    return e;
  }
  return std::move(frame->payload);
}

std::string find_helper_executable() {
  const std::string& knob = knobs().helper;
  if (!knob.empty()) {
    if (is_executable_file(knob)) return knob;
    log::warn_once("helper-knob:" + knob, "SPARSEJIT_HELPER=" + knob + " is not an executable file; ignored");
    return "";
  }
  if (auto exe = self_executable_path(); !exe.empty()) {
    std::string beside = parent_directory(exe) + "/sparsejit";
    if (is_executable_file(beside)) return beside;
  }
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = p.find(':', start);
      std::string dir = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (!dir.empty() && is_executable_file(dir + "/sparsejit")) return dir + "/sparsejit";
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  return "";
}

std::string dump_source(const std::string& source, const std::string& name_hint) {
  std::string dir = knobs().dump_dir;
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    dir = tmp && *tmp ? tmp : "/tmp";
  }
  std::string path = dir + "/sparsejit-failed-" + std::to_string(::getpid()) + "-" + sha256_hex(source).substr(0, 12);
  if (!name_hint.empty()) path += "-" + sanitize(name_hint);
  path += ".cu";
  // Write beside and rename: a reader never sees half a file.
  static std::atomic<unsigned> counter{0};
  std::string tmp = path + ".tmp" + std::to_string(::getpid()) + "." + std::to_string(counter++);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(source.data(), static_cast<std::streamsize>(source.size()));
    if (!f) {
      std::remove(tmp.c_str());
      return "";
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return "";
  }
  return path;
}

}  // namespace sparsejit
