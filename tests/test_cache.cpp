// The code-object cache with a fake compiler that counts its calls: keys,
// tiers, single flight across threads and processes, corruption handling,
// degradation, security checks, eviction, verify and export/import.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "cache/disk_store.h"
#include "cache/entry_format.h"
#include "cache/file_lock.h"
#include "cache/kernel_cache.h"
#include "knobs.h"
#include "util/fs.h"

namespace sparsejit {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

// A fresh directory, removed (permissions restored first) at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sparsejit-cache-test-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    path = p ? p : "";
    // The resolved form, so paths compare equal to the cache's effective dir.
    std::error_code ec;
    auto c = stdfs::canonical(path, ec);
    if (!ec) path = c.string();
  }
  ~TempDir() {
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(path, ec); !ec && it != stdfs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0700);
    ::chmod(path.c_str(), 0700);
    stdfs::remove_all(path, ec);
  }
  std::string sub(const std::string& name) const { return path + "/" + name; }
};

CacheKey key_for(const std::string& source) {
  return make_cache_key(source, "fake", "fake-1.0", "gfx942:sramecc+:xnack-", {"-O3", "-DX=1"}, {});
}

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

// Counts compiles; the payload names the source so a wrong entry is visible.
struct FakeCompiler {
  std::atomic<int> calls{0};
  std::function<Result<CodeObject>()> fn(const std::string& payload, std::chrono::milliseconds delay = 0ms) {
    return [this, payload, delay]() -> Result<CodeObject> {
      ++calls;
      if (delay.count()) std::this_thread::sleep_for(delay);
      CodeObject c;
      c.binary = bytes_of(payload);
      c.log = "fake compile of " + payload;
      return c;
    };
  }
};

CacheSettings settings_for(const std::string& dir) {
  CacheSettings s;
  s.user_dir = dir;
  return s;
}

const nlohmann::json kSidecar = {{"config", {{"head_dim", 128}, {"topk", 16}}}};

int count_files(const std::string& dir, const std::function<bool(const std::string&)>& pred) {
  int n = 0;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec) && pred(it->path().filename().string())) ++n;
  return n;
}

int count_suffix(const std::string& dir, const std::string& suffix) {
  return count_files(dir, [&](const std::string& n) { return fs::ends_with(n, suffix); });
}

std::string slurp(const std::string& path) {
  std::string s;
  EXPECT_TRUE(fs::read_file(path, s, false).ok()) << path;
  return s;
}

void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

bool is_memory_only(const KernelCache& c) { return c.status().mode.rfind("memory-only (", 0) == 0; }

// ---- keys ----

TEST(CacheKey, StableAndOptionOrderIrrelevant) {
  auto a = make_cache_key("src", "nvrtc", "13.0", "sm_90", {"-a", "-b", "-c"}, {{"SPARSEJIT_EXTRA_FLAGS", ""}});
  auto b = make_cache_key("src", "nvrtc", "13.0", "sm_90", {"-c", "-a", "-b"}, {{"SPARSEJIT_EXTRA_FLAGS", ""}});
  EXPECT_EQ(a.hex, b.hex);
  EXPECT_EQ(a.hex.size(), 64u);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.inputs["options"], nlohmann::json({"-a", "-b", "-c"}));
  EXPECT_EQ(a.inputs["schema"], kCacheSchemaVersion);
  EXPECT_EQ(a.inputs["backend"], "nvrtc");
  EXPECT_EQ(a.inputs["source_sha256"].get<std::string>().size(), 64u);
}

TEST(CacheKey, EveryInputChangesTheKey) {
  const std::map<std::string, std::string> knobs = {{"SPARSEJIT_EXTRA_FLAGS", ""}};
  auto base = make_cache_key("src", "nvrtc", "13.0", "sm_90", {"-a"}, knobs).hex;
  EXPECT_NE(base, make_cache_key("src2", "nvrtc", "13.0", "sm_90", {"-a"}, knobs).hex);
  EXPECT_NE(base, make_cache_key("src", "hiprtc", "13.0", "sm_90", {"-a"}, knobs).hex);
  EXPECT_NE(base, make_cache_key("src", "nvrtc", "13.1", "sm_90", {"-a"}, knobs).hex);
  EXPECT_NE(base, make_cache_key("src", "nvrtc", "13.0", "sm_90a", {"-a"}, knobs).hex);
  EXPECT_NE(base, make_cache_key("src", "nvrtc", "13.0", "sm_90", {"-a", "-b"}, knobs).hex);
  EXPECT_NE(base, make_cache_key("src", "nvrtc", "13.0", "sm_90", {}, knobs).hex);
  EXPECT_NE(base, make_cache_key("src", "nvrtc", "13.0", "sm_90", {"-a"}, {{"SPARSEJIT_EXTRA_FLAGS", "-g"}}).hex);
  EXPECT_NE(base, make_cache_key("src", "nvrtc", "13.0", "sm_90", {"-a"}, {}).hex);
  // The full target id, features included, is part of the key.
  EXPECT_NE(make_cache_key("s", "clang", "22", "gfx942:sramecc+:xnack-", {}, {}).hex,
            make_cache_key("s", "clang", "22", "gfx942:sramecc+:xnack+", {}, {}).hex);
}

TEST(CacheKey, KnobInputsComeFromTheRegistry) {
  ScopedKnob flags("SPARSEJIT_EXTRA_FLAGS", "-DFOO");
  auto k = make_cache_key("s", "b", "v", "t", {}, knobs().key_inputs());
  EXPECT_EQ(k.inputs["knobs"]["SPARSEJIT_EXTRA_FLAGS"], "-DFOO");
}

