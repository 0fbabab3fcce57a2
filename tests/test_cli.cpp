// The CLI as users run it, including the steps of the README's main command.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <tuple>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "ops/config_select.h"

namespace fs = std::filesystem;

namespace {

std::string stderr_path() { return "/tmp/sparsejit-cli-stderr-" + std::to_string(getpid()) + ".txt"; }

struct RunResult {
  int exit_code = -1;
  std::string out;
};

// Runs `program` with `env` prefixed; stdout captured, stderr to a file.
RunResult run_program(const std::string& program, const std::string& env, const std::string& args) {
  const std::string cmd = env + " " + program + " " + args + " 2>" + stderr_path();
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

RunResult run_cli(const std::string& env, const std::string& args) { return run_program(SPARSEJIT_CLI, env, args); }

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/sparsejit-cli-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool can_build(const std::string& target) {
  auto r = run_cli("", "archs --json");
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return false;
  for (const auto& row : j)
    if (row.value("target", "") == target) return row.value("buildable", false);
  return false;
}

// A command that must fail: exit code 1 and the message of its --json error ("" otherwise).
std::string cli_error(const std::string& args) {
  auto r = run_cli("", args + " --json");
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (r.exit_code != 1 || j.is_discarded() || !j.contains("error")) return "";
  return j["error"]["message"].get<std::string>();
}

}  // namespace

TEST(Cli, ReadmeHasExactlyTheTwoSetupCommandsAndCiRunsTheTestOne) {
  const std::string readme = read_file(fs::path(SPARSEJIT_SOURCE_DIR) / "README.md");
  EXPECT_NE(readme.find("bash scripts/warm.sh"), std::string::npos);
  EXPECT_NE(readme.find("bash scripts/test.sh"), std::string::npos);
  const std::string ci = read_file(fs::path(SPARSEJIT_SOURCE_DIR) / ".ci" / "run");
  EXPECT_NE(ci.find("bash scripts/test.sh"), std::string::npos);
  const std::string warm = read_file(fs::path(SPARSEJIT_SOURCE_DIR) / "scripts" / "warm.sh");
  EXPECT_NE(warm.find("warm --preset minimax-m3"), std::string::npos);
  // Every knob of the registry is documented in the README.
  for (const char* knob : {"SPARSEJIT_CACHE_DIR", "SPARSEJIT_SYSTEM_CACHE_DIRS", "SPARSEJIT_CACHE", "SPARSEJIT_CACHE_MAX_BYTES",
                           "SPARSEJIT_CACHE_ALLOW_SHARED", "SPARSEJIT_TEMPLATE_DIR", "SPARSEJIT_COMPILE_ISOLATION", "SPARSEJIT_DISABLE_COMPILE",
                           "SPARSEJIT_EXTRA_FLAGS", "SPARSEJIT_HELPER", "SPARSEJIT_CLANG_PLUGIN", "SPARSEJIT_DUMP_DIR"})
    EXPECT_NE(readme.find(knob), std::string::npos) << knob << " is not documented in the README";
}

// Every A/B switch of the NVIDIA template (`#ifndef SJ_X` / `#define SJ_X 0|1`) has a row in the
// README's table with the template's default, and every row names a switch the template has.
TEST(Cli, ReadmeListsEveryTemplateSwitchWithItsDefault) {
  const std::string readme = read_file(fs::path(SPARSEJIT_SOURCE_DIR) / "README.md");
  std::istringstream tpl(read_file(fs::path(SPARSEJIT_SOURCE_DIR) / "templates" / "attention_nv.cu"));
  std::set<std::string> in_template;
  std::string line, pending;
  while (std::getline(tpl, line)) {
    if (line.starts_with("#ifndef SJ_")) {
      pending = line.substr(8);
    } else if (!pending.empty() && line.starts_with("#define " + pending + " ")) {
      const std::string value = line.substr(8 + pending.size() + 1, 1);
      const std::string row = "| `" + pending + "` | " + value + " |";
      EXPECT_NE(readme.find(row), std::string::npos) << "README lacks the row " << row;
      in_template.insert(pending);
      pending.clear();
    } else {
      pending.clear();
    }
  }
  EXPECT_GE(in_template.size(), 8u);
  std::istringstream rows(readme);
  while (std::getline(rows, line))
    if (line.starts_with("| `SJ_")) {
      const std::string name = line.substr(3, line.find('`', 3) - 3);
      EXPECT_TRUE(in_template.count(name)) << "README lists " << name << ", which the template does not define";
    }
}

TEST(Cli, ArchsListsEveryKnownTargetWithBackends) {
  auto r = run_cli("", "archs --json");
  ASSERT_EQ(r.exit_code, 0) << read_file(stderr_path());
  auto j = nlohmann::json::parse(r.out);
  std::set<std::string> targets;
  for (const auto& row : j) {
    targets.insert(row["target"].get<std::string>());
    EXPECT_TRUE(row.contains("backends"));
  }
  for (const char* t : {"sm_90", "sm_80", "gfx942", "gfx950", "gfx90a"}) EXPECT_TRUE(targets.count(t)) << t;
}

TEST(Cli, EmitPrintsTheSourceAndRejectsBadShapes) {
  auto r = run_cli("", "emit --op decode --arch sm_90 --head-dim 128 --topk 16 --gqa-group 8 --chunks 4");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("// sparsejit generated kernel: sparsejit_decode for sm_90", 0), 0u);
  EXPECT_NE(r.out.find("\"num_topk_chunks\":4"), std::string::npos);
  auto bad = run_cli("", "emit --op prefill --arch sm_90 --head-dim 100 --json");
  EXPECT_NE(bad.exit_code, 0);
  auto j = nlohmann::json::parse(bad.out);
  EXPECT_NE(j["error"]["message"].get<std::string>().find("head_dim = 100"), std::string::npos);
  auto unknown = run_cli("", "emit --op prefill --arch tpu_v5");
  EXPECT_NE(unknown.exit_code, 0);
  // --launch picks the arch table's size-dependent decode launches (what the runtime takes for
  // few or many workgroups): sm_90's small one has a producer warp and 128-key sub-tiles.
  auto small = run_cli("", "emit --op decode --arch sm_90 --chunks 16 --launch small_batch");
  ASSERT_EQ(small.exit_code, 0) << small.out;
  EXPECT_NE(small.out.find("\"threads\":160,\"tma\":true"), std::string::npos) << small.out.substr(0, 600);
  EXPECT_NE(small.out.find("\"sub_k\":128"), std::string::npos);
  auto large = run_cli("", "emit --op decode --arch sm_90 --launch large_batch");
  ASSERT_EQ(large.exit_code, 0);
  EXPECT_NE(large.out.find("\"threads\":288,\"tma\":true"), std::string::npos) << large.out.substr(0, 600);
  auto base = run_cli("", "emit --op decode --arch sm_90 --chunks 16");
  ASSERT_EQ(base.exit_code, 0);
  EXPECT_EQ(base.out.find("\"tma\":true"), std::string::npos);
  EXPECT_NE(cli_error("emit --op prefill --arch sm_90 --launch small_batch").find("--launch small_batch applies to --op decode only"),
            std::string::npos);
  auto bogus = run_cli("", "emit --op decode --arch sm_90 --launch huge");
  EXPECT_NE(bogus.exit_code, 0);
}

