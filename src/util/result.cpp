#include "util/result.h"

namespace sparsejit {

std::string Error::describe(bool with_log) const {
  std::string s = stage.empty() ? message : stage + ": " + message;
  if (!target.empty()) s += " [target " + target + "]";
  if (!options.empty()) {
    s += " [options";
    for (const auto& o : options) s += " " + o;
    s += "]";
  }
  if (!source_path.empty()) s += " (source: " + source_path + ")";
  if (with_log && !log.empty()) s += "\n" + log;
  return s;
}

}  // namespace sparsejit
