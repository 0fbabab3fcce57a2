// HIPRTC backend: HIP C++ -> linked AMDGPU code object, through a dlopen'd
// libhiprtc (ROCm >= 6) or libamdhip64 (ROCm 5, where hiprtc lives inside).
//
// Two facts shape this file:
//  - hiprtcVersion() is hard-coded in some releases (Debian's ROCm 5.2 says 9.0),
//    so the version is probed by compiling a tiny program that embeds the
//    compiler's own version macros and reading them back from the code object.
//  - Older HIPRTCs abort the whole process (glibc munmap_chunk) when asked for
//    a target they do not know (ROCm 5.2 + gfx942), so supports() answers from
//    a table keyed by the probed version, and compiles prefer a helper process.
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include "compiler/backend.h"
#include "compiler/compiler.h"
#include "compiler/helper_main.h"
#include "knobs.h"
#include "log.h"
#include "util/dynlib.h"

namespace sparsejit {
namespace {

using hiprtcResult = int;
using hiprtcProgram = struct _hiprtcProgram*;
constexpr hiprtcResult kHiprtcSuccess = 0;
using GetErrorStringFn = const char* (*)(hiprtcResult);
using CreateProgramFn = hiprtcResult (*)(hiprtcProgram*, const char*, const char*, int, const char**, const char**);
using DestroyProgramFn = hiprtcResult (*)(hiprtcProgram*);
using CompileProgramFn = hiprtcResult (*)(hiprtcProgram, int, const char**);
using GetSizeFn = hiprtcResult (*)(hiprtcProgram, size_t*);
using GetBytesFn = hiprtcResult (*)(hiprtcProgram, char*);

struct HiprtcApi {
  DynamicLibrary lib;
  GetErrorStringFn error_string = nullptr;
  CreateProgramFn create = nullptr;
  DestroyProgramFn destroy = nullptr;
  CompileProgramFn compile = nullptr;
  GetSizeFn log_size = nullptr;
  GetBytesFn log = nullptr;
  GetSizeFn code_size = nullptr;
  GetBytesFn code = nullptr;
};

// First ROCm (HIP) release whose HIPRTC builds each target; `before` closes the
// range for targets later dropped. Unknown targets are refused: refusing costs a
// fallback to another backend, guessing wrong costs the process.
struct ArchSupport {
  const char* arch;
  int since_major, since_minor;
  int before_major = 0, before_minor = 0;  // 0.0 = still supported
};
constexpr ArchSupport kArchTable[] = {
    {"gfx900", 3, 0},  {"gfx906", 3, 0},  {"gfx908", 3, 5},
    {"gfx90a", 4, 0},  // MI200
    {"gfx940", 6, 0, 6, 4}, {"gfx941", 6, 0, 6, 4},  // MI300 pre-production ids, dropped from LLVM
    {"gfx942", 6, 0},  // MI300 (5.7 support was experimental)
    {"gfx950", 6, 4},  // MI355
    {"gfx1030", 4, 5}, {"gfx1100", 5, 5}, {"gfx1101", 5, 5}, {"gfx1102", 5, 5},
    {"gfx1200", 6, 3}, {"gfx1201", 6, 3},
};

// Prints the HIP version and the clang version of the compiler inside HIPRTC
// into the code object, between markers, so the probe needs no GPU and no symbols.
constexpr const char* kProbeSource = R"(
#define SJ_S2(x) #x
#define SJ_S(x) SJ_S2(x)
#ifdef HIP_VERSION_MAJOR
#define SJ_HIP_VERSION SJ_S(HIP_VERSION_MAJOR) "." SJ_S(HIP_VERSION_MINOR) "." SJ_S(HIP_VERSION_PATCH)
#else
#define SJ_HIP_VERSION "unknown"
#endif
extern "C" __attribute__((used)) __device__ const char sparsejit_probe[] =
    "SJPROBE:hip " SJ_HIP_VERSION " clang " __clang_version__ ";SJEND";
extern "C" __global__ void sparsejit_probe_kernel(int* p) { if (p) *p = sparsejit_probe[0]; }
)";
// Every HIPRTC this backend accepts builds gfx90a (the table above), so probing it is safe.
constexpr const char* kProbeTarget = "gfx90a";

using HiprtcProgram = RtcProgram<HiprtcApi, hiprtcProgram>;

// HIPRTC (comgr underneath) has had process-global state races: one compile at a
// time per process; parallel builds use several helper processes instead.
std::mutex& compile_mutex() {
  static std::mutex mu;
  return mu;
}

// "major.minor" from the first "hip X.Y" in a version text, else from a
// library file name such as libamdhip64.so.5.2.21153.
std::optional<std::pair<int, int>> parse_hip_version(const std::string& version_text, const std::string& lib_path) {
  auto parse_at = [](const std::string& s, size_t pos) -> std::optional<std::pair<int, int>> {
    int major = 0, minor = 0;
    char dot = 0;
    std::istringstream in(s.substr(pos));
    if (in >> major >> dot >> minor && dot == '.') return std::make_pair(major, minor);
    return std::nullopt;
  };
  if (auto p = version_text.find("hip "); p != std::string::npos)
    if (auto v = parse_at(version_text, p + 4)) return v;
  for (const char* stem : {"libamdhip64.so.", "libhiprtc.so."})
    if (auto p = lib_path.find(stem); p != std::string::npos)
      if (auto v = parse_at(lib_path, p + std::strlen(stem))) return v;
  return std::nullopt;
}

bool version_at_least(std::pair<int, int> v, int major, int minor) {
  return v.first > major || (v.first == major && v.second >= minor);
}

// "gfx942:sramecc+:xnack-" -> "gfx942"; empty when a feature is malformed.
std::string base_arch(const std::string& target) {
  std::string arch = target.substr(0, target.find(':'));
  size_t pos = arch.size();
  while (pos < target.size()) {
    size_t next = target.find(':', pos + 1);
    std::string feature = target.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    if (feature != "sramecc+" && feature != "sramecc-" && feature != "xnack+" && feature != "xnack-") return "";
    pos = next == std::string::npos ? target.size() : next;
  }
  return arch;
}

class HiprtcCompiler final : public Compiler {
 public:
  std::string name() const override { return "hiprtc"; }
  bool available() const override { return api_.get().has_value(); }
  std::string unavailable_reason() const override { return api_.error(); }
  bool prefers_isolation() const override { return true; }

