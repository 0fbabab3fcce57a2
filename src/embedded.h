// Resources (templates/*, configs/**/*.json) compiled into the binary by
// cmake/embed.cmake, so a deployed engine needs no data files.
#pragma once

#include <string_view>
#include <vector>

namespace sparsejit::embedded {

struct Resource {
  std::string_view path;  // relative to the repository root, e.g. "templates/attention.cu"
  std::string_view text;
};

const std::vector<Resource>& all();

}  // namespace sparsejit::embedded
