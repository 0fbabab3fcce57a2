// NVRTC backend: CUDA C++ -> CUBIN for one sm_XX, through a dlopen'd libnvrtc.
// NVRTC is thread-safe per program and does not crash on unsupported targets
// (it reports an error), so it compiles in-process by default.
#include <mutex>
#include <set>

#include "compiler/backend.h"
#include "compiler/compiler.h"
#include "config.h"
#include "knobs.h"
#include "util/dynlib.h"

namespace sparsejit {
namespace {

// The few NVRTC entry points used, declared here so building needs no CUDA headers.
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;
constexpr nvrtcResult kNvrtcSuccess = 0;
using GetErrorStringFn = const char* (*)(nvrtcResult);
using VersionFn = nvrtcResult (*)(int*, int*);
using GetNumSupportedArchsFn = nvrtcResult (*)(int*);
using GetSupportedArchsFn = nvrtcResult (*)(int*);
using CreateProgramFn = nvrtcResult (*)(nvrtcProgram*, const char*, const char*, int, const char* const*,
                                        const char* const*);
using DestroyProgramFn = nvrtcResult (*)(nvrtcProgram*);
using CompileProgramFn = nvrtcResult (*)(nvrtcProgram, int, const char* const*);
using GetSizeFn = nvrtcResult (*)(nvrtcProgram, size_t*);
using GetBytesFn = nvrtcResult (*)(nvrtcProgram, char*);

struct NvrtcApi {
  DynamicLibrary lib;
  GetErrorStringFn error_string = nullptr;
  VersionFn version = nullptr;
  GetNumSupportedArchsFn num_archs = nullptr;  // optional (CUDA >= 11.2)
  GetSupportedArchsFn archs = nullptr;         // optional
  CreateProgramFn create = nullptr;
  DestroyProgramFn destroy = nullptr;
  CompileProgramFn compile = nullptr;
  GetSizeFn log_size = nullptr;
  GetBytesFn log = nullptr;
  GetSizeFn cubin_size = nullptr;
  GetBytesFn cubin = nullptr;
};

using NvrtcProgram = RtcProgram<NvrtcApi, nvrtcProgram>;

class NvrtcCompiler final : public Compiler {
 public:
  std::string name() const override { return "nvrtc"; }
  bool available() const override { return api_.get().has_value(); }
  std::string unavailable_reason() const override { return api_.error(); }

  std::string version() const override {
    const auto& a = api_.get();
    if (!a) return "";
    std::call_once(version_once_, [&] {
      int major = 0, minor = 0;
      if (a->version(&major, &minor) == kNvrtcSuccess)
        version_ = "nvrtc " + std::to_string(major) + "." + std::to_string(minor) + " (" + a->lib.path() + ")";
    });
    return version_;
  }

  Support supports(const std::string& target) const override {
    const auto& a = api_.get();
    if (!a) return {false, api_.error()};
    std::string suffix;
    int sm = nvidia_sm(target, &suffix);
    if (sm < 0) return {false, "not an NVIDIA target (expected sm_XX, sm_XXa)"};
    const auto& archs = supported_archs();
    if (!archs.empty()) {
      if (!archs.count(sm)) return {false, "this NVRTC (" + version() + ") cannot build sm_" + std::to_string(sm)};
      return {true, ""};
    }
    // Library without nvrtcGetSupportedArchs (CUDA < 11.2): the range those releases covered.
    if (sm < 35 || sm > 90) return {false, "sm_" + std::to_string(sm) + " outside the range an old NVRTC supports"};
    return {true, "supported arch list unavailable; assumed"};
  }

  std::vector<std::string> default_options(const std::string& target) const override {
    // NVRTC optimizes by default and rejects -O3.
    return {"--gpu-architecture=" + target, "-std=c++17", "-default-device"};
  }