// plan: the runtime's choice for every total_q, in contiguous ranges from 1 with no end, as
// decode_chunks and decode_launch make it; each row's config is the one decode_config builds.
TEST(Cli, PlanShowsWhatDecodePicksForEveryTotalQ) {
  auto table = sparsejit::load_arch_table("sm_90");
  ASSERT_TRUE(table.ok());
  for (const auto& [heads, kv_heads, kv] : {std::tuple<int, int, std::string>{16, 1, "bf16"}, {64, 4, "fp8_e4m3fn"}, {8, 1, "bf16"}}) {
    const std::string args = "plan --json --arch sm_90 --num-heads " + std::to_string(heads) + " --num-kv-heads " + std::to_string(kv_heads) +
                             " --kv-dtype " + kv + (kv == "bf16" ? "" : " --scale-mode scalar");
    auto r = run_cli("", args);
    ASSERT_EQ(r.exit_code, 0) << args << ": " << read_file(stderr_path());
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["shape"]["gqa_group"], heads / kv_heads);
    const auto& rows = j["decode"];
    ASSERT_GE(rows.size(), 3u);
    sparsejit::AttnShape s;
    s.num_heads = heads, s.num_kv_heads = kv_heads, s.head_dim = 128, s.topk = 16;
    s.kv_dtype = kv == "bf16" ? sparsejit::DType::bf16 : sparsejit::DType::fp8_e4m3fn;
    s.scale_mode = kv == "bf16" ? sparsejit::ScaleMode::none : sparsejit::ScaleMode::scalar;
    std::int64_t next = 1;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& row = rows[i];
      ASSERT_EQ(row["first_total_q"].get<std::int64_t>(), next) << row;
      const bool last = i + 1 == rows.size();
      ASSERT_EQ(row["last_total_q"].is_null(), last) << row;
      const std::int64_t end = last ? next + 300 : row["last_total_q"].get<std::int64_t>();
      const int chunks = row["chunks"];
      for (std::int64_t t = next; t <= end; ++t) {
        ASSERT_EQ(sparsejit::decode_chunks(*table, t, kv_heads, 16), chunks) << args << " total_q " << t;
        ASSERT_EQ(sparsejit::to_string(sparsejit::decode_launch(*table, t, kv_heads, chunks, 16)), row["launch"].get<std::string>())
            << args << " total_q " << t;
      }
      EXPECT_EQ(row["entries_per_chunk"].get<int>(), (16 + chunks - 1) / chunks);
      EXPECT_EQ(row["first_workgroups"].get<std::int64_t>(), next * kv_heads * chunks);
      for (auto l : {sparsejit::DecodeLaunch::base, sparsejit::DecodeLaunch::small, sparsejit::DecodeLaunch::large, sparsejit::DecodeLaunch::huge})
        if (row["launch"] == sparsejit::to_string(l))
          EXPECT_EQ(row["kernel"]["config_key"], sparsejit::decode_config(*table, s, chunks, l).config_key()) << row;
      EXPECT_EQ(row.contains("merge_kernel"), row["merge"] == "kernel") << row;
      next = end + 1;
    }
    // sm_90's split-K rule: 8 requests of one kv head take 8 two-entry chunks on the small launch.
    if (kv_heads == 1) {
      bool seen = false;
      for (const auto& row : rows)
        if (row["first_total_q"].get<int>() <= 8 && (row["last_total_q"].is_null() || row["last_total_q"].get<int>() >= 8)) {
          EXPECT_EQ(row["chunks"], 8);
          EXPECT_EQ(row["launch"], "small_batch");
          seen = true;
        }
      EXPECT_TRUE(seen);
    }
  }
  // The text form, and bad shapes named by their flags.
  auto text = run_cli("", "plan --arch sm_90 --num-heads 16 --num-kv-heads 1");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("sm_90: 16 query heads, 1 kv head (G 16)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("256+"), std::string::npos) << text.out;
  // bf16's huge launch does not fit two workgroups per SM on sm_90: it runs large's config, and says so.
  EXPECT_NE(text.out.find("huge_batch*"), std::string::npos) << text.out;
  auto fp8 = nlohmann::json::parse(run_cli("", "plan --json --arch sm_90 --kv-dtype fp8_e4m3fn --scale-mode scalar").out);
  EXPECT_EQ(fp8["decode"].back()["launch"], "huge_batch");
  EXPECT_EQ(fp8["decode"].back()["launch_config"], "huge_batch");
  EXPECT_EQ(fp8["decode"].back()["kernel"]["min_blocks"], 2);
  EXPECT_NE(cli_error("plan --arch sm_90 --num-heads 12 --num-kv-heads 8").find("--num-heads 12 must be a multiple of --num-kv-heads 8"),
            std::string::npos);
  EXPECT_NE(cli_error("plan --arch sm_90 --num-heads 64 --num-kv-heads 2").find("32 query heads per kv head"), std::string::npos);
  EXPECT_NE(cli_error("plan --arch sm_90 --kv-dtype int4").find("--kv-dtype int4 is invalid"), std::string::npos);
  EXPECT_NE(run_cli("", "plan --arch sm_90 --topk 0").exit_code, 0);
  EXPECT_NE(run_cli("", "plan --num-heads 8").exit_code, 0);  // --arch is required
}