TEST(CacheSettings, FromKnobs) {
  TempDir t;
  ScopedKnob dir("SPARSEJIT_CACHE_DIR", t.path);
  ScopedKnob sys("SPARSEJIT_SYSTEM_CACHE_DIRS", "/a:/b");
  ScopedKnob mode("SPARSEJIT_CACHE", "read");
  ScopedKnob cap("SPARSEJIT_CACHE_MAX_BYTES", "12345");
  ScopedKnob shared("SPARSEJIT_CACHE_ALLOW_SHARED", "1");
  auto s = CacheSettings::from_knobs(knobs());
  EXPECT_EQ(s.user_dir, t.path);
  EXPECT_EQ(s.system_dirs, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(s.mode, CacheMode::read);
  EXPECT_EQ(s.max_bytes, 12345u);
  EXPECT_TRUE(s.allow_shared);
}

// ---- tiers, layout, sidecar ----

TEST(KernelCache, MissThenMemoryThenDiskHit) {
  TempDir t;
  FakeCompiler fc;
  auto k = key_for("kernel A");
  std::string entry;
  {
    KernelCache c(settings_for(t.path));
    EXPECT_EQ(c.effective_user_dir(), t.path);
    EXPECT_EQ(c.status().mode, "readwrite");
    auto r1 = c.get_or_build(k, kSidecar, fc.fn("A"));
    ASSERT_TRUE(r1.ok()) << r1.error().describe();
    EXPECT_EQ(r1->origin, CacheOrigin::compiled);
    EXPECT_EQ(r1->object->binary, bytes_of("A"));
    auto r2 = c.get_or_build(k, kSidecar, fc.fn("A"));
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2->origin, CacheOrigin::memory);
    EXPECT_EQ(r2->object.get(), r1->object.get());
    EXPECT_EQ(fc.calls, 1);

    // Layout: <dir>/v<schema>/<xx>/<key>.bin + .json
    entry = t.path + "/v" + std::to_string(kCacheSchemaVersion) + "/" + k.hex.substr(0, 2) + "/" + k.hex + ".bin";
    EXPECT_TRUE(stdfs::exists(entry));
    auto side = nlohmann::json::parse(slurp(t.path + "/v1/" + k.hex.substr(0, 2) + "/" + k.hex + ".json"));
    EXPECT_EQ(side["key"], k.hex);
    EXPECT_EQ(side["key_inputs"], k.inputs);
    EXPECT_EQ(side["config"]["head_dim"], 128);
    EXPECT_EQ(side["compile_log"], "fake compile of A");
    EXPECT_TRUE(side.contains("compile_seconds"));
    EXPECT_TRUE(side.contains("created_unix"));
    EXPECT_EQ(side["binary_bytes"], 1);
    EXPECT_TRUE(side.contains("tool_version"));
    EXPECT_EQ(r1->object->sidecar, side);
  }
  // The user dir is private.
  struct stat st;
  ASSERT_EQ(::stat((t.path + "/v1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);

  KernelCache c2(settings_for(t.path));
  EXPECT_EQ(c2.find(key_for("other").hex), nullptr);
  auto r3 = c2.get_or_build(k, kSidecar, fc.fn("A"));
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->origin, CacheOrigin::user_dir);
  EXPECT_EQ(r3->object->binary, bytes_of("A"));
  EXPECT_EQ(r3->object->sidecar["config"]["topk"], 16);
  EXPECT_EQ(fc.calls, 1);

  KernelCache c3(settings_for(t.path));
  auto found = c3.find(k.hex);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->binary, bytes_of("A"));
  EXPECT_EQ(count_files(t.path, [](const std::string& n) { return fs::starts_with(n, ".tmp-"); }), 0);
}

TEST(KernelCache, SixteenThreadsCompileOnce) {
  TempDir t;
  FakeCompiler fc;
  KernelCache c(settings_for(t.path));
  auto k = key_for("racy");
  std::atomic<bool> go{false};
  std::vector<std::shared_ptr<const CachedObject>> got(16);
  std::atomic<int> compiled{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i)
    threads.emplace_back([&, i] {
      while (!go) std::this_thread::yield();
      auto r = c.get_or_build(k, kSidecar, fc.fn("R", 100ms));
      if (r.ok()) got[i] = r->object;
      if (r.ok() && r->origin == CacheOrigin::compiled) ++compiled;
    });
  go = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(fc.calls, 1);
  EXPECT_EQ(compiled, 1);  // waiters report a memory hit
  for (auto& o : got) {
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(o.get(), got[0].get());
  }
}

TEST(KernelCache, FailedCompileReachesEveryWaiterAndIsNotCached) {
  TempDir t;
  KernelCache c(settings_for(t.path));
  auto k = key_for("failing");
  std::atomic<int> calls{0};
  auto failing = [&]() -> Result<CodeObject> {
    ++calls;
    std::this_thread::sleep_for(200ms);
    Error e = make_error("compile", "syntax error");
    e.log = "error: expected ';'";
    return e;
  };
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      auto r = c.get_or_build(k, kSidecar, failing);
      if (!r.ok() && r.error().message == "syntax error" && r.error().log == "error: expected ';'") ++errors;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, 4);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(count_suffix(t.path, ".bin"), 0);

  FakeCompiler fc;
  auto r = c.get_or_build(k, kSidecar, fc.fn("fixed"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->origin, CacheOrigin::compiled);
  EXPECT_EQ(fc.calls, 1);

  auto throwing = []() -> Result<CodeObject> { throw std::runtime_error("boom"); };
  auto r2 = c.get_or_build(key_for("throws"), kSidecar, throwing);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("boom"), std::string::npos);
}

TEST(KernelCache, InvalidKeyIsAnError) {
  TempDir t;
  KernelCache c(settings_for(t.path));
  FakeCompiler fc;
  CacheKey bad{"../../etc/passwd", {}};
  EXPECT_FALSE(c.get_or_build(bad, kSidecar, fc.fn("x")).ok());
  EXPECT_EQ(fc.calls, 0);
}

// ---- across processes ----

TEST(KernelCache, ProcessesRacingCompileOnce) {
  TempDir t;
  const std::string dir = t.sub("cache");  // empty and not yet created
  const std::string counter = t.sub("compiles.txt");
  auto k = key_for("multi-process");
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  constexpr int kChildren = 6;
  std::vector<pid_t> kids;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(go[1]);
      char ch;
      (void)::read(go[0], &ch, 1);  // returns 0 when the parent closes: all start together
      KernelCache c(settings_for(dir));
      auto r = c.get_or_build(k, kSidecar, [&]() -> Result<CodeObject> {
        int fd = ::open(counter.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        (void)::write(fd, "compile\n", 8);
        ::close(fd);
        std::this_thread::sleep_for(300ms);
        CodeObject co;
        co.binary = bytes_of("MP");
        return co;
      });
      ::_exit(r.ok() && r->object->binary == bytes_of("MP") ? 0 : 1);
    }
    kids.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::string lines = slurp(counter);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 1) << "compiles across processes: " << lines;
  EXPECT_EQ(count_suffix(dir, ".bin"), 1);
  EXPECT_EQ(count_suffix(dir, ".json"), 1);
  EXPECT_EQ(count_suffix(dir, ".lock"), 0);
  EXPECT_EQ(count_files(dir, [](const std::string& n) { return fs::starts_with(n, ".tmp-"); }), 0);
}

