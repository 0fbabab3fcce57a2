// Errors as values: every fallible internal call returns Result<T>. The
// structured fields (stage, target, options, log, dumped source) survive up to
// the boundary (CLI, C ABI) where they become a message or an exit code.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace sparsejit {

struct Error {
  std::string stage;    // "config", "render", "compile", "cache", "load", "launch", "validate", ...
  std::string message;  // one line, names the argument/field and what was expected
  std::string target;   // arch target id when relevant
  std::vector<std::string> options;  // compiler options when relevant
  std::string log;          // full compiler/driver log when relevant
  std::string source_path;  // dumped source when a compile failed

  // "stage: message [target ...] (source: path)" plus the log on following lines.
  std::string describe(bool with_log = true) const;
};

inline Error make_error(std::string stage, std::string message) {
  Error e;
  e.stage = std::move(stage);
  e.message = std::move(message);
  return e;
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result<void> equivalent.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace sparsejit
