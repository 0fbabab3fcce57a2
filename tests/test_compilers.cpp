// Compile-only tests with the real toolchains (each skips visibly when its
// toolchain is missing) and fault injection for the helper-process path.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "compiler/backend.h"
#include "compiler/compiler.h"
#include "compiler/helper_main.h"
#include "compiler/registry.h"
#include "knobs.h"

namespace sparsejit {
namespace {

constexpr const char* kCudaKernel = R"(extern "C" __global__ void scale(float* x) {
  x[threadIdx.x] *= 2.f;
}
)";
// For HIPRTC (HIP headers are implicit there).
constexpr const char* kHipKernel = R"(extern "C" __global__ void scale(float* x) {
  x[threadIdx.x] *= 2.f;
}
)";
// For the Clang backend (-nogpuinc: no HIP headers, attributes spelled out).
constexpr const char* kBareAmdKernel =
    R"(extern "C" __attribute__((global)) void k(float* x) { x[__builtin_amdgcn_workitem_id_x()] *= 2.f; })";

constexpr std::uint16_t kEmAmdgpu = 224;

bool is_elf(const std::vector<std::uint8_t>& b) { return b.size() > 64 && std::memcmp(b.data(), "\x7f" "ELF", 4) == 0; }
std::uint16_t elf_machine(const std::vector<std::uint8_t>& b) { return static_cast<std::uint16_t>(b[18] | b[19] << 8); }
std::uint32_t elf_flags(const std::vector<std::uint8_t>& b) {
  std::uint32_t f;
  std::memcpy(&f, b.data() + 48, 4);  // e_flags in a 64-bit little-endian ELF header
  return f;
}

bool file_exists(const std::string& p) {
  struct stat st;
  return !p.empty() && ::stat(p.c_str(), &st) == 0;
}

// A scratch directory removed at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sparsejit-test-XXXXXX";
    path = mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

// A failed compile always dumps its source (SPARSEJIT_DUMP_DIR, else $TMPDIR
// or /tmp): a test that may fail one points the dump at a directory it owns,
// so a test run leaves nothing behind.
struct OwnedDumpDir {
  TempDir dir;
  ScopedKnob knob{"SPARSEJIT_DUMP_DIR", dir.path};
  // The source of a failed compile was dumped here (and nowhere else).
  bool holds(const std::string& source_path) const {
    return !dir.path.empty() && source_path.rfind(dir.path + "/", 0) == 0 && file_exists(source_path);
  }
};

// Minimal inner compiler for the helper-process tests: only its name travels to the helper.
class NamedFake final : public Compiler {
 public:
  explicit NamedFake(std::string name, bool supports = true) : name_(std::move(name)), supports_(supports) {}
  std::string name() const override { return name_; }
  bool available() const override { return true; }
  std::string unavailable_reason() const override { return ""; }
  std::string version() const override { return "fake 1.0"; }
  Support supports(const std::string&) const override { return {supports_, supports_ ? "" : "fake refuses"}; }
  std::vector<std::string> default_options(const std::string&) const override { return {"-Ofake"}; }
  Result<CodeObject> compile(const CompileRequest& req) const override {
    CodeObject o;
    o.binary.assign(req.source.begin(), req.source.end());
    return o;
  }

 private:
  std::string name_;
  bool supports_;
};

CompileRequest request(const std::string& source, const std::string& target, const std::string& hint = "test") {
  CompileRequest r;
  r.source = source;
  r.target = target;
  r.name_hint = hint;
  return r;
}

// ---------------------------------------------------------------- pieces the backends share

// A toolchain API that loads only where its knob says "good".
struct FakeApi {
  int id = 0;
};

