#include "config.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include <nlohmann/json.hpp>

#include "util/hash.h"
#include "util/json_int.h"

namespace sparsejit {
namespace {

struct DTypeName {
  DType t;
  const char* name;
  int bytes;
};
constexpr DTypeName kDTypes[] = {
    {DType::bf16, "bf16", 2},           {DType::fp16, "fp16", 2},          {DType::fp8_e4m3fn, "fp8_e4m3fn", 1},
    {DType::fp8_e5m2, "fp8_e5m2", 1},   {DType::fp8_e4m3fnuz, "fp8_e4m3fnuz", 1}, {DType::fp8_e5m2fnuz, "fp8_e5m2fnuz", 1},
};

Error field_error(const std::string& field, const std::string& value, const std::string& allowed) {
  return make_error("config", field + " = " + value + " is invalid: " + allowed);
}

bool is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

}  // namespace

const char* to_string(Op op) {
  switch (op) {
    case Op::prefill: return "prefill";
    case Op::decode: return "decode";
    case Op::merge: return "merge";
  }
  return "?";
}
const char* to_string(DType t) {
  for (const auto& d : kDTypes)
    if (d.t == t) return d.name;
  return "?";
}
const char* to_string(ScaleMode m) {
  switch (m) {
    case ScaleMode::none: return "none";
    case ScaleMode::scalar: return "scalar";
    case ScaleMode::per_token_head: return "per_token_head";
  }
  return "?";
}
std::optional<Op> parse_op(const std::string& s) {
  for (Op o : {Op::prefill, Op::decode, Op::merge})
    if (s == to_string(o)) return o;
  return std::nullopt;
}
std::optional<DType> parse_dtype(const std::string& s) {
  for (const auto& d : kDTypes)
    if (s == d.name) return d.t;
  if (s == "bfloat16") return DType::bf16;
  if (s == "float16" || s == "half") return DType::fp16;
  return std::nullopt;
}
std::optional<ScaleMode> parse_scale_mode(const std::string& s) {
  for (ScaleMode m : {ScaleMode::none, ScaleMode::scalar, ScaleMode::per_token_head})
    if (s == to_string(m)) return m;
  return std::nullopt;
}
bool is_fp8(DType t) { return dtype_bytes(t) == 1; }
int dtype_bytes(DType t) {
  for (const auto& d : kDTypes)
    if (d.t == t) return d.bytes;
  return 0;
}

Status KernelConfig::validate() const {
  if (arch.empty()) return field_error("arch", "\"\"", "a target id such as sm_90 or gfx942 is required");
  // Target ids are plain ASCII (sm_90, gfx942:sramecc+:xnack-); anything else cannot name a real
  // target and would not survive JSON (invalid UTF-8), so it is rejected without being echoed.
  for (char ch : arch)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == ':' || ch == '+' || ch == '-'))
      return make_error("config", "arch is invalid: a target id may only contain letters, digits, '_', ':', '+' and '-'");
  if (arch.size() > 64) return field_error("arch", arch.substr(0, 64) + "...", "a target id is at most 64 characters");
  // The arch lands in the generated source's header comment, in file names and in JSON (canonical(),
  // the cache key): a newline would inject source lines, invalid UTF-8 would make canonical() throw.
  {
    std::string shown;  // the value with every disallowed byte as '?', so the message itself is safe
    bool bad = arch.size() > 64;
    for (char ch : arch.substr(0, 64)) {
      const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                      ch == ':' || ch == '+' || ch == '-' || ch == '.';
      bad = bad || !ok;
      shown.push_back(ok ? ch : '?');
    }
    if (bad)
      return field_error("arch", "\"" + shown + (arch.size() > 64 ? "...\"" : "\""),
                         "must be a target id of at most 64 characters [A-Za-z0-9_:+-.] such as sm_90 or gfx942:sramecc+:xnack-");
  }
  if (head_dim <= 0 || head_dim % 16 != 0 || head_dim > 256)
    return field_error("head_dim", std::to_string(head_dim), "must be a multiple of 16 in [16, 256]");
  if (q_dtype != DType::bf16 && q_dtype != DType::fp16)
    return field_error("q_dtype", to_string(q_dtype), "must be bf16 or fp16");
  if (launch.threads <= 0 || launch.threads > 1024 || launch.threads % 32 != 0)
    return field_error("launch.threads", std::to_string(launch.threads), "must be a multiple of 32 in [32, 1024]");
  if (launch.waves_per_eu < 1 || launch.waves_per_eu > 10)
    return field_error("launch.waves_per_eu", std::to_string(launch.waves_per_eu), "must be in [1, 10]");
  if (launch.min_blocks < 1 || launch.min_blocks > 32)
    return field_error("launch.min_blocks", std::to_string(launch.min_blocks), "must be in [1, 32]");
  if (launch.stages < 1 || launch.stages > 8)
    return field_error("launch.stages", std::to_string(launch.stages), "must be in [1, 8]");
  if (op == Op::merge ? templ != kTemplateMerge : (templ != kTemplateAttention && templ != kTemplateAttentionNv))
    return field_error("template", templ,
                       op == Op::merge ? std::string("must be ") + kTemplateMerge
                                       : std::string("must be ") + kTemplateAttention + " or " + kTemplateAttentionNv);
  if (launch.cluster != 1 && (templ != kTemplateAttentionNv || op != Op::decode || launch.cluster != num_topk_chunks || launch.cluster > 8))
    return field_error("launch.cluster", std::to_string(launch.cluster),
                       "must be 1, or num_topk_chunks (" + std::to_string(num_topk_chunks) + ", at most 8) for a decode with template " +
                           kTemplateAttentionNv);
  if (launch.wgmma && !wgmma_fits())
    return field_error("launch.wgmma", "true",
                       "needs template " + std::string(kTemplateAttentionNv) +
                           ", op prefill, arch sm_90, one warp per 16-row group of q_tile x gqa_group rows in whole warpgroups "
                           "(launch.threads a multiple of 128), sub_k in {32, 64, 128} and head_dim in {64, 128}");
  if (launch.tma && !tma_fits())
    return field_error("launch.tma", "true",
                       "needs template " + std::string(kTemplateAttentionNv) +
                           ", op decode, arch sm_90, launch.wgmma off, kv_dtype equal to q_dtype, head_dim a multiple of 64 "
                           "and launch.threads >= 64 (a producer warp and at least one math warp)");
  if (templ != kTemplateAttentionNv && (launch.stages != 1 || q_tile != 1 || launch.min_blocks != 1))
    return field_error("launch.stages/q_tile/min_blocks",
                       std::to_string(launch.stages) + "/" + std::to_string(q_tile) + "/" + std::to_string(launch.min_blocks),
                       "must be 1/1/1 unless template is " + std::string(kTemplateAttentionNv));
  if (!is_pow2(num_topk_chunks))
    return field_error("num_topk_chunks", std::to_string(num_topk_chunks), "must be a power of two (>= 1)");
  if (!is_pow2(kv_head_split) || kv_head_split > 16 || (kv_head_split > 1 && (op != Op::decode || templ != kTemplateAttentionNv)))
    return field_error("kv_head_split", std::to_string(kv_head_split),
                       "must be a power of two in [1, 16], and 1 unless op is decode with template " + std::string(kTemplateAttentionNv));
  if (op == Op::merge) {
    if (topk != 0 || gqa_group != 0 || sub_k != 0)
      return field_error("topk/gqa_group/sub_k", std::to_string(topk) + "/" + std::to_string(gqa_group) + "/" + std::to_string(sub_k),
                         "must be 0 for the merge kernel (it does not depend on them)");
    if (kv_dtype != q_dtype || scale_mode != ScaleMode::none)
      return field_error("kv_dtype/scale_mode", std::string(to_string(kv_dtype)) + "/" + to_string(scale_mode),
                         "must equal q_dtype/none for the merge kernel");
    if (num_topk_chunks > 256) return field_error("num_topk_chunks", std::to_string(num_topk_chunks), "must be <= 256");
    return ok_status();
  }
  if (topk < 1 || topk > 4096) return field_error("topk", std::to_string(topk), "must be in [1, 4096]");
  if (gqa_group < 1 || gqa_group > 16) return field_error("gqa_group", std::to_string(gqa_group), "must be in [1, 16]");
  if (gqa_group > launch.threads)
    return field_error("gqa_group", std::to_string(gqa_group), "must be <= launch.threads (" + std::to_string(launch.threads) + ")");
  if (sub_k <= 0 || kSparseBlock % sub_k != 0 || sub_k % 16 != 0)
    return field_error("sub_k", std::to_string(sub_k), "must be a multiple of 16 that divides 128 (16, 32, 64 or 128)");
  if (op == Op::prefill && num_topk_chunks != 1)
    return field_error("num_topk_chunks", std::to_string(num_topk_chunks), "must be 1 for prefill");
  if (op == Op::decode && num_topk_chunks > topk)
    return field_error("num_topk_chunks", std::to_string(num_topk_chunks), "must be <= topk (" + std::to_string(topk) + ")");
  if (!is_fp8(kv_dtype) && scale_mode != ScaleMode::none)
    return field_error("scale_mode", to_string(scale_mode), "must be none unless kv_dtype is an fp8 type (scales dequantize fp8)");
  if (templ == kTemplateAttentionNv) {
    // Mirrors the static_asserts of templates/attention_nv.cu.
    const NvWarpLayout l = nv_warp_layout();
    if (q_tile < 1 || q_tile > 16 || (op == Op::decode && q_tile != 1))
      return field_error("q_tile", std::to_string(q_tile), op == Op::decode ? "must be 1 for decode" : "must be in [1, 16]");
    if (l.warps > 32 || l.warps % l.row_groups != 0)
      return field_error("q_tile", std::to_string(q_tile),
                         "needs " + std::to_string(l.row_groups) + " row groups of 16 rows (G = " + std::to_string(gqa_group) +
                             "), which must divide the " + std::to_string(l.warps) + " warps of launch.threads");
    if (sub_k % (16 * l.key_split) != 0)
      return field_error("sub_k", std::to_string(sub_k),
                         "must be a multiple of 16 x " + std::to_string(l.key_split) + " (the warps that split each sub-tile's keys)");
    const int chunk = (topk + num_topk_chunks - 1) / num_topk_chunks;
    if (q_tile > 1 && chunk > 255)
      return field_error("q_tile", std::to_string(q_tile), "must be 1 when topk / num_topk_chunks exceeds 255");
  } else if (q_tile != 1) {
    return field_error("q_tile", std::to_string(q_tile), "must be 1");
  }
  return ok_status();
}