TEST(KernelCache, KilledLockHolderDoesNotBlock) {
  TempDir t;
  auto k = key_for("held");
  DiskStore store(t.path, true, false);
  ASSERT_TRUE(store.ensure_shard_dir(k.hex).ok());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t holder = ::fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    auto lock = FileLock::acquire(store.lock_path(k.hex));
    (void)::write(ready[1], lock.ok() ? "1" : "0", 1);
    for (;;) ::pause();
  }
  char ch = 0;
  ASSERT_EQ(::read(ready[0], &ch, 1), 1);
  ASSERT_EQ(ch, '1');
  // The holder is alive and holds the lock.
  EXPECT_FALSE(FileLock::try_acquire(store.lock_path(k.hex)).has_value());
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  EXPECT_TRUE(stdfs::exists(store.lock_path(k.hex)));  // left behind by the killed holder

  // A fresh process must not hang on it (alarm turns a hang into a failure).
  pid_t next = ::fork();
  ASSERT_GE(next, 0);
  if (next == 0) {
    ::alarm(10);
    KernelCache c(settings_for(t.path));
    FakeCompiler fc;
    auto r = c.get_or_build(k, kSidecar, fc.fn("after-kill"));
    ::_exit(r.ok() && r->origin == CacheOrigin::compiled && fc.calls == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(next, &status, 0), next);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_TRUE(stdfs::exists(store.entry_path(k.hex)));
  EXPECT_FALSE(stdfs::exists(store.lock_path(k.hex)));
  ::close(ready[0]);
  ::close(ready[1]);
}

// ---- corruption ----

// Builds two entries, damages them with `corrupt`, then expects the damaged
// one (k1) to be detected, moved aside and rebuilt, never returned.
void expect_detected_and_rebuilt(const std::function<void(const DiskStore&, const CacheKey&, const CacheKey&)>& corrupt,
                                 bool lookup_with_find_first = false) {
  TempDir t;
  FakeCompiler fc;
  auto k1 = key_for("one");
  auto k2 = key_for("two");
  {
    KernelCache c(settings_for(t.path));
    ASSERT_TRUE(c.get_or_build(k1, kSidecar, fc.fn("payload-one")).ok());
    ASSERT_TRUE(c.get_or_build(k2, kSidecar, fc.fn("payload-two")).ok());
  }
  DiskStore store(t.path, true, false);
  corrupt(store, k1, k2);

  KernelCache c(settings_for(t.path));
  if (lookup_with_find_first) EXPECT_EQ(c.find(k1.hex), nullptr);
  auto r = c.get_or_build(k1, kSidecar, fc.fn("payload-one"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->origin, CacheOrigin::compiled);
  EXPECT_EQ(r->object->binary, bytes_of("payload-one"));
  EXPECT_EQ(fc.calls, 3);
  EXPECT_GE(count_files(store.quarantine_dir(), [](const std::string&) { return true; }), 1);
  // The rebuilt entry is good, and the other key was never affected.
  auto r2 = c.get_or_build(k2, kSidecar, fc.fn("payload-two"));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->object->binary, bytes_of("payload-two"));
  EXPECT_TRUE(c.verify(false).bad.empty());
  EXPECT_EQ(fc.calls, 3);
}

TEST(KernelCache, TruncatedEntryIsRebuilt) {
  expect_detected_and_rebuilt(
      [](const DiskStore& s, const CacheKey& k1, const CacheKey&) {
        auto p = s.entry_path(k1.hex);
        ASSERT_EQ(::truncate(p.c_str(), static_cast<off_t>(stdfs::file_size(p) / 2)), 0);
      },
      /*lookup_with_find_first=*/true);
}

TEST(KernelCache, BitFlippedEntryIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey&) {
    std::string data = slurp(s.entry_path(k1.hex));
    data.back() ^= 0x01;  // in the payload
    spit(s.entry_path(k1.hex), data);
  });
}

TEST(KernelCache, BitFlippedHeaderIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey&) {
    std::string data = slurp(s.entry_path(k1.hex));
    data[2] ^= 0x20;  // in the magic
    spit(s.entry_path(k1.hex), data);
  });
}

TEST(KernelCache, SwappedEntryIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey& k2) {
    // A valid entry (and sidecar) of another key under k1's name.
    spit(s.entry_path(k1.hex), slurp(s.entry_path(k2.hex)));
    spit(s.sidecar_path(k1.hex), slurp(s.sidecar_path(k2.hex)));
  });
}

TEST(KernelCache, SwappedEntryWithOwnSidecarIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey& k2) {
    spit(s.entry_path(k1.hex), slurp(s.entry_path(k2.hex)));
  });
}

// A reader that finds a bad entry moves it aside under the key's lock, after
// reading it again: never an entry someone rebuilt meanwhile, never one whose
// key another process is writing (its commit replaces the bad file).
TEST(DiskStore, QuarantineTakesTheKeyLockAndChecksAgain) {
  TempDir t;
  FakeCompiler fc;
  auto k = key_for("quarantine race");
  {
    KernelCache c(settings_for(t.path));
    ASSERT_TRUE(c.get_or_build(k, kSidecar, fc.fn("payload")).ok());
  }
  DiskStore store(t.path, true, false);
  auto quarantined = [&] { return count_files(store.quarantine_dir(), [](const std::string&) { return true; }); };

  // Rebuilt meanwhile: the entry read as bad earlier is valid now and stays.
  store.quarantine(k.hex, "stale verdict");
  EXPECT_TRUE(stdfs::exists(store.entry_path(k.hex)));
  EXPECT_EQ(store.read(k.hex).found, DiskStore::Found::hit);
  EXPECT_EQ(quarantined(), 0);

  // Bad, and another holder has the key's lock (a writer between sidecar and entry): left alone.
  std::string bytes = slurp(store.entry_path(k.hex));
  bytes[bytes.size() / 2] ^= 0x5a;
  spit(store.entry_path(k.hex), bytes);
  ASSERT_EQ(store.read(k.hex).found, DiskStore::Found::bad);
  {
    auto writer = FileLock::acquire(store.lock_path(k.hex));
    ASSERT_TRUE(writer.ok());
    store.quarantine(k.hex, "checksum");
    EXPECT_TRUE(stdfs::exists(store.entry_path(k.hex)));
    EXPECT_EQ(quarantined(), 0);
  }
  // Bad and unlocked: moved aside with its sidecar, and no lock file is left behind.
  store.quarantine(k.hex, "checksum");
  EXPECT_FALSE(stdfs::exists(store.entry_path(k.hex)));
  EXPECT_FALSE(stdfs::exists(store.sidecar_path(k.hex)));
  EXPECT_FALSE(stdfs::exists(store.lock_path(k.hex)));
  EXPECT_EQ(quarantined(), 2);
}

