// Reliability of the cache and the build pipeline under load, crashes,
// corruption, environment faults, upgrades and compiler faults (issue 4).
// Every test is bounded; SPARSEJIT_SOAK=1 (x10) or =N (xN) makes it a soak.
// Figures are printed as "[ figures ] ..." lines (docs/RELIABILITY.md).
// test_cache.cpp and test_compilers.cpp hold the single-fault unit tests;
// these add the concurrent, randomized and real-environment versions.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "arch_table.h"
#include "cache/disk_store.h"
#include "cache/entry_format.h"
#include "cache/kernel_cache.h"
#include "compiler/compiler.h"
#include "compiler/registry.h"
#include "kernel_builder.h"
#include "knobs.h"
#include "ops/config_select.h"
#include "reliability_util.h"
#include "util/fs.h"
#include "util/hash.h"

namespace sparsejit {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;
using testing_util::ChildResult;
using testing_util::ScratchDir;
using testing_util::run_in_child;
using testing_util::soak_factor;

CacheSettings settings_for(const std::string& dir) {
  CacheSettings s;
  s.user_dir = dir;
  return s;
}

CacheKey fake_key(const std::string& name, const std::string& compiler_version = "fake-1.0") {
  return make_cache_key("source of " + name, "fake", compiler_version, "sm_90", {"-arch=sm_90"}, {});
}

// Deterministic bytes for a key: a wrong or torn entry can never look right.
std::vector<std::uint8_t> payload_for(const std::string& name, std::size_t bytes) {
  std::vector<std::uint8_t> out(bytes);
  std::mt19937_64 rng(std::hash<std::string>{}(name));
  for (std::size_t i = 0; i < bytes; i += 8) {
    std::uint64_t v = rng();
    for (std::size_t b = 0; b < 8 && i + b < bytes; ++b) out[i + b] = static_cast<std::uint8_t>(v >> (8 * b));
  }
  return out;
}

std::function<Result<CodeObject>()> fake_compile(std::vector<std::uint8_t> bytes, std::atomic<int>* calls = nullptr) {
  return [bytes = std::move(bytes), calls]() -> Result<CodeObject> {
    if (calls) ++*calls;
    CodeObject c;
    c.binary = bytes;
    c.log = "fake compile";
    return c;
  };
}

const nlohmann::json kSidecar = {{"config", {{"op", "reliability"}}}};

int count_files(const std::string& dir, const std::function<bool(const std::string&)>& pred) {
  int n = 0;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec))
    if ((it->is_regular_file(ec) || it->is_symlink(ec)) && pred(it->path().filename().string())) ++n;
  return n;
}
int count_suffix(const std::string& dir, const std::string& s) {
  return count_files(dir, [&](const std::string& n) { return fs::ends_with(n, s); });
}
int count_temps(const std::string& dir) {
  return count_files(dir, [](const std::string& n) { return fs::starts_with(n, fs::kTempPrefix); });
}
// Sidecars whose entry is missing.
int count_orphan_sidecars(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    auto p = it->path();
    if (p.extension() == ".json" && p.parent_path().filename() != "quarantine" &&
        !stdfs::exists(p.parent_path() / (p.stem().string() + ".bin")))
      ++n;
  }
  return n;
}

bool is_memory_only(const KernelCache& c) { return c.status().mode.rfind("memory-only (", 0) == 0; }

// ------------------------------------------------------------------ real kernels

std::shared_ptr<const Compiler> nvrtc_or_null(std::string* why) {
  auto nvrtc = CompilerRegistry::instance().by_name("nvrtc");
  if (!nvrtc || !nvrtc->available()) {
    *why = nvrtc ? nvrtc->unavailable_reason() : "not built";
    return nullptr;
  }
  if (auto s = nvrtc->supports("sm_90"); !s.ok) {
    *why = s.reason;
    return nullptr;
  }
  return nvrtc;
}

// Six distinct real sm_90 kernels: prefill, decode and merge for two TP shapes.
std::vector<KernelConfig> six_sm90_configs() {
  auto arch = load_arch_table("sm_90");
  EXPECT_TRUE(arch.ok());
  std::vector<KernelConfig> out;
  for (std::int64_t heads : {16, 8}) {
    AttnShape s;
    s.num_heads = heads;
    s.num_kv_heads = 1;
    s.head_dim = 128;
    s.topk = 16;
    int chunks = heads == 16 ? 4 : 2;
    out.push_back(prefill_config(*arch, s));
    out.push_back(decode_config(*arch, s, chunks));
    out.push_back(merge_config(*arch, 128, DType::bf16, chunks));
  }
  return out;
}

struct BuildRecord {
  std::string key;
  std::string digest;
  CacheOrigin origin;
};