KernelConfig::NvWarpLayout KernelConfig::nv_warp_layout() const {
  NvWarpLayout l;
  l.warps = std::max(1, launch.threads / 32 - (launch.tma ? 1 : 0));  // the math warps
  l.queries_per_group = std::max(1, 16 / std::max(1, gqa_group));
  l.row_groups = std::max(1, (q_tile + l.queries_per_group - 1) / l.queries_per_group);
  l.key_split = std::max(1, l.warps / l.row_groups);
  l.dim_split = launch.tma && op == Op::decode && l.row_groups == 1 && l.key_split > 1 && (head_dim / l.key_split) % 16 == 0;
  return l;
}

bool KernelConfig::wgmma_fits() const {
  if (templ != kTemplateAttentionNv || op != Op::prefill || (arch != "sm_90" && arch != "sm_90a")) return false;
  const NvWarpLayout l = nv_warp_layout();
  // wgmma's N is sub_k (S = Q K^T) and head_dim (O += P V); head_dim is whole 128-byte swizzled rows.
  return launch.threads % 128 == 0 && l.key_split == 1 && l.row_groups == l.warps && (sub_k == 32 || sub_k == 64 || sub_k == 128) &&
         (head_dim == 64 || head_dim == 128);
}

bool KernelConfig::tma_fits() const {
  return templ == kTemplateAttentionNv && op == Op::decode && (arch == "sm_90" || arch == "sm_90a") && !launch.wgmma &&
         kv_dtype == q_dtype && head_dim % 64 == 0 && launch.threads >= 64;
}