// The benchmark's --batches picks decode's batch sizes (to time where `plan`'s ranges change);
// --gen-only writes the cases without a GPU. A bad list is refused by name.
TEST(Cli, BenchBatchesChooseTheDecodeCases) {
  TempDir t;
  const std::string out = (t.path / "cases.jsonl").string();
  auto r = run_program(SPARSEJIT_BENCH, "", "--gen-only --batches 2,5 --filter tp4_corr_B --dump-dir " + (t.path / "dump").string() + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << read_file(stderr_path());
  std::set<std::string> names;
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);) names.insert(nlohmann::json::parse(line)["name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"decode_tp4_corr_B2_S8192", "decode_tp4_corr_B5_S8192", "decode_tp4_corr_B2_S32768",
                                          "decode_tp4_corr_B5_S32768", "decode_tp4_corr_B16_Sragged"}));
  for (const char* bad : {"0,3", "3,,4", "x", "5000", ""}) {
    auto b = run_program(SPARSEJIT_BENCH, "", std::string("--gen-only --batches '") + bad + "'");
    EXPECT_EQ(b.exit_code, 1) << bad;
    EXPECT_NE(read_file(stderr_path()).find("--batches"), std::string::npos) << bad;
  }
}

// --kv-head-split (an experiment: the one kv head as S that all read it) takes 1..16; anything else is refused by name.
TEST(Cli, BenchKvHeadSplitIsCheckedByName) {
  TempDir t;
  auto ok = run_program(SPARSEJIT_BENCH, "", "--gen-only --kv-head-split 2 --filter tp4_corr_B1_S8192 --dump-dir " + (t.path / "dump").string() +
                                                 " --out " + (t.path / "cases.jsonl").string());
  EXPECT_EQ(ok.exit_code, 0) << read_file(stderr_path());
  for (const char* bad : {"0", "17", "2x", "-1", "''"}) {
    auto b = run_program(SPARSEJIT_BENCH, "", std::string("--gen-only --kv-head-split ") + bad);
    EXPECT_EQ(b.exit_code, 1) << bad;
    EXPECT_NE(read_file(stderr_path()).find("--kv-head-split"), std::string::npos) << bad;
  }
}

