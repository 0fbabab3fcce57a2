#include "resources.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "embedded.h"
#include "knobs.h"

namespace sparsejit {
namespace fs = std::filesystem;
namespace {

// The override directory for `path`, with the part of `path` below it.
bool override_path(const std::string& path, std::string& file) {
  const Knobs& k = knobs();
  const std::string tp = "templates/", cp = "configs/";
  if (!k.template_dir.empty() && path.rfind(tp, 0) == 0) {
    file = k.template_dir + "/" + path.substr(tp.size());
    return true;
  }
  if (!k.config_dir.empty() && path.rfind(cp, 0) == 0) {
    file = k.config_dir + "/" + path.substr(cp.size());
    return true;
  }
  return false;
}

}  // namespace

Result<std::string> read_resource(const std::string& path) {
  std::string file;
  if (override_path(path, file)) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return make_error("resource", "cannot read " + file + " (override dir for " + path + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  for (const auto& r : embedded::all())
    if (r.path == path) return std::string(r.text);
  return make_error("resource", "no embedded resource " + path);
}

std::vector<std::string> list_resources(const std::string& prefix) {
  std::set<std::string> out;
  std::string probe;
  if (override_path(prefix + "x", probe)) {
    const fs::path dir = fs::path(probe).parent_path();
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file()) out.insert(prefix + e.path().filename().string());
    return {out.begin(), out.end()};
  }
  for (const auto& r : embedded::all()) {
    std::string p(r.path);
    if (p.rfind(prefix, 0) == 0 && p.find('/', prefix.size()) == std::string::npos) out.insert(p);
  }
  return {out.begin(), out.end()};
}

}  // namespace sparsejit
