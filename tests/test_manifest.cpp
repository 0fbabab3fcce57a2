// The recorded manifest (SPARSEJIT_RECORD) and `sparsejit warm --manifest`:
// several processes appending at once leave a valid deduplicated file, the
// reader dedupes and names bad lines, and warm builds exactly the manifest.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "manifest.h"
#include "ops/config_select.h"

namespace fs = std::filesystem;

namespace sparsejit {
namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/sparsejit-manifest-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Distinct sm_90 configs: prefill and decode over topk, plus merges.
std::vector<KernelConfig> sample_configs(int n) {
  auto arch = load_arch_table("sm_90");
  std::vector<KernelConfig> out;
  for (int i = 0; static_cast<int>(out.size()) < n; ++i) {
    AttnShape s;
    s.num_heads = 16, s.num_kv_heads = 1, s.head_dim = 128, s.topk = 8 + i;
    out.push_back(i % 2 ? decode_config(*arch, s, 1 << (i % 4)) : prefill_config(*arch, s));
  }
  return out;
}

TEST(Manifest, ConcurrentProcessesLeaveOneDeduplicatedValidManifest) {
  TempDir d;
  const std::string path = (d.path / "manifest.jsonl").string();
  const auto configs = sample_configs(12);
  constexpr int kProcs = 6;
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(gate[1]);
      char c;
      while (read(gate[0], &c, 1) > 0) {
      }  // start together: the parent closes the pipe
      // Each process records every config, in its own rotated order, twice.
      int bad = 0;
      for (int round = 0; round < 2; ++round)
        for (std::size_t i = 0; i < configs.size(); ++i)
          bad += !record_config(path, configs[(i + p * 5) % configs.size()]).ok();
      _exit(bad ? 1 : 0);
    }
    kids.push_back(pid);
  }
  close(gate[0]);
  close(gate[1]);
  for (pid_t pid : kids) {
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  const auto lines = lines_of(path);
  EXPECT_EQ(lines.size(), configs.size());  // deduplicated across processes, in the file itself
  std::set<std::string> want, got;
  for (const auto& c : configs) want.insert(c.canonical());
  for (const auto& l : lines) {
    auto j = nlohmann::json::parse(l, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "torn or interleaved line: " << l;
    got.insert(j.dump());
  }
  EXPECT_EQ(got, want);
  auto m = read_manifest(path);
  ASSERT_TRUE(m) << m.error().describe();
  EXPECT_EQ(m->size(), configs.size());
}

TEST(Manifest, ReaderDedupesSkipsBlankLinesAndNamesABadLine) {
  TempDir d;
  const auto configs = sample_configs(3);
  const fs::path good = d.path / "m.jsonl";
  {
    std::ofstream out(good);
    out << configs[0].canonical() << "\n\n" << configs[1].canonical() << "\n" << configs[0].canonical() << "\n"
        << configs[2].canonical();  // no trailing newline
  }
  auto m = read_manifest(good.string());
  ASSERT_TRUE(m) << m.error().describe();
  ASSERT_EQ(m->size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*m)[i].canonical(), configs[i].canonical());

  const fs::path bad = d.path / "bad.jsonl";
  {
    std::ofstream out(bad);
    out << configs[0].canonical() << "\n{\"op\": \"prefill\", \"arch\": \"sm_90\"\n";
  }
  auto e = read_manifest(bad.string());
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find(bad.string() + ":2"), std::string::npos) << e.error().message;

  auto missing = read_manifest((d.path / "nope.jsonl").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.jsonl"), std::string::npos);
}

struct CliResult {
  int exit_code = -1;
  std::string out;
};

CliResult cli(const std::string& env, const std::string& args) {
  const std::string cmd = env + " " + SPARSEJIT_CLI + " " + args + " 2>/dev/null";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return r;
}

bool nvrtc_builds_sm90() {
  auto r = cli("", "archs --json");
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return false;
  for (const auto& row : j)
    if (row.value("target", "") == "sm_90") return row.value("buildable", false);
  return false;
}

TEST(Manifest, WarmManifestCompilesExactlyItsConfigs) {
  if (!nvrtc_builds_sm90()) GTEST_SKIP() << "no toolchain here builds sm_90 (NVRTC missing)";
  TempDir d;
  auto arch = load_arch_table("sm_90");
  ASSERT_TRUE(arch);
  AttnShape s;
  s.num_heads = 8, s.num_kv_heads = 1, s.head_dim = 128, s.topk = 16;
  const std::vector<KernelConfig> configs = {decode_config(*arch, s, 4), merge_config(*arch, 128, DType::bf16, 4)};
  const fs::path manifest = d.path / "manifest.jsonl";
  for (const auto& c : configs) ASSERT_TRUE(record_config(manifest.string(), c));
  {
    std::ofstream out(manifest, std::ios::app);  // a second host's copy, concatenated
    out << configs[0].canonical() << "\n";
  }
  const std::string env = "SPARSEJIT_CACHE_DIR=" + (d.path / "cache").string();
  auto first = cli(env, "warm --manifest " + manifest.string() + " --json");
  ASSERT_EQ(first.exit_code, 0) << first.out;
  auto j = nlohmann::json::parse(first.out);
  EXPECT_EQ(j["kernels"].get<int>(), 2);
  EXPECT_EQ(j["compiled"].get<int>(), 2);
  EXPECT_EQ(j["failed"].get<int>(), 0);
  EXPECT_EQ(j["manifest"].get<std::string>(), manifest.string());

  // The cache holds exactly those configs.
  auto ls = cli(env, "cache ls --json");
  ASSERT_EQ(ls.exit_code, 0) << ls.out;
  std::set<std::string> cached, want;
  for (const auto& row : nlohmann::json::parse(ls.out)) {
    auto c = KernelConfig::from_json(row["config"]);
    ASSERT_TRUE(c) << row.dump();
    cached.insert(c->canonical());
  }
  for (const auto& c : configs) want.insert(c.canonical());
  EXPECT_EQ(cached, want);

  // Idempotent: the second run is all hits (compiling is disabled to prove it).
  auto second = cli(env + " SPARSEJIT_DISABLE_COMPILE=1", "warm --manifest " + manifest.string() + " --json");
  ASSERT_EQ(second.exit_code, 0) << second.out;
  auto j2 = nlohmann::json::parse(second.out);
  EXPECT_EQ(j2["hits"].get<int>(), 2);
  EXPECT_EQ(j2["compiled"].get<int>(), 0);

  auto bad = cli(env, "warm --manifest " + (d.path / "missing.jsonl").string());
  EXPECT_NE(bad.exit_code, 0);
}

}  // namespace
}  // namespace sparsejit