// `threads` threads of this process build every config `rounds` times (each
// thread starting at a different config). Returns false on any failed request.
bool build_all_concurrently(KernelBuilder& builder, const std::vector<KernelConfig>& configs, int threads, int rounds,
                            std::vector<BuildRecord>* records, std::string* first_error) {
  std::mutex mu;
  std::atomic<bool> ok{true};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int r = 0; r < rounds; ++r) {
        for (std::size_t i = 0; i < configs.size(); ++i) {
          const auto& config = configs[(i + static_cast<std::size_t>(t)) % configs.size()];
          auto built = builder.build(config, "nvrtc");
          std::lock_guard<std::mutex> g(mu);
          if (!built.ok() || built->object->binary.size() < 64 ||
              std::string(built->object->binary.begin(), built->object->binary.begin() + 4) != "\x7f" "ELF") {
            if (ok.exchange(false) && first_error)
              *first_error = built.ok() ? "not an ELF code object" : built.error().describe();
            continue;
          }
          const auto& bin = built->object->binary;
          records->push_back({built->key, sha256_hex(bin.data(), bin.size()), built->origin});
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return ok;
}

// N processes x M threads on one empty cache dir, requesting the same six real
// kernels at once: every request served, each key compiled exactly once across
// all processes, identical bytes everywhere, verify clean, nothing left over.
TEST(ReliabilityStress, ProcessesTimesThreadsCompileEachKeyOnce) {
  std::string why;
  if (!nvrtc_or_null(&why)) GTEST_SKIP() << "NVRTC is not available here: " << why;
  const int procs = 16, threads = 4, rounds = soak_factor();
  const auto configs = six_sm90_configs();
  std::set<std::string> distinct;
  for (const auto& c : configs) distinct.insert(c.canonical());
  ASSERT_EQ(distinct.size(), 6u);

  ScratchDir t("stress");
  const std::string dir = t.sub("cache");  // does not exist yet: a cold, empty cache
  const std::string results = t.sub("results.txt");
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(go[1]);
      char ch;
      (void)::read(go[0], &ch, 1);  // all start together when the parent closes the pipe
      ::alarm(600);
      KernelBuilder builder(std::make_shared<KernelCache>(settings_for(dir)));
      std::vector<BuildRecord> recs;
      std::string err;
      bool ok = build_all_concurrently(builder, configs, threads, rounds, &recs, &err);
      std::string text;
      for (const auto& r : recs) text += r.key + " " + r.digest + " " + to_string(r.origin) + "\n";
      if (!ok) text += "ERROR " + err + "\n";
      int fd = ::open(results.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      (void)fs::write_all(fd, text.data(), text.size());  // one append per process
      ::close(fd);
      ::_exit(ok ? 0 : 1);
    }
    kids.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);
  int failed = 0;
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) ++failed;
  }
  const double seconds = testing_util::seconds_since(t0);
  std::string text = testing_util::read_text(results);
  EXPECT_EQ(failed, 0) << text.substr(text.find("ERROR") == std::string::npos ? 0 : text.find("ERROR"), 2000);

  std::map<std::string, int> compiles;
  std::map<std::string, std::set<std::string>> digests;
  int served = 0;
  std::istringstream in(text);
  for (std::string key, digest, origin; in >> key >> digest >> origin;) {
    ++served;
    digests[key].insert(digest);
    if (origin == "compiled") ++compiles[key];
  }
  EXPECT_EQ(served, procs * threads * rounds * 6) << "every request must be served";
  EXPECT_EQ(digests.size(), 6u);
  for (const auto& [key, d] : digests) {
    EXPECT_EQ(d.size(), 1u) << key << " served different bytes";
    EXPECT_EQ(compiles[key], 1) << key << " compiled " << compiles[key] << " times across processes";
  }
  KernelCache c(settings_for(dir));
  auto v = c.verify(false);
  EXPECT_EQ(v.checked, 6);
  EXPECT_TRUE(v.bad.empty()) << v.bad.front();
  EXPECT_EQ(count_suffix(dir, ".bin"), 6);
  EXPECT_EQ(count_suffix(dir, ".json"), 6);
  EXPECT_EQ(count_suffix(dir, ".lock"), 0) << "lock files left behind";
  EXPECT_EQ(count_temps(dir), 0) << "temp files left behind";
  EXPECT_FALSE(stdfs::exists(dir + "/quarantine"));
  std::printf("[ figures ] stress: %d processes x %d threads x %d rounds x 6 sm_90 kernels: %d requests served, "
              "%zu compiles, %.1f s\n",
              procs, threads, rounds, served, compiles.size(), seconds);
}

// One KernelBuilder + KernelCache shared by many threads building different
// shapes while others read status/list/find/verify (run under TSan in
// scripts/test-sanitizers.sh).
TEST(ReliabilityThreads, OneBuilderManyThreadsDifferentShapes) {
  std::string why;
  if (!nvrtc_or_null(&why)) GTEST_SKIP() << "NVRTC is not available here: " << why;
  ScratchDir t("threads");
  auto cache = std::make_shared<KernelCache>(settings_for(t.sub("cache")));
  KernelBuilder builder(cache);
  const auto configs = six_sm90_configs();
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!stop) {
      (void)cache->status();
      for (const auto& e : cache->list()) (void)cache->find(e.key);
      (void)cache->verify(false);
      ++reads;
      std::this_thread::sleep_for(1ms);
    }
  });
  std::vector<BuildRecord> recs;
  std::string err;
  const int threads = 8, rounds = 3 * soak_factor();
  bool ok = build_all_concurrently(builder, configs, threads, rounds, &recs, &err);
  stop = true;
  reader.join();
  ASSERT_TRUE(ok) << err;
  EXPECT_EQ(recs.size(), static_cast<std::size_t>(threads * rounds * 6));
  std::map<std::string, std::set<std::string>> digests;
  int compiled = 0;
  for (const auto& r : recs) {
    digests[r.key].insert(r.digest);
    compiled += r.origin == CacheOrigin::compiled;
  }
  EXPECT_EQ(digests.size(), 6u);
  for (const auto& [k, d] : digests) EXPECT_EQ(d.size(), 1u) << k;
  EXPECT_EQ(compiled, 6);
  EXPECT_TRUE(cache->verify(false).bad.empty());
  std::printf("[ figures ] threads: %d threads x %d rounds x 6 shapes on one builder, %d concurrent reader passes\n",
              threads, rounds, reads.load());
}

// ------------------------------------------------------------------ crash consistency