int nvidia_sm(const std::string& target, std::string* suffix) {
  if (target.rfind("sm_", 0) != 0) return -1;
  std::size_t i = 3;
  int v = 0;
  while (i < target.size() && target[i] >= '0' && target[i] <= '9' && v < 10000) v = v * 10 + (target[i++] - '0');
  if (i == 3) return -1;
  std::string rest = target.substr(i);
  if (!(rest.empty() || rest == "a" || rest == "f")) return -1;
  if (suffix) *suffix = rest;
  return v;
}

bool KernelConfig::nv_raw_v() const {
  // Mirrors kFp8Half, kFp8Staged, kRawK and kRawV (__CUDA_ARCH__ >= 890: sm_89 and later).
  const int sm = nvidia_sm(arch);
  const int vecs_per_row = head_dim / 16;  // 16-byte copies of a raw row
  const bool staged = vecs_per_row > 0 && launch.threads % vecs_per_row == 0 && launch.threads / vecs_per_row > 0 &&
                      sub_k % (launch.threads / vecs_per_row) == 0;
  return templ == kTemplateAttentionNv && op == Op::decode && sm >= 89 && !launch.tma &&
         (kv_dtype == DType::fp8_e4m3fn || kv_dtype == DType::fp8_e5m2) && staged && head_dim % 128 == 0;
}

