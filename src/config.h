// The kernel configuration value type: every shape constant and launch
// parameter that specializes a kernel. Validation names the field, the value
// and what is allowed; JSON is canonical (sorted keys, fixed spelling) so the
// same config always renders, hashes and records the same way.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sparsejit/types.hpp"
#include "util/result.h"

namespace sparsejit {


const char* to_string(Op op);
const char* to_string(DType t);
const char* to_string(ScaleMode m);
std::optional<Op> parse_op(const std::string& s);
std::optional<DType> parse_dtype(const std::string& s);
std::optional<ScaleMode> parse_scale_mode(const std::string& s);
bool is_fp8(DType t);
// "sm_90" / "sm_90a" / "sm_100f" -> 90 / 90 / 100 (and the suffix); -1 when not an sm_ target.
int nvidia_sm(const std::string& target, std::string* suffix = nullptr);
int dtype_bytes(DType t);

inline constexpr int kSparseBlock = 128;  // one selected block == one KV page

struct LaunchParams {
  int threads = 128;
  int waves_per_eu = 1;  // AMD occupancy hint (amdgpu_waves_per_eu); ignored on NVIDIA
  int stages = 1;        // K/V sub-tiles in flight (pipelined templates; 1 for the others)
  int cluster = 1;       // decode, attention_nv.cu on sm_90: the chunks form one cluster and merge in it (= num_topk_chunks)
  int min_blocks = 1;    // attention_nv.cu: workgroups per SM the register allocation must allow (__launch_bounds__)
  bool wgmma = false;    // attention_nv.cu prefill on sm_90: warpgroup MMA (compiled for sm_90a); see KernelConfig::wgmma_fits
  // attention_nv.cu decode on sm_90: the last of launch.threads' warps is a producer that streams
  // K/V sub-tiles with tensor copies (TMA, 128-byte swizzled) completing on mbarriers; the others
  // multiply. See KernelConfig::tma_fits.
  bool tma = false;
};

// The kernel templates (templates/<name>) and what each supports.
inline constexpr const char* kTemplateAttention = "attention.cu";       // every vendor: one query per workgroup, single stage
inline constexpr const char* kTemplateAttentionNv = "attention_nv.cu";  // NVIDIA sm_80+: query union, cp.async pipeline
inline constexpr const char* kTemplateMerge = "merge.cu";

struct KernelConfig {
  Op op = Op::prefill;
  std::string arch;  // full target id: "sm_90", "gfx942", "gfx942:sramecc+:xnack-"
  int head_dim = 128;
  int topk = 16;            // 0 for merge
  int gqa_group = 16;       // 0 for merge
  int num_topk_chunks = 1;  // decode and merge; 1 for prefill
  int sub_k = 128;          // 0 for merge
  DType q_dtype = DType::bf16;
  DType kv_dtype = DType::bf16;  // merge: equal to q_dtype
  ScaleMode scale_mode = ScaleMode::none;
  std::string templ = kTemplateAttention;  // "template" in JSON; merge.cu for merge
  int q_tile = 1;  // prefill: consecutive queries per workgroup, walking the union of their blocks
  // decode (attention_nv.cu): workgroups per kv head, each taking gqa_group of its query heads
  // (gqa_group x kv_head_split = num_heads / num_kv_heads); they read the same blocks through L2.
  int kv_head_split = 1;
  LaunchParams launch;

  // Field-by-field check; the message names the field, its value and what is allowed.
  Status validate() const;
  // Static shared memory (LDS) the kernel declares, in bytes.
  std::size_t shared_bytes() const;
  // Dynamic shared memory the launch must pass (mirrors the template's layout; the kernel traps on less).
  std::size_t dynamic_shared_bytes() const;
  // attention_nv.cu's warp layout (mirrors its kQPerRG/kRowGroups/kKeySplit/kDimSplit, the last
  // as SJ_DIM_SPLIT's default): the 16-row groups holding the G heads of q_tile queries, and how
  // many warps split each sub-tile's keys. Every count is at least 1, whatever the (possibly
  // invalid) fields.
  struct NvWarpLayout {
    int warps = 1, queries_per_group = 1, row_groups = 1, key_split = 1;
    // kDimSplit: the tensor-copy decode of one row group splits the head dims for P V (each
    // warp's share whole 16-dim tiles) instead of merging a key split through shared memory.
    bool dim_split = false;
  };
  NvWarpLayout nv_warp_layout() const;
  // Whether launch.wgmma can apply: attention_nv.cu prefill on sm_90, one warp per 16-row
  // group in whole warpgroups, sub_k in {32, 64, 128} and head_dim in {64, 128}.
  bool wgmma_fits() const;
  // Whether launch.tma can apply: attention_nv.cu decode on sm_90 without wgmma, K/V in q's
  // dtype (copied unchanged), head_dim a multiple of 64 (128-byte swizzle rows), and at least
  // one math warp beside the producer.
  bool tma_fits() const;
  // Whether attention_nv.cu's decode takes K's and V's MMA fragments straight from fp8's staged
  // raw bytes (its kRawV): e4m3fn or e5m2 on sm_89+ (exact in fp16), cp.async (not tma) with
  // 16-byte copies that tile the sub-tile, head_dim a multiple of 128. Its stages then hold the
  // raw bytes alone (and, with per-token scales, each key's K and V scale).
  bool nv_raw_v() const;
  // The target the compiler builds for: arch, or its sm_90a form when launch.wgmma is set.
  std::string compile_target() const;
  std::string kernel_name() const;  // lowered (extern "C") name of the entry point
  nlohmann::json to_json() const;
  static Result<KernelConfig> from_json(const nlohmann::json& j);
  std::string canonical() const;  // to_json().dump() (sorted keys)
  std::string config_key() const;  // sha256 of canonical(), 16 hex chars (names the config in logs and sources)
  bool operator==(const KernelConfig& o) const { return canonical() == o.canonical(); }
};

}  // namespace sparsejit