// Children loop get_or_build over a pool of keys with large payloads and a
// small size cap (so writes, evictions and quarantines all happen) and are
// killed with SIGKILL at random points. Afterwards nothing torn is ever
// served, verify finds no bad entry (only leftovers, which fix cleans) and
// every key is served again with its exact bytes.
TEST(ReliabilityCrash, KillNineWhileWritingNeverServesTornEntries) {
  ScratchDir t("crash");
  const std::string dir = t.sub("cache");
  constexpr int kKeys = 48;
  auto size_of = [](int i) { return std::size_t(64 << 10) + std::size_t(i % 8) * (96 << 10); };  // 64 KiB .. 736 KiB
  std::vector<CacheKey> keys;
  std::vector<std::vector<std::uint8_t>> payloads;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(fake_key("crash-" + std::to_string(i)));
    payloads.push_back(payload_for("crash-" + std::to_string(i), size_of(i)));
  }
  CacheSettings settings = settings_for(dir);
  settings.max_bytes = 6u << 20;  // about a third of the pool: eviction runs all the time

  // Shared counters: requests served and compiles done by all children.
  auto* shared = static_cast<std::atomic<long>*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  new (&shared[0]) std::atomic<long>(0);
  new (&shared[1]) std::atomic<long>(0);
  new (&shared[2]) std::atomic<long>(0);  // wrong payload served (must stay 0)

  const double budget_s = 20.0 * soak_factor();
  const int max_kills = 400 * soak_factor();
  std::mt19937 rng(12345);
  int kills = 0, rounds = 0, early_exits = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (testing_util::seconds_since(t0) < budget_s && kills < max_kills) {
    ++rounds;
    pid_t kid[2];
    for (int k = 0; k < 2; ++k) {
      kid[k] = ::fork();
      ASSERT_GE(kid[k], 0);
      if (kid[k] == 0) {
        ::alarm(30);
        std::mt19937 r(static_cast<unsigned>(::getpid()) * 2654435761u);
        std::optional<KernelCache> c;
        c.emplace(settings);
        for (;;) {
          int i = static_cast<int>(r() % kKeys);
          auto got = c->get_or_build(keys[i], kSidecar, [&]() -> Result<CodeObject> {
            ++shared[1];
            CodeObject co;
            co.binary = payloads[i];
            return co;
          });
          if (!got.ok()) ::_exit(4);
          if (got->object->binary != payloads[i]) {
            ++shared[2];
            ::_exit(3);
          }
          ++shared[0];
          if (r() % 16 == 0) c->prune(settings.max_bytes / 2);
          if (r() % 32 == 0) (void)c->verify(true);
          if (r() % 4 == 0) {  // a fresh memory tier: the next requests read back from disk
            c.reset();
            c.emplace(settings);
          }
        }
      }
    }
    std::uniform_int_distribution<int> delay_us(500, 40000);
    for (int k = 0; k < 2; ++k) {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
      ::kill(kid[k], SIGKILL);
    }
    for (int k = 0; k < 2; ++k) {
      int status = 0;
      ASSERT_EQ(::waitpid(kid[k], &status, 0), kid[k]);
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ++kills;
      else ++early_exits;
    }
  }
  const double kill_seconds = testing_util::seconds_since(t0);
  EXPECT_EQ(shared[2].load(), 0) << "a child was served a wrong or torn payload";
  EXPECT_EQ(early_exits, 0) << "children must only die by SIGKILL (exit 3: wrong payload, 4: request failed)";
  EXPECT_GE(kills, 50) << "too few kills to mean anything";

  {
    KernelCache c(settings);
    // Nothing torn is ever served: each key is either absent or exact.
    int present = 0;
    for (int i = 0; i < kKeys; ++i) {
      auto obj = c.find(keys[i].hex);
      if (!obj) continue;
      ++present;
      EXPECT_EQ(obj->binary, payloads[i]) << "key " << i << " served wrong bytes after crashes";
    }
    // A crash leaves leftovers (temp files, orphaned sidecars, lock files), never a bad entry.
    auto before = c.verify(false);
    EXPECT_TRUE(before.bad.empty()) << before.bad.front();
    // A young temp file may belong to a live writer: neither eviction nor fix touches it...
    const int temps = count_temps(dir);
    c.prune(~0ull);
    EXPECT_EQ(count_temps(dir), temps);
    auto first_fix = c.verify(true);
    for (const auto& cl : first_fix.cleaned) EXPECT_EQ(cl.find("stale temp"), std::string::npos) << cl;
    EXPECT_EQ(count_temps(dir), temps);
    // ...and the next write reclaims it once it is old enough (backdated
    // instead of waiting a minute), without anyone running verify.
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
         it.increment(ec))
      if (fs::starts_with(it->path().filename().string(), fs::kTempPrefix)) {
        struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
        ::utimensat(AT_FDCWD, it->path().c_str(), old, AT_SYMLINK_NOFOLLOW);
      }
    ASSERT_TRUE(c.get_or_build(fake_key("sweep-trigger"), kSidecar, fake_compile(payload_for("t", 100))).ok());
    EXPECT_EQ(count_temps(dir), 0) << "stale temp files of killed writers are never reclaimed";
    auto fix = c.verify(true);
    EXPECT_EQ(count_suffix(dir, ".lock"), 0);
    EXPECT_EQ(count_orphan_sidecars(dir), 0);
    auto after = c.verify(false);
    EXPECT_TRUE(after.bad.empty());
    EXPECT_TRUE(after.cleaned.empty());

    // The next request rebuilds what is missing and serves exact bytes (a
    // fresh process without the cap, so the count is exact).
    DiskStore store(dir, true, false);
    int on_disk = 0;
    for (const auto& k : keys) on_disk += stdfs::exists(store.entry_path(k.hex));
    KernelCache next(settings_for(dir));
    std::atomic<int> calls{0};
    for (int i = 0; i < kKeys; ++i) {
      auto r = next.get_or_build(keys[i], kSidecar, fake_compile(payloads[i], &calls));
      ASSERT_TRUE(r.ok()) << r.error().describe();
      EXPECT_EQ(r->object->binary, payloads[i]);
    }
    EXPECT_EQ(calls.load(), kKeys - on_disk);
    std::printf("[ figures ] crash: %d SIGKILLs in %d rounds of 2 writers over %.1f s; %ld requests served, %ld "
                "compiles stored; afterwards %d/%d keys intact, %d temp files (%zu+%zu leftovers cleaned), 0 torn\n",
                kills, rounds, kill_seconds, shared[0].load(), shared[1].load(), present, kKeys, temps,
                first_fix.cleaned.size(), fix.cleaned.size());
  }
  ::munmap(shared, 4096);
}

// ------------------------------------------------------------------ clear racing writers