  Result<CodeObject> compile(const CompileRequest& req) const override {
    const CompileRun run(*this, req);
    const auto& a = api_.get();
    if (!a) return run.fail("NVRTC unavailable: " + api_.error());
    if (Support s = supports(req.target); !s.ok) return run.fail(s.reason);

    NvrtcProgram prog(*a);
    std::string file = (req.name_hint.empty() ? std::string("sparsejit") : req.name_hint) + ".cu";
    if (nvrtcResult r = a->create(prog.out(), req.source.c_str(), file.c_str(), 0, nullptr, nullptr); r != kNvrtcSuccess)
      return run.fail(std::string("nvrtcCreateProgram failed: ") + a->error_string(r));

    const std::vector<const char*> argv = c_strings(run.options());
    nvrtcResult rc = a->compile(prog.get(), static_cast<int>(argv.size()), argv.data());
    std::string log = rtc_program_log(*a, prog.get());
    if (rc != kNvrtcSuccess) return run.fail(std::string("compilation failed (") + a->error_string(rc) + ")", log);

    size_t size = 0;
    if (nvrtcResult r = a->cubin_size(prog.get(), &size); r != kNvrtcSuccess || size == 0)
      return run.fail("no CUBIN produced (a virtual compute_XX target gives PTX only)", log);
    CodeObject obj;
    obj.binary.resize(size);
    if (nvrtcResult r = a->cubin(prog.get(), reinterpret_cast<char*>(obj.binary.data())); r != kNvrtcSuccess)
      return run.fail(std::string("nvrtcGetCUBIN failed: ") + a->error_string(r), log);
    obj.log = std::move(log);
    return run.finish(std::move(obj));
  }

 private:
  static Result<NvrtcApi> open() {
    std::vector<std::string> candidates;
    if (!knobs().nvrtc_library.empty()) candidates.push_back(knobs().nvrtc_library);
    // The toolkit lib dir is often not on the loader path: try it explicitly after the sonames.
    for (const char* c : {"libnvrtc.so.13", "libnvrtc.so.12", "/usr/local/cuda/lib64/libnvrtc.so.13",
                          "/usr/local/cuda/lib64/libnvrtc.so.12"})
      candidates.push_back(c);
    auto lib = DynamicLibrary::open(candidates);
    if (!lib) return make_error("compile", "libnvrtc not found:\n" + lib.error().log);
    NvrtcApi a;
    a.lib = std::move(lib).value();
    a.error_string = a.lib.function<GetErrorStringFn>("nvrtcGetErrorString");
    a.version = a.lib.function<VersionFn>("nvrtcVersion");
    a.num_archs = a.lib.function<GetNumSupportedArchsFn>("nvrtcGetNumSupportedArchs");
    a.archs = a.lib.function<GetSupportedArchsFn>("nvrtcGetSupportedArchs");
    a.create = a.lib.function<CreateProgramFn>("nvrtcCreateProgram");
    a.destroy = a.lib.function<DestroyProgramFn>("nvrtcDestroyProgram");
    a.compile = a.lib.function<CompileProgramFn>("nvrtcCompileProgram");
    a.log_size = a.lib.function<GetSizeFn>("nvrtcGetProgramLogSize");
    a.log = a.lib.function<GetBytesFn>("nvrtcGetProgramLog");
    a.cubin_size = a.lib.function<GetSizeFn>("nvrtcGetCUBINSize");
    a.cubin = a.lib.function<GetBytesFn>("nvrtcGetCUBIN");
    if (!a.error_string || !a.version || !a.create || !a.destroy || !a.compile || !a.log_size || !a.log ||
        !a.cubin_size || !a.cubin)
      return make_error("compile", a.lib.path() + " lacks an NVRTC entry point (CUBIN output needs CUDA >= 11.1)");
    return a;
  }

  const std::set<int>& supported_archs() const {
    std::call_once(archs_once_, [&] {
      const auto& a = api_.get();
      int n = 0;
      if (!a || !a->num_archs || !a->archs || a->num_archs(&n) != kNvrtcSuccess || n <= 0) return;
      std::vector<int> v(static_cast<size_t>(n));
      if (a->archs(v.data()) == kNvrtcSuccess) archs_.insert(v.begin(), v.end());
    });
    return archs_;
  }

  LazyApi<NvrtcApi> api_{[] { return knobs().nvrtc_library; }, open};
  mutable std::once_flag version_once_, archs_once_;
  mutable std::string version_;
  mutable std::set<int> archs_;
};

}  // namespace

std::unique_ptr<Compiler> make_nvrtc_compiler() { return std::make_unique<NvrtcCompiler>(); }

}  // namespace sparsejit
