#include "reference.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace sparsejit::ref {
namespace {

constexpr std::int64_t kBlock = 128;  // tokens per sparse block = per KV page

// Round-to-nearest, ties-to-even, of an integer-valued-or-not double (mode independent).
double rne_integer(double y) {
  const double lo = std::floor(y);
  const double frac = y - lo;  // exact for the magnitudes used here (< 2^52)
  if (frac > 0.5) return lo + 1.0;
  if (frac < 0.5) return lo;
  return std::fmod(lo, 2.0) == 0.0 ? lo : lo + 1.0;
}

// Rounds x to the binary floating-point format with `mant` explicit mantissa bits,
// smallest normal exponent `emin` (gradual underflow below it) and largest exponent
// `emax`; RNE as if the exponent were unbounded above, then anything beyond the
// largest finite value becomes inf (IEEE 754 overflow under round-to-nearest).
double round_binary(double x, int mant, int emin, int emax) {
  if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
  const double a = std::fabs(x);
  int e = 0;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  int exponent = e - 1;
  if (exponent < emin) exponent = emin;
  const double quantum = std::ldexp(1.0, exponent - mant);
  double r = rne_integer(a / quantum) * quantum;
  const double max_finite = std::ldexp(2.0 - std::ldexp(1.0, -mant), emax);
  if (r > max_finite) r = std::numeric_limits<double>::infinity();
  return std::copysign(r, x);
}

double round_bf16(double x) { return round_binary(x, 7, -126, 127); }
double round_fp16(double x) { return round_binary(x, 10, -14, 15); }

struct Common {
  std::int64_t total_q, num_heads, num_kv_heads, head_dim, topk, group;
  DType q_dtype, kv_dtype;
  ScaleMode scale_mode;
  double sm_scale;
  const std::uint16_t* q;
  std::int64_t q_stride[3];
  const void* kv;
  std::int64_t kv_stride[4];
  std::int64_t v_offset, num_pages;
  const std::int32_t* topk_idx;
  std::int64_t topk_stride[3];
  const std::int32_t* block_table;
  std::int64_t bt_stride, max_blocks;
  const float *k_scale, *v_scale;
  std::int64_t ks_stride[2], vs_stride[2];
  // Options::exact_fp8_dequant: the pages hold the decoded fp8 values (no rounding), times their
  // per-token scale (in float: exact to 2^-24), and the scores and outputs are multiplied by
  // these (the scalar scales), in double.
  bool exact = false;
  double k_mult = 1.0, v_mult = 1.0;
};

void require(bool cond, const std::string& what) {
  if (!cond) throw std::invalid_argument("reference: " + what);
}

template <class A>
Common common_of(const A& a, const Options& opt) {
  Common c{};
  require(a.num_kv_heads >= 1 && a.num_heads >= a.num_kv_heads && a.num_heads % a.num_kv_heads == 0, "num_heads/num_kv_heads");
  require(a.head_dim >= 1 && a.topk >= 1 && a.total_q >= 0, "head_dim/topk/total_q");
  require(a.q_dtype == DType::bf16 || a.q_dtype == DType::fp16, "q_dtype must be bf16 or fp16");
  require(a.q && a.kv_cache && a.topk_idx && a.block_table && a.seq_lens, "null host pointer");
  require(a.scale_mode == ScaleMode::none || (a.k_scale && a.v_scale), "scales missing");
  require(a.scale_mode == ScaleMode::none || is_fp8(a.kv_dtype), "scales apply to fp8 only");
  c.total_q = a.total_q;
  c.num_heads = a.num_heads;
  c.num_kv_heads = a.num_kv_heads;
  c.head_dim = a.head_dim;
  c.topk = a.topk;
  c.group = a.num_heads / a.num_kv_heads;
  c.q_dtype = a.q_dtype;
  c.kv_dtype = a.kv_dtype;
  c.scale_mode = a.scale_mode;
  c.sm_scale = static_cast<double>(a.sm_scale);
  c.q = static_cast<const std::uint16_t*>(a.q);
  c.kv = a.kv_cache;
  c.v_offset = a.v_offset;
  c.num_pages = a.num_pages;
  c.topk_idx = static_cast<const std::int32_t*>(a.topk_idx);
  c.block_table = static_cast<const std::int32_t*>(a.block_table);
  c.bt_stride = a.block_table_stride;
  c.max_blocks = a.max_blocks;
  c.k_scale = static_cast<const float*>(a.k_scale);
  c.v_scale = static_cast<const float*>(a.v_scale);
  for (int i = 0; i < 3; ++i) {
    c.q_stride[i] = a.q_stride[i];
    c.topk_stride[i] = a.topk_stride[i];
  }
  for (int i = 0; i < 4; ++i) c.kv_stride[i] = a.kv_stride[i];
  if (opt.exact_fp8_dequant && is_fp8(a.kv_dtype)) {
    c.exact = true;
    if (a.scale_mode == ScaleMode::scalar) c.k_mult = c.k_scale[0], c.v_mult = c.v_scale[0];
  }
  for (int i = 0; i < 2; ++i) {
    c.ks_stride[i] = a.k_scale_stride[i];
    c.vs_stride[i] = a.v_scale_stride[i];
  }
  return c;
}

// Dequantized pages, memoized per call: [kv head][page] -> 128*D K values then 128*D V values,
// each already in q's dtype (exact in float).
class PageCache {
 public:
  explicit PageCache(const Common& c) : c_(c), pages_(static_cast<std::size_t>(c.num_kv_heads * c.num_pages)) {}
  const float* get(std::int64_t kvh, std::int64_t page) {
    require(page < c_.num_pages, "block_table maps a visible block to page " + std::to_string(page) + " >= num_pages");
    std::vector<float>& p = pages_[static_cast<std::size_t>(kvh * c_.num_pages + page)];
    if (!p.empty()) return p.data();
    const std::int64_t D = c_.head_dim;
    p.resize(static_cast<std::size_t>(2 * kBlock * D));
    // exact: the decoded fp8 values, unscaled (every one is exact in q's dtype, so rounding to it changes none)
    const ScaleMode mode = c_.exact ? ScaleMode::none : c_.scale_mode;
    for (std::int64_t n = 0; n < kBlock; ++n) {
      const std::int64_t base = page * c_.kv_stride[0] + kvh * c_.kv_stride[1] + n * c_.kv_stride[2];
      const std::int64_t token_phys = page * kBlock + n;  // scales are indexed by physical token
      const std::int64_t ks_off = kvh * c_.ks_stride[0] + token_phys * c_.ks_stride[1];
      const std::int64_t vs_off = kvh * c_.vs_stride[0] + token_phys * c_.vs_stride[1];
      for (std::int64_t d = 0; d < D; ++d) {
        const std::int64_t off = base + d * c_.kv_stride[3];
        double k = kv_to_q_dtype(c_.kv, off, c_.kv_dtype, c_.q_dtype, mode, c_.k_scale, ks_off);
        double v = kv_to_q_dtype(c_.kv, off + c_.v_offset, c_.kv_dtype, c_.q_dtype, mode, c_.v_scale, vs_off);
        if (c_.exact && c_.scale_mode == ScaleMode::per_token_head) k *= c_.k_scale[ks_off], v *= c_.v_scale[vs_off];
        p[static_cast<std::size_t>(n * D + d)] = static_cast<float>(k);
        p[static_cast<std::size_t>((kBlock + n) * D + d)] = static_cast<float>(v);
      }
    }
    return p.data();
  }