TEST(KernelCache, CorruptSidecarIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey&) {
    spit(s.sidecar_path(k1.hex), "{\"key\": \"trunc");
  });
}

TEST(KernelCache, SidecarOfAnotherKeyIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey& k2) {
    spit(s.sidecar_path(k1.hex), slurp(s.sidecar_path(k2.hex)));
  });
}

TEST(KernelCache, MissingSidecarIsRebuilt) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey&) {
    ASSERT_EQ(::unlink(s.sidecar_path(k1.hex).c_str()), 0);
  });
}

TEST(KernelCache, EntryWritableByOthersIsRefused) {
  expect_detected_and_rebuilt([](const DiskStore& s, const CacheKey& k1, const CacheKey&) {
    ASSERT_EQ(::chmod(s.entry_path(k1.hex).c_str(), 0666), 0);
  });
}

TEST(KernelCache, VerifyReportsAndFixes) {
  TempDir t;
  FakeCompiler fc;
  auto k1 = key_for("v1");
  auto k2 = key_for("v2");
  KernelCache c(settings_for(t.path));
  ASSERT_TRUE(c.get_or_build(k1, kSidecar, fc.fn("one")).ok());
  ASSERT_TRUE(c.get_or_build(k2, kSidecar, fc.fn("two")).ok());
  DiskStore s(t.path, true, false);
  auto report = c.verify(false);
  EXPECT_EQ(report.checked, 2);
  EXPECT_TRUE(report.bad.empty());

  std::string data = slurp(s.entry_path(k1.hex));
  data[data.size() - 1] ^= 0x40;
  spit(s.entry_path(k1.hex), data);
  // Leftovers: an orphaned sidecar, an old temp file, a lock of a dead holder.
  auto orphan = key_for("orphan");
  ASSERT_TRUE(s.ensure_shard_dir(orphan.hex).ok());
  spit(s.sidecar_path(orphan.hex), "{}");
  std::string tmp = stdfs::path(s.entry_path(k2.hex)).parent_path().string() + "/.tmp-leftover";
  spit(tmp, "partial");
  struct timespec old[2] = {{0, UTIME_OMIT}, {std::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, tmp.c_str(), old, 0), 0);
  spit(s.lock_path(k2.hex), "");

  report = c.verify(false);
  EXPECT_EQ(report.checked, 2);
  ASSERT_EQ(report.bad.size(), 1u);
  EXPECT_NE(report.bad[0].find(s.entry_path(k1.hex)), std::string::npos) << report.bad[0];
  EXPECT_NE(report.bad[0].find("checksum"), std::string::npos) << report.bad[0];
  EXPECT_TRUE(report.cleaned.empty());
  EXPECT_TRUE(stdfs::exists(s.entry_path(k1.hex)));  // fix=false changes nothing

  report = c.verify(true);
  EXPECT_EQ(report.bad.size(), 1u);
  EXPECT_EQ(report.cleaned.size(), 3u);
  EXPECT_FALSE(stdfs::exists(s.entry_path(k1.hex)));
  EXPECT_FALSE(stdfs::exists(s.sidecar_path(orphan.hex)));
  EXPECT_FALSE(stdfs::exists(tmp));
  EXPECT_FALSE(stdfs::exists(s.lock_path(k2.hex)));
  EXPECT_EQ(count_files(s.quarantine_dir(), [](const std::string&) { return true; }), 2);

  report = c.verify(false);
  EXPECT_EQ(report.checked, 1);
  EXPECT_TRUE(report.bad.empty());
}

// ---- eviction ----

TEST(KernelCache, EvictionKeepsTheMostRecentlyUsed) {
  TempDir t;
  FakeCompiler fc;
  const std::string payload(4000, 'x');
  std::uint64_t per_entry = 0;
  {
    KernelCache probe(settings_for(t.sub("probe")));
    ASSERT_TRUE(probe.get_or_build(key_for("size probe"), kSidecar, fc.fn(payload)).ok());
    per_entry = probe.status().bytes;
  }
  ASSERT_GT(per_entry, 4000u);
  auto s = settings_for(t.sub("cache"));
  s.max_bytes = per_entry * 3 + per_entry / 2;  // room for three
  std::vector<CacheKey> keys;
  for (int i = 0; i < 6; ++i) keys.push_back(key_for("evict " + std::to_string(i)));
  {
    KernelCache c(s);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(c.get_or_build(keys[i], kSidecar, fc.fn(payload)).ok());
      std::this_thread::sleep_for(20ms);  // distinct mtimes
    }
  }
  {
    // A disk hit refreshes the LRU clock: key 0 becomes the newest.
    KernelCache c(s);
    auto r = c.get_or_build(keys[0], kSidecar, fc.fn(payload));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->origin, CacheOrigin::user_dir);
    std::this_thread::sleep_for(20ms);
    for (int i = 3; i < 5; ++i) {
      ASSERT_TRUE(c.get_or_build(keys[i], kSidecar, fc.fn(payload)).ok());
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_LE(c.status().bytes, s.max_bytes);
    EXPECT_EQ(c.status().entries, 3u);
  }
  DiskStore store(t.sub("cache"), true, false);
  EXPECT_TRUE(stdfs::exists(store.entry_path(keys[0].hex)));
  EXPECT_FALSE(stdfs::exists(store.entry_path(keys[1].hex)));
  EXPECT_FALSE(stdfs::exists(store.entry_path(keys[2].hex)));
  EXPECT_TRUE(stdfs::exists(store.entry_path(keys[3].hex)));
  EXPECT_TRUE(stdfs::exists(store.entry_path(keys[4].hex)));
  EXPECT_FALSE(stdfs::exists(store.sidecar_path(keys[1].hex)));

  // A cap below one entry still keeps the entry just written.
  s.max_bytes = 1;
  KernelCache tiny(s);
  ASSERT_TRUE(tiny.get_or_build(keys[5], kSidecar, fc.fn(payload)).ok());
  EXPECT_EQ(tiny.status().entries, 1u);
  EXPECT_TRUE(stdfs::exists(store.entry_path(keys[5].hex)));

  // prune() on demand returns what it freed.
  EXPECT_EQ(tiny.prune(1ull << 40), 0u);
  std::uint64_t before = tiny.status().bytes;
  EXPECT_EQ(tiny.prune(0), before);
  EXPECT_EQ(tiny.status().entries, 0u);
}

