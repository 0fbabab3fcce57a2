// Logging facade. spdlog stays inside log.cpp so the rest of the code base
// compiles without its headers.
#pragma once

#include <string>

namespace sparsejit::log {

void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);
// Emits `msg` at warn level only the first time `once_key` is seen in this process.
void warn_once(const std::string& once_key, const std::string& msg);

}  // namespace sparsejit::log
