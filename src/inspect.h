// Resource usage and disassembly of a compiled code object, for
// `sparsejit inspect`, the cache sidecar and compile-only tests: registers,
// LDS/shared memory, scratch/local memory and spills per kernel, read from the
// binary itself (AMDGPU metadata note; cubin .nv.info attributes), so it works
// on machines without a GPU or a driver.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace sparsejit {

// -1 everywhere means "not known for this vendor / not recorded in the binary".
struct KernelResources {
  std::string kernel;
  int vgprs = -1, agprs = -1, sgprs = -1;  // AMD
  int registers = -1;                      // NVIDIA: registers per thread
  long long shared_bytes = -1;   // AMD group segment (LDS); NVIDIA static __shared__ (reserved window excluded)
  long long scratch_bytes = -1;  // AMD private segment; NVIDIA local memory (stack) per thread
  int wavefront_size = -1;       // 32 or 64 on AMD; 32 (warp) on NVIDIA
  int vgpr_spills = -1, sgpr_spills = -1;  // AMD only; ptxas records no spill counts in a cubin
  long long max_flat_workgroup_size = -1;  // AMD metadata; NVIDIA __launch_bounds__ or the 1024 limit
};

struct Inspection {
  std::string vendor;  // "amd" or "nvidia"
  std::string target;  // as given, else read from the binary ("gfx942", "sm_90")
  std::vector<KernelResources> kernels;
  std::string disassembly;
  std::string disassembler;  // the tool used, or why there is no disassembly
  nlohmann::json to_json() const;
};

// Reads an AMDGPU code object (a bare ELF, or a clang offload bundle holding
// one) or a CUDA cubin. `target` may be empty (read from the binary); when
// given, it must name the processor the binary was built for.
Result<Inspection> inspect_code_object(const std::vector<std::uint8_t>& binary, const std::string& target,
                                       bool with_disassembly);

}  // namespace sparsejit
