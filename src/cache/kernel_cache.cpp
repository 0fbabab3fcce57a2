#include "cache/kernel_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "cache/disk_store.h"
#include "cache/entry_format.h"
#include "cache/file_lock.h"
#include "log.h"
#include "util/fs.h"
#include "util/hash.h"

#ifndef SPARSEJIT_VERSION
#define SPARSEJIT_VERSION "unknown"
#endif

namespace sparsejit {
namespace {

// Export archive: magic, version, schema, count, then per entry the sidecar
// (JSON text) and the entry file bytes (entry_format.h: carries key and
// checksum); a trailing sha256 hex of everything before it rejects a
// truncated or corrupted archive before anything is written.
constexpr std::string_view kArchiveMagic = "SJKCARC1";
constexpr std::uint32_t kArchiveVersion = 1;

const char* mode_name(CacheMode m) {
  switch (m) {
    case CacheMode::off: return "off";
    case CacheMode::read: return "read";
    case CacheMode::readwrite: return "readwrite";
  }
  return "?";
}

std::string human_bytes(std::uint64_t b) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string plural_dirs(std::size_t n) { return std::to_string(n) + (n == 1 ? " system dir" : " system dirs"); }

Error cache_error(std::string msg) { return make_error("cache", std::move(msg)); }

Result<CodeObject> run_compile(const std::function<Result<CodeObject>()>& compile) {
  if (!compile) return make_error("compile", "no compile function given for a cache miss");
  // A throwing callback must not leave waiters of the single-flight hanging.
  try {
    return compile();
  } catch (const std::exception& e) {
    return make_error("compile", std::string("compile callback threw: ") + e.what());
  } catch (...) {
    return make_error("compile", "compile callback threw a non-standard exception");
  }
}

std::shared_ptr<const CachedObject> make_object(const std::string& key, std::vector<std::uint8_t> binary,
                                                nlohmann::json sidecar) {
  auto obj = std::make_shared<CachedObject>();
  obj->key = key;
  obj->binary = std::move(binary);
  obj->sidecar = std::move(sidecar);
  return obj;
}

struct ArchiveItem {
  std::string key;
  nlohmann::json sidecar;
  std::vector<std::uint8_t> binary;
};

Result<std::vector<ArchiveItem>> parse_archive(const std::string& data, const std::string& file) {
  auto bad = [&file](const std::string& why) { return cache_error("cannot import " + file + ": " + why); };
  const std::size_t head = kArchiveMagic.size() + 4 + 4 + 8;
  if (data.size() < head + 64) return bad("too short to be a cache archive (" + std::to_string(data.size()) + " bytes)");
  if (std::string_view(data).substr(0, kArchiveMagic.size()) != kArchiveMagic) return bad("not a sparsejit cache archive");
  std::uint32_t version = cache_format::get_u32(data.data() + 8);
  if (version != kArchiveVersion) return bad("unsupported archive version " + std::to_string(version));
  std::uint32_t schema = cache_format::get_u32(data.data() + 12);
  if (schema != static_cast<std::uint32_t>(kCacheSchemaVersion))
    return bad("archive holds cache schema v" + std::to_string(schema) + ", this build uses v" +
               std::to_string(kCacheSchemaVersion));
  const std::size_t body_end = data.size() - 64;
  if (sha256_hex(std::string_view(data).substr(0, body_end)) != std::string_view(data).substr(body_end))
    return bad("archive checksum mismatch (corrupt or truncated archive); nothing imported");
  std::uint64_t count = cache_format::get_u64(data.data() + 16);
  std::size_t pos = head;
  auto take = [&](std::string_view& out) -> bool {
    if (body_end - pos < 8) return false;
    std::uint64_t n = cache_format::get_u64(data.data() + pos);
    pos += 8;
    if (n > body_end - pos) return false;
    out = std::string_view(data).substr(pos, n);
    pos += n;
    return true;
  };
  std::vector<ArchiveItem> items;
  for (std::uint64_t i = 0; i < count; ++i) {
    std::string_view side, entry;
    if (!take(side) || !take(entry)) return bad("entry " + std::to_string(i) + " runs past the end of the archive");
    if (entry.size() < cache_format::kEntryFixedHeaderBytes) return bad("entry " + std::to_string(i) + " is truncated");
    std::uint32_t key_len = cache_format::get_u32(entry.data() + 12);
    std::string key(entry.substr(cache_format::kEntryFixedHeaderBytes, std::min<std::size_t>(key_len, 128)));
    if (!cache_format::is_valid_key_hex(key)) return bad("entry " + std::to_string(i) + " has an invalid key");
    auto payload = cache_format::decode_entry(entry, key);
    if (!payload.ok()) return bad("entry " + key + ": " + payload.error().message);
    auto j = nlohmann::json::parse(side, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return bad("entry " + key + ": the sidecar is not a JSON object");
    auto it = j.find("key");
    if (it == j.end() || !it->is_string() || it->get<std::string>() != key)
      return bad("entry " + key + ": the sidecar names another key");
    items.push_back({key, std::move(j), std::move(payload).value()});
  }
  if (pos != body_end) return bad("trailing bytes after " + std::to_string(count) + " entries");
  return items;
}

}  // namespace

const char* to_string(CacheOrigin o) {
  switch (o) {
    case CacheOrigin::memory: return "memory";
    case CacheOrigin::system_dir: return "system_dir";
    case CacheOrigin::user_dir: return "user_dir";
    case CacheOrigin::compiled: return "compiled";
  }
  return "?";
}

CacheSettings CacheSettings::from_knobs(const Knobs& k) {
  CacheSettings s;
  s.user_dir = k.cache_dir;
  s.system_dirs = k.system_cache_dirs;
  s.mode = k.cache_mode;
  // 0 means "not set" (a default-constructed Knobs); an empty cache is never what anyone wants.
  if (k.cache_max_bytes > 0) s.max_bytes = k.cache_max_bytes;
  s.allow_shared = k.cache_allow_shared;
  return s;
}

struct KernelCache::Impl {
  CacheSettings settings;
  std::vector<DiskStore> system_stores;
  std::optional<DiskStore> user_store;  // readable (read) or writable (readwrite)
  std::string degraded_reason;          // non-empty: the user dir is unusable, memory only

