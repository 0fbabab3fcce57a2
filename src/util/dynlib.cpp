#include "util/dynlib.h"

#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <utility>

namespace sparsejit {

namespace {

std::string real_path(const std::string& p) {
  if (p.empty()) return p;
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf)) return buf;
  return p;
}

}  // namespace

DynamicLibrary::~DynamicLibrary() {
  if (handle_) dlclose(handle_);
}

DynamicLibrary::DynamicLibrary(DynamicLibrary&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      path_(std::move(other.path_)),
      requested_(std::move(other.requested_)) {}

DynamicLibrary& DynamicLibrary::operator=(DynamicLibrary&& other) noexcept {
  if (this != &other) {
    if (handle_) dlclose(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    path_ = std::move(other.path_);
    requested_ = std::move(other.requested_);
  }
  return *this;
}

Result<DynamicLibrary> DynamicLibrary::open(const std::vector<std::string>& candidates) {
  std::string tried;
  for (const auto& name : candidates) {
    if (name.empty()) continue;
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
      const char* e = dlerror();
      tried += "  " + name + ": " + (e ? e : "unknown dlopen error") + "\n";
      continue;
    }
    DynamicLibrary lib;
    lib.handle_ = h;
    lib.requested_ = name;
    // The link map holds the file the loader actually picked (after the soname search).
    struct link_map* map = nullptr;
    if (dlinfo(h, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && *map->l_name)
      lib.path_ = real_path(map->l_name);
    else
      lib.path_ = real_path(name);
    return lib;
  }
  Error e = make_error("load", "none of the candidate libraries could be loaded");
  e.log = tried;
  return e;
}

void* DynamicLibrary::symbol(const char* name) const {
  if (!handle_) return nullptr;
  return dlsym(handle_, name);
}

std::string path_of_loaded_object(const void* address) {
  Dl_info info{};
  if (dladdr(address, &info) == 0 || !info.dli_fname || !*info.dli_fname) return "";
  return real_path(info.dli_fname);
}

std::string self_executable_path() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

std::string parent_directory(const std::string& path) {
  auto pos = path.rfind('/');
  if (pos == std::string::npos) return "";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

}  // namespace sparsejit