// `cache clear` loops in this process while two others build the same keys
// and a third reads them lock-free: clear removes each key under its lock, as
// writers hold it from their sidecar to their entry, so nobody ever meets an
// entry without its sidecar (a builder would call it bad, move it aside and
// rebuild it) and every request gets its exact bytes.
TEST(ReliabilityClear, ClearRacingWritersNeverLeavesHalfEntries) {
  ScratchDir t("clear");
  const std::string dir = t.sub("cache");
  constexpr int kKeys = 8;
  std::vector<CacheKey> keys;
  std::vector<std::vector<std::uint8_t>> payloads;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(fake_key("clear-" + std::to_string(i)));
    payloads.push_back(payload_for("clear-" + std::to_string(i), 16 << 10));
  }
  const CacheSettings settings = settings_for(dir);
  // Requests served, compiles, wrong bytes served, half entries the reader met.
  auto* shared = static_cast<std::atomic<long>*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  for (int i = 0; i < 4; ++i) new (&shared[i]) std::atomic<long>(0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(2000 * soak_factor());
  auto running = [&deadline] { return std::chrono::steady_clock::now() < deadline; };

  KernelCache clearer(settings);  // creates the dir before anyone starts
  auto spawn = [](const std::string& log, const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) ::dup2(fd, 2);
      ::alarm(60);
      int rc = body();
      std::fflush(stderr);
      ::_exit(rc);
    }
    return pid;
  };
  std::vector<std::string> logs;
  std::vector<pid_t> kids;
  for (int w = 0; w < 2; ++w) {
    logs.push_back(t.sub("builder-" + std::to_string(w) + ".log"));
    kids.push_back(spawn(logs.back(), [&, w] {
      std::mt19937 r(static_cast<unsigned>(w) + 1);
      while (running()) {
        KernelCache c(settings);  // no memory tier: every request reads or builds on disk
        const int i = static_cast<int>(r() % kKeys);
        auto got = c.get_or_build(keys[i], kSidecar, [&]() -> Result<CodeObject> {
          ++shared[1];
          CodeObject co;
          co.binary = payloads[i];
          return co;
        });
        if (!got.ok()) return 4;
        if (got->object->binary != payloads[i]) ++shared[2];
        ++shared[0];
      }
      return 0;
    }));
    ASSERT_GT(kids.back(), 0);
  }
  kids.push_back(spawn(t.sub("reader.log"), [&] {
    const DiskStore store(dir, /*writable=*/false, false);
    while (running())
      for (const auto& k : keys)
        if (store.read(k.hex).found == DiskStore::Found::bad) ++shared[3];
    return 0;
  }));
  ASSERT_GT(kids.back(), 0);
  int clears = 0;
  while (running()) {
    auto st = clearer.clear();
    EXPECT_TRUE(st.ok()) << st.error().message;
    if (!st.ok()) break;
    ++clears;
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  int bad_logged = 0;
  for (const auto& l : logs) bad_logged += testing_util::count_lines_with(testing_util::read_text(l), "bad entry");
  EXPECT_EQ(shared[2].load(), 0) << "a request was served wrong bytes";
  EXPECT_EQ(shared[3].load(), 0) << "the reader met entries without their sidecar";
  EXPECT_EQ(bad_logged, 0) << "builders moved half-cleared entries aside";
  EXPECT_GE(shared[1].load(), 20) << "too few writes to mean anything";
  EXPECT_GE(clears, 20) << "too few clears to mean anything";
  EXPECT_TRUE(clearer.verify(false).bad.empty());
  EXPECT_EQ(count_orphan_sidecars(dir), 0);
  EXPECT_EQ(count_suffix(dir, ".lock"), 0);
  std::printf("[ figures ] clear racing writers: %d clears, %ld requests, %ld compiles, %ld half entries met, "
              "%d bad-entry warnings\n",
              clears, shared[0].load(), shared[1].load(), shared[3].load(), bad_logged);
  ::munmap(shared, 4096);
}

// ------------------------------------------------------------------ corruption