  mutable std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<const CachedObject>> memory;
  std::unordered_map<std::string, std::shared_future<Result<CacheResult>>> inflight;
  std::mutex evict_mu;  // one eviction at a time in this process

  explicit Impl(CacheSettings s) : settings(std::move(s)) {
    if (settings.mode == CacheMode::off) {
      log::info("cache: memory only (SPARSEJIT_CACHE=off)");
      return;
    }
    for (const auto& dir : settings.system_dirs) {
      if (dir.empty()) continue;
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0) {
        log::debug("cache: system dir " + dir + " does not exist; skipped");
        continue;
      }
      std::string resolved;
      if (auto why = unsafe_dir_reason(dir, /*require_owner=*/false, settings.allow_shared, &resolved)) {
        log::warn_once("cache-system:" + dir, "cache: ignoring system dir: " + *why);
        continue;
      }
      system_stores.emplace_back(resolved, /*writable=*/false, settings.allow_shared);
    }
    open_user_dir();
    log::info(startup_line());
  }

  void degrade(const std::string& reason) {
    user_store.reset();
    degraded_reason = reason;
    log::warn_once("cache-degraded:" + settings.user_dir + ":" + reason, "cache: " + reason + "; using memory only");
  }

  void open_user_dir() {
    const std::string& dir = settings.user_dir;
    if (dir.empty()) return degrade("no user cache dir (HOME and XDG_CACHE_HOME unset, SPARSEJIT_CACHE_DIR empty)");
    if (settings.mode == CacheMode::readwrite) {
      if (auto s = fs::make_dirs(dir, 0700); !s.ok()) return degrade("cannot create " + dir + " (" + s.message + ")");
    } else {
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT) return;  // read mode never creates; nothing cached yet
    }
    std::string root;
    if (auto why = unsafe_dir_reason(dir, /*require_owner=*/true, settings.allow_shared, &root)) return degrade(*why);
    if (settings.mode == CacheMode::read) {
      user_store.emplace(root, /*writable=*/false, settings.allow_shared);
      return;
    }
    // Read-only mounts and permission problems show up here, not on the first write.
    std::string probe = root + "/" + std::string(fs::kTempPrefix) + "probe-" + fs::unique_suffix();
    fs::UniqueFd fd(::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) return degrade(fs::IoStatus::from_errno(errno, root + " is not writable").message);
    fd.reset();
    ::unlink(probe.c_str());
    DiskStore store(root, /*writable=*/true, settings.allow_shared);
    if (auto s = fs::make_dirs(store.version_dir(), 0700); !s.ok()) return degrade(s.message);
    user_store.emplace(std::move(store));
  }

