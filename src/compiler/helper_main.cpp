#include "compiler/helper_main.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "compiler/registry.h"

namespace sparsejit {
namespace {

std::atomic<bool> g_running_as_helper{false};

constexpr char kMagic[4] = {'S', 'J', 'C', 'O'};
constexpr char kTrailer[4] = {'O', 'C', 'J', 'S'};
constexpr size_t kHeaderSize = 4 + 1 + 8 + 8;

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(std::string_view s, size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool read_all(int fd, std::string* out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
}

int emit(const Frame& f, int exit_code) {
  std::fflush(stdout);  // nothing buffered may precede the frame
  if (!write_all(STDOUT_FILENO, encode_frame(f))) {
    std::fprintf(stderr, "sparsejit helper: cannot write the result to stdout: %s\n", std::strerror(errno));
    return 1;
  }
  return exit_code;
}

int emit_error(const Error& e) {
  Frame f;
  f.kind = FrameKind::error;
  f.payload = e.message;
  f.payload.push_back('\0');
  f.payload += e.source_path;
  f.log = e.log;
  return emit(f, 1);
}

}  // namespace

bool running_as_helper() { return g_running_as_helper.load(); }

std::string encode_frame(const Frame& frame) {
  std::string out(kMagic, 4);
  out.push_back(static_cast<char>(frame.kind));
  put_u64(out, frame.payload.size());
  put_u64(out, frame.log.size());
  out += frame.payload;
  out += frame.log;
  out.append(kTrailer, 4);
  return out;
}

std::optional<Frame> decode_frame(std::string_view bytes) {
  if (bytes.size() < kHeaderSize + 4 || std::memcmp(bytes.data(), kMagic, 4) != 0) return std::nullopt;
  char kind = bytes[4];
  if (kind != 'O' && kind != 'V' && kind != 'E') return std::nullopt;
  std::uint64_t payload = get_u64(bytes, 5), log = get_u64(bytes, 13);
  // Exact size, compared without overflow: garbage lengths are rejected, not trusted.
  std::uint64_t body = bytes.size() - kHeaderSize - 4;
  if (payload > body || log != body - payload) return std::nullopt;
  if (std::memcmp(bytes.data() + bytes.size() - 4, kTrailer, 4) != 0) return std::nullopt;
  Frame f;
  f.kind = static_cast<FrameKind>(kind);
  f.payload.assign(bytes.substr(kHeaderSize, payload));
  f.log.assign(bytes.substr(kHeaderSize + payload, log));
  return f;
}

int run_compile_helper(const std::string& backend, const std::string& target, const std::vector<std::string>& options,
                       bool probe_version, const std::string& name_hint) {
  g_running_as_helper = true;
  auto compiler = CompilerRegistry::instance().by_name(backend);
  if (!compiler) {
    std::fprintf(stderr, "sparsejit helper: unknown backend '%s'\n", backend.c_str());
    return 2;
  }
  if (!compiler->available()) {
    return emit_error(make_error("compile", backend + " unavailable in the helper: " + compiler->unavailable_reason()));
  }
  if (probe_version) {
    std::string v = compiler->version();
    if (v.empty()) return emit_error(make_error("compile", backend + ": version probe failed"));
    Frame f;
    f.kind = FrameKind::version;
    f.payload = v;
    return emit(f, 0);
  }
  if (target.empty()) {
    std::fprintf(stderr, "sparsejit helper: --target is required\n");
    return 2;
  }
  CompileRequest req;
  req.target = target;
  req.options = options;
  req.name_hint = name_hint;
  if (!read_all(STDIN_FILENO, &req.source)) {
    return emit_error(make_error("compile", std::string("cannot read the source from stdin: ") + std::strerror(errno)));
  }
  auto r = compiler->compile(req);
  if (!r) return emit_error(r.error());
  Frame f;
  f.kind = FrameKind::object;
  f.payload.assign(r->binary.begin(), r->binary.end());
  f.log = r->log;
  return emit(f, 0);
}

std::optional<HelperArgs> parse_helper_args(const std::vector<std::string>& args, std::string* error) {
  HelperArgs h;
  bool saw_helper = false;
  size_t i = 0;
  if (i < args.size() && args[i] == "compile") ++i;
  auto value = [&](const std::string& arg, const char* flag, std::string* out) {
    std::string f(flag);
    if (arg == f) {
      if (i + 1 >= args.size()) {
        *error = f + " needs a value";
        return -1;
      }
      *out = args[++i];
      return 1;
    }
    if (arg.rfind(f + "=", 0) == 0) {
      *out = arg.substr(f.size() + 1);
      return 1;
    }
    return 0;
  };
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string v;
    int m;
    if (a == "--helper") {
      saw_helper = true;
    } else if (a == "--probe-version") {
      h.probe_version = true;
    } else if ((m = value(a, "--backend", &h.backend)) != 0) {
      if (m < 0) return std::nullopt;
    } else if ((m = value(a, "--target", &h.target)) != 0) {
      if (m < 0) return std::nullopt;
    } else if ((m = value(a, "--name", &h.name_hint)) != 0) {
      if (m < 0) return std::nullopt;
    } else if ((m = value(a, "--option", &v)) != 0) {
      if (m < 0) return std::nullopt;
      h.options.push_back(v);
    } else {
      *error = "unexpected argument '" + a + "'";
      return std::nullopt;
    }
  }
  if (!saw_helper) *error = "--helper is required (this mode talks a binary protocol on stdout)";
  else if (h.backend.empty()) *error = "--backend is required";
  else if (!h.probe_version && h.target.empty()) *error = "--target is required";
  if (!error->empty()) return std::nullopt;
  return h;
}

int compile_helper_main(const std::vector<std::string>& args) {
  std::string error;
  auto h = parse_helper_args(args, &error);
  if (!h) {
    std::fprintf(stderr,
                 "sparsejit helper: %s\nusage: compile --helper --backend <name> (--target <id> [--option=<opt>]... "
                 "[--name <hint>] | --probe-version)\n",
                 error.c_str());
    return 2;
  }
  return run_compile_helper(h->backend, h->target, h->options, h->probe_version, h->name_hint);
}

}  // namespace sparsejit
