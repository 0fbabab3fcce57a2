// What the in-process compiler backends (nvrtc.cpp, hiprtc.cpp, clang.cpp) share: the
// toolchain's dlopen'd API, loaded on first use, and the frame of one compile (its options,
// clock and failures).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compiler/compiler.h"

namespace sparsejit {

// A toolchain library's API, loaded by `open` on first use: the API, or why not (the Error's
// message). A failed load is tried again once `knob` (the setting that names the library)
// reads differently (ScopedKnob in tests); a loaded API stays for the process.
template <class Api>
class LazyApi {
 public:
  LazyApi(std::function<std::string()> knob, std::function<Result<Api>()> open) : knob_(std::move(knob)), open_(std::move(open)) {}

  const std::optional<Api>& get() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (api_) return api_;
    std::string knob = knob_();
    if (attempted_ && knob == tried_knob_) return api_;
    attempted_ = true;
    tried_knob_ = std::move(knob);
    Result<Api> r = open_();
    error_ = r ? std::string() : r.error().message;
    if (r) api_.emplace(std::move(r).value());
    return api_;
  }
  // Why the API is not loaded (it is tried first); empty once it is.
  std::string error() const {
    get();
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  std::function<std::string()> knob_;
  std::function<Result<Api>()> open_;
  mutable std::mutex mu_;
  mutable bool attempted_ = false;
  mutable std::string tried_knob_;
  mutable std::optional<Api> api_;
  mutable std::string error_;
};

// One compile: the options it runs with (the backend's defaults for the target, then the
// request's) and the time it started. Its failures are Errors of stage "compile" whose
// message names the backend ("nvrtc: ..."), with the target, the options, the log, and the
// source dumped for a rerun.
class CompileRun {
 public:
  CompileRun(const Compiler& backend, const CompileRequest& request);
  const std::vector<std::string>& options() const { return options_; }
  Error fail(std::string message, std::string log = "") const;
  // `obj`, with the seconds since the run started.
  CodeObject finish(CodeObject obj) const;

 private:
  const CompileRequest& request_;
  std::string backend_;
  std::vector<std::string> options_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Views of `strings` for a toolchain's (argc, argv) parameters, valid while they live.
std::vector<const char*> c_strings(const std::vector<std::string>& strings);

// Whether `binary` begins as an ELF file does (AMDGPU code objects are ELF).
bool starts_as_elf(const std::vector<std::uint8_t>& binary);

// Owns one NVRTC or HIPRTC program (`Handle`, created through out()): destroyed on every
// path, error paths included.
template <class Api, class Handle>
class RtcProgram {
 public:
  explicit RtcProgram(const Api& api) : api_(api) {}
  ~RtcProgram() {
    if (program_) api_.destroy(&program_);
  }
  RtcProgram(const RtcProgram&) = delete;
  RtcProgram& operator=(const RtcProgram&) = delete;
  Handle* out() { return &program_; }
  Handle get() const { return program_; }

 private:
  const Api& api_;
  Handle program_ = nullptr;
};

// The log of an NVRTC or HIPRTC program (the two APIs have the same shape, and both report
// success as 0): empty when there is none or it cannot be read; no trailing NULs or newlines.
template <class Api, class Program>
std::string rtc_program_log(const Api& api, Program program) {
  std::size_t size = 0;
  if (api.log_size(program, &size) != 0 || size <= 1) return {};
  std::string log(size, '\0');
  if (api.log(program, log.data()) != 0) return {};
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

}  // namespace sparsejit
