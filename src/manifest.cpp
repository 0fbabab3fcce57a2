#include "manifest.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <set>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "util/fs.h"

namespace sparsejit {
namespace {

Error io_error(const std::string& what, const std::string& path, int err) {
  return make_error("record", what + " " + path + ": " + fs::errno_text(err));
}

// Lines this process already appended (or found), per manifest path.
std::mutex g_mu;
std::set<std::pair<std::string, std::string>> g_recorded;

bool file_has_line(int fd, std::string_view line) {
  std::string content;
  char buf[1 << 16];
  if (lseek(fd, 0, SEEK_SET) < 0) return false;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    content.append(buf, std::size_t(n));
  }
  std::size_t start = 0;
  while (start < content.size()) {
    std::size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    if (std::string_view(content).substr(start, end - start) == line) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

Status record_config(const std::string& path, const KernelConfig& config) {
  const std::string line = config.canonical();
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_recorded.count({path, line})) return ok_status();
  // O_APPEND: every write lands at the end even with other writers; flock
  // serializes the check-then-append across processes (it dies with the fd).
  fs::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd.valid()) return io_error("cannot open manifest", path, errno);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return io_error("cannot lock manifest", path, errno);
  }
  if (!file_has_line(fd.get(), line)) {
    const std::string record = line + "\n";
    ssize_t n;
    do {
      n = ::write(fd.get(), record.data(), record.size());  // one write per line: never interleaved
    } while (n < 0 && errno == EINTR);
    if (n < 0) return io_error("cannot append to manifest", path, errno);
    if (std::size_t(n) != record.size()) return make_error("record", "short append to manifest " + path + " (disk full?)");
  }
  g_recorded.insert({path, line});
  return ok_status();  // the flock is released when fd closes
}

Result<std::vector<KernelConfig>> read_manifest(const std::string& path) {
  std::string content;
  if (auto st = fs::read_file(path, content, /*nofollow=*/false); !st.ok())
    return make_error("manifest", "cannot read manifest: " + st.message);
  std::vector<KernelConfig> configs;
  std::set<std::string> seen;
  std::size_t start = 0;
  int line_no = 0;
  while (start < content.size()) {
    std::size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    ++line_no;
    const std::string line = content.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      return make_error("manifest", where + ": not a JSON object (each line is one kernel config)");
    auto config = KernelConfig::from_json(j);
    if (!config) return make_error("manifest", where + ": " + config.error().message);  // from_json validates too
    if (seen.insert(config->canonical()).second) configs.push_back(std::move(*config));
  }
  return configs;
}

}  // namespace sparsejit
