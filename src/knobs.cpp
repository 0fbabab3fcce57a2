#include "knobs.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <mutex>
#include <shared_mutex>

namespace sparsejit {

const std::vector<KnobInfo>& knob_registry() {
  static const std::vector<KnobInfo> table = {
      {"SPARSEJIT_CACHE_DIR", "", false,
       "User (read-write) cache directory. Default: $XDG_CACHE_HOME/sparsejit or ~/.cache/sparsejit."},
      {"SPARSEJIT_SYSTEM_CACHE_DIRS", "", false,
       "Colon-separated read-only cache directories searched before the user dir (e.g. a cache shipped beside the engine)."},
      {"SPARSEJIT_CACHE", "readwrite", false, "off | read | readwrite. 'read' never writes the disk; 'off' keeps kernels in memory only."},
      {"SPARSEJIT_CACHE_MAX_BYTES", "4294967296", false, "Size cap of the user cache dir; least recently used entries are evicted beyond it."},
      {"SPARSEJIT_CACHE_ALLOW_SHARED", "0", false,
       "1 accepts a cache dir writable by other users (code objects are executable code: refused by default)."},
      {"SPARSEJIT_TEMPLATE_DIR", "", false,
       "Read kernel templates from this directory instead of the embedded copies (kernel development). The rendered source is in the key."},
      {"SPARSEJIT_CONFIG_DIR", "", false, "Read configs/archs/*.json and configs/models/*.json from this directory instead of the embedded copies."},
      {"SPARSEJIT_LOG_LEVEL", "info", false, "trace | debug | info | warn | error | off."},
      {"SPARSEJIT_COMPILE_ISOLATION", "auto", false,
       "auto | process | inprocess. auto: compilers known to crash or not to be thread-safe (HIPRTC, Clang) run in a helper process."},
      {"SPARSEJIT_COMPILE_TIMEOUT", "600", false, "Seconds before an out-of-process compile is killed and reported as an error."},
      {"SPARSEJIT_HELPER", "", false, "Path of the sparsejit CLI used as the out-of-process compile helper (default: found beside the executable, then PATH)."},
      {"SPARSEJIT_CLANG_PLUGIN", "", false, "Path of libsparsejit-clang.so (default: beside the executable, then the install lib dir)."},
      {"SPARSEJIT_NVRTC_LIBRARY", "", false, "NVRTC library to dlopen (default: libnvrtc.so.13, then libnvrtc.so.12)."},
      {"SPARSEJIT_HIPRTC_LIBRARY", "", false, "HIPRTC library to dlopen (default: libhiprtc.so.6/.5, then libamdhip64.so.6/.5)."},
      {"SPARSEJIT_DUMP_DIR", "", false, "Write every rendered source here before compiling (failed compiles are always dumped)."},
      {"SPARSEJIT_DISABLE_COMPILE", "0", false, "1 makes every compile fail: proves that a run is served from the cache."},
      {"SPARSEJIT_EXTRA_FLAGS", "", true, "Extra compiler flags, space-separated, appended to every compile (part of the cache key)."},
      {"SPARSEJIT_VALIDATE", "0", false, "1 checks index arguments (top-k ids, block table, seq_lens) on the host before launching."},
      {"SPARSEJIT_RECORD", "", false, "Append every distinct kernel config the runtime needed to this manifest (JSON lines)."},
  };
  return table;
}

namespace {

std::shared_mutex g_mu;
std::optional<Knobs> g_knobs;

std::string env_or(const char* name, const char* def) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string(def);
}

void bad(const char* name, const std::string& value, const char* expected) {
  std::cerr << "[sparsejit] [warning] ignoring " << name << "=" << value << ": expected " << expected << "\n";
}

bool parse_bool(const char* name, const std::string& v, bool def) {
  if (v.empty()) return def;
  if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "off" || v == "no") return false;
  bad(name, v, "0 or 1");
  return def;
}

