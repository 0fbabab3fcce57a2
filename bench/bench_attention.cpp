// sparsejit_bench: times sparsejit's block-sparse GQA attention kernels (through
// the public C++ Runtime API) on MiniMax-M3 shapes, plus the device-to-device
// copy bandwidth as the ceiling, and dumps every input so bench/triton_baseline.py
// can rebuild the identical tensors, time the Triton baseline on them and check
// both implementations against a float64 reference.
//
//   sparsejit_bench [--out FILE] [--dump-dir DIR] [--filter SUBSTR[,SUBSTR...]] [--batches N[,N...]] [--quick] [--gen-only] [--kv-fp8] [--kv-fp8-pth]
//                   [--kv-head-split S]
//   --filter: only the cases whose name holds one of the comma-separated substrings
//   --batches: decode's batch sizes at seq 8192 and 32768 (default 1,8,32,64,128), e.g. to time
//     where the split-K rule changes (`sparsejit plan` shows it)
//   --kv-fp8: K/V as fp8 e4m3fn with scalar scales (K 0.5, V 0.25)
//   --kv-fp8-pth: the same with per-(kv head, token) scales: the float at index i of all
//     replicas' scales (each replica: K's [kv head][token], then V's) is 0.25 + 0.125 (i % 7)
//   --kv-head-split S: an experiment for the one-kv-head shapes (TP4/TP8) in decode: the call
//     says S kv heads of G/S query heads each, all S reading the one real head (K/V, top-k and
//     scale strides of 0 between kv heads), so S workgroups share each block's reads through
//     L2 and the split-K rule sees S times the work. The results are the same function.
//
// Inputs. All bf16 tensors (q, the KV cache) are filled from one random "chunk"
// of C bf16 values (N(0,1), C not a multiple of anything the layouts use):
// element i of a tensor filled at offset o is chunk[(o + i) % C]. The chunk is
// written once to DIR/chunk.bf16; each case writes the offsets, the int32
// tensors (top-k, block table, lengths) and the rows of our output that are
// checked, so Python reproduces everything bit for bit. With --kv-fp8 the KV cache
// comes from a second chunk of C fp8 e4m3fn bytes (N(0,1) rounded to nearest even,
// DIR/chunk_kv.fp8) the same way, and each case's meta.json names the dtype and scales.
//
// KV layout: vLLM's [pages, kv_heads, 128, 2*head_dim] (K first half, V second).
// Decode rotates over R replicas of the KV pages (same indices, different
// memory: kv_cache + r * set_bytes) so every measurement touches >= 256 MiB of
// selected KV and nothing is served from L2.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda_min.h"
#include "fp8_encode.h"
#include "sparsejit/sparsejit.hpp"

namespace sjbench {
namespace {

using json = nlohmann::json;
constexpr int D = 128, TOPK = 16, BLK = 128, KEY_DIM = 32;
constexpr double RHO = 0.97;
constexpr std::int64_t CHUNK_ELEMS = (std::int64_t{1} << 24) + 4099;  // ~32 MiB of bf16
constexpr double MiB = 1024.0 * 1024.0;
constexpr float kKScale = 0.5f, kVScale = 0.25f;  // --kv-fp8's scalar scales

struct Options {
  std::string out, dump_dir, filter;
  bool quick = false, gen_only = false;
  bool kv_fp8 = false;  // K/V as fp8 e4m3fn (random, from chunk_kv.fp8) with scalar scales
  bool kv_fp8_pth = false;  // ... with per-(kv head, token) scales instead (each replica set its own)
  std::vector<int> batches = {1, 8, 32, 64, 128};  // decode batch sizes at seq 8192 and 32768
  int kv_head_split = 1;  // decode with one kv head: present it as this many (stride 0)
};

// The items of a comma-separated list, empty ones included ("a,,b": "a", "", "b").
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t b = 0, e; b <= text.size(); b = e + 1) {
    e = text.find(',', b);
    if (e == std::string::npos) e = text.size();
    out.push_back(text.substr(b, e - b));
  }
  return out;
}

