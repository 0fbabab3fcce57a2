// Text resources: templates/* and configs/**, embedded at build time; a
// directory named by SPARSEJIT_TEMPLATE_DIR / SPARSEJIT_CONFIG_DIR overrides
// them for kernel and tuning work.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace sparsejit {

// path relative to the repo root: "templates/attention.cu", "configs/archs/sm_90.json".
Result<std::string> read_resource(const std::string& path);
// Resource paths under `prefix` ("configs/archs/"), from the override dir when set.
std::vector<std::string> list_resources(const std::string& prefix);

}  // namespace sparsejit