// What a schema bump leaves (`v<N>` below ours, never read by this build)
// counts toward the cap and is evicted in one LRU order with our entries, so
// an abandoned tree goes oldest first; its emptied dirs go with it; a newer
// schema's tree (a newer build sharing the dir) is neither counted nor touched;
// clear() removes the older tree too.
TEST(KernelCache, OlderSchemaTreeCountsTowardTheCapOldestFirst) {
  TempDir t;
  TempDir probe_dir;
  FakeCompiler fc;
  const std::string payload(4000, 'x');
  std::uint64_t ours = 0;
  {
    KernelCache probe(settings_for(probe_dir.path));
    ASSERT_TRUE(probe.get_or_build(key_for("schema size probe"), kSidecar, fc.fn(payload)).ok());
    ours = probe.status().bytes;
  }
  const std::string older = t.sub("v" + std::to_string(kCacheSchemaVersion - 1));
  const std::string newer = t.sub("v" + std::to_string(kCacheSchemaVersion + 1));
  // Any file pair per key will do: an older layout is not ours to know.
  constexpr std::uint64_t kOldEntry = 4000 + 96;
  auto make_old = [&](int i, int hours_ago) {
    const std::string stem = older + "/0" + std::to_string(i) + "/old" + std::to_string(i);
    stdfs::create_directories(stdfs::path(stem).parent_path());
    spit(stem + ".bin", std::string(4000, 'o'));
    spit(stem + ".json", std::string(96, ' '));
    const std::time_t when = std::time(nullptr) - 3600 * hours_ago;
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    for (const char* ext : {".bin", ".json"}) EXPECT_EQ(::utimensat(AT_FDCWD, (stem + ext).c_str(), ts, 0), 0);
    return stem;
  };
  const std::string old0 = make_old(0, 3), old1 = make_old(1, 2), old2 = make_old(2, 1);
  stdfs::create_directories(newer + "/ab");
  spit(newer + "/ab/newer.bin", std::string(4000, 'n'));
  DiskStore store(t.path, true, false);
  EXPECT_EQ(store.total_bytes(), 3 * kOldEntry);
  EXPECT_EQ(store.older_schema_bytes(), 3 * kOldEntry);

  auto s = settings_for(t.path);
  s.max_bytes = 2 * ours + 2 * kOldEntry + kOldEntry / 2;  // ours two, and two old
  KernelCache c(s);
  EXPECT_EQ(c.status().older_schema_bytes, 3 * kOldEntry) << "cache status shows what the cap counts";
  EXPECT_EQ(c.status().bytes, 0u);
  auto k0 = key_for("schema 0"), k1 = key_for("schema 1");
  ASSERT_TRUE(c.get_or_build(k0, kSidecar, fc.fn(payload)).ok());
  EXPECT_TRUE(stdfs::exists(old0 + ".bin"));  // still under the cap
  ASSERT_TRUE(c.get_or_build(k1, kSidecar, fc.fn(payload)).ok());
  EXPECT_FALSE(stdfs::exists(old0 + ".bin"));
  EXPECT_FALSE(stdfs::exists(old0 + ".json"));
  EXPECT_FALSE(stdfs::exists(stdfs::path(old0).parent_path()));  // emptied dir removed
  EXPECT_TRUE(stdfs::exists(old1 + ".bin"));
  EXPECT_TRUE(stdfs::exists(old2 + ".bin"));
  EXPECT_LE(store.total_bytes(), s.max_bytes);

  // prune() goes through the rest of the old tree before any entry of ours.
  EXPECT_EQ(c.prune(2 * ours + kOldEntry / 2), 2 * kOldEntry);
  EXPECT_FALSE(stdfs::exists(older));
  EXPECT_TRUE(stdfs::exists(store.entry_path(k0.hex)));
  EXPECT_TRUE(stdfs::exists(store.entry_path(k1.hex)));
  EXPECT_TRUE(stdfs::exists(newer + "/ab/newer.bin"));

  make_old(3, 5);
  spit(older + "/03/old3.lock", "");  // a dead holder's lock
  EXPECT_EQ(c.status().older_schema_bytes, kOldEntry);
  ASSERT_TRUE(c.clear().ok());
  EXPECT_FALSE(stdfs::exists(older));
  EXPECT_EQ(c.status().entries, 0u);
  EXPECT_EQ(c.status().older_schema_bytes, 0u);
  EXPECT_TRUE(stdfs::exists(newer + "/ab/newer.bin"));
  EXPECT_EQ(fc.calls, 3);
}

// ---- degradation ----

TEST(KernelCache, UnwritableDirDegradesToMemoryOnly) {
  TempDir t;
  std::string dir = t.sub("ro");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0500), 0);
  if (::access(dir.c_str(), W_OK) == 0) {
    // Root ignores permission bits: use a genuinely unwritable location
    // instead, a path whose parent is a regular file.
    spit(t.sub("plain-file"), "x");
    dir = t.sub("plain-file") + "/cache";
  }
  FakeCompiler fc;
  KernelCache c(settings_for(dir));
  EXPECT_TRUE(is_memory_only(c)) << c.status().mode;
  EXPECT_EQ(c.effective_user_dir(), "");
  auto k = key_for("ro");
  auto r1 = c.get_or_build(k, kSidecar, fc.fn("ro"));
  ASSERT_TRUE(r1.ok()) << r1.error().describe();
  EXPECT_EQ(r1->origin, CacheOrigin::compiled);
  auto r2 = c.get_or_build(k, kSidecar, fc.fn("ro"));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->origin, CacheOrigin::memory);
  EXPECT_EQ(fc.calls, 1);
  EXPECT_EQ(count_suffix(t.path, ".bin"), 0);
}