std::string KernelConfig::compile_target() const { return launch.wgmma && arch == "sm_90" ? "sm_90a" : arch; }

std::size_t KernelConfig::dynamic_shared_bytes() const {
  if (op == Op::merge || templ != kTemplateAttentionNv) return 0;
  if (gqa_group < 1 || gqa_group > 16 || q_tile < 1 || launch.threads < 32 || num_topk_chunks < 1 || topk < 1 || head_dim < 1 || sub_k < 1)
    return 0;  // not a valid config (validate() says why); nothing to mirror
  // Mirrors the layout constants of templates/attention_nv.cu.
  const NvWarpLayout l = nv_warp_layout();
  const std::size_t row_groups = l.row_groups, key_split = l.key_split;
  const std::size_t ld = head_dim + 8, chunk = (topk + num_topk_chunks - 1) / num_topk_chunks;
  const std::size_t entries = q_tile * chunk, list_cap = std::min<std::size_t>(entries, 256);
  std::size_t q_bytes = row_groups * 16 * (launch.wgmma ? head_dim : ld) * 2;
  if (launch.tma) q_bytes = (q_bytes + 1023) / 1024 * 1024;  // the swizzled tiles start 1024-byte aligned
  // Per stage: K and V in q's dtype (wgmma: unpadded swizzled rows), and fp8's raw bytes.
  // (kRawV with per-token scales: then each key's K and V scale, kPthRaw)
  const bool raw_v = nv_raw_v();
  const std::size_t raw = is_fp8(kv_dtype) ? 2 * sub_k * head_dim + (raw_v && scale_mode == ScaleMode::per_token_head ? 2 * sub_k * 4 : 0) : 0;
  const bool swizzled = launch.wgmma || launch.tma;  // unpadded 128-byte swizzled rows
  const std::size_t tiles = launch.stages * ((raw_v ? 0 : 2 * sub_k * (swizzled ? head_dim : ld) * 2) + raw);  // kRawV: raw alone
  const std::size_t scratch = key_split > 1 ? key_split * row_groups * 16 * (head_dim + 8 + 3) * 4 : 0;  // O rows padded by 8
  const std::size_t part = launch.cluster > 1 ? (std::size_t(gqa_group) * head_dim + 16) * 4 : 0;
  const std::size_t list = (6 * list_cap * 4 + list_cap * q_tile + 15) / 16 * 16;
  // tma: each stage's full, empty and V-full mbarrier; a multiple of 16 bytes (the shared P follows)
  const std::size_t misc = (16 * 8 * 2 + 32 * 4 + (launch.tma ? 3 * launch.stages * 8 : 0) + 15) / 16 * 16;
  // tma decode of one query (kDimSplit): the shared P and each warp's row maxima of one sub-tile, or
  // of two where a workgroup may take more than one (kDsBufs), then each warp's row sums
  const std::size_t bufs = chunk * (kSparseBlock / sub_k) > 1 ? 2 : 1;
  const std::size_t ds = l.dim_split ? bufs * 16 * (sub_k + 8) * 2 + (bufs + 1) * key_split * 16 * 4 : 0;
  return q_bytes + std::max(tiles, scratch + part) + list + misc + ds;
}

