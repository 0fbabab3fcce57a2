// Compile-only tests of the real generated kernels with the real toolchains:
// every op for every AMD target and sm_90, checked at the ELF level.
#include <gtest/gtest.h>

#include <memory>
#include <span>

#include "arch_table.h"
#include "compiler/registry.h"
#include "inspect.h"
#include "kernel_builder.h"
#include "knobs.h"
#include "ops/config_select.h"
#include "reliability_util.h"
#include "util/elf.h"

using namespace sparsejit;

namespace {

struct Case {
  const char* target;
  const char* backend;
  unsigned machine;  // e_machine
  unsigned mach;     // AMD e_flags & 0xff (EF_AMDGPU_MACH), 0 for NVIDIA
};

unsigned u16_at(const std::vector<std::uint8_t>& b, size_t off) { return b[off] | (b[off + 1] << 8); }
unsigned u32_at(const std::vector<std::uint8_t>& b, size_t off) {
  return b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (unsigned(b[off + 3]) << 24);
}

class KernelCompile : public ::testing::TestWithParam<Case> {};

// A kernel cache in a fresh scratch directory (removed with it), and a builder on it.
struct TempCache {
  testing_util::ScratchDir dir{"kc"};
  std::shared_ptr<KernelCache> cache;  // (declared after dir: it goes first)
  TempCache() {
    CacheSettings settings;
    settings.user_dir = dir.path;
    cache = std::make_shared<KernelCache>(settings);
  }
  KernelBuilder builder() const { return KernelBuilder(cache); }
};

}  // namespace

TEST_P(KernelCompile, EveryOpBuildsAnElfForTheTarget) {
  const Case c = GetParam();
  auto& reg = CompilerRegistry::instance();
  auto backend = reg.by_name(c.backend);
  if (!backend || !backend->available()) GTEST_SKIP() << c.backend << " is not available here: " << (backend ? backend->unavailable_reason() : "not built");
  auto sup = backend->supports(c.target);
  if (!sup.ok) GTEST_SKIP() << c.backend << " cannot build " << c.target << ": " << sup.reason;
  auto compiler = reg.use_policy(backend);
  ASSERT_TRUE(compiler.ok()) << compiler.error().describe();

  TempCache tmp;
  auto arch = load_arch_table(c.target);
  ASSERT_TRUE(arch.ok());
  AttnShape s;
  s.num_heads = 16;
  s.num_kv_heads = 1;
  s.head_dim = 128;
  s.topk = 16;
  std::vector<KernelConfig> configs = {prefill_config(*arch, s), decode_config(*arch, s, 4), merge_config(*arch, 128, DType::bf16, 4)};
  s.kv_dtype = DType::fp8_e4m3fn;
  s.scale_mode = ScaleMode::per_token_head;
  s.head_dim = 256;
  s.num_heads = 8;
  configs.push_back(decode_config(*arch, s, 2));
  for (const auto& config : configs) {
    auto built = tmp.builder().build(config, c.backend);
    ASSERT_TRUE(built.ok()) << built.error().describe();
    const auto& bin = built->object->binary;
    ASSERT_GT(bin.size(), 64u);
    EXPECT_EQ(std::string(bin.begin(), bin.begin() + 4), "\x7f" "ELF");
    EXPECT_EQ(u16_at(bin, 18), c.machine) << config.canonical();
    if (c.mach) EXPECT_EQ(u32_at(bin, 48) & 0xffu, c.mach) << config.canonical();
    const std::string text(bin.begin(), bin.end());
    EXPECT_NE(text.find(config.kernel_name()), std::string::npos) << "kernel symbol missing";
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, KernelCompile,
                         ::testing::Values(Case{"sm_90", "nvrtc", 190, 0}, Case{"gfx942", "clang", 224, 0x4c}, Case{"gfx950", "clang", 224, 0x4f},
                                           Case{"gfx90a", "clang", 224, 0x3f}, Case{"gfx90a", "hiprtc", 224, 0x3f}),
                         [](const auto& info) { return std::string(info.param.target) + "_" + info.param.backend; });

// sm_90 code objects built under SPARSEJIT_EXTRA_FLAGS variants of the template's A/B switches
// (nvrtc; skipped where it is missing).
class KernelCompileSm90 : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& reg = CompilerRegistry::instance();
    auto backend = reg.by_name("nvrtc");
    if (!backend || !backend->available()) GTEST_SKIP() << "nvrtc is not available here: " << (backend ? backend->unavailable_reason() : "not built");
    auto compiler = reg.use_policy(backend);
    ASSERT_TRUE(compiler.ok()) << compiler.error().describe();
    auto table = load_arch_table("sm_90");
    ASSERT_TRUE(table.ok());
    arch = std::make_unique<ArchTable>(*table);
  }
  // The object of `config` built with SPARSEJIT_EXTRA_FLAGS=flags; every one of them has one
  // kernel and no local memory.
  std::string object(const KernelConfig& config, const char* flags) {
    ScopedKnob knob("SPARSEJIT_EXTRA_FLAGS", flags);
    auto built = tmp.builder().build(config, "nvrtc");
    if (!built.ok()) {
      ADD_FAILURE() << config.canonical() << ": " << built.error().describe();
      return {};
    }
    auto ins = inspect_code_object(built->object->binary, "sm_90", false);
    if (!ins.ok()) {
      ADD_FAILURE() << ins.error().describe();
      return {};
    }
    EXPECT_EQ(ins->kernels.size(), 1u) << config.canonical();
    for (const auto& k : ins->kernels) EXPECT_EQ(k.scratch_bytes, 0) << config.canonical();
    return std::string(built->object->binary.begin(), built->object->binary.end());
  }
  // The machine code alone (the kernel's .text section) of that object: NVRTC also emits the
  // template's namespace-scope constants, so a new switch's constant changes the object's data
  // but not the code.
  std::string code(const KernelConfig& config, const char* flags) {
    const std::string obj = object(config, flags);
    auto file = elf::File::parse(std::span<const std::uint8_t>((const std::uint8_t*)obj.data(), obj.size()));
    if (!file.ok()) {
      ADD_FAILURE() << config.canonical() << ": " << file.error().describe();
      return {};
    }
    for (const auto& section : file->sections())
      if (section.name == ".text." + config.kernel_name()) return std::string(section.data.begin(), section.data.end());
    ADD_FAILURE() << config.canonical() << ": no .text." << config.kernel_name();
    return {};
  }
  TempCache tmp;
  std::unique_ptr<ArchTable> arch;
};

