// One small interface for every toolchain: compile(source, target, options)
// -> code object, or an Error carrying the stage, target, options and full log.
// One file per backend (nvrtc.cpp, hiprtc.cpp, clang.cpp); toolchain libraries
// are dlopen'd so one binary runs with NVIDIA, AMD or neither present.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace sparsejit {

struct CompileRequest {
  std::string source;
  std::string target;                // full target id: "sm_90", "gfx942", "gfx942:sramecc+:xnack-"
  std::vector<std::string> options;  // backend-specific extra options (defaults are added by the backend)
  std::string name_hint;             // for dumped sources / logs
};

struct CodeObject {
  std::vector<std::uint8_t> binary;  // cubin (NVIDIA) or linked AMDGPU ELF code object (AMD)
  std::string log;                   // compiler warnings, may be empty
  double seconds = 0;
};

struct Support {
  bool ok = false;
  std::string reason;  // why not (or a note), for `sparsejit archs`
};

class Compiler {
 public:
  virtual ~Compiler() = default;
  // "nvrtc", "hiprtc", "clang", "fake"...
  virtual std::string name() const = 0;
  // Library found and usable in this process.
  virtual bool available() const = 0;
  // Why unavailable (library missing, symbol missing...), empty when available.
  virtual std::string unavailable_reason() const = 0;
  // The real compiler version, probed (never a hard-coded constant); part of the cache key.
  virtual std::string version() const = 0;
  // Whether this backend, as installed, can build code for `target`.
  virtual Support supports(const std::string& target) const = 0;
  // The options this backend always passes for `target` (part of the cache key).
  virtual std::vector<std::string> default_options(const std::string& target) const = 0;
  // Whether compiles must leave the process by default (known crashes, not thread-safe).
  virtual bool prefers_isolation() const { return false; }
  virtual Result<CodeObject> compile(const CompileRequest& request) const = 0;
};

// Base of wrappers that change only how compile() runs (helper process, policy):
// everything that identifies the compiler forwards to the wrapped one, so cache
// keys never depend on the wrapper.
class ForwardingCompiler : public Compiler {
 public:
  explicit ForwardingCompiler(std::shared_ptr<const Compiler> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  bool available() const override { return inner_->available(); }
  std::string unavailable_reason() const override { return inner_->unavailable_reason(); }
  std::string version() const override { return inner_->version(); }
  Support supports(const std::string& target) const override { return inner_->supports(target); }
  std::vector<std::string> default_options(const std::string& target) const override {
    return inner_->default_options(target);
  }
  bool prefers_isolation() const override { return inner_->prefers_isolation(); }

 protected:
  std::shared_ptr<const Compiler> inner_;
};

std::unique_ptr<Compiler> make_nvrtc_compiler();
std::unique_ptr<Compiler> make_hiprtc_compiler();
std::unique_ptr<Compiler> make_clang_compiler();

// Runs `inner`'s compiles in a helper process (`sparsejit compile --helper`):
// a crashing or hanging toolchain yields an Error, never takes the caller down.
std::unique_ptr<Compiler> make_subprocess_compiler(std::shared_ptr<const Compiler> inner);

// Path of the CLI used as the compile helper (SPARSEJIT_HELPER, beside the
// executable, PATH); empty when none is found.
std::string find_helper_executable();

// Writes `source` to a file for a failed compile (SPARSEJIT_DUMP_DIR or the
// temp dir) and returns its path; empty if that failed too.
std::string dump_source(const std::string& source, const std::string& name_hint);

}  // namespace sparsejit
