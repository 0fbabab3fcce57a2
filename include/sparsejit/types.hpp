// Value types shared by the public API and the kernel configuration.
#pragma once

namespace sparsejit {

enum class Op { prefill, decode, merge };
// Codes match templates/common.cuh (SJ_BF16 ...).
enum class DType { bf16 = 0, fp16 = 1, fp8_e4m3fn = 2, fp8_e5m2 = 3, fp8_e4m3fnuz = 4, fp8_e5m2fnuz = 5 };
// none; scalar (one float each for K and V); per_token_head ([num_kv_heads, tokens] floats, physical token index).
// fp8 K/V are dequantized as vLLM does, value x scale rounded to q's dtype; except on NVIDIA
// sm_89+ with e4m3fn/e5m2 and none or scalar (and per_token_head in decode with head_dim a
// multiple of 128), where value x scale is used exactly (the scales multiply the scores and
// the output, or each key's score and probability), within one such rounding of the same result.
enum class ScaleMode { none = 0, scalar = 1, per_token_head = 2 };

}  // namespace sparsejit