  std::string version() const override {
    auto p = probe();
    return p ? p.value() : std::string();
  }

  Support supports(const std::string& target) const override {
    const auto& a = api_.get();
    if (!a) return {false, api_.error()};
    if (target.rfind("gfx", 0) != 0) return {false, "not an AMD target (expected gfxNNN[:feature+-...])"};
    std::string arch = base_arch(target);
    if (arch.empty()) return {false, "malformed target id '" + target + "' (features: sramecc+/-, xnack+/-)"};
    auto p = probe();
    if (!p) return {false, "HIPRTC version probe failed: " + p.error().message};
    auto v = parse_hip_version(p.value(), a->lib.path());
    if (!v) return {false, "cannot read the HIP version from the probe (" + p.value() + ")"};
    for (const auto& row : kArchTable) {
      if (arch != row.arch) continue;
      std::string have = std::to_string(v->first) + "." + std::to_string(v->second);
      if (!version_at_least(*v, row.since_major, row.since_minor))
        return {false, arch + " needs ROCm >= " + std::to_string(row.since_major) + "." +
                           std::to_string(row.since_minor) + ", this HIPRTC is " + have};
      if (row.before_major && version_at_least(*v, row.before_major, row.before_minor))
        return {false, arch + " was dropped before ROCm " + std::to_string(row.before_major) + "." +
                           std::to_string(row.before_minor) + ", this HIPRTC is " + have};
      return {true, ""};
    }
    return {false, arch + " is not in sparsejit's HIPRTC support table (refused rather than risk a crash)"};
  }

  std::vector<std::string> default_options(const std::string& target) const override {
    return {"--offload-arch=" + target, "-O3", "-std=c++17"};
  }

  Result<CodeObject> compile(const CompileRequest& req) const override {
    const CompileRun run(*this, req);
    if (!api_.get()) return run.fail("HIPRTC unavailable: " + api_.error());
    // Inside the helper the parent has already checked the table, and a crash
    // here is contained: skip the (compile-costing) probe.
    if (!running_as_helper())
      if (Support s = supports(req.target); !s.ok) return run.fail(s.reason);
    auto r = compile_raw(req.source, req.name_hint, run.options());
    if (!r) return run.fail(r.error().message, r.error().log);
    if (!starts_as_elf(r->binary)) return run.fail("HIPRTC returned something that is not an ELF code object", r->log);
    return run.finish(std::move(r).value());
  }