// The README's main command, step by step, for one NVIDIA and one AMD target.
TEST(Cli, WarmIsIdempotentAndVerifyCatchesCorruption) {
  std::string archs;
  for (const char* t : {"sm_90", "gfx942"})
    if (can_build(t)) archs += std::string(archs.empty() ? "" : ",") + t;
  if (archs.empty()) GTEST_SKIP() << "no toolchain here builds sm_90 or gfx942";
  TempDir d;
  const std::string env = "SPARSEJIT_CACHE_DIR=" + d.path.string();
  auto first = run_cli(env, "warm --preset minimax-m3 --arch " + archs + " -j 2 --json");
  ASSERT_EQ(first.exit_code, 0) << first.out << read_file(stderr_path());
  auto j1 = nlohmann::json::parse(first.out);
  const int n = j1["kernels"].get<int>();
  EXPECT_GT(n, 0);
  EXPECT_EQ(j1["compiled"].get<int>(), n);
  EXPECT_EQ(j1["hits"].get<int>(), 0);
  EXPECT_EQ(j1["failed"].get<int>(), 0);

  // Second run: all hits, and it must not compile anything (compiles are disabled to prove it).
  auto second = run_cli(env + " SPARSEJIT_DISABLE_COMPILE=1", "warm --preset minimax-m3 --arch " + archs + " --json");
  ASSERT_EQ(second.exit_code, 0) << second.out;
  auto j2 = nlohmann::json::parse(second.out);
  EXPECT_EQ(j2["hits"].get<int>(), n);
  EXPECT_EQ(j2["compiled"].get<int>(), 0);

  auto status = run_cli(env, "cache status --json");
  ASSERT_EQ(status.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(status.out)["entries"].get<int>(), n);
  auto ok = run_cli(env, "cache verify");
  EXPECT_EQ(ok.exit_code, 0) << ok.out;

  // Flip a byte in the middle of one entry: verify names it and fails.
  fs::path victim;
  for (const auto& e : fs::recursive_directory_iterator(d.path))
    if (e.path().extension() == ".bin") victim = e.path();
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(victim) / 2));
    char c;
    f.seekg(static_cast<std::streamoff>(fs::file_size(victim) / 2));
    f.get(c);
    f.seekp(static_cast<std::streamoff>(fs::file_size(victim) / 2));
    f.put(static_cast<char>(c ^ 0x5a));
  }
  auto badv = run_cli(env, "cache verify");
  EXPECT_NE(badv.exit_code, 0);
  EXPECT_NE(badv.out.find(victim.stem().string()), std::string::npos) << badv.out;

  // The next warm rebuilds exactly that entry.
  auto third = run_cli(env, "warm --preset minimax-m3 --arch " + archs + " --json");
  ASSERT_EQ(third.exit_code, 0) << third.out;
  auto j3 = nlohmann::json::parse(third.out);
  EXPECT_EQ(j3["compiled"].get<int>(), 1);
  EXPECT_EQ(j3["hits"].get<int>(), n - 1);
  EXPECT_EQ(run_cli(env, "cache verify").exit_code, 0);
}

