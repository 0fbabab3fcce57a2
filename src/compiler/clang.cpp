// Clang backend: AMDGPU code objects without ROCm, through libsparsejit-clang.so
// (built against LLVM 22 and lld). The plugin is dlopen'd so the core binary
// carries no LLVM dependency; its C ABI is declared in clang_plugin.cpp.
#include <unistd.h>

#include <cstring>

#include "compiler/backend.h"
#include "compiler/compiler.h"
#include "knobs.h"
#include "util/dynlib.h"

#ifndef SPARSEJIT_INSTALL_LIBDIR
#define SPARSEJIT_INSTALL_LIBDIR ""
#endif

namespace sparsejit {
namespace {

constexpr const char* kPluginFile = "libsparsejit-clang.so";
constexpr int kPluginAbi = 1;

using AbiVersionFn = int (*)();
using VersionFn = const char* (*)();
using FreeFn = void (*)(void*);
using SupportsFn = int (*)(const char*, char**, size_t*);
using CompileFn = int (*)(const char*, size_t, const char*, const char* const*, size_t, unsigned char**, size_t*,
                          char**, size_t*);

struct PluginApi {
  DynamicLibrary lib;
  VersionFn version = nullptr;
  FreeFn free = nullptr;
  SupportsFn supports = nullptr;
  CompileFn compile = nullptr;
};

// Owns a buffer malloc'd by the plugin.
template <class T>
class PluginBuffer {
 public:
  explicit PluginBuffer(FreeFn free) : free_(free) {}
  ~PluginBuffer() {
    if (ptr_) free_(ptr_);
  }
  PluginBuffer(const PluginBuffer&) = delete;
  PluginBuffer& operator=(const PluginBuffer&) = delete;
  T** out() { return &ptr_; }
  size_t* len() { return &len_; }
  const T* data() const { return ptr_; }
  size_t size() const { return ptr_ ? len_ : 0; }

 private:
  FreeFn free_;
  T* ptr_ = nullptr;
  size_t len_ = 0;
};

// A symbol of this library, so dladdr finds the object holding the core code
// (an engine's shared library, not necessarily the executable).
void core_anchor() {}

std::vector<std::string> plugin_candidates() {
  std::vector<std::string> c;
  if (!knobs().clang_plugin.empty()) {
    c.push_back(knobs().clang_plugin);
    return c;  // an explicit choice is not silently replaced by another copy
  }
  if (auto exe = self_executable_path(); !exe.empty()) c.push_back(parent_directory(exe) + "/" + kPluginFile);
  if (auto self = path_of_loaded_object(reinterpret_cast<const void*>(&core_anchor)); !self.empty())
    c.push_back(parent_directory(self) + "/" + kPluginFile);
  if (std::strlen(SPARSEJIT_INSTALL_LIBDIR) > 0) c.push_back(std::string(SPARSEJIT_INSTALL_LIBDIR) + "/" + kPluginFile);
  return c;
}

class ClangCompiler final : public Compiler {
 public:
  std::string name() const override { return "clang"; }
  bool available() const override { return api_.get().has_value(); }
  std::string unavailable_reason() const override { return api_.error(); }
  // A compiler crash must not take an engine down, and the plugin serializes
  // compiles (LLVM and lld globals): parallel builds use helper processes.
  bool prefers_isolation() const override { return true; }

  std::string version() const override {
    const auto& a = api_.get();
    if (!a) return "";
    return std::string("clang ") + a->version() + " (" + a->lib.path() + ")";
  }

  Support supports(const std::string& target) const override {
    const auto& a = api_.get();
    if (!a) return {false, api_.error()};
    if (target.rfind("gfx", 0) != 0) return {false, "not an AMD target (expected gfxNNN[:feature+-...])"};
    PluginBuffer<char> reason(a->free);
    if (a->supports(target.c_str(), reason.out(), reason.len()) == 1) return {true, ""};
    return {false, std::string(reason.data() ? reason.data() : "", reason.size())};
  }

  std::vector<std::string> default_options(const std::string&) const override { return {"-O3", "-std=c++17"}; }

  Result<CodeObject> compile(const CompileRequest& req) const override {
    const CompileRun run(*this, req);
    const auto& a = api_.get();
    if (!a) return run.fail("Clang plugin unavailable: " + api_.error());

    const std::vector<const char*> argv = c_strings(run.options());
    PluginBuffer<unsigned char> out(a->free);
    PluginBuffer<char> log(a->free);
    int rc = a->compile(req.source.data(), req.source.size(), req.target.c_str(), argv.data(), argv.size(), out.out(),
                        out.len(), log.out(), log.len());
    std::string log_text(log.data() ? log.data() : "", log.size());
    while (!log_text.empty() && log_text.back() == '\n') log_text.pop_back();
    if (rc == 2) return run.fail("invalid request: " + log_text);
    if (rc != 0) return run.fail("compilation failed", log_text);
    CodeObject obj;
    obj.binary.assign(out.data(), out.data() + out.size());
    if (!starts_as_elf(obj.binary)) return run.fail("the plugin returned something that is not an ELF code object", log_text);
    obj.log = std::move(log_text);
    return run.finish(std::move(obj));
  }

 private:
  static Result<PluginApi> open() {
    auto lib = DynamicLibrary::open(plugin_candidates());
    if (!lib) return make_error("compile", std::string(kPluginFile) + " not found (set SPARSEJIT_CLANG_PLUGIN):\n" + lib.error().log);
    PluginApi a;
    a.lib = std::move(lib).value();
    auto abi = a.lib.function<AbiVersionFn>("sparsejit_clang_abi_version");
    a.version = a.lib.function<VersionFn>("sparsejit_clang_version");
    a.free = a.lib.function<FreeFn>("sparsejit_clang_free");
    a.supports = a.lib.function<SupportsFn>("sparsejit_clang_supports");
    a.compile = a.lib.function<CompileFn>("sparsejit_clang_compile");
    if (!abi || !a.version || !a.free || !a.supports || !a.compile)
      return make_error("compile", a.lib.path() + " is not a sparsejit Clang plugin (missing entry points)");
    if (abi() != kPluginAbi)
      return make_error("compile", a.lib.path() + " has plugin ABI " + std::to_string(abi()) + ", this build expects " +
                                       std::to_string(kPluginAbi));
    return a;
  }

  LazyApi<PluginApi> api_{[] { return knobs().clang_plugin; }, open};
};

}  // namespace

std::unique_ptr<Compiler> make_clang_compiler() { return std::make_unique<ClangCompiler>(); }

}  // namespace sparsejit