  std::string mode_text() const {
    if (settings.mode == CacheMode::off) return "off";
    if (!degraded_reason.empty()) return "memory-only (" + degraded_reason + ")";
    return mode_name(settings.mode);
  }

  std::string startup_line() const {
    std::string sys = plural_dirs(system_stores.size());
    if (!degraded_reason.empty()) return "cache: memory only (" + degraded_reason + "), " + sys;
    if (!user_store) return "cache: " + settings.user_dir + " (read, does not exist yet, " + sys + ")";
    std::string line = "cache: " + user_store->root() + " (" + mode_name(settings.mode);
    if (user_store->writable()) line += ", cap " + human_bytes(settings.max_bytes);
    return line + ", " + sys + ")";
  }

  bool user_writable() const { return user_store && user_store->writable(); }

  static CacheResult hit(const std::string& key, DiskStore::ReadResult&& r, CacheOrigin origin) {
    return CacheResult{make_object(key, std::move(r.binary), std::move(r.sidecar)), origin};
  }

  // System dirs first (shipped, read-only), then the user dir.
  std::optional<CacheResult> lookup_disk(const std::string& key) const {
    if (settings.mode == CacheMode::off) return std::nullopt;
    for (const auto& store : system_stores) {
      auto r = store.read(key);
      if (r.found == DiskStore::Found::hit) return hit(key, std::move(r), CacheOrigin::system_dir);
      if (r.found == DiskStore::Found::bad) store.quarantine(key, r.why);  // read-only: logged only
    }
    if (user_store) return lookup_user(key);
    return std::nullopt;
  }

  // key_locked: the caller holds the key's lock (a bad entry is then moved aside without taking it again).
  std::optional<CacheResult> lookup_user(const std::string& key, bool key_locked = false) const {
    auto r = user_store->read(key);
    if (r.found == DiskStore::Found::hit) {
      user_store->touch(key);  // the LRU clock
      return hit(key, std::move(r), CacheOrigin::user_dir);
    }
    if (r.found == DiskStore::Found::bad) user_store->quarantine(key, r.why, key_locked);
    return std::nullopt;
  }

  Result<CacheResult> build(const CacheKey& key, const nlohmann::json& sidecar,
                            const std::function<Result<CodeObject>()>& compile) {
    if (auto h = lookup_disk(key.hex)) return *h;

    // Miss: serialize with other processes on this key, then look again.
    std::optional<FileLock> lock;
    if (user_writable()) {
      auto made = user_store->ensure_shard_dir(key.hex);
      auto l = made.ok() ? FileLock::acquire(user_store->lock_path(key.hex)) : Result<FileLock>(cache_error(made.message));
      if (l.ok()) {
        lock.emplace(std::move(l).value());
        if (auto h = lookup_user(key.hex, true)) return *h;  // another process built it meanwhile
      } else {
        log::warn_once("cache-lock:" + user_store->root(),
                       "cache: " + l.error().message + "; compiling without the cross-process lock");
      }
    }

    auto t0 = std::chrono::steady_clock::now();
    auto code = run_compile(compile);
    if (!code.ok()) return std::move(code).error();
    double seconds = code->seconds > 0
                         ? code->seconds
                         : std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    nlohmann::json side = sidecar.is_object() ? sidecar : nlohmann::json::object();
    if (!sidecar.is_object() && !sidecar.is_null()) side["config"] = sidecar;
    side["key"] = key.hex;
    side["key_inputs"] = key.inputs;
    side["compile_log"] = code->log;
    side["compile_seconds"] = seconds;
    side["created_unix"] = static_cast<std::int64_t>(std::time(nullptr));
    side["binary_bytes"] = code->binary.size();
    side["tool_version"] = SPARSEJIT_VERSION;
    side["schema"] = kCacheSchemaVersion;
    auto obj = make_object(key.hex, std::move(code->binary), std::move(side));

    if (user_writable()) {
      auto s = user_store->write(key.hex, obj->sidecar, obj->binary);
      if (!s.ok()) {
        log::warn_once("cache-write:" + user_store->root() + ":" + std::to_string(s.err),
                       "cache: could not store a kernel in " + user_store->root() + " (" + s.message +
                           "); keeping it in memory only");
      } else {
        std::lock_guard<std::mutex> g(evict_mu);
        user_store->evict_to(settings.max_bytes, key.hex);
      }
    }
    return CacheResult{std::move(obj), CacheOrigin::compiled};
  }
};