// --batches: comma-separated batch sizes, each 1..4096 (nullopt: not such a list).
std::optional<std::vector<int>> parse_batches(const std::string& text) {
  std::vector<int> out;
  for (const std::string& item : split_commas(text)) {
    if (item.empty() || item.size() > 4 || item.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    const int v = std::stoi(item);
    if (v < 1 || v > 4096) return std::nullopt;
    out.push_back(v);
  }
  return out;
}

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ------------------------------------------------------------------ problems

struct Problem {
  std::string name, kind, tp, model, seq_label;
  int H = 0, KVH = 0, batch = 0;
  std::uint64_t seed = 0;
  std::int64_t total_q = 0, max_blocks = 0, max_query_len = 0, set_pages = 0;
  int R = 1;
  std::vector<std::int32_t> seq, prefix, cu, topk, bt, rows;
  double kv_bytes = 0;      // selected, visible K+V bytes per call (one set), counted at bf16's 2 bytes an element
  double union4 = NAN;      // mean distinct valid blocks over tiles of 4 consecutive queries (prefill)
  double sel_mean = 0;      // mean valid selections per (query, kv head)
  std::int64_t q_off = 0, kv_off = 0;
  std::int64_t page_elems() const { return std::int64_t(KVH) * BLK * 2 * D; }
};

struct Selector {
  std::mt19937_64& rng;
  bool correlated;
  std::normal_distribution<float> nd{0.f, 1.f};

  // Logical blocks one query at position p selects (nb = p/128 + 1 valid blocks),
  // as a row of TOPK entries: block 0 and the local block always, -1 padding,
  // shuffled. keys: [nb_max, KEY_DIM] (correlated model), s: the query state.
  void row(std::int64_t p, const std::vector<float>& keys, const float* s, std::int32_t* out,
           std::vector<std::pair<float, int>>& scratch) {
    const int nb = static_cast<int>(p / BLK) + 1;
    int n = 0;
    if (nb <= TOPK) {
      for (int b = 0; b < nb; ++b) out[n++] = b;
    } else {
      out[n++] = 0;
      out[n++] = nb - 1;
      scratch.clear();
      if (correlated) {
        for (int b = 1; b < nb - 1; ++b) {
          const float* k = &keys[std::size_t(b) * KEY_DIM];
          float acc = 0.f;
          for (int j = 0; j < KEY_DIM; ++j) acc += s[j] * k[j];
          scratch.push_back({-acc, b});
        }
        std::nth_element(scratch.begin(), scratch.begin() + (TOPK - 2), scratch.end());
        for (int i = 0; i < TOPK - 2; ++i) out[n++] = scratch[i].second;
      } else {
        for (int b = 1; b < nb - 1; ++b) scratch.push_back({0.f, b});
        for (int i = 0; i < TOPK - 2; ++i) {
          std::uniform_int_distribution<std::size_t> pick(i, scratch.size() - 1);
          std::swap(scratch[i], scratch[pick(rng)]);
          out[n++] = scratch[i].second;
        }
      }
    }
    while (n < TOPK) out[n++] = -1;
    std::shuffle(out, out + TOPK, rng);
  }

  std::vector<float> keys(int nb_max) {
    std::vector<float> k(std::size_t(nb_max) * KEY_DIM);
    for (auto& x : k) x = nd(rng);
    return k;
  }
};

// Fills topk (and the stats) for query rows given (request, absolute position).
// prefill: rows of one request are consecutive and the state walks along them.
void select_all(Problem& P, const std::vector<std::int32_t>& row_req, const std::vector<std::int64_t>& row_pos, bool walk,
                std::mt19937_64& rng) {
  Selector sel{rng, P.model == "corr"};
  P.topk.assign(std::size_t(P.KVH) * P.total_q * TOPK, -1);
  std::vector<std::pair<float, int>> scratch;
  std::vector<float> keys, s(KEY_DIM);
  const float innov = static_cast<float>(std::sqrt(1.0 - RHO * RHO));
  for (int h = 0; h < P.KVH; ++h) {
    int cur_req = -1;
    for (std::int64_t r = 0; r < P.total_q; ++r) {
      const int req = row_req[r];
      if (req != cur_req || !walk) {
        if (req != cur_req) keys = sel.keys(static_cast<int>(P.max_blocks));
        cur_req = req;
        for (auto& x : s) x = sel.nd(rng);  // stationary start of the walk
      } else {
        for (auto& x : s) x = static_cast<float>(RHO) * x + innov * sel.nd(rng);
      }
      sel.row(row_pos[r], keys, s.data(), &P.topk[(std::size_t(h) * P.total_q + r) * TOPK], scratch);
    }
  }
  // stats: selected visible KV bytes, mean selections, union of 4 consecutive rows of one request
  double bytes = 0, sel_n = 0, u_sum = 0, u_n = 0;
  for (int h = 0; h < P.KVH; ++h) {
    for (std::int64_t r = 0; r < P.total_q; ++r) {
      const std::int32_t* t = &P.topk[(std::size_t(h) * P.total_q + r) * TOPK];
      const std::int64_t p = row_pos[r], sl = P.seq[row_req[r]];
      for (int i = 0; i < TOPK; ++i) {
        if (t[i] < 0) continue;
        sel_n += 1;
        const std::int64_t c = std::int64_t(t[i]) * BLK;
        const std::int64_t vis = std::max<std::int64_t>(0, std::min<std::int64_t>({BLK, p + 1 - c, sl - c}));
        bytes += double(vis) * D * 2 * 2;
      }
    }
    if (P.kind == "prefill") {
      for (int b = 0; b < P.batch; ++b) {
        for (std::int64_t r0 = P.cu[b]; r0 + 4 <= P.cu[b + 1]; r0 += 4) {
          std::set<int> u;
          for (int j = 0; j < 4; ++j)
            for (int i = 0; i < TOPK; ++i) {
              const int v = P.topk[(std::size_t(h) * P.total_q + r0 + j) * TOPK + i];
              if (v >= 0) u.insert(v);
            }
          u_sum += double(u.size());
          u_n += 1;
        }
      }
    }
  }
  P.kv_bytes = bytes;
  P.sel_mean = sel_n / double(P.KVH * P.total_q);
  if (u_n > 0) P.union4 = u_sum / u_n;
}

// Physical pages: every logical block in `used` (per request) gets a distinct
// page, shuffled over the whole set; other block-table entries point at random
// valid pages (never read).
void assign_pages(Problem& P, const std::vector<std::vector<int>>& used, std::mt19937_64& rng) {
  std::int64_t total = 0;
  for (const auto& u : used) total += std::int64_t(u.size());
  std::vector<std::int32_t> perm(total);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::uniform_int_distribution<std::int32_t> any(0, static_cast<std::int32_t>(std::max<std::int64_t>(total, 1) - 1));
  P.bt.assign(std::size_t(P.batch) * P.max_blocks, 0);
  for (auto& x : P.bt) x = any(rng);
  std::int64_t next = 0;
  for (int b = 0; b < P.batch; ++b)
    for (int blk : used[b]) P.bt[std::size_t(b) * P.max_blocks + blk] = perm[next++];
  P.set_pages = std::max<std::int64_t>(total, 1);
}

// The selected KV bytes one call reads: kv_bytes counts bf16, fp8 K/V are half of it.
double read_bytes(const Problem& P, const Options& opt) { return opt.kv_fp8 ? P.kv_bytes / 2 : P.kv_bytes; }

// Decode's KV replicas: >= 256 MiB of selected KV per measurement (and at least 2 sets).
int replicas(double bytes_read) {
  return static_cast<int>(std::clamp<double>(std::ceil(256.0 * MiB / std::max(bytes_read, 1.0)), 2.0, 512.0));
}

Problem make_decode(const std::string& tp, int H, int KVH, const std::string& model, const std::vector<std::int32_t>& seqs,
                    const std::string& seq_label, std::uint64_t seed) {
  Problem P;
  P.kind = "decode", P.tp = tp, P.model = model, P.H = H, P.KVH = KVH, P.seed = seed, P.seq_label = seq_label;
  P.batch = static_cast<int>(seqs.size());
  P.seq = seqs;
  P.total_q = P.batch;
  P.max_query_len = 1;
  const int max_seq = *std::max_element(seqs.begin(), seqs.end());
  P.max_blocks = (max_seq + BLK - 1) / BLK;
  P.name = "decode_" + tp + "_" + model + "_B" + std::to_string(P.batch) + "_S" + seq_label;
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> row_req(P.batch);
  std::vector<std::int64_t> row_pos(P.batch);
  for (int b = 0; b < P.batch; ++b) row_req[b] = b, row_pos[b] = seqs[b] - 1;
  select_all(P, row_req, row_pos, /*walk=*/false, rng);
  std::vector<std::vector<int>> used(P.batch);
  for (int b = 0; b < P.batch; ++b) {
    std::set<int> u;
    for (int h = 0; h < KVH; ++h)
      for (int i = 0; i < TOPK; ++i) {
        const int v = P.topk[(std::size_t(h) * P.total_q + b) * TOPK + i];
        if (v >= 0) u.insert(v);
      }
    used[b].assign(u.begin(), u.end());
  }
  assign_pages(P, used, rng);
  P.rows.resize(P.batch);
  std::iota(P.rows.begin(), P.rows.end(), 0);
  P.R = replicas(P.kv_bytes);
  return P;
}

Problem make_prefill(const std::string& tp, int H, int KVH, const std::string& model, const std::vector<std::int32_t>& qlens,
                     const std::vector<std::int32_t>& prefixes, const std::string& label, std::uint64_t seed) {
  Problem P;
  P.kind = "prefill", P.tp = tp, P.model = model, P.H = H, P.KVH = KVH, P.seed = seed, P.seq_label = label;
  P.batch = static_cast<int>(qlens.size());
  P.prefix = prefixes;
  P.cu.assign(1, 0);
  int max_seq = 0;
  for (int b = 0; b < P.batch; ++b) {
    P.cu.push_back(P.cu.back() + qlens[b]);
    P.seq.push_back(prefixes[b] + qlens[b]);
    max_seq = std::max(max_seq, P.seq.back());
    P.max_query_len = std::max<std::int64_t>(P.max_query_len, qlens[b]);
  }
  P.total_q = P.cu.back();
  P.max_blocks = (max_seq + BLK - 1) / BLK;
  P.name = "prefill_" + tp + "_" + model + "_N" + label;
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> row_req(P.total_q);
  std::vector<std::int64_t> row_pos(P.total_q);
  for (int b = 0; b < P.batch; ++b)
    for (int i = 0; i < qlens[b]; ++i) row_req[P.cu[b] + i] = b, row_pos[P.cu[b] + i] = prefixes[b] + i;
  select_all(P, row_req, row_pos, /*walk=*/true, rng);
  std::vector<std::vector<int>> used(P.batch);
  for (int b = 0; b < P.batch; ++b) {
    used[b].resize((P.seq[b] + BLK - 1) / BLK);
    std::iota(used[b].begin(), used[b].end(), 0);
  }
  assign_pages(P, used, rng);
  // checked rows: the first and last 4 of each request and a random sample (<= 384 in all)
  std::set<std::int32_t> rows;
  for (int b = 0; b < P.batch; ++b)
    for (int i = 0; i < 4; ++i) rows.insert(P.cu[b] + i), rows.insert(P.cu[b + 1] - 1 - i);
  std::uniform_int_distribution<std::int32_t> any(0, static_cast<std::int32_t>(P.total_q - 1));
  while (rows.size() < std::min<std::size_t>(384, std::size_t(P.total_q))) rows.insert(any(rng));
  P.rows.assign(rows.begin(), rows.end());
  P.R = 1;
  return P;
}

// ------------------------------------------------------------------ device side

struct DeviceBuf {
  CUdeviceptr p = 0;
  std::size_t bytes = 0;
  DeviceBuf() = default;
  explicit DeviceBuf(std::size_t n) : bytes(n) { SJB_CHECK(cuda().cuMemAlloc(&p, std::max<std::size_t>(n, 16))); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  ~DeviceBuf() {
    if (p) cuda().cuMemFree(p);
  }
  void* ptr() const { return reinterpret_cast<void*>(p); }
};

template <class T>
std::unique_ptr<DeviceBuf> upload(const std::vector<T>& v) {
  auto b = std::make_unique<DeviceBuf>(v.size() * sizeof(T));
  if (!v.empty()) SJB_CHECK(cuda().cuMemcpyHtoD(b->p, v.data(), v.size() * sizeof(T)));
  return b;
}

// dst[i] = chunk[(offset + i) % CHUNK_ELEMS] for i < n (elements of esize bytes).
void tiled_fill(CUdeviceptr dst, std::int64_t n, std::int64_t offset, CUdeviceptr chunk, std::size_t esize = 2) {
  std::int64_t pos = 0, src = offset % CHUNK_ELEMS;
  while (pos < n) {
    const std::int64_t len = std::min(CHUNK_ELEMS - src, n - pos);
    SJB_CHECK(cuda().cuMemcpyDtoD(dst + pos * esize, chunk + src * esize, std::size_t(len) * esize));
    pos += len;
    src = 0;
  }
}

void write_file(const std::filesystem::path& path, const void* data, std::size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(2);
  }
}

struct Timer {
  CUevent a = nullptr, b = nullptr;
  Timer() {
    SJB_CHECK(cuda().cuEventCreate(&a, 0));
    SJB_CHECK(cuda().cuEventCreate(&b, 0));
  }
  template <class F>
  double ms(CUstream s, F&& f) {
    SJB_CHECK(cuda().cuEventRecord(a, s));
    f();
    SJB_CHECK(cuda().cuEventRecord(b, s));
    SJB_CHECK(cuda().cuEventSynchronize(b));
    float t = 0;
    SJB_CHECK(cuda().cuEventElapsedTime(&t, a, b));
    return t;
  }
};

json copy_bandwidth(CUstream s, bool quick) {
  const std::size_t n = std::size_t(1) << 30;
  DeviceBuf src(n), dst(n);
  SJB_CHECK(cuda().cuMemsetD8(src.p, 1, n));
  Timer t;
  for (int i = 0; i < 3; ++i) SJB_CHECK(cuda().cuMemcpyDtoDAsync(dst.p, src.p, n, s));
  std::vector<double> ms;
  for (int i = 0; i < (quick ? 5 : 20); ++i) ms.push_back(t.ms(s, [&] { SJB_CHECK(cuda().cuMemcpyDtoDAsync(dst.p, src.p, n, s)); }));
  const double m = median(ms);
  return {{"kind", "copy"}, {"name", "copy_dtod_1GiB"}, {"bytes", n}, {"ms", m}, {"GBps_read_plus_write", 2.0 * n / (m * 1e-3) / 1e9},
          {"GBps_one_way", n / (m * 1e-3) / 1e9}};
}

json problem_json(const Problem& P, const Options& opt) {
  json j = {{"name", P.name},
            {"kind", P.kind},
            {"tp", P.tp},
            {"model", P.model},
            {"seq_label", P.seq_label},
            {"H", P.H},
            {"KVH", P.KVH},
            {"D", D},
            {"topk", TOPK},
            {"block", BLK},
            {"batch", P.batch},
            {"total_q", P.total_q},
            {"max_blocks", P.max_blocks},
            {"max_query_len", P.max_query_len},
            {"set_pages", P.set_pages},
            {"R", P.R},
            {"seed", P.seed},
            {"q_off", P.q_off},
            {"kv_off", P.kv_off},
            {"sm_scale", 1.0 / std::sqrt(double(D))},
            {"kv_bytes", P.kv_bytes},
            {"kv_read_bytes", read_bytes(P, opt)},
            {"sel_mean", P.sel_mean},
            {"seq_lens", P.seq}};
  j["union4"] = std::isnan(P.union4) ? json(nullptr) : json(P.union4);
  if (P.kind == "prefill") j["prefix_lens"] = P.prefix, j["cu_seqlens_q"] = P.cu;
  j["kv_dtype"] = opt.kv_fp8 ? "fp8_e4m3fn" : "bf16";
  if (opt.kv_fp8) {
    j["scale_mode"] = opt.kv_fp8_pth ? "per_token_head" : "scalar";
    if (!opt.kv_fp8_pth) j["k_scale"] = kKScale, j["v_scale"] = kVScale;
  }
  return j;
}

json run_case(sparsejit::Runtime& rt, const Problem& P, CUstream stream, CUdeviceptr chunk, CUdeviceptr chunk_kv, const Options& opt,
              json j) {
  const std::int64_t qn = P.total_q * P.H * D;
  const std::int64_t set_elems = P.set_pages * P.page_elems();
  const std::size_t kv_esize = opt.kv_fp8 ? 1 : 2;
  DeviceBuf q(qn * 2), out(qn * 2), kv(std::size_t(P.R) * set_elems * kv_esize);
  tiled_fill(q.p, qn, P.q_off, chunk);
  tiled_fill(kv.p, std::int64_t(P.R) * set_elems, P.kv_off, opt.kv_fp8 ? chunk_kv : chunk, kv_esize);
  std::unique_ptr<DeviceBuf> d_scales;
  const std::int64_t tokens = P.set_pages * BLK, set_scales = 2 * P.KVH * tokens;  // per set: K's [kv head][token], then V's
  if (opt.kv_fp8_pth) {
    std::vector<float> sc(std::size_t(P.R * set_scales));
    for (std::size_t i = 0; i < sc.size(); ++i) sc[i] = 0.25f + 0.125f * float(i % 7);
    d_scales = upload(sc);
  } else if (opt.kv_fp8) {
    d_scales = upload(std::vector<float>{kKScale, kVScale});
  }
  auto d_topk = upload(P.topk), d_bt = upload(P.bt), d_seq = upload(P.seq);
  std::unique_ptr<DeviceBuf> d_cu, d_prefix, ws;
  const float sm_scale = static_cast<float>(1.0 / std::sqrt(double(D)));

  auto fill_common = [&](auto& a, int set) {
    a.q = q.ptr();
    a.q_stride[0] = std::int64_t(P.H) * D, a.q_stride[1] = D, a.q_stride[2] = 1;
    a.kv_cache = reinterpret_cast<void*>(kv.p + std::size_t(set) * set_elems * kv_esize);
    a.kv_stride[0] = std::int64_t(P.KVH) * BLK * 2 * D, a.kv_stride[1] = std::int64_t(BLK) * 2 * D, a.kv_stride[2] = 2 * D,
    a.kv_stride[3] = 1;
    a.v_offset = D;
    a.num_pages = P.set_pages;
    a.topk_idx = d_topk->ptr();
    a.topk_stride[0] = P.total_q * TOPK, a.topk_stride[1] = TOPK, a.topk_stride[2] = 1;
    a.block_table = d_bt->ptr();
    a.block_table_stride = P.max_blocks;
    a.max_blocks = P.max_blocks;
    a.seq_lens = d_seq->ptr();
    a.output = out.ptr();
    a.output_stride[0] = std::int64_t(P.H) * D, a.output_stride[1] = D, a.output_stride[2] = 1;
    a.total_q = P.total_q, a.num_heads = P.H, a.num_kv_heads = P.KVH, a.head_dim = D, a.topk = TOPK;
    a.q_dtype = sparsejit::DType::bf16, a.kv_dtype = sparsejit::DType::bf16, a.scale_mode = sparsejit::ScaleMode::none;
    if (opt.kv_fp8) {
      a.kv_dtype = sparsejit::DType::fp8_e4m3fn, a.scale_mode = sparsejit::ScaleMode::scalar;
      a.k_scale = reinterpret_cast<const void*>(d_scales->p), a.v_scale = reinterpret_cast<const void*>(d_scales->p + 4);
    }
    if (opt.kv_fp8_pth) {
      a.scale_mode = sparsejit::ScaleMode::per_token_head;
      const CUdeviceptr base = d_scales->p + std::size_t(set) * set_scales * 4;
      a.k_scale = reinterpret_cast<const void*>(base), a.v_scale = reinterpret_cast<const void*>(base + std::size_t(P.KVH * tokens) * 4);
      a.k_scale_stride[0] = a.v_scale_stride[0] = tokens, a.k_scale_stride[1] = a.v_scale_stride[1] = 1;
    }
    a.sm_scale = sm_scale;
  };

  std::vector<sparsejit::DecodeArgs> dargs;
  std::vector<sparsejit::PrefillArgs> pargs;
  if (P.kind == "decode") {
    // --kv-head-split: the one real kv head as `split` kv heads that all read it.
    const int split = P.KVH == 1 && P.H % opt.kv_head_split == 0 ? opt.kv_head_split : 1;
    const std::int64_t kvh = std::int64_t(P.KVH) * split;
    const std::size_t wsb = rt.decode_workspace_bytes(P.total_q, P.H, kvh, D, TOPK);
    ws = std::make_unique<DeviceBuf>(wsb);
    j["num_chunks"] = rt.decode_num_chunks(P.total_q, P.H, kvh, TOPK);
    if (split > 1) j["kv_head_split"] = split;
    for (int r = 0; r < P.R; ++r) {
      sparsejit::DecodeArgs a;
      fill_common(a, r);
      a.num_reqs = P.batch, a.decode_query_len = 1;
      a.workspace = ws->ptr(), a.workspace_bytes = wsb;
      if (split > 1) {
        a.num_kv_heads = kvh;
        a.kv_stride[1] = 0, a.topk_stride[0] = 0, a.k_scale_stride[0] = a.v_scale_stride[0] = 0;
      }
      dargs.push_back(a);
    }
  } else {
    d_cu = upload(P.cu), d_prefix = upload(P.prefix);
    sparsejit::PrefillArgs a;
    fill_common(a, 0);
    a.cu_seqlens_q = d_cu->ptr(), a.prefix_lens = d_prefix->ptr();
    a.batch = P.batch, a.max_query_len = P.max_query_len;
    pargs.push_back(a);
  }
  std::string error;
  auto call = [&](int r) {
    if (!error.empty()) return;
    auto st = P.kind == "decode" ? rt.sparse_attn_decode(dargs[r], stream) : rt.sparse_attn_prefill(pargs[0], stream);
    if (!st) error = st.stage + ": " + st.message;
  };

  // first call compiles (or loads from the cache); warm up
  call(0);
  SJB_CHECK(cuda().cuStreamSynchronize(stream));
  Timer t;
  if (P.kind == "decode") {
    const int reps = opt.quick ? 5 : 20;
    for (int r = 0; r < P.R; ++r) call(r);
    std::vector<double> eager;
    for (int i = 0; i < reps && error.empty(); ++i)
      eager.push_back(t.ms(stream, [&] {
        for (int r = 0; r < P.R; ++r) call(r);
      }) / P.R);
    if (!error.empty()) return j["error"] = error, j;
    j["ours_eager_us"] = median(eager) * 1e3;
    // CUDA graph of the R calls (one per set), replayed
    CUgraph graph = nullptr;
    CUgraphExec exec = nullptr;
    std::string gerr;
    if (CUresult rc = cuda().cuStreamBeginCapture(stream, /*relaxed*/ 2); rc != 0) gerr = "begin capture: " + cuda().text(rc);
    if (gerr.empty()) {
      for (int r = 0; r < P.R; ++r) call(r);
      if (CUresult rc = cuda().cuStreamEndCapture(stream, &graph); rc != 0) gerr = "end capture: " + cuda().text(rc);
      if (!error.empty()) gerr = "call during capture: " + error, error.clear();
    }
    if (gerr.empty())
      if (CUresult rc = cuda().cuGraphInstantiateWithFlags(&exec, graph, 0); rc != 0) gerr = "instantiate: " + cuda().text(rc);
    if (gerr.empty()) {
      for (int i = 0; i < 2; ++i) SJB_CHECK(cuda().cuGraphLaunch(exec, stream));
      std::vector<double> g;
      for (int i = 0; i < reps; ++i) g.push_back(t.ms(stream, [&] { SJB_CHECK(cuda().cuGraphLaunch(exec, stream)); }) / P.R);
      const double us = median(g) * 1e3;
      j["ours_graph_us"] = us;
    } else {
      j["ours_graph_us"] = nullptr;
      j["graph_error"] = gerr;
    }
    if (exec) cuda().cuGraphExecDestroy(exec);
    if (graph) cuda().cuGraphDestroy(graph);
    SJB_CHECK(cuda().cuCtxSynchronize());
    const double best = j["ours_graph_us"].is_null() ? j["ours_eager_us"].get<double>() : j["ours_graph_us"].get<double>();
    j["ours_us"] = best;
    j["ours_GBps"] = read_bytes(P, opt) / (best * 1e-6) / 1e9;
  } else {
    const int reps = opt.quick ? 3 : 5;
    call(0);
    std::vector<double> ms;
    for (int i = 0; i < reps && error.empty(); ++i) ms.push_back(t.ms(stream, [&] { call(0); }));
    if (!error.empty()) return j["error"] = error, j;
    j["ours_us"] = median(ms) * 1e3;
  }

  // output of set 0 for the float64 check (poisoned first: 0xFF = NaN)
  SJB_CHECK(cuda().cuMemsetD8(out.p, 0xFF, qn * 2));
  call(0);
  SJB_CHECK(cuda().cuStreamSynchronize(stream));
  if (!error.empty()) return j["error"] = error, j;
  if (!opt.dump_dir.empty()) {
    const auto dir = std::filesystem::path(opt.dump_dir) / P.name;
    std::vector<std::uint16_t> rows(P.rows.size() * std::size_t(P.H) * D);
    const std::size_t row_bytes = std::size_t(P.H) * D * 2;
    for (std::size_t i = 0; i < P.rows.size(); ++i)
      SJB_CHECK(cuda().cuMemcpyDtoH(&rows[i * P.H * D], out.p + std::size_t(P.rows[i]) * row_bytes, row_bytes));
    write_file(dir / "ours_rows.bf16", rows.data(), rows.size() * 2);
  }
  return j;
}

void dump_inputs(const Problem& P, const json& meta, const Options& opt) {
  if (opt.dump_dir.empty()) return;
  const auto dir = std::filesystem::path(opt.dump_dir) / P.name;
  std::filesystem::create_directories(dir);
  write_file(dir / "topk.i32", P.topk.data(), P.topk.size() * 4);
  write_file(dir / "bt.i32", P.bt.data(), P.bt.size() * 4);
  write_file(dir / "rows.i32", P.rows.data(), P.rows.size() * 4);
  std::ofstream(dir / "meta.json") << meta.dump(1) << "\n";
}

int main_impl(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(1);
      }
      return argv[++i];
    };
    if (a == "--out") opt.out = next();
    else if (a == "--dump-dir") opt.dump_dir = next();
    else if (a == "--filter") opt.filter = next();
    else if (a == "--quick") opt.quick = true;
    else if (a == "--gen-only") opt.gen_only = true;
    else if (a == "--kv-fp8") opt.kv_fp8 = true;
    else if (a == "--kv-fp8-pth") opt.kv_fp8 = opt.kv_fp8_pth = true;
    else if (a == "--batches") {
      const std::string v = next();
      auto b = parse_batches(v);
      if (!b) {
        std::fprintf(stderr, "--batches %s: expected comma-separated batch sizes, each 1..4096\n", v.c_str());
        return 1;
      }
      opt.batches = *b;
    } else if (a == "--kv-head-split") {
      const std::string v = next();
      opt.kv_head_split = std::atoi(v.c_str());
      if (opt.kv_head_split < 1 || opt.kv_head_split > 16 || std::to_string(opt.kv_head_split) != v) {
        std::fprintf(stderr, "--kv-head-split %s: expected an integer in 1..16\n", v.c_str());
        return 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: sparsejit_bench [--out FILE] [--dump-dir DIR] [--filter SUBSTR[,SUBSTR...]] [--batches N[,N...]] [--quick] [--gen-only] "
                   "[--kv-fp8] [--kv-fp8-pth] [--kv-head-split S]\n");
      return 1;
    }
  }
  std::ofstream out_file;
  if (!opt.out.empty()) out_file.open(opt.out);
  auto emit = [&](const json& j) {
    const std::string line = j.dump();
    if (out_file.is_open()) out_file << line << "\n" << std::flush;
    else std::cout << line << "\n" << std::flush;
  };

  // ---- the cases
  struct Shape {
    std::string tp;
    int H, KVH;
  };
  const Shape shapes[] = {{"tp1", 64, 4}, {"tp4", 16, 1}, {"tp8", 8, 1}};
  const std::vector<std::int32_t> ragged_decode = {1,    77,   128,  129,  1000,  2047,  2048,  2049,
                                                   5000, 8191, 8192, 12345, 16384, 20000, 30000, 32768};
  std::vector<Problem> problems;
  std::uint64_t seed = 20261126;
  for (const auto& s : shapes)
    for (const std::string model : {"corr", "unif"}) {
      for (int seq : {8192, 32768})
        for (int b : opt.batches)
          problems.push_back(make_decode(s.tp, s.H, s.KVH, model, std::vector<std::int32_t>(b, seq), std::to_string(seq), seed++));
      problems.push_back(make_decode(s.tp, s.H, s.KVH, model, ragged_decode, "ragged", seed++));
      problems.push_back(make_prefill(s.tp, s.H, s.KVH, model, {4096}, {0}, "4096", seed++));
      problems.push_back(make_prefill(s.tp, s.H, s.KVH, model, {16384}, {0}, "16384", seed++));
      // ragged two-request case with prefix lengths (not multiples of 128)
      problems.push_back(make_prefill(s.tp, s.H, s.KVH, model, {5000, 2500}, {3001, 10000}, "ragged", seed++));
    }
  std::int64_t off = 7;
  for (auto& P : problems) {
    P.q_off = off, off += 1000003;
    P.kv_off = off, off += 999983;
  }
  if (opt.kv_fp8)  // fp8 reads half the bytes: more replicas keep 256 MiB per measurement
    for (auto& P : problems)
      if (P.kind == "decode") P.R = replicas(read_bytes(P, opt));
  if (!opt.filter.empty()) {  // comma-separated substrings: a case runs if its name holds any of them
    std::vector<std::string> subs = split_commas(opt.filter);
    subs.erase(std::remove(subs.begin(), subs.end(), std::string()), subs.end());
    auto wanted = [&](const Problem& P) {
      return std::any_of(subs.begin(), subs.end(), [&](const std::string& sub) { return P.name.find(sub) != std::string::npos; });
    };
    problems.erase(std::remove_if(problems.begin(), problems.end(), [&](const Problem& P) { return !wanted(P); }), problems.end());
  }

  if (opt.gen_only) {
    for (const auto& P : problems) {
      json j = problem_json(P, opt);
      dump_inputs(P, j, opt);
      j.erase("seq_lens"), j.erase("prefix_lens"), j.erase("cu_seqlens_q");
      emit(j);
    }
    return 0;
  }

  // ---- device
  Cuda& cu = cuda();
  if (!cu.load()) {
    std::fprintf(stderr, "CUDA driver unavailable: %s\n", cu.error.c_str());
    return 3;
  }
  SJB_CHECK(cu.cuInit(0));
  CUdevice dev = 0;
  SJB_CHECK(cu.cuDeviceGet(&dev, 0));
  CUcontext ctx = nullptr;
  SJB_CHECK(cu.cuDevicePrimaryCtxRetain(&ctx, dev));
  SJB_CHECK(cu.cuCtxSetCurrent(ctx));
  char name[256] = {0};
  SJB_CHECK(cu.cuDeviceGetName(name, sizeof name, dev));
  int drv = 0;
  SJB_CHECK(cu.cuDriverGetVersion(&drv));
  CUstream stream = nullptr;
  SJB_CHECK(cu.cuStreamCreate(&stream, /*non-blocking*/ 1));
  sparsejit::RuntimeOptions ro;
  ro.device = 0;
  auto rt = sparsejit::Runtime::create(ro);
  if (!rt) {
    std::fprintf(stderr, "Runtime::create failed\n");
    return 3;
  }
  SJB_CHECK(cu.cuCtxSetCurrent(ctx));

  json info = {{"kind", "info"}, {"device", name}, {"driver_version", drv}, {"chunk_elems", CHUNK_ELEMS}, {"quick", opt.quick},
               {"kv_layout", "[pages, kv_heads, 128, 2*head_dim]"}};
  emit(info);
  emit(copy_bandwidth(stream, opt.quick));

  // the random chunk every bf16 tensor is tiled from
  std::vector<std::uint16_t> chunk(CHUNK_ELEMS);
  {
    std::mt19937_64 rng(424242);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& x : chunk) x = to_bf16(nd(rng));
  }
  auto d_chunk = upload(chunk);
  if (!opt.dump_dir.empty()) {
    std::filesystem::create_directories(opt.dump_dir);
    write_file(std::filesystem::path(opt.dump_dir) / "chunk.bf16", chunk.data(), chunk.size() * 2);
  }
  // fp8 K/V: their own chunk of e4m3fn bytes
  std::unique_ptr<DeviceBuf> d_chunk_kv;
  if (opt.kv_fp8) {
    std::vector<std::uint8_t> chunk_kv(CHUNK_ELEMS);
    std::mt19937_64 rng(434343);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& x : chunk_kv) x = to_e4m3fn(nd(rng));
    d_chunk_kv = upload(chunk_kv);
    if (!opt.dump_dir.empty()) write_file(std::filesystem::path(opt.dump_dir) / "chunk_kv.fp8", chunk_kv.data(), chunk_kv.size());
  }

  for (const auto& P : problems) {
    const auto t0 = std::chrono::steady_clock::now();
    json meta = problem_json(P, opt);
    dump_inputs(P, meta, opt);
    json j = run_case(*rt, P, stream, d_chunk->p, d_chunk_kv ? d_chunk_kv->p : 0, opt, meta);
    j.erase("seq_lens"), j.erase("prefix_lens"), j.erase("cu_seqlens_q");
    j["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    emit(j);
    std::fprintf(stderr, "%-40s ours %10.2f us  %s\n", P.name.c_str(), j.value("ours_us", NAN),
                 j.contains("error") ? j["error"].get<std::string>().c_str() : "");
  }
  return 0;
}

}  // namespace
}  // namespace sjbench

int main(int argc, char** argv) { return sjbench::main_impl(argc, argv); }
