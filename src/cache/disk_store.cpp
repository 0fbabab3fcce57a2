#include "cache/disk_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "cache/entry_format.h"
#include "cache/file_lock.h"
#include "cache/kernel_cache.h"
#include "log.h"

namespace sparsejit {
namespace {

constexpr std::int64_t kStaleTempNs = 60LL * 1000000000LL;  // a live writer finishes well within a minute
constexpr std::size_t kQuarantineKeep = 64;                // files; older ones are deleted

std::string mode_octal(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_shard_name(const std::string& n) {
  return n.size() == 2 && cache_format::is_valid_key_hex(n);
}

std::string stem(const std::string& name, std::string_view ext) { return name.substr(0, name.size() - ext.size()); }

bool exists_nofollow(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

// Whether `p` still names the file `st` was taken of (a rename over it gives a
// new inode and ctime, even where the inode number is reused).
bool still_names(const std::string& p, const struct stat& st) {
  struct stat now;
  return ::lstat(p.c_str(), &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev &&
         now.st_ctim.tv_sec == st.st_ctim.tv_sec && now.st_ctim.tv_nsec == st.st_ctim.tv_nsec;
}

// Removes temp files (write_file_atomic's) older than kStaleTempNs in `dir`:
// those of writers killed mid-write, which no live writer owns any more.
void sweep_stale_temps(const std::string& dir, std::int64_t now) {
  for (const auto& n : fs::list_dir(dir)) {
    if (!fs::starts_with(n, fs::kTempPrefix)) continue;
    std::string p = dir + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && now - fs::mtime_ns(st) > kStaleTempNs) ::unlink(p.c_str());
  }
}

// One key's files in one directory (`<stem>.*`), guarded by `<stem>.lock`:
// `<key>.bin` and `<key>.json` in our tree; whatever an older schema kept
// under a stem in its.
struct KeyFiles {
  std::string dir;
  std::string stem;
  std::uint64_t bytes = 0;
  std::int64_t mtime_ns = 0;  // the newest file's: the last use
  std::string lock_path() const { return dir + "/" + stem + ".lock"; }
};

// Removes a key's files holding its lock, sidecars (.json) last. Writers hold
// it from their sidecar to their entry, so no one sees an entry without its
// sidecar or loses the sidecar it just wrote. The lock file goes with the
// release; one held by someone else is never removed. nullopt: the lock is
// held (the key is being written), nothing removed.
std::optional<std::uint64_t> remove_key_files(const KeyFiles& k) {
  bool busy = false;
  auto lock = FileLock::try_acquire(k.lock_path(), &busy);
  if (!lock && busy) return std::nullopt;
  // No lock file can be made here (full or odd dir): then no writer holds one either.
  // The files are listed under the lock: a writer may have committed more since the scan.
  const std::string prefix = k.stem + ".";
  std::vector<std::string> order;
  for (const auto& n : fs::list_dir(k.dir))
    if ((n == k.stem || fs::starts_with(n, prefix)) && n != prefix + "lock") order.push_back(n);
  std::stable_partition(order.begin(), order.end(), [](const std::string& n) { return !fs::ends_with(n, ".json"); });
  std::uint64_t freed = 0;
  for (const auto& n : order) {
    std::string p = k.dir + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && ::unlink(p.c_str()) == 0) freed += static_cast<std::uint64_t>(st.st_size);
  }
  return freed;
}

KeyFiles key_files_of(const DiskStore::EntryStat& e) { return {fs::dirname_of(e.path), e.key, e.bytes, e.mtime_ns}; }

// `<root>/v<N>` for every N below this build's schema (real directories only).
std::vector<std::string> older_schema_dirs(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& n : fs::list_dir(root)) {
    if (n.size() < 2 || n.size() > 9 || n[0] != 'v' ||
        !std::all_of(n.begin() + 1, n.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      continue;
    const long v = std::stol(n.substr(1));
    if (n != "v" + std::to_string(v) || v >= kCacheSchemaVersion) continue;
    std::string p = root + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) out.push_back(p);
  }
  return out;
}

// Every file under an older schema's tree, grouped by directory and stem (the
// name up to its first dot), without following symlinks. Dot files are an
// older writer's temp files: skipped here, removed by sweep_stale_dotfiles.
void collect_older_key_files(const std::string& dir, std::vector<KeyFiles>& out, int depth = 0) {
  if (depth > 8) return;
  std::map<std::string, KeyFiles> by_stem;
  for (const auto& n : fs::list_dir(dir)) {
    std::string p = dir + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      collect_older_key_files(p, out, depth + 1);
      continue;
    }
    if (n[0] == '.') continue;
    std::string stem = n.substr(0, n.find('.'));
    KeyFiles& k = by_stem[stem];
    k.dir = dir;
    k.stem = stem;
    if (n == stem + ".lock") continue;  // a lock alone still makes a group: removing it cleans a stale lock
    k.bytes += static_cast<std::uint64_t>(st.st_size);
    k.mtime_ns = std::max(k.mtime_ns, fs::mtime_ns(st));
  }
  for (auto& [stem, k] : by_stem) out.push_back(std::move(k));
}

void sweep_stale_dotfiles(const std::string& dir, std::int64_t now, int depth = 0) {
  if (depth > 8) return;
  for (const auto& n : fs::list_dir(dir)) {
    std::string p = dir + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) sweep_stale_dotfiles(p, now, depth + 1);
    else if (n[0] == '.' && now - fs::mtime_ns(st) > kStaleTempNs) ::unlink(p.c_str());
  }
}

// rmdir bottom-up: only empty directories go (a live older build's files stay).
void remove_empty_dirs(const std::string& dir, int depth = 0) {
  if (depth > 8) return;
  for (const auto& n : fs::list_dir(dir)) {
    std::string p = dir + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) remove_empty_dirs(p, depth + 1);
  }
  ::rmdir(dir.c_str());
}

}  // namespace