KernelCache::KernelCache(CacheSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}
KernelCache::~KernelCache() = default;

const CacheSettings& KernelCache::settings() const { return impl_->settings; }

std::string KernelCache::effective_user_dir() const { return impl_->user_store ? impl_->user_store->root() : ""; }

Result<CacheResult> KernelCache::get_or_build(const CacheKey& key, const nlohmann::json& sidecar,
                                              const std::function<Result<CodeObject>()>& compile) {
  if (!cache_format::is_valid_key_hex(key.hex))
    return cache_error("invalid cache key '" + key.hex + "' (expected lowercase hex from make_cache_key)");
  std::promise<Result<CacheResult>> promise;
  {
    std::unique_lock<std::mutex> g(impl_->mu);
    if (auto it = impl_->memory.find(key.hex); it != impl_->memory.end())
      return CacheResult{it->second, CacheOrigin::memory};
    if (auto it = impl_->inflight.find(key.hex); it != impl_->inflight.end()) {
      auto fut = it->second;
      g.unlock();
      // The leader's error, or its object served from this process's memory:
      // only the leader reports `compiled`, so callers counting compiles stay right.
      const Result<CacheResult>& led = fut.get();
      if (!led.ok()) return led.error();
      return CacheResult{led->object, CacheOrigin::memory};
    }
    impl_->inflight.emplace(key.hex, promise.get_future().share());
  }
  Result<CacheResult> r = impl_->build(key, sidecar, compile);
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    if (r.ok()) impl_->memory[key.hex] = r->object;  // a failure is not cached: the next call retries
    impl_->inflight.erase(key.hex);
  }
  promise.set_value(r);
  return r;
}

std::shared_ptr<const CachedObject> KernelCache::find(const std::string& key_hex) {
  if (!cache_format::is_valid_key_hex(key_hex)) return nullptr;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    if (auto it = impl_->memory.find(key_hex); it != impl_->memory.end()) return it->second;
  }
  auto h = impl_->lookup_disk(key_hex);
  if (!h) return nullptr;
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->memory.emplace(key_hex, h->object).first->second;
}

nlohmann::json to_json(const CacheStatus& s) {
  return {{"user_dir", s.user_dir},
          {"system_dirs", s.system_dirs},
          {"mode", s.mode},
          {"entries", s.entries},
          {"bytes", s.bytes},
          {"older_schema_bytes", s.older_schema_bytes},
          {"max_bytes", s.max_bytes},
          {"memory_entries", s.memory_entries}};
}

CacheStatus KernelCache::status() const {
  CacheStatus s;
  s.user_dir = effective_user_dir();
  for (const auto& st : impl_->system_stores) s.system_dirs.push_back(st.root());
  s.mode = impl_->mode_text();
  s.max_bytes = impl_->settings.max_bytes;
  if (impl_->user_store) {
    for (const auto& e : impl_->user_store->scan()) {
      ++s.entries;
      s.bytes += e.bytes;
    }
    s.older_schema_bytes = impl_->user_store->older_schema_bytes();
  }
  std::lock_guard<std::mutex> g(impl_->mu);
  s.memory_entries = impl_->memory.size();
  return s;
}

std::vector<CacheEntryInfo> KernelCache::list() const {
  std::vector<CacheEntryInfo> out;
  auto add = [&out](const DiskStore& store) {
    for (auto& e : store.scan()) {
      CacheEntryInfo info;
      info.key = e.key;
      info.dir = store.root();
      info.path = e.path;
      info.bytes = e.bytes;
      info.last_used_unix = e.mtime_ns / 1000000000LL;
      info.read_only = !store.writable();
      std::string text;
      if (fs::read_file(store.sidecar_path(e.key), text).ok()) {
        auto j = nlohmann::json::parse(text, nullptr, false);
        if (!j.is_discarded()) info.sidecar = std::move(j);
      }
      out.push_back(std::move(info));
    }
  };
  for (const auto& st : impl_->system_stores) add(st);
  if (impl_->user_store) add(*impl_->user_store);
  return out;
}