// Random damage to entries and sidecars (truncate, bit flip, append, empty,
// swap entries / sidecars / both between keys, symlink, group-writable,
// delete): every damaged entry is reported by verify, moved aside and rebuilt;
// no request ever returns bytes other than the key's own.
TEST(ReliabilityCorruption, RandomDamageIsDetectedMovedAsideAndRebuilt) {
  const int rounds = 60 * soak_factor();
  std::mt19937 rng(777);
  std::map<std::string, int> op_counts;
  int damaged_total = 0;
  for (int round = 0; round < rounds; ++round) {
    ScratchDir t("corrupt");
    constexpr int kKeys = 6;
    std::vector<CacheKey> keys;
    std::vector<std::vector<std::uint8_t>> payloads;
    std::atomic<int> calls{0};
    {
      KernelCache c(settings_for(t.path));
      for (int i = 0; i < kKeys; ++i) {
        std::string name = "corrupt-" + std::to_string(round) + "-" + std::to_string(i);
        keys.push_back(fake_key(name));
        payloads.push_back(payload_for(name, 200 + rng() % 5000));
        ASSERT_TRUE(c.get_or_build(keys[i], kSidecar, fake_compile(payloads[i], &calls)).ok());
      }
    }
    DiskStore store(t.path, true, false);
    std::set<int> bin_damaged;  // must be detected and rebuilt
    const int n_ops = 1 + static_cast<int>(rng() % 3);
    for (int op = 0; op < n_ops; ++op) {
      int a = static_cast<int>(rng() % kKeys), b = (a + 1 + static_cast<int>(rng() % (kKeys - 1))) % kKeys;
      std::string bin = store.entry_path(keys[a].hex), side = store.sidecar_path(keys[a].hex);
      if (!stdfs::exists(bin) || !stdfs::exists(store.entry_path(keys[b].hex))) continue;
      std::string data = testing_util::read_text(bin);
      const char* names[] = {"truncate", "flip-bin", "flip-sidecar", "append", "empty", "swap-bins",
                             "swap-sidecars", "swap-both", "symlink", "group-writable", "delete-sidecar", "other-sidecar"};
      int kind = static_cast<int>(rng() % 12);
      ++op_counts[names[kind]];
      switch (kind) {
        case 0: data.resize(rng() % data.size()); testing_util::write_text(bin, data); bin_damaged.insert(a); break;
        case 1: {
          std::size_t at = rng() % data.size();
          data[at] = static_cast<char>(data[at] ^ (1 << (rng() % 8)));
          testing_util::write_text(bin, data);
          bin_damaged.insert(a);
          break;
        }
        case 2: {
          std::string s = testing_util::read_text(side);
          std::size_t at = rng() % s.size();
          s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
          testing_util::write_text(side, s);  // may stay valid JSON naming the key: harmless metadata
          break;
        }
        case 3: testing_util::write_text(bin, data + "x"); bin_damaged.insert(a); break;
        case 4: testing_util::write_text(bin, ""); bin_damaged.insert(a); break;
        case 5:
        case 7: {
          std::string other = store.entry_path(keys[b].hex), tmp = bin + ".swap";
          ASSERT_EQ(::rename(bin.c_str(), tmp.c_str()), 0);
          ASSERT_EQ(::rename(other.c_str(), bin.c_str()), 0);
          ASSERT_EQ(::rename(tmp.c_str(), other.c_str()), 0);
          bin_damaged.insert(a);
          bin_damaged.insert(b);
          if (kind == 5) break;
          [[fallthrough]];
        }
        case 6: {
          std::string other = store.sidecar_path(keys[b].hex), tmp = side + ".swap";
          if (!stdfs::exists(side) || !stdfs::exists(other)) break;
          ASSERT_EQ(::rename(side.c_str(), tmp.c_str()), 0);
          ASSERT_EQ(::rename(other.c_str(), side.c_str()), 0);
          ASSERT_EQ(::rename(tmp.c_str(), other.c_str()), 0);
          bin_damaged.insert(a);  // the pair no longer matches: refused as a whole
          bin_damaged.insert(b);
          break;
        }
        case 8: {
          ASSERT_EQ(::unlink(bin.c_str()), 0);
          ASSERT_EQ(::symlink(store.entry_path(keys[b].hex).c_str(), bin.c_str()), 0);
          bin_damaged.insert(a);
          break;
        }
        case 9: ::chmod(bin.c_str(), 0664); bin_damaged.insert(a); break;
        case 10: ::unlink(side.c_str()); bin_damaged.insert(a); break;
        case 11: {
          std::string s = testing_util::read_text(store.sidecar_path(keys[b].hex));
          testing_util::write_text(side, s);
          bin_damaged.insert(a);
          break;
        }
      }
    }
    // The reader's own judgement: anything it accepts must be the key's own
    // bytes; damage it cannot accept must be refused. (Two swaps may restore
    // a pair; a sidecar bit flip may stay valid JSON naming the key.)
    std::set<int> damaged;
    for (int i = 0; i < kKeys; ++i) {
      auto rd = store.read(keys[i].hex);
      if (rd.found == DiskStore::Found::hit) {
        EXPECT_EQ(rd.binary, payloads[i]) << "round " << round << " accepted foreign bytes";
      } else {
        damaged.insert(i);
      }
    }
    for (int i : bin_damaged) {
      if (!damaged.count(i)) EXPECT_EQ(store.read(keys[i].hex).binary, payloads[i]);
    }
    bin_damaged = damaged;
    damaged_total += static_cast<int>(bin_damaged.size());
    KernelCache c(settings_for(t.path));
    auto v = c.verify(false);
    for (int i : bin_damaged) {
      bool named = std::any_of(v.bad.begin(), v.bad.end(),
                               [&](const std::string& b) { return b.find(keys[i].hex) != std::string::npos; });
      EXPECT_TRUE(named) << "verify missed damaged key " << i << " in round " << round;
    }
    calls = 0;
    for (int i = 0; i < kKeys; ++i) {
      auto r = c.get_or_build(keys[i], kSidecar, fake_compile(payloads[i], &calls));
      ASSERT_TRUE(r.ok()) << r.error().describe();
      EXPECT_EQ(r->object->binary, payloads[i]) << "round " << round << " key " << i << " served foreign bytes";
      if (bin_damaged.count(i)) {
        EXPECT_EQ(r->origin, CacheOrigin::compiled) << "round " << round << " key " << i;
      }
    }
    EXPECT_EQ(calls.load(), static_cast<int>(bin_damaged.size())) << "round " << round;
    if (!bin_damaged.empty()) {
      EXPECT_TRUE(stdfs::exists(store.quarantine_dir())) << "round " << round;
    }
    auto after = c.verify(false);
    EXPECT_TRUE(after.bad.empty()) << "round " << round << ": " << after.bad.front();
  }
  std::string ops;
  for (const auto& [k, n] : op_counts) ops += " " + k + "=" + std::to_string(n);
  std::printf("[ figures ] corruption: %d rounds, %d damaged entries detected and rebuilt; operations:%s\n", rounds,
              damaged_total, ops.c_str());
}

// ------------------------------------------------------------------ environment faults

// A real full filesystem: a 256 KiB tmpfs. Requests keep being served (the
// ones that do not fit stay in memory) with one warning; nothing half-written
// or orphaned is left, and what was stored is valid.
TEST(ReliabilityEnvironment, FullFilesystemServesFromMemoryWithOneWarning) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  ScratchDir t("full");
  const std::string mnt = t.sub("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0700), 0);
  testing_util::TmpfsMount m(mnt, "size=256k,mode=0700");
  if (!m.mounted) GTEST_SKIP() << "cannot mount a small tmpfs here: " << m.error;
  const std::string dir = mnt + "/cache";
  constexpr int kKeys = 12;  // 12 x 48 KiB > 256 KiB
  ChildResult r = run_in_child(t.path, [&] {
    KernelCache c(settings_for(dir));
    if (is_memory_only(c)) return 10;
    std::atomic<int> calls{0};
    for (int pass = 0; pass < 2; ++pass)
      for (int i = 0; i < kKeys; ++i) {
        std::string name = "full-" + std::to_string(i);
        auto got = c.get_or_build(fake_key(name), kSidecar, fake_compile(payload_for(name, 48 << 10), &calls));
        if (!got.ok()) return 11;
        if (got->object->binary != payload_for(name, 48 << 10)) return 12;
      }
    return calls == kKeys ? 0 : 13;
  });
  EXPECT_TRUE(r.exited_ok()) << "exit " << r.code() << "\n" << r.err;
  EXPECT_EQ(testing_util::count_lines_with(r.err, "[warning]"), 1) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  const int stored = count_suffix(dir, ".bin");
  EXPECT_GT(stored, 0);
  EXPECT_LT(stored, kKeys);
  EXPECT_EQ(count_temps(dir), 0) << "a failed write left its temp file";
  EXPECT_EQ(count_orphan_sidecars(dir), 0) << "a failed write left its sidecar";
  EXPECT_EQ(count_suffix(dir, ".lock"), 0);
  KernelCache c(settings_for(dir));  // on the still-full filesystem
  EXPECT_TRUE(c.verify(false).bad.empty());
  std::printf("[ figures ] full tmpfs: %d of %d entries stored, the rest served from memory, 1 warning\n", stored, kKeys);
}