TEST(LazyApi, RetriesAFailedLoadOnlyWhenItsKnobChangesAndKeepsALoadedOne) {
  std::string knob = "missing";
  int opens = 0;
  LazyApi<FakeApi> api([&] { return knob; }, [&]() -> Result<FakeApi> {
    ++opens;
    if (knob != "good") return make_error("compile", "no fake library at '" + knob + "'");
    return FakeApi{opens};
  });
  EXPECT_FALSE(api.get().has_value());
  EXPECT_EQ(api.error(), "no fake library at 'missing'");
  EXPECT_FALSE(api.get().has_value());
  EXPECT_EQ(opens, 1) << "the same knob: no second try";
  knob = "elsewhere";
  EXPECT_EQ(api.error(), "no fake library at 'elsewhere'");
  EXPECT_EQ(opens, 2);
  knob = "good";
  ASSERT_TRUE(api.get().has_value());
  EXPECT_EQ(api.get()->id, 3);
  EXPECT_EQ(api.error(), "");
  knob = "missing";
  ASSERT_TRUE(api.get().has_value()) << "a loaded API stays for the process";
  EXPECT_EQ(opens, 3);
}

TEST(CompileRun, FailuresNameTheBackendAndCarryTargetOptionsLogAndSource) {
  OwnedDumpDir dump;
  NamedFake backend("fakertc");
  CompileRequest req = request("int broken;", "gfx942", "run_test");
  req.options = {"-DX=1"};
  const CompileRun run(backend, req);
  EXPECT_EQ(run.options(), (std::vector<std::string>{"-Ofake", "-DX=1"})) << "the backend's defaults, then the request's";
  Error e = run.fail("compilation failed", "line 1: broken");
  EXPECT_EQ(e.stage, "compile");
  EXPECT_EQ(e.message, "fakertc: compilation failed");
  EXPECT_EQ(e.target, "gfx942");
  EXPECT_EQ(e.options, run.options());
  EXPECT_EQ(e.log, "line 1: broken");
  ASSERT_TRUE(dump.holds(e.source_path)) << e.source_path;
  std::ifstream dumped(e.source_path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(dumped), {}), "int broken;");
  EXPECT_EQ(run.fail("no log").log, "");

  CodeObject obj;
  obj.binary = {1, 2, 3};
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CodeObject done = run.finish(std::move(obj));
  EXPECT_EQ(done.binary, (std::vector<std::uint8_t>{1, 2, 3}));
  EXPECT_GE(done.seconds, 0.019) << "the seconds since the run started";
  EXPECT_LT(done.seconds, 60.0);
}

TEST(BackendPieces, CStringsElfAndProgramLogs) {
  const std::vector<std::string> options = {"-O3", "", "--offload-arch=gfx942"};
  const std::vector<const char*> argv = c_strings(options);
  ASSERT_EQ(argv.size(), 3u);
  for (size_t i = 0; i < options.size(); ++i) EXPECT_EQ(argv[i], options[i].c_str());
  EXPECT_TRUE(c_strings({}).empty());

  EXPECT_TRUE(starts_as_elf({0x7f, 'E', 'L', 'F'}));
  EXPECT_FALSE(starts_as_elf({0x7f, 'E', 'L'}));
  EXPECT_FALSE(starts_as_elf({}));
  EXPECT_FALSE(starts_as_elf({'E', 'L', 'F', 0x7f}));

  // An NVRTC/HIPRTC-shaped API: sizes count the NUL; 0 is success.
  struct RtcApi {
    std::string text;
    int size_rc = 0, log_rc = 0;
    int log_size(int, size_t* n) const {
      *n = text.size() + 1;
      return size_rc;
    }
    int log(int, char* out) const {
      std::memcpy(out, text.c_str(), text.size() + 1);
      return log_rc;
    }
  };
  EXPECT_EQ(rtc_program_log(RtcApi{"warning: x\n\n"}, 0), "warning: x") << "no trailing newlines or NULs";
  EXPECT_EQ(rtc_program_log(RtcApi{""}, 0), "") << "a size of 1 is the NUL alone";
  EXPECT_EQ(rtc_program_log(RtcApi{"log", 7}, 0), "") << "the size call failed";
  EXPECT_EQ(rtc_program_log(RtcApi{"log", 0, 7}, 0), "") << "the log call failed";
}