std::size_t KernelConfig::shared_bytes() const {
  if (op == Op::merge || templ != kTemplateAttention) return 0;
  // Mirrors struct Shared in templates/attention.cu: per-head arrays padded to the 16 rows of one MMA tile.
  // Rows padded by 8 halves / 1 float against shared-memory bank conflicts.
  const std::size_t rows = 16, d = head_dim + 8, s = sub_k;
  return rows * d * 2 + s * d * 2 + rows * (s + 1) * 4 + rows * (s + 8) * 2 + 3 * rows * 4;
}

std::string KernelConfig::kernel_name() const { return std::string("sparsejit_") + to_string(op); }

nlohmann::json KernelConfig::to_json() const {
  nlohmann::json j;
  j["op"] = to_string(op);
  j["arch"] = arch;
  j["head_dim"] = head_dim;
  j["topk"] = topk;
  j["gqa_group"] = gqa_group;
  j["num_topk_chunks"] = num_topk_chunks;
  j["sub_k"] = sub_k;
  j["q_dtype"] = to_string(q_dtype);
  j["kv_dtype"] = to_string(kv_dtype);
  j["scale_mode"] = to_string(scale_mode);
  j["template"] = templ;
  j["q_tile"] = q_tile;
  if (kv_head_split != 1) j["kv_head_split"] = kv_head_split;  // only when set: earlier configs (and keys) keep their spelling
  j["launch"] = {{"threads", launch.threads}, {"waves_per_eu", launch.waves_per_eu}, {"stages", launch.stages}, {"cluster", launch.cluster},
                 {"min_blocks", launch.min_blocks}};
  if (launch.wgmma) j["launch"]["wgmma"] = true;  // only when set: configs (and cache keys) from before the field keep their spelling
  if (launch.tma) j["launch"]["tma"] = true;
  return j;
}

