#include "compiler/backend.h"

#include <cstring>

namespace sparsejit {

CompileRun::CompileRun(const Compiler& backend, const CompileRequest& request)
    : request_(request), backend_(backend.name()), options_(backend.default_options(request.target)) {
  options_.insert(options_.end(), request.options.begin(), request.options.end());
}

Error CompileRun::fail(std::string message, std::string log) const {
  Error e = make_error("compile", backend_ + ": " + std::move(message));
  e.target = request_.target;
  e.options = options_;
  e.log = std::move(log);
  e.source_path = dump_source(request_.source, request_.name_hint);
  return e;
}

CodeObject CompileRun::finish(CodeObject obj) const {
  obj.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return obj;
}

std::vector<const char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<const char*> out;
  out.reserve(strings.size());
  for (const auto& s : strings) out.push_back(s.c_str());
  return out;
}

bool starts_as_elf(const std::vector<std::uint8_t>& binary) { return binary.size() >= 4 && std::memcmp(binary.data(), "\x7f" "ELF", 4) == 0; }

}  // namespace sparsejit