// ---------------------------------------------------------------- NVRTC

TEST(Nvrtc, CompilesSm90Cubin) {
  OwnedDumpDir dump;
  auto nvrtc = make_nvrtc_compiler();
  if (!nvrtc->available()) GTEST_SKIP() << "NVRTC not available: " << nvrtc->unavailable_reason();
  EXPECT_NE(nvrtc->version().find("nvrtc "), std::string::npos) << nvrtc->version();
  ASSERT_TRUE(nvrtc->supports("sm_90").ok) << nvrtc->supports("sm_90").reason;
  EXPECT_TRUE(nvrtc->supports("sm_90a").ok);
  EXPECT_FALSE(nvrtc->supports("gfx942").ok);
  EXPECT_FALSE(nvrtc->supports("sm_9").ok);
  auto r = nvrtc->compile(request(kCudaKernel, "sm_90"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(is_elf(r->binary));
  std::printf("[ timing ] nvrtc sm_90: %.3f s (%s)\n", r->seconds, nvrtc->version().c_str());
}

TEST(Nvrtc, CompileErrorCarriesLogAndDumpedSource) {
  auto nvrtc = make_nvrtc_compiler();
  if (!nvrtc->available()) GTEST_SKIP() << "NVRTC not available: " << nvrtc->unavailable_reason();
  OwnedDumpDir dump;
  const std::string bad = "extern \"C\" __global__ void broken(float* x) {\n  x[0] = 1.f;\n  x[1] = undefined_thing;\n}\n";
  auto r = nvrtc->compile(request(bad, "sm_90", "broken_kernel"));
  ASSERT_FALSE(r.ok());
  const Error& e = r.error();
  EXPECT_EQ(e.stage, "compile");
  EXPECT_EQ(e.target, "sm_90");
  EXPECT_NE(e.log.find("undefined_thing"), std::string::npos) << e.log;
  EXPECT_NE(e.log.find("(3)"), std::string::npos) << "log should name line 3: " << e.log;
  EXPECT_TRUE(dump.holds(e.source_path)) << e.source_path;
  EXPECT_FALSE(e.options.empty());
}

// ---------------------------------------------------------------- HIPRTC

TEST(Hiprtc, Gfx90aThroughHelperProcess) {
  OwnedDumpDir dump;
  auto hiprtc = std::shared_ptr<const Compiler>(make_hiprtc_compiler());
  if (!hiprtc->available()) GTEST_SKIP() << "HIPRTC not available: " << hiprtc->unavailable_reason();
  ScopedKnob helper("SPARSEJIT_HELPER", SPARSEJIT_TEST_HELPER);
  auto isolated = make_subprocess_compiler(hiprtc);
  std::string version = isolated->version();
  ASSERT_NE(version.find("hiprtc hip "), std::string::npos) << "probe failed: '" << version << "'";
  auto support = isolated->supports("gfx90a");
  if (!support.ok) GTEST_SKIP() << "this HIPRTC cannot build gfx90a: " << support.reason;
  auto r = isolated->compile(request(kHipKernel, "gfx90a"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  ASSERT_TRUE(is_elf(r->binary));
  EXPECT_EQ(elf_machine(r->binary), kEmAmdgpu);
  EXPECT_EQ(elf_flags(r->binary) & 0xff, 0x03fu);
  std::printf("[ timing ] hiprtc gfx90a via helper: %.3f s (%s)\n", r->seconds, version.c_str());
}

TEST(Hiprtc, Gfx942NeverCrashesTheProcess) {
  OwnedDumpDir dump;
  auto hiprtc = std::shared_ptr<const Compiler>(make_hiprtc_compiler());
  if (!hiprtc->available()) GTEST_SKIP() << "HIPRTC not available: " << hiprtc->unavailable_reason();
  ScopedKnob helper("SPARSEJIT_HELPER", SPARSEJIT_TEST_HELPER);
  Support s = hiprtc->supports("gfx942");
  std::printf("[ info   ] hiprtc gfx942: %s\n", s.ok ? "supported" : s.reason.c_str());
  // Whatever the installed version, both paths must return (a value), never abort.
  auto in_process = hiprtc->compile(request(kHipKernel, "gfx942"));
  auto isolated = make_subprocess_compiler(hiprtc)->compile(request(kHipKernel, "gfx942"));
  if (!s.ok) {
    EXPECT_FALSE(in_process.ok());
    EXPECT_FALSE(isolated.ok());
    EXPECT_NE(isolated.error().message.find(s.reason), std::string::npos) << isolated.error().describe();
    EXPECT_TRUE(dump.holds(in_process.error().source_path)) << in_process.error().source_path;
    EXPECT_TRUE(dump.holds(isolated.error().source_path)) << isolated.error().source_path;
  }
  EXPECT_FALSE(hiprtc->supports("sm_90").ok);
  EXPECT_FALSE(hiprtc->supports("gfx942:bogus+").ok);
}

// The helper trusts its target, so forcing a target this HIPRTC aborts on shows
// the containment with the real toolchain: an Error naming the signal, and we live.
TEST(Hiprtc, HelperCrashOnUnsupportedTargetIsContained) {
  OwnedDumpDir dump;
  auto hiprtc = std::shared_ptr<const Compiler>(make_hiprtc_compiler());
  if (!hiprtc->available()) GTEST_SKIP() << "HIPRTC not available: " << hiprtc->unavailable_reason();
  ScopedKnob helper("SPARSEJIT_HELPER", SPARSEJIT_TEST_HELPER);
  if (hiprtc->supports("gfx942").ok) GTEST_SKIP() << "this HIPRTC builds gfx942: nothing to contain";
  // An inner that claims support: the parent spawns, the helper runs the real HIPRTC.
  auto r = make_subprocess_compiler(std::make_shared<NamedFake>("hiprtc"))->compile(request(kHipKernel, "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("helper crashed with SIG"), std::string::npos) << r.error().describe();
  EXPECT_TRUE(dump.holds(r.error().source_path)) << r.error().source_path;
}

// ---------------------------------------------------------------- Clang plugin

std::unique_ptr<Compiler> clang_or_skip(std::string* why) {
  auto c = make_clang_compiler();
  if (!c->available()) {
    *why = c->unavailable_reason();
    return nullptr;
  }
  return c;
}

TEST(Clang, BuildsGfx942Gfx950Gfx90aCodeObjects) {
  OwnedDumpDir dump;
  if (std::strlen(SPARSEJIT_TEST_CLANG_PLUGIN) == 0) GTEST_SKIP() << "Clang plugin not built (LLVM 22 + lld not found)";
  ScopedKnob plugin("SPARSEJIT_CLANG_PLUGIN", SPARSEJIT_TEST_CLANG_PLUGIN);
  std::string why;
  auto clang = clang_or_skip(&why);
  if (!clang) GTEST_SKIP() << "Clang plugin unavailable: " << why;
  EXPECT_EQ(clang->version().rfind("clang 22.", 0), 0u) << clang->version();
  struct Case {
    const char* target;
    std::uint32_t mach;
  } cases[] = {{"gfx942", 0x04c}, {"gfx950", 0x04f}, {"gfx90a", 0x03f}, {"gfx942:sramecc+:xnack-", 0x04c}};
  for (const auto& c : cases) {
    ASSERT_TRUE(clang->supports(c.target).ok) << c.target << ": " << clang->supports(c.target).reason;
    auto r = clang->compile(request(kBareAmdKernel, c.target));
    ASSERT_TRUE(r.ok()) << r.error().describe();
    ASSERT_TRUE(is_elf(r->binary)) << c.target;
    EXPECT_EQ(elf_machine(r->binary), kEmAmdgpu) << c.target;
    EXPECT_EQ(elf_flags(r->binary) & 0x0ff, c.mach) << c.target;
    std::printf("[ timing ] clang %s in-process: %.3f s\n", c.target, r->seconds);
  }
}

TEST(Clang, RejectsUnknownTargetsAndReportsDiagnostics) {
  if (std::strlen(SPARSEJIT_TEST_CLANG_PLUGIN) == 0) GTEST_SKIP() << "Clang plugin not built (LLVM 22 + lld not found)";
  ScopedKnob plugin("SPARSEJIT_CLANG_PLUGIN", SPARSEJIT_TEST_CLANG_PLUGIN);
  std::string why;
  auto clang = clang_or_skip(&why);
  if (!clang) GTEST_SKIP() << "Clang plugin unavailable: " << why;
  EXPECT_FALSE(clang->supports("gfx9999").ok);
  EXPECT_FALSE(clang->supports("sm_90").ok);
  EXPECT_FALSE(clang->supports("gfx942:turbo+").ok);
  OwnedDumpDir dump;
  auto r = clang->compile(request("extern \"C\" __attribute__((global)) void k(float* x) {\n  x[0] = nope;\n}\n", "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().log.find("nope"), std::string::npos) << r.error().log;
  EXPECT_NE(r.error().log.find(":2:"), std::string::npos) << "log should name line 2: " << r.error().log;
  EXPECT_TRUE(dump.holds(r.error().source_path)) << r.error().source_path;
}

TEST(Clang, AMissingPluginSaysWhereToPointAndIsFoundOnceTheKnobDoes) {
  if (std::strlen(SPARSEJIT_TEST_CLANG_PLUGIN) == 0) GTEST_SKIP() << "Clang plugin not built (LLVM 22 + lld not found)";
  auto clang = make_clang_compiler();
  {
    ScopedKnob plugin("SPARSEJIT_CLANG_PLUGIN", "/nonexistent/libsparsejit-clang.so");
    EXPECT_FALSE(clang->available());
    EXPECT_NE(clang->unavailable_reason().find("libsparsejit-clang.so not found (set SPARSEJIT_CLANG_PLUGIN)"), std::string::npos)
        << clang->unavailable_reason();
    EXPECT_FALSE(clang->supports("gfx942").ok);
    OwnedDumpDir dump;
    auto r = clang->compile(request(kBareAmdKernel, "gfx942"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message.rfind("clang: Clang plugin unavailable: ", 0), 0u) << r.error().message;
  }
  {
    ScopedKnob plugin("SPARSEJIT_CLANG_PLUGIN", SPARSEJIT_TEST_HELPER);  // an ELF file, not the plugin
    EXPECT_FALSE(clang->available());
  }
  ScopedKnob plugin("SPARSEJIT_CLANG_PLUGIN", SPARSEJIT_TEST_CLANG_PLUGIN);
  EXPECT_TRUE(clang->available()) << "the knob changed: loaded again, and found: " << clang->unavailable_reason();
  EXPECT_EQ(clang->unavailable_reason(), "");
}

TEST(Clang, Gfx942ThroughHelperProcess) {
  OwnedDumpDir dump;
  if (std::strlen(SPARSEJIT_TEST_CLANG_PLUGIN) == 0) GTEST_SKIP() << "Clang plugin not built (LLVM 22 + lld not found)";
  ScopedKnob plugin("SPARSEJIT_CLANG_PLUGIN", SPARSEJIT_TEST_CLANG_PLUGIN);
  ScopedKnob helper("SPARSEJIT_HELPER", SPARSEJIT_TEST_HELPER);
  std::string why;
  auto clang = clang_or_skip(&why);
  if (!clang) GTEST_SKIP() << "Clang plugin unavailable: " << why;
  auto isolated = make_subprocess_compiler(std::shared_ptr<const Compiler>(std::move(clang)));
  auto r = isolated->compile(request(kBareAmdKernel, "gfx942"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(elf_machine(r->binary), kEmAmdgpu);
  EXPECT_EQ(elf_flags(r->binary) & 0x0ff, 0x04cu);
  std::printf("[ timing ] clang gfx942 via helper: %.3f s\n", r->seconds);
}

// ---------------------------------------------------------------- helper process faults

class SubprocessFaults : public ::testing::Test {
 protected:
  std::unique_ptr<Compiler> isolated_fake() {
    return make_subprocess_compiler(std::make_shared<NamedFake>("fake"));
  }
  ScopedKnob helper_{"SPARSEJIT_HELPER", SPARSEJIT_FAKE_HELPER};
  OwnedDumpDir dump_;
};

TEST_F(SubprocessFaults, CrashBecomesErrorNamingTheSignal) {
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "crash");
  auto r = isolated_fake()->compile(request("int x;", "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("helper crashed with SIGABRT"), std::string::npos) << r.error().describe();
  EXPECT_NE(r.error().log.find("munmap_chunk"), std::string::npos) << "stderr should be the log";
  EXPECT_TRUE(dump_.holds(r.error().source_path)) << r.error().source_path;
}

TEST_F(SubprocessFaults, HangIsKilledAfterTimeout) {
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "hang");
  ScopedKnob timeout("SPARSEJIT_COMPILE_TIMEOUT", "2");
  auto start = std::chrono::steady_clock::now();
  auto r = isolated_fake()->compile(request("int x;", "gfx942"));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().describe();
  EXPECT_GE(s, 1.9);
  EXPECT_LT(s, 10.0);
}

TEST_F(SubprocessFaults, GarbageOutputIsError) {
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "garbage");
  auto r = isolated_fake()->compile(request("int x;", "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("without a valid result frame"), std::string::npos) << r.error().describe();
}

TEST_F(SubprocessFaults, FloodedStderrAndUnreadStdinDoNotDeadlock) {
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "flood");
  ScopedKnob timeout("SPARSEJIT_COMPILE_TIMEOUT", "20");
  auto r = isolated_fake()->compile(request(std::string(8 << 20, 'x'), "gfx942"));  // 8 MiB nobody reads
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(is_elf(std::vector<std::uint8_t>(64 + 4, 0)) == false);
  EXPECT_EQ(r->binary.size(), 4u);
}

TEST_F(SubprocessFaults, ValidFrameRoundTripsBytes) {
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "ok");
  std::string src("a\0b\xff", 4);
  auto r = isolated_fake()->compile(request(src, "gfx942"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(std::string(r->binary.begin(), r->binary.end()), std::string("\x7f" "ELF") + src);
  EXPECT_EQ(r->log, "fake warning");
}

TEST_F(SubprocessFaults, MissingHelperIsError) {
  ScopedKnob helper("SPARSEJIT_HELPER", "/nonexistent/sparsejit");
  auto r = isolated_fake()->compile(request("int x;", "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("no helper"), std::string::npos) << r.error().describe();
}

TEST_F(SubprocessFaults, UnsupportedTargetIsRefusedBeforeSpawning) {
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "crash");
  auto r = make_subprocess_compiler(std::make_shared<NamedFake>("fake", false))->compile(request("int x;", "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("fake refuses"), std::string::npos) << r.error().describe();
}

// ---------------------------------------------------------------- framing and argv

TEST(CompileHelper, FramingRoundTripAndRejectsDamage) {
  Frame f{FrameKind::object, std::string("\x7f" "ELF\0\1", 6), "warn"};
  std::string wire = encode_frame(f);
  auto back = decode_frame(wire);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->payload, f.payload);
  EXPECT_EQ(back->log, "warn");
  EXPECT_FALSE(decode_frame(wire.substr(0, wire.size() - 1)));  // truncated
  EXPECT_FALSE(decode_frame(wire + "x"));                       // trailing bytes
  EXPECT_FALSE(decode_frame("sparsejit\n"));                    // a CLI that is not a helper
  std::string huge = wire;
  huge[5] = '\xff';  // absurd payload length
  EXPECT_FALSE(decode_frame(huge));
}

TEST(CompileHelper, ParsesArgv) {
  std::string err;
  auto h = parse_helper_args({"compile", "--helper", "--backend", "clang", "--target", "gfx942", "--option=-O2",
                              "--option", "-DX=1", "--name", "k"},
                             &err);
  ASSERT_TRUE(h) << err;
  EXPECT_EQ(h->backend, "clang");
  EXPECT_EQ(h->target, "gfx942");
  EXPECT_EQ(h->options, (std::vector<std::string>{"-O2", "-DX=1"}));
  EXPECT_EQ(h->name_hint, "k");
  EXPECT_TRUE(parse_helper_args({"compile", "--helper", "--backend=hiprtc", "--probe-version"}, &err));
  EXPECT_FALSE(parse_helper_args({"compile", "--backend", "clang", "--target", "gfx942"}, &err));
  EXPECT_FALSE(parse_helper_args({"compile", "--helper", "--backend", "clang"}, &err));
}

// ---------------------------------------------------------------- registry policy

TEST(CompilerRegistry, ChoosesFirstSupportingBackendAndExplainsRefusals) {
  CompilerRegistry reg({std::make_shared<NamedFake>("a", false), std::make_shared<NamedFake>("b", true)});
  ScopedKnob iso("SPARSEJIT_COMPILE_ISOLATION", "inprocess");
  auto c = reg.choose("gfx942", {"a", "b"});
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ((*c)->name(), "b");
  auto none = reg.choose("gfx942", {"a"});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("a: fake refuses"), std::string::npos) << none.error().message;
  EXPECT_EQ(reg.describe().size(), 2u);
}

TEST(CompilerRegistry, DisableCompileFailsEveryCompile) {
  CompilerRegistry reg({std::make_shared<NamedFake>("b")});
  ScopedKnob iso("SPARSEJIT_COMPILE_ISOLATION", "inprocess");
  auto c = reg.choose("gfx942");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->compile(request("x", "gfx942")).ok());
  ScopedKnob off("SPARSEJIT_DISABLE_COMPILE", "1");
  auto r = (*c)->compile(request("x", "gfx942"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("SPARSEJIT_DISABLE_COMPILE"), std::string::npos);
}

TEST(CompilerRegistry, ProcessIsolationRoutesThroughHelper) {
  CompilerRegistry reg({std::make_shared<NamedFake>("b")});
  ScopedKnob iso("SPARSEJIT_COMPILE_ISOLATION", "process");
  ScopedKnob helper("SPARSEJIT_HELPER", SPARSEJIT_FAKE_HELPER);
  ScopedKnob mode("SJ_FAKE_HELPER_MODE", "ok");
  auto c = reg.choose("gfx942");
  ASSERT_TRUE(c.ok()) << c.error().describe();
  auto r = (*c)->compile(request("src", "gfx942"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  // The fake helper answers "\x7fELF" + source: the in-process fake would answer "src".
  EXPECT_EQ(std::string(r->binary.begin(), r->binary.end()), "\x7f" "ELFsrc");
  ScopedKnob no_helper("SPARSEJIT_HELPER", "/nonexistent");
  EXPECT_FALSE(reg.choose("gfx942").ok());
}

TEST(CompilerRegistry, DumpSourceWritesAFile) {
  OwnedDumpDir dump;
  std::string p = dump_source("int main;", "my kernel/1");
  ASSERT_TRUE(dump.holds(p)) << p;
  EXPECT_EQ(p.find("my kernel/1"), std::string::npos);  // sanitized
}

}  // namespace
}  // namespace sparsejit
