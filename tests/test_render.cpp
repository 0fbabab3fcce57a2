#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "knobs.h"
#include "preset.h"
#include "render.h"
#include "util/hash.h"

using namespace sparsejit;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/sparsejit-render-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path / name) << text; }
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const fs::path kGolden = fs::path(SPARSEJIT_SOURCE_DIR) / "tests" / "golden";
bool update_golden() { return std::getenv("SPARSEJIT_UPDATE_GOLDEN") != nullptr; }

}  // namespace

TEST(Render, FillsPlaceholdersAndPartials) {
  TempDir d;
  d.write("main.cu", "a={{A}};\n{{> part.cuh}}\nend");
  d.write("part.cuh", "b={{B}};");
  ScopedKnob k("SPARSEJIT_TEMPLATE_DIR", d.path.string());
  auto r = render_template("main.cu", {{"A", "1"}, {"B", "2"}});
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(*r, "a=1;\nb=2;\nend");
}

TEST(Render, UnknownPlaceholderIsAnError) {
  TempDir d;
  d.write("main.cu", "x\ny={{MISSING}};");
  ScopedKnob k("SPARSEJIT_TEMPLATE_DIR", d.path.string());
  auto r = render_template("main.cu", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("MISSING"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("main.cu:2"), std::string::npos) << r.error().message;
}

TEST(Render, UnusedValueIsAnError) {
  TempDir d;
  d.write("main.cu", "a={{A}};");
  ScopedKnob k("SPARSEJIT_TEMPLATE_DIR", d.path.string());
  auto r = render_template("main.cu", {{"A", "1"}, {"EXTRA", "2"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("EXTRA"), std::string::npos);
}

TEST(Render, MalformedAndCyclesAreErrors) {
  TempDir d;
  d.write("bad.cu", "{{lower}}");
  d.write("open.cu", "{{A");
  d.write("cyc1.cu", "{{> cyc2.cu}}");
  d.write("cyc2.cu", "{{> cyc1.cu}}");
  d.write("escape.cu", "{{> ../etc/passwd}}");
  ScopedKnob k("SPARSEJIT_TEMPLATE_DIR", d.path.string());
  EXPECT_FALSE(render_template("bad.cu", {}).ok());
  EXPECT_FALSE(render_template("open.cu", {{"A", "1"}}).ok());
  auto c = render_template("cyc1.cu", {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("cycle"), std::string::npos);
  EXPECT_FALSE(render_template("escape.cu", {}).ok());
  EXPECT_FALSE(render_template("does-not-exist.cu", {}).ok());
}

TEST(Render, KernelSourceIsSelfContainedAndNamesItsConfig) {
  auto p = load_preset("minimax-m3");
  ASSERT_TRUE(p.ok());
  for (const char* arch : {"sm_90", "gfx942"}) {
    auto table = load_arch_table(arch);
    ASSERT_TRUE(table.ok());
    auto cs = expand_preset(*p, arch);
    ASSERT_TRUE(cs.ok());
    for (const auto& c : *cs) {
      auto r = render_kernel(c, *table);
      ASSERT_TRUE(r.ok()) << r.error().describe();
      EXPECT_EQ(r->source.rfind("// sparsejit generated kernel: " + c.kernel_name(), 0), 0u);
      EXPECT_NE(r->source.find("// config: " + c.canonical()), std::string::npos);
      EXPECT_NE(r->source.find("// config-key: " + c.config_key()), std::string::npos);
      EXPECT_EQ(r->source.find("#include"), std::string::npos) << "rendered sources must not need include paths";
      EXPECT_EQ(r->source.find("{{"), std::string::npos);
    }
  }
}

TEST(Render, SharedMemoryBeyondTheArchLimitIsRefused) {
  auto table = load_arch_table("sm_90");
  ASSERT_TRUE(table.ok());
  KernelConfig c;
  c.arch = "sm_90";
  c.head_dim = 256;
  c.gqa_group = 16;
  c.sub_k = 128;
  auto r = render_kernel(c, *table);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("shared memory"), std::string::npos) << r.error().message;
}

// Golden generated kernels: a change to any template shows up here as a diff to review.
// Regenerate with SPARSEJIT_UPDATE_GOLDEN=1 after an intended change.
TEST(Render, GoldenPresetSources) {
  auto p = load_preset("minimax-m3");
  ASSERT_TRUE(p.ok());
  nlohmann::json digests = nlohmann::json::object();
  for (const auto& arch : p->default_archs) {
    auto table = load_arch_table(arch);
    ASSERT_TRUE(table.ok());
    auto cs = expand_preset(*p, arch);
    ASSERT_TRUE(cs.ok());
    for (const auto& c : *cs) {
      auto r = render_kernel(c, *table);
      ASSERT_TRUE(r.ok());
      digests[arch + "/" + c.kernel_name() + "/" + c.config_key()] = sha256_hex(r->source);
      // Full text for one representative of each op and vendor.
      const bool representative = c.gqa_group != 8 && c.kv_dtype == DType::bf16 && (c.op == Op::prefill || c.num_topk_chunks == 4) &&
                                  (arch == std::string("sm_90") || arch == std::string("gfx942"));
      if (!representative) continue;
      const fs::path file = kGolden / (arch + "-" + c.kernel_name() + (c.launch.tma ? "-tma" : "") + ".cu");
      if (update_golden()) std::ofstream(file) << r->source;
      EXPECT_EQ(read_file(file), r->source) << "golden source differs: " << file << " (SPARSEJIT_UPDATE_GOLDEN=1 to accept)";
    }
  }
  const fs::path manifest = kGolden / "minimax-m3-digests.json";
  if (update_golden()) std::ofstream(manifest) << digests.dump(1) << "\n";
  auto expected = nlohmann::json::parse(read_file(manifest), nullptr, false);
  ASSERT_FALSE(expected.is_discarded()) << manifest;
  EXPECT_EQ(expected, digests) << "a generated kernel changed (SPARSEJIT_UPDATE_GOLDEN=1 to accept)";
}
