// Every SPARSEJIT_* environment knob, declared once, typed, and classed as
// cache-invalidating (changes generated code, so it is part of the cache key)
// or neutral. Read once; tests change knobs through ScopedKnob.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sparsejit {

struct KnobInfo {
  const char* name;
  const char* default_value;  // as text; "" = unset
  bool invalidates_cache;
  const char* doc;
};

// The registry: the README's knob table is this list.
const std::vector<KnobInfo>& knob_registry();

enum class CacheMode { off, read, readwrite };
enum class Isolation { automatic, process, inprocess };

struct Knobs {
  std::string cache_dir;                         // SPARSEJIT_CACHE_DIR (resolved default when unset)
  std::vector<std::string> system_cache_dirs;    // SPARSEJIT_SYSTEM_CACHE_DIRS
  CacheMode cache_mode = CacheMode::readwrite;   // SPARSEJIT_CACHE
  std::uint64_t cache_max_bytes = 0;             // SPARSEJIT_CACHE_MAX_BYTES
  bool cache_allow_shared = false;               // SPARSEJIT_CACHE_ALLOW_SHARED
  std::string template_dir;                      // SPARSEJIT_TEMPLATE_DIR
  std::string config_dir;                        // SPARSEJIT_CONFIG_DIR
  std::string log_level = "info";                // SPARSEJIT_LOG_LEVEL
  Isolation isolation = Isolation::automatic;    // SPARSEJIT_COMPILE_ISOLATION
  int compile_timeout_s = 600;                   // SPARSEJIT_COMPILE_TIMEOUT
  std::string helper;                            // SPARSEJIT_HELPER
  std::string clang_plugin;                      // SPARSEJIT_CLANG_PLUGIN
  std::string nvrtc_library;                     // SPARSEJIT_NVRTC_LIBRARY
  std::string hiprtc_library;                    // SPARSEJIT_HIPRTC_LIBRARY
  std::string dump_dir;                          // SPARSEJIT_DUMP_DIR
  bool disable_compile = false;                  // SPARSEJIT_DISABLE_COMPILE
  std::string extra_flags;                       // SPARSEJIT_EXTRA_FLAGS (cache-invalidating)
  bool validate = false;                         // SPARSEJIT_VALIDATE
  std::string record;                            // SPARSEJIT_RECORD

  // Values of the cache-invalidating knobs, for the cache key.
  std::map<std::string, std::string> key_inputs() const;
};

// The process-wide knobs, parsed on first use. Bad values are reported once and
// replaced by the default (a typo in an env var must not take an engine down).
const Knobs& knobs();
// Re-reads the environment (tests only, via ScopedKnob).
void reload_knobs();

class ScopedKnob {
 public:
  ScopedKnob(std::string name, std::optional<std::string> value);
  ~ScopedKnob();
  ScopedKnob(const ScopedKnob&) = delete;
  ScopedKnob& operator=(const ScopedKnob&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// Default user cache dir: $XDG_CACHE_HOME/sparsejit, else $HOME/.cache/sparsejit,
// else the passwd entry's home, else empty (memory only).
std::string default_user_cache_dir();

}  // namespace sparsejit