TEST(Cli, CompileWritesACodeObject) {
  if (!can_build("sm_90")) GTEST_SKIP() << "NVRTC cannot build sm_90 here";
  TempDir d;
  const fs::path out = d.path / "k.cubin";
  auto r = run_cli("SPARSEJIT_CACHE_DIR=" + d.path.string(), "compile --op merge --arch sm_90 --chunks 4 -o " + out.string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << read_file(stderr_path());
  const std::string bytes = read_file(out);
  ASSERT_GT(bytes.size(), 4u);
  EXPECT_EQ(bytes.substr(0, 4), "\x7f" "ELF");
}

// inspect names what it built: the sm_90 prefill is built for sm_90a (wgmma), and the launch's
// dynamic shared memory (the pipelined template declares none statically).
TEST(Cli, InspectNamesTheCompileTargetAndDynamicSharedMemory) {
  if (!can_build("sm_90")) GTEST_SKIP() << "NVRTC cannot build sm_90 here";
  TempDir d;
  const std::string env = "SPARSEJIT_CACHE_DIR=" + d.path.string();
  auto r = run_cli(env, "inspect --op prefill --arch sm_90 --head-dim 128 --topk 16 --gqa-group 16 --no-disassembly --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << read_file(stderr_path());
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["compile_target"], "sm_90a");
  EXPECT_EQ(j["config"]["launch"]["wgmma"], true);
  EXPECT_GT(j["dynamic_shared_bytes"].get<long>(), 48 * 1024);
  auto text = run_cli(env, "inspect --op prefill --arch sm_90 --head-dim 128 --topk 16 --gqa-group 16 --no-disassembly");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("built for sm_90a (wgmma)"), std::string::npos) << text.out;
  // Decode keeps mma.sync and its target.
  auto dec = run_cli(env, "inspect --op decode --arch sm_90 --head-dim 128 --topk 16 --gqa-group 16 --chunks 2 --no-disassembly --json");
  ASSERT_EQ(dec.exit_code, 0) << dec.out;
  EXPECT_EQ(nlohmann::json::parse(dec.out)["compile_target"], "sm_90");
  // The large decode launch says which warp produces (tensor copies) and how many multiply.
  const std::string cfg = (d.path / "tma.json").string();
  std::ofstream(cfg) << R"({"arch":"sm_90","gqa_group":16,"head_dim":128,"kv_dtype":"bf16","launch":{"cluster":1,"min_blocks":1,)"
                        R"("stages":2,"threads":288,"tma":true,"waves_per_eu":1},"num_topk_chunks":1,"op":"decode","q_dtype":"bf16",)"
                        R"("q_tile":1,"scale_mode":"none","sub_k":128,"template":"attention_nv.cu","topk":16})";
  auto tma = run_cli(env, "inspect --config " + cfg + " --no-disassembly");
  ASSERT_EQ(tma.exit_code, 0) << tma.out << read_file(stderr_path());
  EXPECT_NE(tma.out.find("K/V by tensor copies (TMA): warp 8 produces, 8 warps multiply"), std::string::npos) << tma.out;
}
