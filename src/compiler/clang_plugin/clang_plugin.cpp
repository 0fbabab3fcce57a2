// libsparsejit-clang.so: HIP device code -> linked AMDGPU code object with the
// Clang/LLVM/lld libraries, no ROCm needed. Loaded by the core with dlopen
// (compiler/clang.cpp) so the engine does not depend on LLVM; the boundary is
// a plain C ABI. The cc1 arguments mirror what
//   clang++ -### -x hip --cuda-device-only --offload-arch=<id> -nogpulib -nogpuinc
// prints, without the HIP runtime wrapper headers: kernel sources for this
// backend declare their own attributes and builtins.
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "clang/Basic/Diagnostic.h"
#include "clang/Basic/DiagnosticOptions.h"
#include "clang/CodeGen/CodeGenAction.h"
#include "clang/Frontend/CompilerInstance.h"
#include "clang/Frontend/CompilerInvocation.h"
#include "clang/Frontend/TextDiagnosticPrinter.h"
#include "clang/Lex/PreprocessorOptions.h"
#include "lld/Common/Driver.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/TargetParser.h"

LLD_HAS_DRIVER(elf)

#ifndef SPARSEJIT_CLANG_RESOURCE_DIR
#error "SPARSEJIT_CLANG_RESOURCE_DIR must name <llvm libdir>/clang/<major> (set by CMake)"
#endif

#define SJ_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char* kSourceName = "sparsejit_kernel.hip";

// LLVM's option registry, target registry and lld's globals are process-wide
// and not thread-safe: one compile at a time in this process.
std::mutex g_compile_mutex;
bool g_lld_poisoned = false;  // lld reported it cannot safely run again (after a crash it recovered from)

void init_llvm_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeAMDGPUTargetInfo();
    LLVMInitializeAMDGPUTarget();
    LLVMInitializeAMDGPUTargetMC();
    LLVMInitializeAMDGPUAsmPrinter();
    LLVMInitializeAMDGPUAsmParser();  // inline asm in kernels
    // The driver passes this per compile with -mllvm; -mllvm edits global cl::opt
    // state that cannot be re-parsed per compile, so set it once here.
    const char* argv[] = {"sparsejit-clang", "-amdgpu-internalize-symbols"};
    std::string ignored;
    llvm::raw_string_ostream errs(ignored);
    llvm::cl::ParseCommandLineOptions(2, argv, "", &errs);
  });
}

struct TargetId {
  std::string cpu;
  std::vector<std::string> features;  // "+sramecc", "-xnack"
};

// Parses "gfx942:sramecc+:xnack-"; the error names what is wrong.
bool parse_target(const std::string& id, TargetId* out, std::string* error) {
  out->cpu = id.substr(0, id.find(':'));
  auto kind = llvm::AMDGPU::parseArchAMDGCN(out->cpu);
  if (kind == llvm::AMDGPU::GK_NONE) {
    *error = "'" + out->cpu + "' is not an AMDGPU processor known to LLVM " LLVM_VERSION_STRING;
    return false;
  }
  unsigned attrs = llvm::AMDGPU::getArchAttrAMDGCN(kind);
  size_t pos = out->cpu.size();
  while (pos < id.size()) {
    size_t next = id.find(':', pos + 1);
    std::string f = id.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    pos = next == std::string::npos ? id.size() : next;
    if (f.size() < 2 || (f.back() != '+' && f.back() != '-')) {
      *error = "malformed feature '" + f + "' in target id '" + id + "' (expected name+ or name-)";
      return false;
    }
    std::string name = f.substr(0, f.size() - 1);
    bool known = (name == "sramecc" && (attrs & llvm::AMDGPU::FEATURE_SRAMECC)) ||
                 (name == "xnack" && (attrs & llvm::AMDGPU::FEATURE_XNACK));
    if (!known) {
      *error = "feature '" + name + "' is not configurable on " + out->cpu;
      return false;
    }
    out->features.push_back(std::string(1, f.back()) + name);
  }
  return true;
}

