// Logging facade. spdlog stays inside log.cpp so the rest of the code base
// compiles without its headers.
#pragma once

#include <atomic>
#include <string>

namespace sparsejit::log {

void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);
// Emits `msg` at warn level only the first time `once_key` is seen in this process.
void warn_once(const std::string& once_key, const std::string& msg);

// A warning said once per call site, for hot paths where warn_once's key, message and
// lock would cost every call: after the first call it is one relaxed atomic load, and
// `make_msg` (which builds the message) runs only the first time.
//   static log::WarnOnce no_maps;
//   no_maps([&] { return "decode: ... (" + reason + ")"; });
class WarnOnce {
 public:
  template <class MakeMsg>
  void operator()(MakeMsg&& make_msg) {
    if (!said_.load(std::memory_order_relaxed) && !said_.exchange(true)) warn(make_msg());
  }

 private:
  std::atomic<bool> said_{false};
};

}  // namespace sparsejit::log