TEST(KernelCache, PathIsAFileDegradesToMemoryOnly) {
  TempDir t;
  spit(t.sub("file"), "not a dir");
  FakeCompiler fc;
  KernelCache c(settings_for(t.sub("file")));
  EXPECT_TRUE(is_memory_only(c)) << c.status().mode;
  EXPECT_NE(c.status().mode.find("not a directory"), std::string::npos) << c.status().mode;
  auto r = c.get_or_build(key_for("f"), kSidecar, fc.fn("f"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(slurp(t.sub("file")), "not a dir");
  EXPECT_TRUE(c.clear().ok());
}

TEST(KernelCache, HomeUnsetDegradesToMemoryOnly) {
  ScopedKnob home("HOME", std::nullopt);
  ScopedKnob xdg("XDG_CACHE_HOME", std::nullopt);
  ScopedKnob dir("SPARSEJIT_CACHE_DIR", std::nullopt);
  std::string def = default_user_cache_dir();
  auto s = CacheSettings::from_knobs(knobs());
  EXPECT_EQ(s.user_dir, def);
  // Without HOME only the passwd entry can name a home (root has one); a user
  // without any gets an empty dir, which must mean memory only.
  s.user_dir = "";
  FakeCompiler fc;
  KernelCache c(s);
  EXPECT_TRUE(is_memory_only(c)) << c.status().mode;
  EXPECT_EQ(c.effective_user_dir(), "");
  auto k = key_for("home");
  ASSERT_TRUE(c.get_or_build(k, kSidecar, fc.fn("h")).ok());
  auto r = c.get_or_build(k, kSidecar, fc.fn("h"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->origin, CacheOrigin::memory);
  EXPECT_EQ(fc.calls, 1);
  EXPECT_EQ(c.status().memory_entries, 1u);
}

TEST(KernelCache, WriteFailureKeepsServingFromMemory) {
  TempDir t;
  // In a child: a file-size limit makes every write fail (EFBIG, the same
  // path as ENOSPC) without touching this process's limits.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {64, 64};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    KernelCache c(settings_for(t.path));
    FakeCompiler fc;
    auto k = key_for("full disk");
    auto r1 = c.get_or_build(k, kSidecar, fc.fn(std::string(1000, 'z')));
    auto r2 = c.get_or_build(k, kSidecar, fc.fn(std::string(1000, 'z')));
    if (!r1.ok() || !r2.ok()) ::_exit(1);
    if (r1->origin != CacheOrigin::compiled || r2->origin != CacheOrigin::memory || fc.calls != 1) ::_exit(2);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_EQ(count_suffix(t.path, ".bin"), 0);
  EXPECT_EQ(count_suffix(t.path, ".json"), 0);
  EXPECT_EQ(count_suffix(t.path, ".lock"), 0);
  EXPECT_EQ(count_files(t.path, [](const std::string& n) { return fs::starts_with(n, ".tmp-"); }), 0);
}

// ---- security ----

TEST(KernelCache, SharedDirRefusedUnlessAllowed) {
  TempDir t;
  std::string dir = t.sub("shared");
  ASSERT_EQ(::mkdir(dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);  // past the umask
  FakeCompiler fc;
  {
    KernelCache c(settings_for(dir));
    EXPECT_TRUE(is_memory_only(c)) << c.status().mode;
    EXPECT_NE(c.status().mode.find("writable by group/others"), std::string::npos) << c.status().mode;
    ASSERT_TRUE(c.get_or_build(key_for("s"), kSidecar, fc.fn("s")).ok());
    EXPECT_EQ(count_suffix(dir, ".bin"), 0);
  }
  // A symlink to it is judged by the directory it resolves to.
  ASSERT_EQ(::symlink(dir.c_str(), t.sub("link").c_str()), 0);
  {
    KernelCache c(settings_for(t.sub("link")));
    EXPECT_TRUE(is_memory_only(c)) << c.status().mode;
  }
  auto s = settings_for(dir);
  s.allow_shared = true;
  KernelCache c(s);
  EXPECT_EQ(c.status().mode, "readwrite");
  ASSERT_TRUE(c.get_or_build(key_for("s"), kSidecar, fc.fn("s")).ok());
  EXPECT_EQ(count_suffix(dir, ".bin"), 1);
}

TEST(KernelCache, SymlinkToPrivateDirIsFollowed) {
  TempDir t;
  std::string real = t.sub("real");
  ASSERT_EQ(::mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(real.c_str(), t.sub("link").c_str()), 0);
  KernelCache c(settings_for(t.sub("link")));
  EXPECT_EQ(c.status().mode, "readwrite");
  EXPECT_EQ(c.effective_user_dir(), real);
  FakeCompiler fc;
  ASSERT_TRUE(c.get_or_build(key_for("l"), kSidecar, fc.fn("l")).ok());
  EXPECT_EQ(count_suffix(real, ".bin"), 1);
}

TEST(KernelCache, CreatesMissingParentsPrivate) {
  TempDir t;
  std::string dir = t.sub("a/b/c");
  KernelCache c(settings_for(dir));
  EXPECT_EQ(c.status().mode, "readwrite");
  for (const char* p : {"a", "a/b", "a/b/c"}) {
    struct stat st;
    ASSERT_EQ(::stat(t.sub(p).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u) << p;
  }
}

// ---- system dirs and modes ----

std::map<std::string, std::pair<std::int64_t, std::uintmax_t>> snapshot(const std::string& dir) {
  std::map<std::string, std::pair<std::int64_t, std::uintmax_t>> out;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0)
      out[it->path().string()] = {fs::mtime_ns(st), static_cast<std::uintmax_t>(st.st_size)};
  }
  return out;
}

TEST(KernelCache, SystemDirIsReadNeverWrittenOrEvicted) {
  TempDir t;
  FakeCompiler fc;
  std::string sys = t.sub("system");
  auto shipped = key_for("shipped");
  auto broken = key_for("shipped but broken");
  {
    KernelCache warm(settings_for(sys));  // how `sparsejit warm` builds it
    ASSERT_TRUE(warm.get_or_build(shipped, kSidecar, fc.fn("S")).ok());
    ASSERT_TRUE(warm.get_or_build(broken, kSidecar, fc.fn("B")).ok());
  }
  DiskStore sys_store(sys, false, false);
  std::string data = slurp(sys_store.entry_path(broken.hex));
  data.back() ^= 1;
  spit(sys_store.entry_path(broken.hex), data);
  auto before = snapshot(sys);
  std::this_thread::sleep_for(20ms);

  auto s = settings_for(t.sub("user"));
  s.system_dirs = {sys, t.sub("does-not-exist")};
  s.max_bytes = 1;
  KernelCache c(s);
  EXPECT_EQ(c.status().system_dirs, std::vector<std::string>{sys});
  auto r = c.get_or_build(shipped, kSidecar, fc.fn("S"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->origin, CacheOrigin::system_dir);
  EXPECT_EQ(r->object->binary, bytes_of("S"));
  EXPECT_EQ(fc.calls, 2);
  // A bad system entry is skipped (left in place), never loaded: rebuilt into the user dir.
  auto rb = c.get_or_build(broken, kSidecar, fc.fn("B"));
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->origin, CacheOrigin::compiled);
  EXPECT_EQ(rb->object->binary, bytes_of("B"));
  ASSERT_TRUE(c.get_or_build(key_for("user only"), kSidecar, fc.fn("U")).ok());
  std::uint64_t user_bytes = c.status().bytes;
  EXPECT_GT(user_bytes, 0u);
  EXPECT_EQ(c.prune(0), user_bytes);  // only the user dir is pruned
  EXPECT_EQ(c.status().entries, 0u);
  EXPECT_TRUE(c.clear().ok());

  auto report = c.verify(true);
  EXPECT_EQ(report.checked, 2);
  ASSERT_EQ(report.bad.size(), 1u);
  EXPECT_NE(report.bad[0].find("read-only"), std::string::npos) << report.bad[0];
  EXPECT_EQ(snapshot(sys), before);
  EXPECT_FALSE(stdfs::exists(t.sub("user") + "/v1/" + shipped.hex.substr(0, 2) + "/" + shipped.hex + ".bin"));
  auto listed = c.list();
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& e : listed) EXPECT_TRUE(e.read_only);
}

TEST(KernelCache, ModeOffNeverTouchesDisk) {
  TempDir t;
  FakeCompiler fc;
  auto k = key_for("off");
  {
    KernelCache populate(settings_for(t.sub("populated")));
    ASSERT_TRUE(populate.get_or_build(k, kSidecar, fc.fn("O")).ok());
  }
  auto before = snapshot(t.sub("populated"));
  for (const std::string& dir : {t.sub("never"), t.sub("populated")}) {
    auto s = settings_for(dir);
    s.mode = CacheMode::off;
    KernelCache c(s);
    EXPECT_EQ(c.status().mode, "off");
    EXPECT_EQ(c.effective_user_dir(), "");
    EXPECT_EQ(c.find(k.hex), nullptr);
    auto r = c.get_or_build(k, kSidecar, fc.fn("O"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->origin, CacheOrigin::compiled);
    EXPECT_EQ(c.get_or_build(k, kSidecar, fc.fn("O"))->origin, CacheOrigin::memory);
  }
  EXPECT_EQ(fc.calls, 3);
  EXPECT_FALSE(stdfs::exists(t.sub("never")));
  EXPECT_EQ(snapshot(t.sub("populated")), before);
}

TEST(KernelCache, ModeReadNeverWrites) {
  TempDir t;
  FakeCompiler fc;
  auto k = key_for("read");
  auto bad = key_for("read but bad");
  {
    KernelCache populate(settings_for(t.path));
    ASSERT_TRUE(populate.get_or_build(k, kSidecar, fc.fn("R")).ok());
    ASSERT_TRUE(populate.get_or_build(bad, kSidecar, fc.fn("X")).ok());
  }
  DiskStore store(t.path, true, false);
  spit(store.entry_path(bad.hex), "garbage");
  auto before = snapshot(t.path);
  std::this_thread::sleep_for(20ms);

  auto s = settings_for(t.path);
  s.mode = CacheMode::read;
  KernelCache c(s);
  EXPECT_EQ(c.status().mode, "read");
  auto r = c.get_or_build(k, kSidecar, fc.fn("R"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->origin, CacheOrigin::user_dir);
  auto rb = c.get_or_build(bad, kSidecar, fc.fn("X"));
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->origin, CacheOrigin::compiled);
  EXPECT_EQ(rb->object->binary, bytes_of("X"));
  ASSERT_TRUE(c.get_or_build(key_for("new"), kSidecar, fc.fn("N")).ok());
  EXPECT_EQ(c.prune(0), 0u);
  EXPECT_FALSE(c.clear().ok());
  EXPECT_FALSE(c.import_from(t.sub("nothing")).ok());
  EXPECT_EQ(snapshot(t.path), before);  // no new file, no touched mtime, nothing moved
  EXPECT_EQ(fc.calls, 4);

  // read mode on a dir that does not exist does not create it.
  s.user_dir = t.sub("absent");
  KernelCache c2(s);
  EXPECT_EQ(c2.status().mode, "read");
  ASSERT_TRUE(c2.get_or_build(k, kSidecar, fc.fn("R")).ok());
  EXPECT_FALSE(stdfs::exists(t.sub("absent")));
}

// ---- status, list, clear, export/import ----

TEST(KernelCache, StatusListClear) {
  TempDir t;
  FakeCompiler fc;
  KernelCache c(settings_for(t.path));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.get_or_build(key_for("sl" + std::to_string(i)), kSidecar, fc.fn("P")).ok());
  auto st = c.status();
  EXPECT_EQ(st.user_dir, t.path);
  EXPECT_EQ(st.entries, 3u);
  EXPECT_EQ(st.memory_entries, 3u);
  EXPECT_GT(st.bytes, 0u);
  EXPECT_EQ(st.max_bytes, 4ull << 30);
  auto items = c.list();
  ASSERT_EQ(items.size(), 3u);
  for (const auto& e : items) {
    EXPECT_EQ(e.dir, t.path);
    EXPECT_FALSE(e.read_only);
    EXPECT_EQ(e.sidecar["key"], e.key);
    EXPECT_GT(e.last_used_unix, 0);
    EXPECT_TRUE(stdfs::exists(e.path));
  }
  ASSERT_TRUE(c.clear().ok());
  EXPECT_EQ(c.status().entries, 0u);
  EXPECT_EQ(c.status().memory_entries, 0u);
  EXPECT_EQ(count_suffix(t.path, ".json"), 0);
  auto r = c.get_or_build(key_for("sl0"), kSidecar, fc.fn("P"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->origin, CacheOrigin::compiled);
}

// clear() removes each key under its lock, as writers hold it from their
// sidecar to their entry: a writer caught in between (here: this test holding
// the lock, which excludes clear() as another process would, flock locks
// belonging to the open file) keeps its sidecar and its lock file, and its
// entry is whole when it lands. A lock file nobody holds is cleaned.
TEST(KernelCache, ClearLeavesAKeyBeingWrittenWhole) {
  TempDir t;
  FakeCompiler fc;
  auto done = key_for("clear: done");
  auto writing = key_for("clear: being written");
  auto stale = key_for("clear: stale lock");
  KernelCache c(settings_for(t.path));
  ASSERT_TRUE(c.get_or_build(done, kSidecar, fc.fn("D")).ok());
  DiskStore store(t.path, true, false);
  ASSERT_TRUE(store.ensure_shard_dir(writing.hex).ok());
  auto held = FileLock::acquire(store.lock_path(writing.hex));
  ASSERT_TRUE(held.ok()) << held.error().message;
  const nlohmann::json side = {{"key", writing.hex}};
  ASSERT_TRUE(fs::write_file_atomic(store.sidecar_path(writing.hex), side.dump(), 0644).ok());
  struct stat lock_before;
  ASSERT_EQ(::stat(store.lock_path(writing.hex).c_str(), &lock_before), 0);
  ASSERT_TRUE(store.ensure_shard_dir(stale.hex).ok());
  spit(store.lock_path(stale.hex), "");  // left by a killed holder

  ASSERT_TRUE(c.clear().ok());
  EXPECT_FALSE(stdfs::exists(store.entry_path(done.hex)));
  EXPECT_FALSE(stdfs::exists(store.sidecar_path(done.hex)));
  EXPECT_FALSE(stdfs::exists(store.lock_path(stale.hex)));
  EXPECT_TRUE(stdfs::exists(store.sidecar_path(writing.hex))) << "clear removed the sidecar of an entry being written";
  struct stat lock_after;
  ASSERT_EQ(::stat(store.lock_path(writing.hex).c_str(), &lock_after), 0) << "clear removed a held lock file";
  EXPECT_EQ(lock_after.st_ino, lock_before.st_ino);

  // The writer commits its entry and releases: served from disk, not rebuilt.
  ASSERT_TRUE(fs::write_file_atomic(store.entry_path(writing.hex),
                                    cache_format::encode_entry(writing.hex, bytes_of("W")), 0644)
                  .ok());
  held->release();
  KernelCache fresh(settings_for(t.path));
  auto r = fresh.get_or_build(writing, kSidecar, fc.fn("W"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->origin, CacheOrigin::user_dir);
  EXPECT_EQ(r->object->binary, bytes_of("W"));
  EXPECT_TRUE(fresh.verify(false).bad.empty());
  EXPECT_EQ(fc.calls, 1);
  EXPECT_EQ(count_suffix(t.path, ".lock"), 0);
}

TEST(KernelCache, ExportImportRoundTrip) {
  TempDir t;
  FakeCompiler fc;
  std::vector<CacheKey> keys;
  for (int i = 0; i < 3; ++i) keys.push_back(key_for("export " + std::to_string(i)));
  const std::string archive = t.sub("cache.sjkc");
  {
    KernelCache a(settings_for(t.sub("a")));
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(a.get_or_build(keys[i], kSidecar, fc.fn("E" + std::to_string(i))).ok());
    ASSERT_TRUE(a.export_to(archive).ok());
  }
  {
    KernelCache b(settings_for(t.sub("b")));
    auto n = b.import_from(archive);
    ASSERT_TRUE(n.ok()) << n.error().describe();
    EXPECT_EQ(*n, 3);
    EXPECT_EQ(*b.import_from(archive), 0);  // already present
    EXPECT_TRUE(b.verify(false).bad.empty());
  }
  KernelCache b2(settings_for(t.sub("b")));
  for (int i = 0; i < 3; ++i) {
    auto r = b2.get_or_build(keys[i], kSidecar, fc.fn("never"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->origin, CacheOrigin::user_dir);
    EXPECT_EQ(r->object->binary, bytes_of("E" + std::to_string(i)));
    EXPECT_EQ(r->object->sidecar["config"]["head_dim"], 128);
  }
  EXPECT_EQ(fc.calls, 3);

  // A corrupt or truncated archive is rejected whole.
  std::string data = slurp(archive);
  std::string flipped = data;
  flipped[flipped.size() / 2] ^= 0x10;
  spit(t.sub("flipped.sjkc"), flipped);
  spit(t.sub("short.sjkc"), data.substr(0, data.size() - 10));
  spit(t.sub("junk.sjkc"), "hello");
  KernelCache c(settings_for(t.sub("c")));
  for (const char* f : {"flipped.sjkc", "short.sjkc", "junk.sjkc", "missing.sjkc"}) {
    auto n = c.import_from(t.sub(f));
    EXPECT_FALSE(n.ok()) << f;
    if (!n.ok()) EXPECT_FALSE(n.error().message.empty());
  }
  EXPECT_EQ(c.status().entries, 0u);
  EXPECT_EQ(count_files(t.sub("c"), [](const std::string&) { return true; }), 0);
}

TEST(KernelCache, ExportIncludesSystemAndMemoryTiers) {
  TempDir t;
  FakeCompiler fc;
  {
    KernelCache warm(settings_for(t.sub("sys")));
    ASSERT_TRUE(warm.get_or_build(key_for("from sys"), kSidecar, fc.fn("S")).ok());
  }
  auto s = settings_for(t.sub("user"));
  s.system_dirs = {t.sub("sys")};
  KernelCache c(s);
  ASSERT_TRUE(c.get_or_build(key_for("from user"), kSidecar, fc.fn("U")).ok());
  auto off = settings_for("");
  off.mode = CacheMode::off;
  KernelCache mem(off);
  ASSERT_TRUE(mem.get_or_build(key_for("from memory"), kSidecar, fc.fn("M")).ok());
  ASSERT_TRUE(c.export_to(t.sub("all.sjkc")).ok());
  ASSERT_TRUE(mem.export_to(t.sub("mem.sjkc")).ok());
  KernelCache fresh(settings_for(t.sub("fresh")));
  EXPECT_EQ(*fresh.import_from(t.sub("all.sjkc")), 2);
  EXPECT_EQ(*fresh.import_from(t.sub("mem.sjkc")), 1);
  EXPECT_EQ(fresh.status().entries, 3u);
}

TEST(CacheEntryFormat, RoundTripAndRejects) {
  const std::string key(64, 'a');
  auto enc = cache_format::encode_entry(key, bytes_of("payload"));
  EXPECT_EQ(enc.substr(0, 8), "SJKCENT1");
  EXPECT_EQ(enc.size(), cache_format::kEntryFixedHeaderBytes + 64 + 7);
  auto dec = cache_format::decode_entry(enc, key);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(*dec, bytes_of("payload"));
  EXPECT_FALSE(cache_format::decode_entry(enc, std::string(64, 'b')).ok());
  EXPECT_FALSE(cache_format::decode_entry(enc.substr(0, 20), key).ok());
  EXPECT_FALSE(cache_format::decode_entry(enc + "x", key).ok());
  EXPECT_FALSE(cache_format::is_valid_key_hex("ABCD"));
  EXPECT_FALSE(cache_format::is_valid_key_hex("a/"));
  EXPECT_TRUE(cache_format::is_valid_key_hex(key));
}

}  // namespace
}  // namespace sparsejit