// A read-only mount: readwrite mode degrades to memory only with one warning;
// read mode and system dirs serve the entries already there without compiling.
TEST(ReliabilityEnvironment, ReadOnlyMount) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  ScratchDir t("ro");
  const std::string mnt = t.sub("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0700), 0);
  testing_util::TmpfsMount m(mnt, "size=1m,mode=0700");
  if (!m.mounted) GTEST_SKIP() << "cannot mount a tmpfs here: " << m.error;
  const std::string dir = mnt + "/cache";
  auto key = fake_key("ro-shipped");
  auto bytes = payload_for("ro-shipped", 4096);
  {
    KernelCache c(settings_for(dir));
    ASSERT_TRUE(c.get_or_build(key, kSidecar, fake_compile(bytes)).ok());
  }
  if (!m.remount_read_only()) GTEST_SKIP() << "cannot remount the tmpfs read-only: " << std::strerror(errno);

  ChildResult r = run_in_child(t.path, [&] {
    KernelCache c(settings_for(dir));
    if (!is_memory_only(c)) return 10;
    if (c.status().mode.find("Read-only file system") == std::string::npos) return 11;
    std::atomic<int> calls{0};
    for (int i = 0; i < 3; ++i) {
      auto got = c.get_or_build(fake_key("ro-new"), kSidecar, fake_compile(bytes, &calls));
      if (!got.ok() || got->object->binary != bytes) return 12;
    }
    return calls == 1 ? 0 : 13;
  });
  EXPECT_TRUE(r.exited_ok()) << "exit " << r.code() << "\n" << r.err;
  EXPECT_EQ(testing_util::count_lines_with(r.err, "[warning]"), 1) << r.err;

  std::atomic<int> calls{0};
  auto read_mode = settings_for(dir);
  read_mode.mode = CacheMode::read;
  KernelCache rc(read_mode);
  auto got = rc.get_or_build(key, kSidecar, fake_compile(bytes, &calls));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->origin, CacheOrigin::user_dir);
  CacheSettings sys;
  sys.user_dir = t.sub("user");
  sys.system_dirs = {dir};
  KernelCache sc(sys);
  auto got2 = sc.get_or_build(key, kSidecar, fake_compile(bytes, &calls));
  ASSERT_TRUE(got2.ok());
  EXPECT_EQ(got2->origin, CacheOrigin::system_dir);
  EXPECT_EQ(got2->object->binary, bytes);
  EXPECT_EQ(calls.load(), 0);
}

// Security: a dir owned by another user is refused (served from memory, one
// warning naming the owner) unless SPARSEJIT_CACHE_ALLOW_SHARED; so is a
// symlink resolving to it.
TEST(ReliabilityEnvironment, DirOwnedByAnotherUserIsRefusedUnlessAllowed) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  ScratchDir t("owner");
  const std::string dir = t.sub("theirs");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);  // nobody
  ASSERT_EQ(::symlink(dir.c_str(), t.sub("link").c_str()), 0);
  for (const std::string& path : {dir, t.sub("link")}) {
    ChildResult r = run_in_child(t.path, [&] {
      KernelCache c(settings_for(path));
      if (!is_memory_only(c) || c.status().mode.find("owned by uid 65534") == std::string::npos) return 10;
      auto got = c.get_or_build(fake_key("owner"), kSidecar, fake_compile(payload_for("owner", 100)));
      return got.ok() ? 0 : 11;
    });
    EXPECT_TRUE(r.exited_ok()) << path << " exit " << r.code() << "\n" << r.err;
    EXPECT_EQ(testing_util::count_lines_with(r.err, "[warning]"), 1) << r.err;
    EXPECT_EQ(count_suffix(dir, ".bin"), 0) << "root wrote into another user's dir";
  }
  ScopedKnob allow("SPARSEJIT_CACHE_ALLOW_SHARED", "1");
  KernelCache c(CacheSettings::from_knobs([&] {
    Knobs k = knobs();
    k.cache_dir = dir;
    return k;
  }()));
  EXPECT_EQ(c.status().mode, "readwrite");
  ASSERT_TRUE(c.get_or_build(fake_key("owner"), kSidecar, fake_compile(payload_for("owner", 100))).ok());
  EXPECT_EQ(count_suffix(dir, ".bin"), 1);
}