 private:
  const Common& c_;
  std::vector<std::vector<float>> pages_;
};

// All heads of query `token` (request `req`, absolute position `pos`; keys at
// positions >= `limit` are invisible too) into res.
void attend(const Common& c, PageCache& pages, std::int64_t token, std::int64_t req, std::int64_t pos, std::int64_t limit,
            Result& res) {
  const std::int64_t D = c.head_dim;
  std::vector<const float*> k, v;
  std::vector<double> qv(static_cast<std::size_t>(D)), s;
  for (std::int64_t kvh = 0; kvh < c.num_kv_heads; ++kvh) {
    // The visible keys of every selected block, in top-k order.
    k.clear();
    v.clear();
    for (std::int64_t t = 0; t < c.topk; ++t) {
      const std::int64_t blk = c.topk_idx[kvh * c.topk_stride[0] + token * c.topk_stride[1] + t * c.topk_stride[2]];
      if (blk < 0 || blk >= c.max_blocks) continue;  // padding / outside the block table: nothing
      const std::int64_t page = c.block_table[req * c.bt_stride + blk];
      if (page < 0) continue;  // unmapped logical block: nothing
      const float* kv_page = nullptr;
      for (std::int64_t n = 0; n < kBlock; ++n) {
        const std::int64_t key_pos = blk * kBlock + n;
        if (!(key_pos <= pos && key_pos < limit)) continue;
        if (!kv_page) kv_page = pages.get(kvh, page);
        k.push_back(kv_page + n * D);
        v.push_back(kv_page + (kBlock + n) * D);
      }
    }
    const std::size_t nk = k.size();
    s.assign(nk, 0.0);
    for (std::int64_t g = 0; g < c.group; ++g) {
      const std::int64_t h = kvh * c.group + g;
      double* o = &res.out[static_cast<std::size_t>((token * c.num_heads + h) * D)];
      res.visible_keys[static_cast<std::size_t>(token * c.num_heads + h)] = static_cast<int>(nk);
      for (std::int64_t d = 0; d < D; ++d) o[d] = 0.0;
      if (nk == 0) continue;  // no visible key: zeros
      for (std::int64_t d = 0; d < D; ++d)
        qv[d] = half_to_double(c.q[token * c.q_stride[0] + h * c.q_stride[1] + d * c.q_stride[2]], c.q_dtype);
      double mx = -std::numeric_limits<double>::infinity();
      for (std::size_t j = 0; j < nk; ++j) {
        double dot = 0.0;
        const float* kr = k[j];
        for (std::int64_t d = 0; d < D; ++d) dot += qv[d] * static_cast<double>(kr[d]);
        s[j] = dot * c.k_mult * c.sm_scale;
        mx = std::max(mx, s[j]);
      }
      double denom = 0.0;
      for (std::size_t j = 0; j < nk; ++j) {
        s[j] = std::exp(s[j] - mx);
        denom += s[j];
      }
      for (std::size_t j = 0; j < nk; ++j) {
        const double w = s[j] / denom * c.v_mult;
        const float* vr = v[j];
        for (std::int64_t d = 0; d < D; ++d) o[d] += w * static_cast<double>(vr[d]);
      }
    }
  }
}

Result make_result(const Common& c) {
  Result r;
  r.num_heads = c.num_heads;
  r.head_dim = c.head_dim;
  r.out.assign(static_cast<std::size_t>(c.total_q * c.num_heads * c.head_dim), 0.0);
  r.visible_keys.assign(static_cast<std::size_t>(c.total_q * c.num_heads), 0);
  return r;
}

}  // namespace