 private:
  static Result<HiprtcApi> open() {
    std::vector<std::string> candidates;
    if (!knobs().hiprtc_library.empty()) candidates.push_back(knobs().hiprtc_library);
    for (const char* c : {"libhiprtc.so.6", "libhiprtc.so.5", "libhiprtc.so", "libamdhip64.so.6", "libamdhip64.so.5"})
      candidates.push_back(c);
    auto lib = DynamicLibrary::open(candidates);
    if (!lib) return make_error("compile", "no HIPRTC library found:\n" + lib.error().log);
    HiprtcApi a;
    a.lib = std::move(lib).value();
    a.error_string = a.lib.function<GetErrorStringFn>("hiprtcGetErrorString");
    a.create = a.lib.function<CreateProgramFn>("hiprtcCreateProgram");
    a.destroy = a.lib.function<DestroyProgramFn>("hiprtcDestroyProgram");
    a.compile = a.lib.function<CompileProgramFn>("hiprtcCompileProgram");
    a.log_size = a.lib.function<GetSizeFn>("hiprtcGetProgramLogSize");
    a.log = a.lib.function<GetBytesFn>("hiprtcGetProgramLog");
    a.code_size = a.lib.function<GetSizeFn>("hiprtcGetCodeSize");
    a.code = a.lib.function<GetBytesFn>("hiprtcGetCode");
    if (!a.error_string || !a.create || !a.destroy || !a.compile || !a.log_size || !a.log || !a.code_size || !a.code)
      return make_error("compile", a.lib.path() + " has no hiprtc entry points");
    return a;
  }

  // One HIPRTC compile; the Error carries message and log only (callers add the rest).
  Result<CodeObject> compile_raw(const std::string& source, const std::string& name_hint,
                                 const std::vector<std::string>& options) const {
    const HiprtcApi& a = *api_.get();
    std::lock_guard<std::mutex> lock(compile_mutex());
    HiprtcProgram prog(a);
    std::string file = (name_hint.empty() ? std::string("sparsejit") : name_hint) + ".hip";
    if (hiprtcResult r = a.create(prog.out(), source.c_str(), file.c_str(), 0, nullptr, nullptr); r != kHiprtcSuccess)
      return make_error("compile", std::string("hiprtcCreateProgram failed: ") + a.error_string(r));
    std::vector<const char*> argv = c_strings(options);
    hiprtcResult rc = a.compile(prog.get(), static_cast<int>(argv.size()), argv.data());
    std::string log = rtc_program_log(a, prog.get());
    if (rc != kHiprtcSuccess) {
      Error e = make_error("compile", std::string("compilation failed (") + a.error_string(rc) + ")");
      e.log = std::move(log);
      return e;
    }
    size_t size = 0;
    if (a.code_size(prog.get(), &size) != kHiprtcSuccess || size == 0) {
      Error e = make_error("compile", "HIPRTC produced no code object");
      e.log = std::move(log);
      return e;
    }
    CodeObject obj;
    obj.binary.resize(size);
    if (hiprtcResult r = a.code(prog.get(), reinterpret_cast<char*>(obj.binary.data())); r != kHiprtcSuccess)
      return make_error("compile", std::string("hiprtcGetCode failed: ") + a.error_string(r));
    obj.log = std::move(log);
    return obj;
  }

  Result<std::string> probe_in_process() const {
    auto r = compile_raw(kProbeSource, "sparsejit_probe", {std::string("--offload-arch=") + kProbeTarget, "-O3"});
    if (!r) {
      Error e = r.error();
      e.message = "probe compile for " + std::string(kProbeTarget) + " failed: " + e.message;
      return e;
    }
    std::string bytes(r->binary.begin(), r->binary.end());
    auto b = bytes.find("SJPROBE:");
    auto end = b == std::string::npos ? b : bytes.find(";SJEND", b);
    if (end == std::string::npos) return make_error("compile", "probe marker not found in the HIPRTC code object");
    // Single spaces: __clang_version__ ends with one, and this text is part of cache keys.
    std::string text;
    for (char c : bytes.substr(b + 8, end - b - 8))
      if (c != ' ' || (!text.empty() && text.back() != ' ')) text.push_back(c);
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return "hiprtc " + text + " (" + api_.get()->lib.path() + ")";
  }

  // Memoized per process and per (library, helper): a probe costs a compile.
  Result<std::string> probe() const {
    const auto& a = api_.get();
    if (!a) return make_error("compile", api_.error());
    bool in_helper = running_as_helper();
    std::string helper = in_helper || knobs().isolation == Isolation::inprocess ? "" : find_helper_executable();
    std::string key = a->lib.path() + "|" + helper;
    static std::mutex mu;
    static std::map<std::string, Result<std::string>> memo;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = memo.find(key); it != memo.end()) return it->second;
    Result<std::string> r = make_error("compile", "not probed");
    if (!helper.empty()) {
      r = probe_version_in_helper(name());
    } else {
      if (!in_helper && knobs().isolation != Isolation::inprocess)
        log::warn_once("hiprtc-probe-inprocess",
                       "no compile helper found: probing HIPRTC in this process (set SPARSEJIT_HELPER)");
      r = probe_in_process();
    }
    memo.emplace(key, r);
    return r;
  }

  LazyApi<HiprtcApi> api_{[] { return knobs().hiprtc_library; }, open};
};

}  // namespace

std::unique_ptr<Compiler> make_hiprtc_compiler() { return std::make_unique<HiprtcCompiler>(); }

}  // namespace sparsejit
