// RAII dlopen handle. Toolchains (NVRTC, HIPRTC, the Clang plugin) are loaded
// at run time so one binary works with either vendor or neither installed.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace sparsejit {

class DynamicLibrary {
 public:
  DynamicLibrary() = default;
  ~DynamicLibrary();
  DynamicLibrary(DynamicLibrary&& other) noexcept;
  DynamicLibrary& operator=(DynamicLibrary&& other) noexcept;
  DynamicLibrary(const DynamicLibrary&) = delete;
  DynamicLibrary& operator=(const DynamicLibrary&) = delete;

  // Opens the first candidate that loads (a soname searched by the loader, or a
  // path). The library is never unmapped (RTLD_NODELETE): toolchain runtimes
  // keep threads and static destructors that crash when unloaded under them.
  // The error's log lists every candidate with its dlerror().
  static Result<DynamicLibrary> open(const std::vector<std::string>& candidates);

  bool loaded() const { return handle_ != nullptr; }
  void* symbol(const char* name) const;
  template <class Fn>
  Fn function(const char* name) const {
    return reinterpret_cast<Fn>(symbol(name));
  }
  // Real path of the file that was loaded (symlinks resolved: carries the patch version).
  const std::string& path() const { return path_; }
  // The candidate that matched (soname or path as given).
  const std::string& requested() const { return requested_; }

 private:
  void* handle_ = nullptr;
  std::string path_;
  std::string requested_;
};

// Real path of the loaded object (executable or shared library) containing `address`; empty if unknown.
std::string path_of_loaded_object(const void* address);
// Real path of /proc/self/exe; empty if unknown.
std::string self_executable_path();
// "dir" of "dir/file" ("" for a bare name).
std::string parent_directory(const std::string& path);

}  // namespace sparsejit