// kQRegs (Q's fragments in registers, fp8 decode) is on where the H100 measured it faster: G = 16
// with at most 4 math warps (the base and small launches). There the object differs from the
// -DSJ_Q_REGS=0 build; elsewhere (G < 16, the large launch's 8 math warps) it is that build's,
// byte for byte. kScalesLate (the scalar scales turned into factors only after the request's
// loads; on since the H100 measured it faster) is kQRegs' alone: -DSJ_SCALES_LATE=0 changes
// exactly the kQRegs objects too.
TEST_F(KernelCompileSm90, Fp8DecodeKeepsQInRegistersWhereItPays) {
  struct Case {
    int head_dim, group;
    DecodeLaunch launch;
    bool q_regs;
  };
  for (const Case& c : {Case{128, 16, DecodeLaunch::base, true}, Case{128, 16, DecodeLaunch::small, true}, Case{64, 16, DecodeLaunch::small, true},
                        Case{128, 16, DecodeLaunch::large, false}, Case{128, 8, DecodeLaunch::small, false}, Case{128, 4, DecodeLaunch::base, false}}) {
    AttnShape s;
    s.num_kv_heads = 1;
    s.num_heads = c.group;
    s.head_dim = c.head_dim;
    s.topk = 16;
    s.kv_dtype = DType::fp8_e4m3fn;
    s.scale_mode = ScaleMode::scalar;
    const KernelConfig config = decode_config(*arch, s, c.launch == DecodeLaunch::large ? 1 : 4, c.launch);
    const std::string on = object(config, ""), off = object(config, "-DSJ_Q_REGS=0");
    EXPECT_EQ(on != off, c.q_regs) << config.canonical();
    EXPECT_EQ(on != object(config, "-DSJ_SCALES_LATE=0"), c.q_regs) << config.canonical();
  }
}

