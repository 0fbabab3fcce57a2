// Model presets (configs/models/*.json): the kernel variants a deployment of a
// model needs, per arch, for `sparsejit warm`.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "util/result.h"

namespace sparsejit {

struct Preset {
  std::string name;
  std::string description;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0, topk = 0;
  std::vector<int> tensor_parallel;
  struct Variant {
    DType q_dtype, kv_dtype;
    ScaleMode scale_mode;
  };
  std::vector<Variant> variants;
  std::vector<std::string> default_archs;
};

Result<Preset> load_preset(const std::string& name);
std::vector<std::string> known_presets();
// Every distinct kernel config the preset needs on `arch`: prefill per TP shape and
// variant, decode for every split-K chunk count, merge for every chunk count.
Result<std::vector<KernelConfig>> expand_preset(const Preset& preset, const std::string& arch);

}  // namespace sparsejit
