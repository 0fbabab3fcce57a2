#include "ops/config_select.h"

namespace sparsejit {
namespace {

KernelConfig attention_config(Op op, const ArchTable& arch, const AttnShape& s) {
  KernelConfig c;
  c.op = op;
  c.arch = arch.target;
  c.head_dim = static_cast<int>(s.head_dim);
  c.topk = static_cast<int>(s.topk);
  c.gqa_group = s.num_kv_heads > 0 ? static_cast<int>(s.num_heads / s.num_kv_heads) : 0;
  c.q_dtype = s.q_dtype;
  c.kv_dtype = s.kv_dtype;
  c.scale_mode = s.scale_mode;
  const OpTuning& t = arch.tuning(op);
  c.launch = t.launch;
  c.sub_k = t.sub_k;
  return c;
}

}  // namespace

int decode_chunks(const ArchTable& arch, std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t topk) {
  const std::int64_t work = std::max<std::int64_t>(1, total_q * num_kv_heads);
  std::int64_t target = std::max<std::int64_t>(1, std::min<std::int64_t>(topk, arch.decode.target_grid / work));
  int chunks = 1;
  while (chunks * 2 <= target) chunks *= 2;
  return chunks;
}

KernelConfig prefill_config(const ArchTable& arch, const AttnShape& s) {
  KernelConfig c = attention_config(Op::prefill, arch, s);
  c.num_topk_chunks = 1;
  return c;
}

KernelConfig decode_config(const ArchTable& arch, const AttnShape& s, int num_chunks) {
  KernelConfig c = attention_config(Op::decode, arch, s);
  c.num_topk_chunks = num_chunks;
  return c;
}

KernelConfig merge_config(const ArchTable& arch, std::int64_t head_dim, DType q_dtype, int num_chunks) {
  KernelConfig c;
  c.op = Op::merge;
  c.arch = arch.target;
  c.head_dim = static_cast<int>(head_dim);
  c.topk = 0;
  c.gqa_group = 0;
  c.sub_k = 0;
  c.num_topk_chunks = num_chunks;
  c.q_dtype = q_dtype;
  c.kv_dtype = q_dtype;
  c.scale_mode = ScaleMode::none;
  c.launch = arch.merge.launch;
  return c;
}

}  // namespace sparsejit