// A symlink is resolved once: swapping it afterwards cannot redirect writes,
// and a dangling one degrades to memory with one warning.
TEST(ReliabilityEnvironment, SymlinkIsResolvedOnceAndDanglingDegrades) {
  ScratchDir t("symlink");
  const std::string a = t.sub("a"), b = t.sub("b"), link = t.sub("link");
  ASSERT_EQ(::mkdir(a.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(b.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(a.c_str(), link.c_str()), 0);
  KernelCache c(settings_for(link));
  ASSERT_EQ(c.status().mode, "readwrite");
  ASSERT_EQ(::unlink(link.c_str()), 0);
  ASSERT_EQ(::symlink(b.c_str(), link.c_str()), 0);  // an attacker swaps the link
  ASSERT_TRUE(c.get_or_build(fake_key("swap"), kSidecar, fake_compile(payload_for("swap", 64))).ok());
  EXPECT_EQ(count_suffix(a, ".bin"), 1);
  EXPECT_EQ(count_suffix(b, ".bin"), 0) << "the swapped link redirected a write";

  ASSERT_EQ(::symlink(t.sub("nowhere/deeper").c_str(), t.sub("dangling").c_str()), 0);
  ChildResult r = run_in_child(t.path, [&] {
    KernelCache d(settings_for(t.sub("dangling")));
    if (!is_memory_only(d)) return 10;
    auto got = d.get_or_build(fake_key("dangling"), kSidecar, fake_compile(payload_for("dangling", 64)));
    return got.ok() ? 0 : 11;
  });
  EXPECT_TRUE(r.exited_ok()) << "exit " << r.code() << "\n" << r.err;
  EXPECT_EQ(testing_util::count_lines_with(r.err, "[warning]"), 1) << r.err;
}

// HOME unset in a fresh process: the default dir comes from the passwd entry
// or is empty, and kernels are served either way.
TEST(ReliabilityEnvironment, HomeUnsetInAFreshProcessStillServes) {
  ScratchDir t("home");
  ChildResult r = run_in_child(t.path, [&] {
    ::unsetenv("HOME");
    ::unsetenv("XDG_CACHE_HOME");
    ::unsetenv("SPARSEJIT_CACHE_DIR");
    ::setenv("SPARSEJIT_CACHE", "off", 1);  // never write into the real home from a test
    reload_knobs();
    const std::string def = default_user_cache_dir();
    if (!def.empty() && def[0] != '/') return 9;
    KernelCache c(CacheSettings::from_knobs(knobs()));
    auto got = c.get_or_build(fake_key("home"), kSidecar, fake_compile(payload_for("home", 64)));
    auto again = c.get_or_build(fake_key("home"), kSidecar, fake_compile(payload_for("home", 64)));
    return got.ok() && again.ok() && again->origin == CacheOrigin::memory ? 0 : 10;
  });
  EXPECT_TRUE(r.exited_ok()) << "exit " << r.code() << "\n" << r.err;
}

// ------------------------------------------------------------------ upgrades

// Through the real pipeline: a changed template or a changed cache-invalidating
// knob misses (proved with SPARSEJIT_DISABLE_COMPILE=1: a reuse would succeed),
// the unchanged one hits.
TEST(ReliabilityUpgrade, ChangedTemplateOrFlagsNeverReuseAnEntry) {
  std::string why;
  if (!nvrtc_or_null(&why)) GTEST_SKIP() << "NVRTC is not available here: " << why;
  ScratchDir t("upgrade");
  const std::string tdir = t.sub("templates");
  stdfs::copy(std::string(SPARSEJIT_SOURCE_DIR) + "/templates", tdir, stdfs::copy_options::recursive);
  const auto config = six_sm90_configs().front();
  testing_util::write_text(tdir + "/" + config.templ,
                           testing_util::read_text(tdir + "/" + config.templ) + "\n// template v2: one more comment\n");
  auto cache = std::make_shared<KernelCache>(settings_for(t.sub("cache")));
  KernelBuilder builder(cache);
  auto first = builder.build(config, "nvrtc");
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_EQ(first->origin, CacheOrigin::compiled);

  ScopedKnob off("SPARSEJIT_DISABLE_COMPILE", "1");
  {
    ScopedKnob tpl("SPARSEJIT_TEMPLATE_DIR", tdir);
    auto changed = builder.build(config, "nvrtc");
    EXPECT_FALSE(changed.ok()) << "an entry built from the old template was reused";
  }
  {
    ScopedKnob flags("SPARSEJIT_EXTRA_FLAGS", "-DSPARSEJIT_UPGRADE_TEST=1");
    auto changed = builder.build(config, "nvrtc");
    EXPECT_FALSE(changed.ok()) << "an entry built without the extra flags was reused";
  }
  auto same = builder.build(config, "nvrtc");
  ASSERT_TRUE(same.ok()) << same.error().describe();
  EXPECT_EQ(same->key, first->key);
  KernelBuilder fresh(std::make_shared<KernelCache>(settings_for(t.sub("cache"))));
  auto disk = fresh.build(config, "nvrtc");
  ASSERT_TRUE(disk.ok()) << disk.error().describe();
  EXPECT_EQ(disk->origin, CacheOrigin::user_dir);
}

// A compiler upgrade changes every key; the old generation is never reused
// and ages out through the LRU cap while the new one stays.
TEST(ReliabilityUpgrade, OldCompilerEntriesAgeOutThroughTheCap) {
  ScratchDir t("age");
  constexpr int kKeys = 6;
  constexpr std::size_t kBytes = 32 << 10;
  std::atomic<int> calls{0};
  auto settings = settings_for(t.path);
  {
    KernelCache c(settings);
    for (int i = 0; i < kKeys; ++i)
      ASSERT_TRUE(c.get_or_build(fake_key("k" + std::to_string(i), "fake-1.0"), kSidecar,
                                 fake_compile(payload_for("old" + std::to_string(i), kBytes), &calls))
                      .ok());
  }
  const std::uint64_t one_generation = DiskStore(t.path, true, false).total_bytes();
  std::this_thread::sleep_for(20ms);
  settings.max_bytes = one_generation + one_generation / 12;  // room for one generation, not one more entry
  KernelCache c(settings);
  for (int i = 0; i < kKeys; ++i) {
    auto k = fake_key("k" + std::to_string(i), "fake-2.0");
    EXPECT_NE(k.hex, fake_key("k" + std::to_string(i), "fake-1.0").hex);
    auto r = c.get_or_build(k, kSidecar, fake_compile(payload_for("new" + std::to_string(i), kBytes), &calls));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->origin, CacheOrigin::compiled);
    EXPECT_EQ(r->object->binary, payload_for("new" + std::to_string(i), kBytes));
  }
  EXPECT_EQ(calls.load(), 2 * kKeys);
  DiskStore store(t.path, true, false);
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_FALSE(stdfs::exists(store.entry_path(fake_key("k" + std::to_string(i), "fake-1.0").hex))) << i;
    EXPECT_TRUE(stdfs::exists(store.entry_path(fake_key("k" + std::to_string(i), "fake-2.0").hex))) << i;
  }
  EXPECT_LE(store.total_bytes(), settings.max_bytes);
}

// A schema bump leaves the previous tree (`v<N-1>`), which this build never
// reads: it counts toward the cap and ages out through it, directories and
// all, while the new tree stays.
TEST(ReliabilityUpgrade, OlderSchemaTreeAgesOutThroughTheCap) {
  ScratchDir t("schema");
  constexpr int kKeys = 6;
  constexpr std::size_t kBytes = 32 << 10;
  std::atomic<int> calls{0};
  auto settings = settings_for(t.path);
  {
    KernelCache c(settings);
    for (int i = 0; i < kKeys; ++i)
      ASSERT_TRUE(c.get_or_build(fake_key("k" + std::to_string(i)), kSidecar,
                                 fake_compile(payload_for("old" + std::to_string(i), kBytes), &calls))
                      .ok());
  }
  // What the previous build left: a tree like ours, under the previous schema's name.
  const std::string previous = t.sub("v" + std::to_string(kCacheSchemaVersion - 1));
  ASSERT_EQ(::rename(t.sub("v" + std::to_string(kCacheSchemaVersion)).c_str(), previous.c_str()), 0);
  DiskStore store(t.path, true, false);
  const std::uint64_t one_generation = store.total_bytes();
  EXPECT_GT(one_generation, std::uint64_t(kKeys) * kBytes) << "the older tree is not counted";
  EXPECT_TRUE(store.scan().empty());
  std::this_thread::sleep_for(20ms);
  settings.max_bytes = one_generation + one_generation / 12;  // room for one generation, not one more entry
  KernelCache c(settings);
  for (int i = 0; i < kKeys; ++i) {
    auto r = c.get_or_build(fake_key("k" + std::to_string(i)), kSidecar,
                            fake_compile(payload_for("new" + std::to_string(i), kBytes), &calls));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->origin, CacheOrigin::compiled) << "an entry of the older schema was reused";
    EXPECT_EQ(r->object->binary, payload_for("new" + std::to_string(i), kBytes));
  }
  EXPECT_EQ(calls.load(), 2 * kKeys);
  EXPECT_FALSE(stdfs::exists(previous)) << "the older tree was not evicted";
  for (int i = 0; i < kKeys; ++i) EXPECT_TRUE(stdfs::exists(store.entry_path(fake_key("k" + std::to_string(i)).hex))) << i;
  EXPECT_LE(store.total_bytes(), settings.max_bytes);
}