std::optional<std::string> unsafe_dir_reason(const std::string& dir, bool require_owner, bool allow_shared,
                                             std::string* resolved) {
  std::unique_ptr<char, void (*)(void*)> real(::realpath(dir.c_str(), nullptr), &std::free);
  if (!real) return fs::IoStatus::from_errno(errno, "cannot resolve " + dir).message;
  std::string r = real.get();
  std::string shown = r == dir ? dir : dir + " (-> " + r + ")";
  struct stat st;
  if (::stat(r.c_str(), &st) != 0) return fs::IoStatus::from_errno(errno, "stat " + shown).message;
  if (!S_ISDIR(st.st_mode)) return shown + " is not a directory";
  if (!allow_shared && (st.st_mode & (S_IWGRP | S_IWOTH)))
    return shown + " is writable by group/others (mode " + mode_octal(st.st_mode) +
           "); code objects are executable code: set SPARSEJIT_CACHE_ALLOW_SHARED=1 to accept it";
  if (require_owner && !allow_shared && st.st_uid != ::geteuid())
    return shown + " is owned by uid " + std::to_string(st.st_uid) + ", not by the current user (uid " +
           std::to_string(::geteuid()) + "); set SPARSEJIT_CACHE_ALLOW_SHARED=1 to accept it";
  if (resolved) *resolved = r;
  return std::nullopt;
}

DiskStore::DiskStore(std::string root, bool writable, bool allow_shared)
    : root_(std::move(root)), writable_(writable), allow_shared_(allow_shared) {}

std::string DiskStore::version_dir() const { return root_ + "/v" + std::to_string(kCacheSchemaVersion); }
std::string DiskStore::shard_dir(const std::string& key) const { return version_dir() + "/" + key.substr(0, 2); }
std::string DiskStore::entry_path(const std::string& key) const { return shard_dir(key) + "/" + key + ".bin"; }
std::string DiskStore::sidecar_path(const std::string& key) const { return shard_dir(key) + "/" + key + ".json"; }
std::string DiskStore::lock_path(const std::string& key) const { return shard_dir(key) + "/" + key + ".lock"; }
std::string DiskStore::quarantine_dir() const { return root_ + "/quarantine"; }