VerifyReport KernelCache::verify(bool fix) const {
  VerifyReport report;
  auto merge = [&report](DiskStore::VerifyOutcome o) {
    report.checked += o.checked;
    for (auto& b : o.bad) report.bad.push_back(std::move(b));
    for (auto& c : o.cleaned) report.cleaned.push_back(std::move(c));
  };
  for (const auto& st : impl_->system_stores) merge(st.verify(false));
  if (impl_->user_store) merge(impl_->user_store->verify(fix));
  return report;
}

std::uint64_t KernelCache::prune(std::uint64_t max_bytes) {
  if (!impl_->user_writable()) return 0;
  std::lock_guard<std::mutex> g(impl_->evict_mu);
  return impl_->user_store->evict_to(max_bytes, "");
}

Status KernelCache::clear() {
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->memory.clear();
  }
  if (!impl_->user_store) return ok_status();  // memory only: nothing on disk is ours
  if (!impl_->user_store->writable())
    return cache_error("the cache is read-only (SPARSEJIT_CACHE=read); " + impl_->user_store->root() + " left as is");
  std::lock_guard<std::mutex> g(impl_->evict_mu);
  if (auto s = impl_->user_store->clear(); !s.ok()) return cache_error(s.message);
  return ok_status();
}

Status KernelCache::export_to(const std::string& file) const {
  // Every valid entry of every tier, first tier wins for a key present twice.
  std::map<std::string, std::shared_ptr<const CachedObject>> all;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    for (const auto& [k, obj] : impl_->memory) all.emplace(k, obj);
  }
  auto add = [&all](const DiskStore& store) {
    for (const auto& e : store.scan()) {
      if (all.count(e.key)) continue;
      auto r = store.read(e.key);
      if (r.found != DiskStore::Found::hit) continue;  // verify reports bad ones
      all.emplace(e.key, make_object(e.key, std::move(r.binary), std::move(r.sidecar)));
    }
  };
  for (const auto& st : impl_->system_stores) add(st);
  if (impl_->user_store) add(*impl_->user_store);

  std::string out(kArchiveMagic);
  cache_format::put_u32(out, kArchiveVersion);
  cache_format::put_u32(out, static_cast<std::uint32_t>(kCacheSchemaVersion));
  cache_format::put_u64(out, all.size());
  for (const auto& [key, obj] : all) {
    std::string side = obj->sidecar.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string entry = cache_format::encode_entry(key, obj->binary);
    cache_format::put_u64(out, side.size());
    out += side;
    cache_format::put_u64(out, entry.size());
    out += entry;
  }
  out += sha256_hex(out);
  if (auto s = fs::write_file_atomic(file, out, 0644); !s.ok()) return cache_error("export failed: " + s.message);
  return ok_status();
}

Result<int> KernelCache::import_from(const std::string& file) {
  if (!impl_->user_writable())
    return cache_error("cannot import " + file + ": no writable user cache dir (mode " + impl_->mode_text() + ")");
  std::string data;
  if (auto s = fs::read_file(file, data, /*nofollow=*/false); !s.ok()) return cache_error("cannot import: " + s.message);
  // Everything is validated before the first write: a bad archive writes nothing.
  auto items = parse_archive(data, file);
  if (!items.ok()) return std::move(items).error();
  const DiskStore& store = *impl_->user_store;
  int imported = 0;
  for (const auto& item : *items) {
    if (store.read(item.key).found == DiskStore::Found::hit) continue;
    if (auto s = store.ensure_shard_dir(item.key); !s.ok()) return cache_error("import failed: " + s.message);
    auto lock = FileLock::acquire(store.lock_path(item.key));
    if (lock.ok() && store.read(item.key).found == DiskStore::Found::hit) continue;
    if (auto s = store.write(item.key, item.sidecar, item.binary); !s.ok())
      return cache_error("import failed after " + std::to_string(imported) + " entries: " + s.message);
    ++imported;
  }
  std::lock_guard<std::mutex> g(impl_->evict_mu);
  store.evict_to(impl_->settings.max_bytes, "");
  return imported;
}

}  // namespace sparsejit