// Decode streams a stage's K and V on two completions where the H100 measured it faster: the
// fp8 decode of the large launch (8 math warps, one workgroup per SM) that reads K (and V) from
// the raw bytes copies each warp's own key slice and waits for it alone (kWarpPipe,
// -DSJ_WARP_PIPE), and the tensor-copy launches wait for V on a barrier of its own (kTmaSplitKV,
// -DSJ_TMA_SPLIT_KV). Each flag changes the object exactly there; the other decodes (the fp8
// small, base and huge launches among them) and the prefill are the same bytes either way.
TEST_F(KernelCompileSm90, DecodeWaitsForVApartWherePipelined) {
  enum Flag { none, pipe, tma };
  struct Case {
    DType kv;
    int head_dim;
    bool prefill;
    DecodeLaunch launch;
    Flag changed_by;
  };
  for (const Case& c : {Case{DType::fp8_e4m3fn, 128, false, DecodeLaunch::small, none}, Case{DType::fp8_e4m3fn, 128, false, DecodeLaunch::base, none},
                        Case{DType::fp8_e4m3fn, 128, false, DecodeLaunch::large, pipe}, Case{DType::fp8_e4m3fn, 128, false, DecodeLaunch::huge, none},
                        Case{DType::fp8_e5m2, 64, false, DecodeLaunch::large, pipe}, Case{DType::bf16, 128, false, DecodeLaunch::small, tma},
                        Case{DType::bf16, 128, false, DecodeLaunch::large, tma}, Case{DType::bf16, 128, false, DecodeLaunch::base, none},
                        Case{DType::fp8_e4m3fn, 128, true, DecodeLaunch::base, none}, Case{DType::bf16, 64, true, DecodeLaunch::base, none}}) {
    AttnShape s;
    s.num_kv_heads = 1;
    s.num_heads = 16;
    s.head_dim = c.head_dim;
    s.topk = 16;
    s.kv_dtype = c.kv;
    s.scale_mode = c.kv == DType::bf16 ? ScaleMode::none : ScaleMode::scalar;
    const KernelConfig config = c.prefill ? prefill_config(*arch, s) : decode_config(*arch, s, c.launch == DecodeLaunch::small ? 4 : 1, c.launch);
    const std::string both = object(config, "-DSJ_WARP_PIPE=1 -DSJ_TMA_SPLIT_KV=1");
    EXPECT_EQ(both != object(config, "-DSJ_WARP_PIPE=0 -DSJ_TMA_SPLIT_KV=1"), c.changed_by == pipe) << config.canonical();
    EXPECT_EQ(both != object(config, "-DSJ_WARP_PIPE=1 -DSJ_TMA_SPLIT_KV=0"), c.changed_by == tma) << config.canonical();
  }
}

// Decode's K/V copies, tensor copies and 16-byte copies alike, carry an L2 evict-first policy
// (-DSJ_L2_EVICT_FIRST=0 drops it, for A/B runs): every decode object changes with the switch,
// and no prefill object does (a block there is read by many workgroups).
TEST_F(KernelCompileSm90, DecodeKvCopiesEvictFirstAndPrefillsDoNot) {
  struct Case {
    DType kv;
    bool prefill;
    DecodeLaunch launch;
  };
  for (const Case& c : {Case{DType::bf16, false, DecodeLaunch::small}, Case{DType::bf16, false, DecodeLaunch::large},
                        Case{DType::bf16, false, DecodeLaunch::base}, Case{DType::fp8_e4m3fn, false, DecodeLaunch::small},
                        Case{DType::fp8_e4m3fn, false, DecodeLaunch::large}, Case{DType::bf16, true, DecodeLaunch::base},
                        Case{DType::fp8_e4m3fn, true, DecodeLaunch::base}}) {
    AttnShape s;
    s.num_kv_heads = 1;
    s.num_heads = 16;
    s.head_dim = 128;
    s.topk = 16;
    s.kv_dtype = c.kv;
    s.scale_mode = c.kv == DType::bf16 ? ScaleMode::none : ScaleMode::scalar;
    const KernelConfig config = c.prefill ? prefill_config(*arch, s) : decode_config(*arch, s, c.launch == DecodeLaunch::small ? 4 : 1, c.launch);
    EXPECT_EQ(code(config, "") != code(config, "-DSJ_L2_EVICT_FIRST=0"), !c.prefill) << config.canonical();
  }
}

