#include "kernel_builder.h"

#include <chrono>
#include <mutex>
#include <sstream>

#include "arch_table.h"
#include "compiler/registry.h"
#include "knobs.h"
#include "log.h"
#include "render.h"

namespace sparsejit {
namespace {

std::vector<std::string> split_flags(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

}  // namespace

std::shared_ptr<KernelCache> default_cache() {
  static std::mutex mu;
  static std::shared_ptr<KernelCache> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (!cache) cache = std::make_shared<KernelCache>(CacheSettings::from_knobs(knobs()));
  return cache;
}

KernelBuilder::KernelBuilder(std::shared_ptr<KernelCache> cache) : cache_(std::move(cache)) {}

Result<BuildOutcome> KernelBuilder::build(const KernelConfig& config, const std::string& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  auto arch = load_arch_table(config.arch);
  if (!arch) return arch.error();
  auto rendered = render_kernel(config, *arch);
  if (!rendered) return rendered.error();
  auto compiler = CompilerRegistry::instance().choose(config.arch, backend.empty() ? arch->backends : std::vector<std::string>{backend});
  if (!compiler) return compiler.error();
  const auto extra = split_flags(knobs().extra_flags);
  const std::string target = config.compile_target();
  auto options = (*compiler)->default_options(target);
  options.insert(options.end(), extra.begin(), extra.end());
  const CacheKey key = make_cache_key(rendered->source, (*compiler)->name(), (*compiler)->version(), config.arch, options,
                                      knobs().key_inputs());
  nlohmann::json sidecar = {
      {"config", config.to_json()},
      {"config_key", config.config_key()},
      {"kernel_name", rendered->kernel_name},
      {"template", rendered->template_name},
      {"arch_table", arch->source},
      {"backend", (*compiler)->name()},
      {"shared_bytes", config.shared_bytes()},
  };
  if (!knobs().dump_dir.empty()) dump_source(rendered->source, config.kernel_name() + "-" + config.config_key());
  const std::shared_ptr<const Compiler> comp = *compiler;
  auto got = cache_->get_or_build(key, sidecar, [&]() -> Result<CodeObject> {
    CompileRequest req;
    req.source = rendered->source;
    req.target = target;
    req.options = extra;
    req.name_hint = config.kernel_name() + "-" + config.config_key();
    return comp->compile(req);
  });
  if (!got) return got.error();
  BuildOutcome out;
  out.object = got->object;
  out.origin = got->origin;
  out.backend = comp->name();
  out.key = key.hex;
  out.kernel_name = rendered->kernel_name;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace sparsejit