Result<KernelConfig> KernelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return make_error("config", "a kernel config must be a JSON object");
  static const char* known[] = {"op", "arch", "head_dim", "topk", "gqa_group", "num_topk_chunks", "sub_k", "q_dtype", "kv_dtype", "scale_mode", "template", "q_tile", "kv_head_split", "launch"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok) return make_error("config", "unknown field \"" + it.key() + "\" in kernel config");
  }
  KernelConfig c;
  auto get_str = [&](const char* k, std::string& out) -> Status {
    if (!j.contains(k)) return make_error("config", std::string("missing field \"") + k + "\"");
    // dump() throws on invalid UTF-8 (a json built in code, not parsed): replace it, never throw from here.
    if (!j[k].is_string())
      return make_error("config", std::string(k) + " must be a string, got " +
                                      j[k].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    out = j[k].get<std::string>();
    return ok_status();
  };
  auto get_int = [&](const nlohmann::json& obj, const char* k, int& out, bool required) -> Status {
    if (!obj.contains(k)) {
      if (required) return make_error("config", std::string("missing field \"") + k + "\"");
      return ok_status();
    }
    const auto& v = obj[k];
    long long x = 0;
    if (read_json_int(v, std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), x) != JsonInt::ok)
      return make_error("config", std::string(k) + " must be a 32-bit integer, got " +
                                      v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    out = static_cast<int>(x);
    return ok_status();
  };
  std::string s;
  if (auto st = get_str("op", s); !st) return st.error();
  auto op = parse_op(s);
  if (!op) return field_error("op", s, "must be prefill, decode or merge");
  c.op = *op;
  if (auto st = get_str("arch", c.arch); !st) return st.error();
  if (auto st = get_int(j, "head_dim", c.head_dim, true); !st) return st.error();
  if (auto st = get_int(j, "topk", c.topk, true); !st) return st.error();
  if (auto st = get_int(j, "gqa_group", c.gqa_group, true); !st) return st.error();
  if (auto st = get_int(j, "num_topk_chunks", c.num_topk_chunks, true); !st) return st.error();
  if (auto st = get_int(j, "sub_k", c.sub_k, true); !st) return st.error();
  if (auto st = get_str("q_dtype", s); !st) return st.error();
  auto qd = parse_dtype(s);
  if (!qd) return field_error("q_dtype", s, "must be bf16 or fp16");
  c.q_dtype = *qd;
  if (auto st = get_str("kv_dtype", s); !st) return st.error();
  auto kd = parse_dtype(s);
  if (!kd) return field_error("kv_dtype", s, "must be bf16, fp16, fp8_e4m3fn, fp8_e5m2, fp8_e4m3fnuz or fp8_e5m2fnuz");
  c.kv_dtype = *kd;
  if (auto st = get_str("scale_mode", s); !st) return st.error();
  auto sm = parse_scale_mode(s);
  if (!sm) return field_error("scale_mode", s, "must be none, scalar or per_token_head");
  c.scale_mode = *sm;
  // template and q_tile: optional (manifests written before they existed), defaults by op.
  c.templ = c.op == Op::merge ? kTemplateMerge : kTemplateAttention;
  if (j.contains("template"))
    if (auto st = get_str("template", c.templ); !st) return st.error();
  if (auto st = get_int(j, "q_tile", c.q_tile, false); !st) return st.error();
  if (auto st = get_int(j, "kv_head_split", c.kv_head_split, false); !st) return st.error();
  if (j.contains("launch")) {
    const auto& l = j["launch"];
    if (!l.is_object()) return make_error("config", "launch must be an object");
    if (auto st = get_int(l, "threads", c.launch.threads, false); !st) return st.error();
    if (auto st = get_int(l, "waves_per_eu", c.launch.waves_per_eu, false); !st) return st.error();
    if (auto st = get_int(l, "stages", c.launch.stages, false); !st) return st.error();
    if (auto st = get_int(l, "cluster", c.launch.cluster, false); !st) return st.error();
    if (auto st = get_int(l, "min_blocks", c.launch.min_blocks, false); !st) return st.error();
    for (auto [key, out] : {std::pair<const char*, bool*>{"wgmma", &c.launch.wgmma}, {"tma", &c.launch.tma}}) {
      if (!l.contains(key)) continue;
      if (!l[key].is_boolean())
        return make_error("config", std::string(key) + " must be true or false, got " +
                                        l[key].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      *out = l[key].get<bool>();
    }
  }
  if (auto st = c.validate(); !st) return st.error();
  return c;
}

std::string KernelConfig::canonical() const { return to_json().dump(); }

std::string KernelConfig::config_key() const { return sha256_hex(canonical()).substr(0, 16); }

}  // namespace sparsejit