std::uint64_t parse_u64(const char* name, const std::string& v, std::uint64_t def) {
  if (v.empty()) return def;
  try {
    size_t pos = 0;
    unsigned long long x = std::stoull(v, &pos);
    if (pos == v.size()) return x;
  } catch (...) {
  }
  bad(name, v, "a non-negative integer");
  return def;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

Knobs parse() {
  Knobs k;
  k.cache_dir = env_or("SPARSEJIT_CACHE_DIR", "");
  if (k.cache_dir.empty()) k.cache_dir = default_user_cache_dir();
  k.system_cache_dirs = split(env_or("SPARSEJIT_SYSTEM_CACHE_DIRS", ""), ':');
  std::string mode = env_or("SPARSEJIT_CACHE", "readwrite");
  if (mode == "off") k.cache_mode = CacheMode::off;
  else if (mode == "read") k.cache_mode = CacheMode::read;
  else if (mode == "readwrite" || mode.empty()) k.cache_mode = CacheMode::readwrite;
  else bad("SPARSEJIT_CACHE", mode, "off, read or readwrite");
  k.cache_max_bytes = parse_u64("SPARSEJIT_CACHE_MAX_BYTES", env_or("SPARSEJIT_CACHE_MAX_BYTES", ""), 4ull << 30);
  k.cache_allow_shared = parse_bool("SPARSEJIT_CACHE_ALLOW_SHARED", env_or("SPARSEJIT_CACHE_ALLOW_SHARED", ""), false);
  k.template_dir = env_or("SPARSEJIT_TEMPLATE_DIR", "");
  k.config_dir = env_or("SPARSEJIT_CONFIG_DIR", "");
  k.log_level = env_or("SPARSEJIT_LOG_LEVEL", "info");
  std::string iso = env_or("SPARSEJIT_COMPILE_ISOLATION", "auto");
  if (iso == "process") k.isolation = Isolation::process;
  else if (iso == "inprocess") k.isolation = Isolation::inprocess;
  else if (iso != "auto" && !iso.empty()) bad("SPARSEJIT_COMPILE_ISOLATION", iso, "auto, process or inprocess");
  k.compile_timeout_s = static_cast<int>(parse_u64("SPARSEJIT_COMPILE_TIMEOUT", env_or("SPARSEJIT_COMPILE_TIMEOUT", ""), 600));
  if (k.compile_timeout_s <= 0) k.compile_timeout_s = 600;
  k.helper = env_or("SPARSEJIT_HELPER", "");
  k.clang_plugin = env_or("SPARSEJIT_CLANG_PLUGIN", "");
  k.nvrtc_library = env_or("SPARSEJIT_NVRTC_LIBRARY", "");
  k.hiprtc_library = env_or("SPARSEJIT_HIPRTC_LIBRARY", "");
  k.dump_dir = env_or("SPARSEJIT_DUMP_DIR", "");
  k.disable_compile = parse_bool("SPARSEJIT_DISABLE_COMPILE", env_or("SPARSEJIT_DISABLE_COMPILE", ""), false);
  k.extra_flags = env_or("SPARSEJIT_EXTRA_FLAGS", "");
  k.validate = parse_bool("SPARSEJIT_VALIDATE", env_or("SPARSEJIT_VALIDATE", ""), false);
  k.record = env_or("SPARSEJIT_RECORD", "");
  return k;
}

}  // namespace

std::map<std::string, std::string> Knobs::key_inputs() const {
  std::map<std::string, std::string> m;
  for (const auto& info : knob_registry()) {
    if (!info.invalidates_cache) continue;
    if (std::string(info.name) == "SPARSEJIT_EXTRA_FLAGS") m[info.name] = extra_flags;
  }
  return m;
}

const Knobs& knobs() {
  {
    std::shared_lock<std::shared_mutex> lock(g_mu);
    if (g_knobs) return *g_knobs;
  }
  std::unique_lock<std::shared_mutex> lock(g_mu);
  if (!g_knobs) g_knobs = parse();
  return *g_knobs;
}

void reload_knobs() {
  std::unique_lock<std::shared_mutex> lock(g_mu);
  g_knobs = parse();
}

ScopedKnob::ScopedKnob(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
  if (const char* v = std::getenv(name_.c_str())) old_ = v;
  if (value) setenv(name_.c_str(), value->c_str(), 1);
  else unsetenv(name_.c_str());
  reload_knobs();
}

ScopedKnob::~ScopedKnob() {
  if (old_) setenv(name_.c_str(), old_->c_str(), 1);
  else unsetenv(name_.c_str());
  reload_knobs();
}

std::string default_user_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x && x[0] == '/') return std::string(x) + "/sparsejit";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/sparsejit";
  struct passwd pw;
  struct passwd* res = nullptr;
  char buf[4096];
  if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res && res->pw_dir && *res->pw_dir)
    return std::string(res->pw_dir) + "/.cache/sparsejit";
  return "";
}

}  // namespace sparsejit
