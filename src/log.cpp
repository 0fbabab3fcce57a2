#include "log.h"

#include <mutex>
#include <set>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "knobs.h"

namespace sparsejit::log {
namespace {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    // Logs go to stderr: stdout belongs to the CLI's results (and the compile helper's code object).
    auto lg = spdlog::stderr_color_mt("sparsejit");
    lg->set_pattern("[sparsejit] [%l] %v");
    lg->set_level(spdlog::level::from_str(knobs().log_level));
    return lg;
  }();
  return *l;
}

}  // namespace

void debug(const std::string& msg) { logger().debug(msg); }
void info(const std::string& msg) { logger().info(msg); }
void warn(const std::string& msg) { logger().warn(msg); }
void error(const std::string& msg) { logger().error(msg); }

void warn_once(const std::string& once_key, const std::string& msg) {
  static std::mutex mu;
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!seen.insert(once_key).second) return;
  }
  warn(msg);
}

}  // namespace sparsejit::log