// A private temp directory for lld's input and output files, removed on every path.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/sparsejit-clang-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data())) path_ = buf.data();
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Copies into a malloc'd buffer owned by the caller (freed with sparsejit_clang_free).
void give(const std::string& s, char** out, size_t* len) {
  if (!out) return;
  *out = static_cast<char*>(std::malloc(s.size() + 1));
  if (*out) {
    std::memcpy(*out, s.data(), s.size());
    (*out)[s.size()] = '\0';
  }
  if (len) *len = *out ? s.size() : 0;
}

bool write_file(const std::string& path, llvm::StringRef bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

bool read_file(const std::string& path, std::string* bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  bytes->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

// Source -> relocatable object in memory; false with diagnostics in `log`.
bool compile_to_object(const std::string& source, const TargetId& target, const char* const* options, size_t n,
                       llvm::SmallString<0>* object, std::string* log) {
  static const std::string resource_dir = SPARSEJIT_CLANG_RESOURCE_DIR;
  static const std::string resource_include = resource_dir + "/include";
  std::vector<const char*> args = {
      "-triple", "amdgcn-amd-amdhsa", "-aux-triple", "x86_64-pc-linux-gnu", "-aux-target-cpu", "x86-64",
      "-emit-obj", "-target-cpu", target.cpu.c_str()};
  for (const auto& f : target.features) {
    args.push_back("-target-feature");
    args.push_back(f.c_str());
  }
  for (const char* a : {"-fcuda-is-device", "-fcuda-allow-variadic-functions", "-fhip-new-launch-api",
                        "-mrelocation-model", "pic", "-pic-level", "2", "-fvisibility=hidden",
                        "-fapply-global-visibility-to-externs", "-fno-threadsafe-statics", "-mframe-pointer=none",
                        "-fno-rounding-math", "-mconstructor-aliases", "-Werror=atomic-alignment",
                        "-discard-value-names", "-clear-ast-before-backend", "-vectorize-loops", "-vectorize-slp",
                        "-fgnuc-version=4.2.1", "-ferror-limit", "19", "-resource-dir", resource_dir.c_str(),
                        "-internal-isystem", resource_include.c_str()})
    args.push_back(a);
  for (size_t i = 0; i < n; ++i) args.push_back(options[i]);  // -O3 -std=c++17 -D... from the core
  args.push_back("-x");
  args.push_back("hip");
  args.push_back(kSourceName);

  llvm::raw_string_ostream log_os(*log);
  auto invocation = std::make_shared<clang::CompilerInvocation>();
  {
    clang::DiagnosticOptions parse_opts;
    clang::TextDiagnosticPrinter parse_printer(log_os, parse_opts);
    clang::DiagnosticsEngine parse_diags(clang::DiagnosticIDs::create(), parse_opts, &parse_printer, false);
    if (!clang::CompilerInvocation::CreateFromArgs(*invocation, args, parse_diags, "sparsejit-clang") ||
        parse_diags.hasErrorOccurred()) {
      log_os << "error: bad compiler arguments\n";
      return false;
    }
  }
  // Owned and freed by the preprocessor (RetainRemappedFileBuffers stays false).
  invocation->getPreprocessorOpts().addRemappedFile(
      kSourceName, llvm::MemoryBuffer::getMemBufferCopy(source, kSourceName).release());
  invocation->getFrontendOpts().DisableFree = false;

  clang::CompilerInstance ci(invocation);
  ci.createVirtualFileSystem();
  ci.createDiagnostics(new clang::TextDiagnosticPrinter(log_os, invocation->getDiagnosticOpts()), true);
  ci.setVerboseOutputStream(log_os);  // "N errors generated" belongs in the log, not on our stderr
  ci.setOutputStream(std::make_unique<llvm::raw_svector_ostream>(*object));
  clang::EmitObjAction action;
  bool ok = ci.ExecuteAction(action) && !ci.getDiagnostics().hasErrorOccurred();
  return ok && !object->empty();
}

}  // namespace

SJ_EXPORT int sparsejit_clang_abi_version(void) { return 1; }

SJ_EXPORT const char* sparsejit_clang_version(void) { return LLVM_VERSION_STRING; }

SJ_EXPORT void sparsejit_clang_free(void* p) { std::free(p); }

// 1 when `target` is a target id this LLVM can build; else 0 with the reason in *reason (free it).
SJ_EXPORT int sparsejit_clang_supports(const char* target, char** reason, size_t* reason_len) {
  TargetId t;
  std::string error;
  if (!target || !parse_target(target, &t, &error)) {
    give(target ? error : std::string("no target"), reason, reason_len);
    return 0;
  }
  give("", reason, reason_len);
  return 1;
}

// Compiles HIP device source for `target` ("gfx942", "gfx942:sramecc+:xnack-").
// `options` are cc1 options (-O3, -std=c++17, -DNAME=V...). Returns 0 with the
// code object in *out, 1 on a compile/link error, 2 on bad arguments; *log
// always holds the diagnostics. Free *out and *log with sparsejit_clang_free.
SJ_EXPORT int sparsejit_clang_compile(const char* source, size_t source_len, const char* target,
                                      const char* const* options, size_t n_options, unsigned char** out,
                                      size_t* out_len, char** log, size_t* log_len) {
  if (out) *out = nullptr;
  if (out_len) *out_len = 0;
  std::string diag;
  auto finish = [&](int rc) {
    give(diag, log, log_len);
    return rc;
  };
  if (!source || !target || !out || !out_len || (n_options && !options)) {
    diag = "sparsejit_clang_compile: null argument";
    return finish(2);
  }
  TargetId t;
  if (!parse_target(target, &t, &diag)) return finish(2);
  for (size_t i = 0; i < n_options; ++i) {
    if (!options[i] || std::strcmp(options[i], "-mllvm") == 0) {
      diag = "option -mllvm is not supported in-process (it changes global LLVM state)";
      return finish(2);
    }
  }

  std::lock_guard<std::mutex> lock(g_compile_mutex);
  if (g_lld_poisoned) {
    diag = "lld crashed earlier in this process and cannot run again; restart the process";
    return finish(1);
  }
  init_llvm_once();

  llvm::SmallString<0> object;
  if (!compile_to_object(std::string(source, source_len), t, options, n_options, &object, &diag)) return finish(1);

  TempDir dir;
  if (dir.path().empty()) {
    diag += "error: cannot create a temporary directory for lld\n";
    return finish(1);
  }
  std::string in = dir.path() + "/kernel.o", linked = dir.path() + "/kernel.co";
  if (!write_file(in, object.str())) {
    diag += "error: cannot write " + in + "\n";
    return finish(1);
  }
  const char* lld_args[] = {"ld.lld", "-flavor", "gnu", "-m", "elf64_amdgpu", "--no-undefined", "-shared",
                            "-o", linked.c_str(), in.c_str()};
  std::string lld_out;
  llvm::raw_string_ostream lld_os(lld_out);
  lld::Result r = lld::lldMain(lld_args, lld_os, lld_os, {{lld::Gnu, &lld::elf::link}});
  if (!r.canRunAgain) g_lld_poisoned = true;
  diag += lld_out;
  std::string bytes;
  if (r.retCode != 0 || !read_file(linked, &bytes) || bytes.empty()) {
    diag += "error: lld failed (exit " + std::to_string(r.retCode) + ")\n";
    return finish(1);
  }
  *out = static_cast<unsigned char*>(std::malloc(bytes.size()));
  if (!*out) {
    diag += "error: out of memory\n";
    return finish(1);
  }
  std::memcpy(*out, bytes.data(), bytes.size());
  *out_len = bytes.size();
  return finish(0);
}