DiskStore::ReadResult DiskStore::read(const std::string& key) const {
  ReadResult r;
  auto bad = [&r](std::string why) {
    r.found = Found::bad;
    r.why = std::move(why);
    return std::move(r);
  };
  std::string data;
  struct stat st;
  auto io = fs::read_file(entry_path(key), data, /*nofollow=*/true, &st);
  if (!io.ok()) {
    if (io.err == ENOENT || io.err == ENOTDIR) return r;
    if (io.err == ELOOP) return bad("the entry is a symlink");
    return bad(io.message);
  }
  if (!allow_shared_ && (st.st_mode & (S_IWGRP | S_IWOTH)))
    return bad("the entry is writable by group/others (mode " + mode_octal(st.st_mode) + ")");
  auto payload = cache_format::decode_entry(data, key);
  if (!payload.ok()) return bad(payload.error().message);

  std::string side;
  io = fs::read_file(sidecar_path(key), side, /*nofollow=*/true);
  if (!io.ok()) {
    // Evicted, cleared or replaced by another process while we read: a plain
    // miss (readers take no lock; a builder looks again under the key's lock).
    if (io.err == ENOENT && !still_names(entry_path(key), st)) return r;
    return bad(io.err == ENOENT ? "the sidecar is missing" : io.message);
  }
  auto j = nlohmann::json::parse(side, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("the sidecar is not a JSON object");
  auto it = j.find("key");
  if (it == j.end() || !it->is_string() || it->get<std::string>() != key)
    return bad("the sidecar names another key (" + (it == j.end() ? std::string("none") : it->dump()) + ")");
  r.found = Found::hit;
  r.binary = std::move(payload).value();
  r.sidecar = std::move(j);
  return r;
}

void DiskStore::quarantine_files(const std::string& bin, const std::string& json, const std::string& why) const {
  if (!writable_) {
    log::warn_once("cache-bad:" + bin, "cache: ignoring bad entry " + bin + ": " + why + " (read-only, left in place)");
    return;
  }
  std::string qdir = quarantine_dir();
  auto made = fs::make_dirs(qdir, 0700);
  std::string tag = std::to_string(std::time(nullptr)) + "-" + fs::random_hex(6);
  for (const std::string* src : {&bin, &json}) {
    std::string dst = qdir + "/" + fs::basename_of(*src) + "." + tag;
    // If moving fails (quarantine unusable), still get the bad file out of the way.
    if (!made.ok() || ::rename(src->c_str(), dst.c_str()) != 0) ::unlink(src->c_str());
  }
  log::warn("cache: bad entry " + bin + ": " + why + "; moved aside to " + qdir);
  trim_quarantine();
}

void DiskStore::quarantine(const std::string& key, const std::string& why, bool key_locked) const {
  std::optional<FileLock> lock;
  if (writable_ && !key_locked) {
    bool busy = false;
    lock = FileLock::try_acquire(lock_path(key), &busy);
    if (!lock && busy) {
      log::warn("cache: bad entry " + entry_path(key) + ": " + why + "; left to the process rewriting it");
      return;
    }
    // No lock file can be made here (full or odd dir): then no writer holds one either.
    if (read(key).found != Found::bad) return;  // rebuilt (or removed) since it was read
  }
  quarantine_files(entry_path(key), sidecar_path(key), why);
}

void DiskStore::trim_quarantine() const {
  std::string qdir = quarantine_dir();
  std::vector<std::pair<std::int64_t, std::string>> files;
  for (const auto& n : fs::list_dir(qdir)) {
    struct stat st;
    std::string p = qdir + "/" + n;
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.emplace_back(st.st_ctim.tv_sec, p);
  }
  if (files.size() <= kQuarantineKeep) return;
  std::sort(files.begin(), files.end());
  for (std::size_t i = 0; i + kQuarantineKeep < files.size(); ++i) ::unlink(files[i].second.c_str());
}

fs::IoStatus DiskStore::ensure_shard_dir(const std::string& key) const { return fs::make_dirs(shard_dir(key), 0700); }

fs::IoStatus DiskStore::write(const std::string& key, const nlohmann::json& sidecar,
                              const std::vector<std::uint8_t>& binary) const {
  if (auto s = ensure_shard_dir(key); !s.ok()) return s;
  // Compile logs may hold any bytes: replace invalid UTF-8 rather than throw.
  std::string side = sidecar.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (auto s = fs::write_file_atomic(sidecar_path(key), side, 0644); !s.ok()) return s;
  auto s = fs::write_file_atomic(entry_path(key), cache_format::encode_entry(key, binary), 0644);
  // Do not leave an orphaned sidecar behind (unless an older valid entry still uses it).
  if (!s.ok() && !exists_nofollow(entry_path(key))) ::unlink(sidecar_path(key).c_str());
  return s;
}

void DiskStore::touch(const std::string& key) const {
  if (writable_) (void)fs::touch_now(entry_path(key));
}

std::vector<DiskStore::EntryStat> DiskStore::scan() const {
  std::vector<EntryStat> out;
  std::string vdir = version_dir();
  for (const auto& shard : fs::list_dir(vdir)) {
    if (!is_shard_name(shard)) continue;
    std::string sdir = vdir + "/" + shard;
    for (const auto& name : fs::list_dir(sdir)) {
      if (!fs::ends_with(name, ".bin")) continue;
      std::string key = stem(name, ".bin");
      if (!cache_format::is_valid_key_hex(key)) continue;
      EntryStat e;
      e.key = key;
      e.path = sdir + "/" + name;
      struct stat st;
      if (::lstat(e.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      e.bytes = static_cast<std::uint64_t>(st.st_size);
      e.mtime_ns = fs::mtime_ns(st);
      if (::lstat((sdir + "/" + key + ".json").c_str(), &st) == 0) e.bytes += static_cast<std::uint64_t>(st.st_size);
      out.push_back(std::move(e));
    }
  }
  return out;
}

std::uint64_t DiskStore::older_schema_bytes() const {
  std::vector<KeyFiles> older;
  for (const auto& dir : older_schema_dirs(root_)) collect_older_key_files(dir, older);
  std::uint64_t total = 0;
  for (const auto& k : older) total += k.bytes;
  return total;
}

std::uint64_t DiskStore::total_bytes() const {
  std::uint64_t total = older_schema_bytes();
  for (const auto& e : scan()) total += e.bytes;
  return total;
}

std::uint64_t DiskStore::remove_entry(const EntryStat& e) const { return remove_key_files(key_files_of(e)).value_or(0); }

std::uint64_t DiskStore::evict_to(std::uint64_t max_bytes, const std::string& keep) const {
  if (!writable_) return 0;
  // Temp files left by killed writers are invisible to the size cap: without
  // this sweep a crash-looping process grows the dir without bound until
  // someone runs `cache verify --fix`.
  const std::int64_t now = now_ns();
  sweep_stale_temps(root_, now);
  for (const auto& shard : fs::list_dir(version_dir()))
    if (is_shard_name(shard)) sweep_stale_temps(version_dir() + "/" + shard, now);
  // Older schemas' trees are never read again by this build but still take
  // space: one LRU order over both, so an abandoned tree (its clock stopped at
  // the upgrade) goes first while a tree an older build still uses ages like ours.
  const auto older_dirs = older_schema_dirs(root_);
  std::vector<KeyFiles> keys;
  for (const auto& e : scan()) keys.push_back(key_files_of(e));
  for (const auto& dir : older_dirs) {
    sweep_stale_dotfiles(dir, now);
    collect_older_key_files(dir, keys);
  }
  std::uint64_t total = 0;
  for (const auto& k : keys) total += k.bytes;
  if (total <= max_bytes) return 0;
  std::sort(keys.begin(), keys.end(), [](const KeyFiles& a, const KeyFiles& b) {
    return std::tie(a.mtime_ns, a.dir, a.stem) < std::tie(b.mtime_ns, b.dir, b.stem);
  });
  const std::string keep_dir = keep.empty() ? "" : shard_dir(keep);
  std::uint64_t freed = 0;
  for (const auto& k : keys) {
    if (total <= max_bytes) break;
    if (k.stem == keep && k.dir == keep_dir) continue;
    auto f = remove_key_files(k);
    if (!f) continue;  // being written by another process: not ours to take
    freed += *f;
    total -= std::min(total, k.bytes);
  }
  for (const auto& dir : older_dirs) remove_empty_dirs(dir);
  if (freed) log::debug("cache: evicted " + std::to_string(freed) + " bytes from " + root_);
  return freed;
}

DiskStore::VerifyOutcome DiskStore::verify(bool fix) const {
  VerifyOutcome out;
  const bool can_fix = fix && writable_;
  const std::int64_t now = now_ns();
  auto old_enough = [now](const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 && now - fs::mtime_ns(st) > kStaleTempNs;
  };
  auto clean_temps = [&](const std::string& dir, const std::vector<std::string>& names) {
    for (const auto& n : names) {
      std::string p = dir + "/" + n;
      if (can_fix && fs::starts_with(n, fs::kTempPrefix) && old_enough(p) && ::unlink(p.c_str()) == 0)
        out.cleaned.push_back(p + " (stale temp file)");
    }
  };
  clean_temps(root_, fs::list_dir(root_));

  std::string vdir = version_dir();
  for (const auto& shard : fs::list_dir(vdir)) {
    std::string sdir = vdir + "/" + shard;
    struct stat st;
    if (::lstat(sdir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    auto names = fs::list_dir(sdir);
    std::set<std::string> present(names.begin(), names.end());
    clean_temps(sdir, names);
    for (const auto& name : names) {
      std::string p = sdir + "/" + name;
      if (fs::ends_with(name, ".bin")) {
        ++out.checked;
        std::string key = stem(name, ".bin");
        std::string why;
        if (!cache_format::is_valid_key_hex(key)) why = "the file name is not a cache key";
        else if (key.substr(0, 2) != shard) why = "the entry is in the wrong shard directory";
        else if (auto r = read(key); r.found == Found::bad) why = r.why;
        if (why.empty()) continue;
        out.bad.push_back(p + ": " + why + (writable_ ? "" : " (read-only dir, left in place)"));
        if (can_fix && cache_format::is_valid_key_hex(key) && key.substr(0, 2) == shard) quarantine(key, why);  // under its lock
        else if (can_fix) quarantine_files(p, sdir + "/" + key + ".json", why);
      } else if (fs::ends_with(name, ".json")) {
        std::string key = stem(name, ".json");
        if (present.count(key + ".bin") || !can_fix || !cache_format::is_valid_key_hex(key)) continue;
        // Holding the key's lock proves no writer is between its sidecar and its entry.
        auto lock = FileLock::try_acquire(sdir + "/" + key + ".lock");
        if (lock && !exists_nofollow(sdir + "/" + key + ".bin") && ::unlink(p.c_str()) == 0)
          out.cleaned.push_back(p + " (orphaned sidecar)");
      } else if (fs::ends_with(name, ".lock") && can_fix) {
        // Left by a killed holder; a held one is left alone.
        if (auto lock = FileLock::try_acquire(p)) {
          lock->release();
          out.cleaned.push_back(p + " (stale lock file)");
        }
      }
    }
  }
  return out;
}

fs::IoStatus DiskStore::clear() const {
  if (!writable_) return fs::IoStatus::from_errno(EROFS, "clear " + root_);
  const std::int64_t now = now_ns();
  sweep_stale_temps(root_, now);
  // Entries, orphaned sidecars and stale lock files alike: every key that has
  // a file here, each removed under its lock (see remove_key_files). Young
  // temp files belong to live writers and stay.
  std::vector<KeyFiles> keys;
  const std::string vdir = version_dir();
  for (const auto& shard : fs::list_dir(vdir)) {
    if (!is_shard_name(shard)) continue;
    std::string sdir = vdir + "/" + shard;
    sweep_stale_temps(sdir, now);
    std::set<std::string> stems;
    for (const auto& name : fs::list_dir(sdir)) {
      auto dot = name.find('.');
      if (dot != std::string::npos && cache_format::is_valid_key_hex(name.substr(0, dot))) stems.insert(name.substr(0, dot));
    }
    for (const auto& key : stems) keys.push_back({sdir, key, 0, 0});
  }
  const auto older_dirs = older_schema_dirs(root_);
  for (const auto& dir : older_dirs) {
    sweep_stale_dotfiles(dir, now);
    collect_older_key_files(dir, keys);
  }
  int busy = 0;
  for (const auto& k : keys) busy += !remove_key_files(k);
  for (const auto& dir : older_dirs) remove_empty_dirs(dir);
  if (busy) log::info("cache: clear left " + std::to_string(busy) + " key(s) another process is writing");
  std::string qdir = quarantine_dir();
  for (const auto& n : fs::list_dir(qdir)) ::unlink((qdir + "/" + n).c_str());
  ::rmdir(qdir.c_str());
  return fs::IoStatus::success();
}

}  // namespace sparsejit
