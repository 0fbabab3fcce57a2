// inspect: registers, LDS/shared memory, scratch/local memory and the disassembly of one kernel.
#include <iostream>

#include "cli.h"
#include "inspect.h"
#include "kernel_builder.h"

namespace sparsejit::cli {

void add_inspect(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("inspect", "Build (or fetch from the cache) one kernel and report its resources and ISA/SASS");
  auto flags = std::make_shared<ShapeFlags>();
  auto no_disasm = std::make_shared<bool>(false);
  flags->add_to(*cmd);
  cmd->add_flag("--no-disassembly", *no_disasm, "Resources only");
  cmd->callback([&g, flags, no_disasm] {
    auto config = flags->resolve();
    if (!config) throw CLI::RuntimeError(fail(g, config.error()));
    KernelBuilder builder(default_cache());
    auto built = builder.build(*config);
    if (!built) throw CLI::RuntimeError(fail(g, built.error()));
    auto ins = inspect_code_object(built->object->binary, config->arch, !*no_disasm);
    if (!ins) throw CLI::RuntimeError(fail(g, ins.error()));
    nlohmann::json j = ins->to_json();
    j["config"] = config->to_json();
    j["key"] = built->key;
    j["backend"] = built->backend;
    j["compile_target"] = config->compile_target();
    j["dynamic_shared_bytes"] = config->dynamic_shared_bytes();
    if (g.json) {
      print_json(j);
      return;
    }
    std::cout << built->kernel_name << " for " << config->arch << " (" << built->backend << ", key " << built->key.substr(0, 16) << ")\n";
    if (config->compile_target() != config->arch)
      std::cout << "  built for " << config->compile_target() << (config->launch.wgmma ? " (wgmma)" : "") << "\n";
    if (config->dynamic_shared_bytes() > 0) std::cout << "  dynamic shared bytes per launch " << config->dynamic_shared_bytes() << "\n";
    if (config->launch.tma) {  // the producer is the warp after the math warps
      const int math_warps = config->nv_warp_layout().warps;
      std::cout << "  K/V by tensor copies (TMA): warp " << math_warps << " produces, " << math_warps << " warps multiply\n";
    }
    for (const auto& k : ins->kernels) {
      std::cout << "  kernel " << k.kernel << "\n";
      if (k.vgprs >= 0) std::cout << "    VGPRs " << k.vgprs << "  AGPRs " << k.agprs << "  SGPRs " << k.sgprs << "  wave" << k.wavefront_size << "\n";
      if (k.registers >= 0) std::cout << "    registers " << k.registers << "\n";
      std::cout << "    shared/LDS bytes " << k.shared_bytes << "  scratch/local bytes " << k.scratch_bytes << "\n";
      if (k.vgpr_spills >= 0) std::cout << "    spills: VGPR " << k.vgpr_spills << "  SGPR " << k.sgpr_spills << "\n";
    }
    std::cout << "  disassembler: " << ins->disassembler << "\n";
    if (!ins->disassembly.empty()) std::cout << ins->disassembly;
  });
}

}  // namespace sparsejit::cli
