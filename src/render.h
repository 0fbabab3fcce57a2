// Strict template filling. `{{NAME}}` is a placeholder, `{{> file}}` embeds
// another template. A placeholder without a value, a value no placeholder
// uses, or anything else between braces is an error: generated code never
// silently carries a default.
#pragma once

#include <map>
#include <string>

#include "arch_table.h"
#include "config.h"
#include "util/result.h"

namespace sparsejit {

using TemplateValues = std::map<std::string, std::string>;

// Renders templates/<name> with `values` (partials expanded).
Result<std::string> render_template(const std::string& name, const TemplateValues& values);

struct RenderedKernel {
  std::string source;       // self-contained: compiles standalone with the toolchain's own headers only
  std::string kernel_name;  // lowered entry point name
  std::string template_name;
};

// The kernel source for `config` on the arch described by `arch`.
Result<RenderedKernel> render_kernel(const KernelConfig& config, const ArchTable& arch);

}  // namespace sparsejit