bool is_fp8(DType dtype) {
  return dtype == DType::fp8_e4m3fn || dtype == DType::fp8_e5m2 || dtype == DType::fp8_e4m3fnuz || dtype == DType::fp8_e5m2fnuz;
}

std::size_t element_bytes(DType dtype) { return is_fp8(dtype) ? 1 : 2; }

double fp8_to_double(std::uint8_t bits, DType format) {
  // Layout: sign | exponent (E bits) | mantissa (M bits); value (-1)^s * 2^(e-bias) * 1.m,
  // subnormal (e == 0): (-1)^s * 2^(1-bias) * 0.m.
  int ebits = 0, mbits = 0, bias = 0;
  switch (format) {
    case DType::fp8_e4m3fn: ebits = 4, mbits = 3, bias = 7; break;      // OCP E4M3: no inf, S.1111.111 = NaN
    case DType::fp8_e5m2: ebits = 5, mbits = 2, bias = 15; break;       // OCP E5M2: IEEE-style inf/NaN
    case DType::fp8_e4m3fnuz: ebits = 4, mbits = 3, bias = 8; break;    // no inf, no -0: 0x80 is the only NaN
    case DType::fp8_e5m2fnuz: ebits = 5, mbits = 2, bias = 16; break;   // likewise
    default: throw std::invalid_argument("fp8_to_double: not an fp8 dtype");
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const bool negative = (bits & 0x80) != 0;
  const int e = (bits >> mbits) & ((1 << ebits) - 1);
  const int m = bits & ((1 << mbits) - 1);
  const int e_max = (1 << ebits) - 1, m_max = (1 << mbits) - 1;
  switch (format) {
    case DType::fp8_e4m3fn:
      if (e == e_max && m == m_max) return nan;
      break;
    case DType::fp8_e5m2:
      if (e == e_max) return m != 0 ? nan : (negative ? -1.0 : 1.0) * std::numeric_limits<double>::infinity();
      break;
    default:  // fnuz
      if (bits == 0x80) return nan;
      break;
  }
  const double magnitude = e == 0 ? std::ldexp(static_cast<double>(m), 1 - bias - mbits)
                                  : std::ldexp(1.0 + static_cast<double>(m) / (1 << mbits), e - bias);
  return negative ? -magnitude : magnitude;
}

double bf16_to_double(std::uint16_t bits) {
  // bf16 is the upper half of an IEEE binary32.
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return static_cast<double>(f);
}

double fp16_to_double(std::uint16_t bits) {
  // IEEE binary16: 1 | 5 (bias 15) | 10.
  const bool negative = (bits & 0x8000) != 0;
  const int e = (bits >> 10) & 0x1f;
  const int m = bits & 0x3ff;
  double mag;
  if (e == 0x1f) {
    if (m != 0) return std::numeric_limits<double>::quiet_NaN();
    mag = std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    mag = std::ldexp(static_cast<double>(m), -24);
  } else {
    mag = std::ldexp(1.0 + m / 1024.0, e - 15);
  }
  return negative ? -mag : mag;
}

std::uint16_t double_to_bf16(double x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xffc0 : 0x7fc0;
  const float f = static_cast<float>(round_bf16(x));  // exact: every bf16 value (and +-inf) is a float
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<std::uint16_t>(u >> 16);
}

std::uint16_t double_to_fp16(double x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xfe00 : 0x7e00;
  const double r = round_fp16(x);
  const std::uint16_t sign = std::signbit(r) ? 0x8000 : 0;
  const double a = std::fabs(r);
  if (std::isinf(a)) return sign | 0x7c00;
  if (a < std::ldexp(1.0, -14)) return sign | static_cast<std::uint16_t>(a / std::ldexp(1.0, -24));  // subnormal (or zero)
  int e = 0;
  std::frexp(a, &e);
  const int exponent = e - 1;
  const int m = static_cast<int>((a / std::ldexp(1.0, exponent) - 1.0) * 1024.0);
  return sign | static_cast<std::uint16_t>((exponent + 15) << 10) | static_cast<std::uint16_t>(m);
}

double half_to_double(std::uint16_t bits, DType dtype) {
  if (dtype == DType::bf16) return bf16_to_double(bits);
  if (dtype == DType::fp16) return fp16_to_double(bits);
  throw std::invalid_argument("half_to_double: not bf16/fp16");
}

std::uint16_t double_to_half(double x, DType dtype) {
  if (dtype == DType::bf16) return double_to_bf16(x);
  if (dtype == DType::fp16) return double_to_fp16(x);
  throw std::invalid_argument("double_to_half: not bf16/fp16");
}

double round_to(double x, DType dtype) {
  if (dtype == DType::bf16) return round_bf16(x);
  if (dtype == DType::fp16) return round_fp16(x);
  throw std::invalid_argument("round_to: not bf16/fp16");
}

double kv_to_q_dtype(const void* kv_cache, std::int64_t offset, DType kv_dtype, DType q_dtype, ScaleMode mode, const float* scale,
                     std::int64_t scale_offset) {
  if (!is_fp8(kv_dtype)) {
    const std::uint16_t raw = static_cast<const std::uint16_t*>(kv_cache)[offset];
    return round_to(half_to_double(raw, kv_dtype), q_dtype);  // identity when kv_dtype == q_dtype
  }
  const double decoded = fp8_to_double(static_cast<const std::uint8_t*>(kv_cache)[offset], kv_dtype);
  // `k.to(q.dtype)` is exact (every fp8 value is a bf16 and an fp16 value); `* k_scale` is an
  // fp32 multiply (PyTorch's opmath for half types), rounded to q's dtype.
  float s = 1.0f;
  if (mode == ScaleMode::scalar) s = scale[0];
  if (mode == ScaleMode::per_token_head) s = scale[scale_offset];
  const float product = static_cast<float>(round_to(decoded, q_dtype)) * s;
  return round_to(static_cast<double>(product), q_dtype);
}

Result prefill(const PrefillArgs& a, const Options& opt) {
  const Common c = common_of(a, opt);
  require(a.cu_seqlens_q && a.prefix_lens && a.batch >= 1, "prefill needs cu_seqlens_q, prefix_lens, batch");
  const auto* cu = static_cast<const std::int32_t*>(a.cu_seqlens_q);
  const auto* seq_lens = static_cast<const std::int32_t*>(a.seq_lens);
  const auto* prefix = static_cast<const std::int32_t*>(a.prefix_lens);
  require(cu[0] == 0 && cu[a.batch] == a.total_q, "cu_seqlens_q must run from 0 to total_q");
  Result r = make_result(c);
  PageCache pages(c);
  for (std::int64_t b = 0; b < a.batch; ++b) {
    require(cu[b + 1] >= cu[b], "cu_seqlens_q must be non-decreasing");
    require(cu[b + 1] - cu[b] <= a.max_query_len, "a request is longer than max_query_len");
    for (std::int64_t i = 0; i < cu[b + 1] - cu[b]; ++i)
      attend(c, pages, cu[b] + i, b, static_cast<std::int64_t>(prefix[b]) + i, seq_lens[b], r);
  }
  return r;
}

Result decode(const DecodeArgs& a, const Options& opt) {
  const Common c = common_of(a, opt);
  const auto* seq_lens = static_cast<const std::int32_t*>(a.seq_lens);
  Result r = make_result(c);
  PageCache pages(c);
  if (a.query_start_loc != nullptr) {  // ragged: query j of request r is row qsl[r] + j at seq_lens[r] - n_r + j
    const auto* qsl = static_cast<const std::int32_t*>(a.query_start_loc);
    const auto* t2r = static_cast<const std::int32_t*>(a.token_to_req_indices);
    require(qsl[0] == 0 && qsl[a.num_reqs] == a.total_q, "query_start_loc must run from 0 to total_q");
    for (std::int64_t req = 0; req < a.num_reqs; ++req) {
      const std::int64_t n = qsl[req + 1] - qsl[req];
      require(n >= 0, "query_start_loc must be non-decreasing");
      for (std::int64_t j = 0; j < n; ++j) {
        require(t2r[qsl[req] + j] == req, "token_to_req_indices must agree with query_start_loc");
        attend(c, pages, qsl[req] + j, req, seq_lens[req] - n + j, std::numeric_limits<std::int64_t>::max(), r);
      }
    }
    return r;
  }
  require(a.decode_query_len >= 1 && a.total_q == a.num_reqs * a.decode_query_len, "total_q must be num_reqs * decode_query_len");
  for (std::int64_t req = 0; req < a.num_reqs; ++req)
    for (std::int64_t j = 0; j < a.decode_query_len; ++j)
      attend(c, pages, req * a.decode_query_len + j, req, seq_lens[req] - a.decode_query_len + j, std::numeric_limits<std::int64_t>::max(), r);
  return r;
}

}  // namespace sparsejit::ref
