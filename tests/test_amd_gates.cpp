// Static gates on the AMD code objects (no AMD GPU here): every kernel variant
// of the MiniMax-M3 preset for gfx942 and gfx950, built by the Clang backend,
// must use MFMA in its QK/PV products (prefill and decode), fit LDS, use no
// scratch and no spills, stay within the arch table's VGPR budget and be wave64.
// gfx90a is built by both HIPRTC and Clang: same symbols, comparable resources.
// Each variant's figures are printed ("[ amd-gate ]" lines) for docs/AMD.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "arch_table.h"
#include "compiler/registry.h"
#include "inspect.h"
#include "kernel_builder.h"
#include "preset.h"

using namespace sparsejit;
namespace fs = std::filesystem;

namespace {

struct TempCache {
  fs::path dir;
  std::shared_ptr<KernelCache> cache;
  TempCache() {
    char tmpl[] = "/tmp/sparsejit-gates-XXXXXX";
    dir = mkdtemp(tmpl);
    CacheSettings settings;
    settings.user_dir = dir.string();
    cache = std::make_shared<KernelCache>(settings);
  }
  ~TempCache() {
    cache.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// Skips (returns a reason) when `backend` cannot build `target` on this machine.
std::string unavailable(const std::string& backend, const std::string& target) {
  auto b = CompilerRegistry::instance().by_name(backend);
  if (!b) return backend + " backend is not built";
  if (!b->available()) return backend + " is not available here: " + b->unavailable_reason();
  auto sup = b->supports(target);
  if (!sup.ok) return backend + " cannot build " + target + ": " + sup.reason;
  return {};
}

std::string variant_name(const KernelConfig& c) {
  std::ostringstream o;
  o << to_string(c.op);
  if (c.op != Op::merge) o << " G" << c.gqa_group << " " << to_string(c.kv_dtype) << (c.scale_mode == ScaleMode::none ? "" : "+scale");
  if (c.op != Op::prefill) o << " chunks " << c.num_topk_chunks;
  return o.str();
}

// Waves per SIMD the resources allow on CDNA2/3/4: 512 unified VGPRs (+AGPRs) per
// lane, allocated in granules of 8, at most 8 waves per SIMD; LDS per CU shared
// by the workgroups resident on its 4 SIMDs.
double waves_per_simd(const KernelResources& k, const KernelConfig& c, long long lds_per_cu) {
  const int regs = std::max(1, k.vgprs + std::max(0, k.agprs));
  const int by_vgpr = std::min(8, 512 / ((regs + 7) / 8 * 8));
  const int waves_per_group = (c.launch.threads + 63) / 64;
  const double by_lds = k.shared_bytes > 0 ? double(lds_per_cu / k.shared_bytes) * waves_per_group / 4.0 : 8.0;
  return std::min<double>(by_vgpr, by_lds);
}

struct Built {
  KernelResources res;
  Inspection inspection;
};

// Builds `c` with `backend` and inspects it; fails the test on any error.
bool build_and_inspect(KernelBuilder& builder, const KernelConfig& c, const std::string& backend, bool disassemble, Built& out) {
  auto built = builder.build(c, backend);
  EXPECT_TRUE(built.ok()) << variant_name(c) << ": " << (built.ok() ? "" : built.error().describe());
  if (!built.ok()) return false;
  auto ins = inspect_code_object(built->object->binary, c.arch, disassemble);
  EXPECT_TRUE(ins.ok()) << variant_name(c) << ": " << (ins.ok() ? "" : ins.error().describe());
  if (!ins.ok()) return false;
  for (const auto& k : ins->kernels)
    if (k.kernel == c.kernel_name()) {
      out.res = k;
      out.inspection = std::move(*ins);
      return true;
    }
  ADD_FAILURE() << variant_name(c) << ": no kernel " << c.kernel_name() << " in the code object";
  return false;
}

struct GateCase {
  const char* arch;
  long long lds_limit;  // per workgroup, the bound (gfx942 64 KiB, gfx950 160 KiB)
};

class AmdGates : public ::testing::TestWithParam<GateCase> {};

}  // namespace

TEST_P(AmdGates, EveryPresetVariantUsesMfmaFitsAndDoesNotSpill) {
  const GateCase gc = GetParam();
  if (auto why = unavailable("clang", gc.arch); !why.empty()) GTEST_SKIP() << why;
  auto preset = load_preset("minimax-m3");
  ASSERT_TRUE(preset.ok()) << preset.error().describe();
  auto arch = load_arch_table(gc.arch);
  ASSERT_TRUE(arch.ok()) << arch.error().describe();
  ASSERT_GT(arch->max_vgprs, 0) << "the arch table must state max_vgprs";
  auto configs = expand_preset(*preset, gc.arch);
  ASSERT_TRUE(configs.ok()) << configs.error().describe();
  TempCache tc;
  KernelBuilder builder(tc.cache);
  const auto t0 = std::chrono::steady_clock::now();
  int mfma_kernels = 0;
  for (const auto& c : *configs) {
    SCOPED_TRACE(std::string(gc.arch) + " " + variant_name(c));
    Built b;
    const bool attention = c.op != Op::merge;
    if (!build_and_inspect(builder, c, "clang", attention, b)) continue;
    const KernelResources& k = b.res;
    const int agprs = std::max(0, k.agprs);
    EXPECT_EQ(k.wavefront_size, 64);
    EXPECT_EQ(k.scratch_bytes, 0) << "private segment (scratch) must be empty";
    EXPECT_EQ(k.vgpr_spills, 0);
    EXPECT_EQ(k.sgpr_spills, 0);
    EXPECT_LE(k.shared_bytes, gc.lds_limit);
    EXPECT_LE(static_cast<std::size_t>(k.shared_bytes), arch->max_shared_bytes);
    EXPECT_EQ(static_cast<std::size_t>(k.shared_bytes), c.shared_bytes()) << "KernelConfig::shared_bytes must mirror struct Shared";
    EXPECT_GT(k.vgprs, 0);
    EXPECT_LE(k.vgprs + agprs, arch->max_vgprs);
    if (attention) {
      ASSERT_NE(b.inspection.disassembly, "") << "no disassembly: " << b.inspection.disassembler;
      const bool mfma = b.inspection.disassembly.find("v_mfma") != std::string::npos;
      EXPECT_TRUE(mfma) << "no v_mfma in the QK/PV products";
      mfma_kernels += mfma;
    }
    std::cout << "[ amd-gate ] " << gc.arch << " | " << std::left << std::setw(40) << variant_name(c) << std::right << " | threads "
              << c.launch.threads << " sub_k " << c.sub_k << " | VGPR " << k.vgprs << " AGPR " << agprs << " SGPR " << k.sgprs
              << " | LDS " << k.shared_bytes << " | scratch " << k.scratch_bytes << " | spills " << k.vgpr_spills << "/"
              << k.sgpr_spills << " | waves/SIMD " << waves_per_simd(k, c, arch->max_shared_bytes) << "\n";
  }
  EXPECT_GT(mfma_kernels, 0);
  std::cout << "[ amd-gate ] " << gc.arch << ": " << configs->size() << " variants in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
}

INSTANTIATE_TEST_SUITE_P(Targets, AmdGates, ::testing::Values(GateCase{"gfx942", 64 * 1024}, GateCase{"gfx950", 160 * 1024}),
                         [](const auto& info) { return std::string(info.param.arch); });

// The same rendered sources through Debian's ROCm 5.2 HIPRTC and the Clang
// backend for gfx90a: the same kernel symbols, the same LDS (a static struct),
// both MFMA, neither scratch; register counts are reported, not required equal
// (two LLVM generations schedule differently).
TEST(AmdGates, Gfx90aHiprtcAndClangAgree) {
  for (const char* backend : {"clang", "hiprtc"})
    if (auto why = unavailable(backend, "gfx90a"); !why.empty()) GTEST_SKIP() << why;
  auto preset = load_preset("minimax-m3");
  ASSERT_TRUE(preset.ok());
  auto arch = load_arch_table("gfx90a");
  ASSERT_TRUE(arch.ok());
  auto configs = expand_preset(*preset, "gfx90a");
  ASSERT_TRUE(configs.ok());
  TempCache tc;
  KernelBuilder builder(tc.cache);
  for (const auto& c : *configs) {
    SCOPED_TRACE("gfx90a " + variant_name(c));
    const bool attention = c.op != Op::merge;
    Built clang, hiprtc;
    if (!build_and_inspect(builder, c, "clang", attention, clang) || !build_and_inspect(builder, c, "hiprtc", attention, hiprtc)) continue;
    auto names = [](const Inspection& i) {
      std::vector<std::string> v;
      for (const auto& k : i.kernels) v.push_back(k.kernel);
      std::sort(v.begin(), v.end());
      return v;
    };
    EXPECT_EQ(names(clang.inspection), names(hiprtc.inspection));
    EXPECT_EQ(clang.res.shared_bytes, hiprtc.res.shared_bytes);
    for (const Built* b : {&clang, &hiprtc}) {
      EXPECT_EQ(b->res.scratch_bytes, 0);
      EXPECT_EQ(b->res.wavefront_size, 64);
      EXPECT_LE(b->res.vgprs + std::max(0, b->res.agprs), arch->max_vgprs);
      if (attention) EXPECT_NE(b->inspection.disassembly.find("v_mfma"), std::string::npos) << "no v_mfma";
    }
    std::cout << "[ amd-gate ] gfx90a | " << std::left << std::setw(40) << variant_name(c) << std::right << " | clang VGPR "
              << clang.res.vgprs << " AGPR " << std::max(0, clang.res.agprs) << " SGPR " << clang.res.sgprs << " | hiprtc VGPR "
              << hiprtc.res.vgprs << " AGPR " << std::max(0, hiprtc.res.agprs) << " SGPR " << hiprtc.res.sgprs << " | LDS "
              << clang.res.shared_bytes << "/" << hiprtc.res.shared_bytes << "\n";
  }
}

// A thread count that is not a whole number of waves cannot drive an MFMA (it
// needs all 64 lanes): such configs take the scalar loops and must still build.
TEST(AmdGates, PartialWaveConfigBuildsWithTheScalarFallback) {
  if (auto why = unavailable("clang", "gfx942"); !why.empty()) GTEST_SKIP() << why;
  KernelConfig c;
  c.op = Op::prefill;
  c.arch = "gfx942";
  c.gqa_group = 8;
  c.sub_k = 32;
  c.launch.threads = 32;
  ASSERT_TRUE(c.validate().ok());
  TempCache tc;
  KernelBuilder builder(tc.cache);
  Built b;
  ASSERT_TRUE(build_and_inspect(builder, c, "clang", true, b));
  EXPECT_EQ(b.inspection.disassembly.find("v_mfma"), std::string::npos);
  EXPECT_EQ(b.res.scratch_bytes, 0);
}
