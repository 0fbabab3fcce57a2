#include "compiler/registry.h"

#include <utility>

#include "knobs.h"
#include "log.h"

namespace sparsejit {
namespace {

// Fails every compile while SPARSEJIT_DISABLE_COMPILE is set (read at compile
// time, so a long-lived compiler honours a later change).
class CompileGuard final : public ForwardingCompiler {
 public:
  using ForwardingCompiler::ForwardingCompiler;
  Result<CodeObject> compile(const CompileRequest& req) const override {
    if (knobs().disable_compile) {
      Error e = make_error("compile", "compilation disabled by SPARSEJIT_DISABLE_COMPILE=1: kernel '" +
                                          req.name_hint + "' was not found in the cache");
      e.target = req.target;
      e.options = req.options;
      return e;
    }
    return inner_->compile(req);
  }
};

}  // namespace

CompilerRegistry& CompilerRegistry::instance() {
  static CompilerRegistry registry({std::shared_ptr<const Compiler>(make_nvrtc_compiler()),
                                    std::shared_ptr<const Compiler>(make_hiprtc_compiler()),
                                    std::shared_ptr<const Compiler>(make_clang_compiler())});
  return registry;
}

CompilerRegistry::CompilerRegistry(std::vector<std::shared_ptr<const Compiler>> backends)
    : backends_(std::move(backends)) {}

std::shared_ptr<const Compiler> CompilerRegistry::by_name(const std::string& name) const {
  for (const auto& b : backends_)
    if (b->name() == name) return b;
  return nullptr;
}

Result<std::shared_ptr<const Compiler>> CompilerRegistry::use_policy(std::shared_ptr<const Compiler> backend) const {
  std::shared_ptr<const Compiler> use = backend;
  Isolation iso = knobs().isolation;
  if (iso != Isolation::inprocess && (iso == Isolation::process || backend->prefers_isolation())) {
    if (!find_helper_executable().empty()) {
      use = std::shared_ptr<const Compiler>(make_subprocess_compiler(backend));
    } else if (iso == Isolation::process) {
      Error e = make_error("compile", "SPARSEJIT_COMPILE_ISOLATION=process but no helper executable was found "
                                      "(set SPARSEJIT_HELPER to the sparsejit CLI)");
      return e;
    } else {
      // HIPRTC stays safe in-process through its version table (it refuses targets that crash it).
      log::warn_once("inprocess:" + backend->name(),
                     backend->name() + " compiles in this process: no compile helper was found (set SPARSEJIT_HELPER); "
                                       "a compiler crash would take the process down");
    }
  }
  return std::shared_ptr<const Compiler>(std::make_shared<CompileGuard>(std::move(use)));
}

Result<std::shared_ptr<const Compiler>> CompilerRegistry::choose(const std::string& target,
                                                                 const std::vector<std::string>& preference) const {
  std::vector<std::shared_ptr<const Compiler>> order;
  if (preference.empty()) {
    order = backends_;
  } else {
    for (const auto& name : preference) {
      if (auto b = by_name(name)) order.push_back(b);
      else log::warn_once("unknown-backend:" + name, "unknown compiler backend '" + name + "' in preference list");
    }
  }
  std::string reasons;
  for (const auto& b : order) {
    std::string why;
    if (!b->available()) {
      why = b->unavailable_reason();
      why = why.substr(0, why.find('\n'));  // the first line; the full candidate list is in `archs`
    } else if (Support s = b->supports(target); !s.ok) {
      why = s.reason;
    } else {
      return use_policy(b);
    }
    reasons += (reasons.empty() ? "" : "; ") + b->name() + ": " + why;
  }
  Error e = make_error("compile", "no compiler backend can build " + target +
                                      (reasons.empty() ? std::string(" (empty preference list)") : " (" + reasons + ")"));
  e.target = target;
  return e;
}

std::vector<BackendStatus> CompilerRegistry::describe() const {
  std::vector<BackendStatus> rows;
  for (const auto& b : backends_) {
    BackendStatus s;
    s.name = b->name();
    s.available = b->available();
    s.prefers_isolation = b->prefers_isolation();
    if (s.available) s.version = b->version();
    else s.reason = b->unavailable_reason();
    rows.push_back(std::move(s));
  }
  return rows;
}

}  // namespace sparsejit