// ------------------------------------------------------------------ compiler faults, concurrently

class QuietFake final : public Compiler {
 public:
  std::string name() const override { return "fake"; }
  bool available() const override { return true; }
  std::string unavailable_reason() const override { return ""; }
  std::string version() const override { return "fake-1.0"; }
  Support supports(const std::string&) const override { return {true, ""}; }
  std::vector<std::string> default_options(const std::string&) const override { return {}; }
  Result<CodeObject> compile(const CompileRequest&) const override {
    return make_error("compile", "the fake compiles only in a helper process");
  }
};

// Crashing, hanging and garbage-printing helpers run at the same time as good
// compiles through one cache: each failure is an error value with its log, not
// cached; good compiles are not held up by the hangs; this process survives and
// no helper is left running or unreaped.
TEST(ReliabilityCompilerFaults, FaultyHelpersDoNotStopOtherCompiles) {
  ScratchDir t("helpers");
  // The helper's behaviour is chosen by the kernel's name hint, so one process
  // can run every kind of fault at once.
  const std::string script = t.sub("helper.sh");
  testing_util::write_text(script, std::string("#!/bin/sh\nmode=ok\nfor a in \"$@\"; do case \"$a\" in\n") +
                                       "  crash-*) mode=crash;; hang-*) mode=hang;; garbage-*) mode=garbage;;\n"
                                       "esac; done\nSJ_FAKE_HELPER_MODE=$mode exec \"" SPARSEJIT_FAKE_HELPER "\"\n");
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  ScopedKnob helper("SPARSEJIT_HELPER", script);
  ScopedKnob timeout("SPARSEJIT_COMPILE_TIMEOUT", "4");
  ScopedKnob dump("SPARSEJIT_DUMP_DIR", t.path);
  auto compiler = std::shared_ptr<Compiler>(make_subprocess_compiler(std::make_shared<QuietFake>()));
  KernelCache cache(settings_for(t.sub("cache")));

  const std::vector<std::string> names = {"ok-0", "crash-0", "ok-1", "hang-0", "ok-2", "garbage-0",
                                          "ok-3", "crash-1", "ok-4", "hang-1", "ok-5", "garbage-1"};
  struct Outcome {
    bool ok = false;
    std::string message, log, binary;
    double seconds = 0;
  };
  std::vector<Outcome> out(names.size());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < names.size(); ++i) {
    pool.emplace_back([&, i] {
      auto start = std::chrono::steady_clock::now();
      CompileRequest req;
      req.source = "// kernel " + names[i];
      req.target = "sm_90";
      req.name_hint = names[i];
      auto r = cache.get_or_build(fake_key(names[i]), kSidecar, [&] { return compiler->compile(req); });
      out[i].seconds = testing_util::seconds_since(start);
      out[i].ok = r.ok();
      if (r.ok()) out[i].binary.assign(r->object->binary.begin(), r->object->binary.end());
      else {
        out[i].message = r.error().message;
        out[i].log = r.error().log;
      }
    });
  }
  for (auto& th : pool) th.join();
  const double total = testing_util::seconds_since(t0);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& o = out[i];
    const std::string& n = names[i];
    if (n.rfind("ok-", 0) == 0) {
      ASSERT_TRUE(o.ok) << n << ": " << o.message;
      EXPECT_EQ(o.binary, "\x7f" "ELF// kernel " + n);
      EXPECT_LT(o.seconds, 4.0) << n << " waited for a hanging helper";
    } else {
      ASSERT_FALSE(o.ok) << n;
      if (n.rfind("crash-", 0) == 0) {
        EXPECT_NE(o.message.find("SIGABRT"), std::string::npos) << o.message;
        EXPECT_NE(o.log.find("munmap_chunk"), std::string::npos) << "the helper's stderr is the log";
      } else if (n.rfind("hang-", 0) == 0) {
        EXPECT_NE(o.message.find("timed out"), std::string::npos) << o.message;
        EXPECT_GE(o.seconds, 3.9);
      } else {
        EXPECT_NE(o.message.find("without a valid result frame"), std::string::npos) << o.message;
      }
      EXPECT_EQ(cache.find(fake_key(n).hex), nullptr) << n << ": a failure must not be cached";
    }
  }
  EXPECT_LT(total, 20.0) << "the faults were serialized";
  // Failures are retried (not cached) and fail the same way.
  CompileRequest again{"// kernel crash-0", "sm_90", {}, "crash-0"};
  auto retry = cache.get_or_build(fake_key("crash-0"), kSidecar, [&] { return compiler->compile(again); });
  ASSERT_FALSE(retry.ok());
  EXPECT_NE(retry.error().message.find("SIGABRT"), std::string::npos);
  // Every helper was reaped.
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD) << "a helper process was left behind";
  const std::string cdir = t.sub("cache");
  EXPECT_EQ(count_suffix(cdir, ".bin"), 6);
  EXPECT_EQ(count_suffix(cdir, ".lock"), 0);
  EXPECT_EQ(count_temps(cdir), 0);
  std::printf("[ figures ] compiler faults: 12 concurrent compiles (2 crash, 2 hang, 2 garbage, 6 good) in %.1f s\n",
              total);
}

}  // namespace
}  // namespace sparsejit
