// Host time per call of sparse_attn_prefill / sparse_attn_decode on an
// in-memory hit (kernels already loaded): validation, the hash lookup, the
// parameter packing and the driver launch.
//
// With a GPU it times the real calls (cuLaunchKernel included), then the same
// calls through a fake driver. Without a GPU only the second: a Runtime whose
// kernels are injected no-ops (src/runtime_internal.h), i.e. everything except
// the driver's launch. Calls run in batches of --batch, each batch timed as a
// whole (a clock read per call would cost as much as the call); with a GPU the
// stream is drained between batches, untimed, so a full launch queue never
// blocks a timed call. The median batch divided by its size is reported.
//
//   sparsejit_host_overhead [--iterations N] [--batch B]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"
#include "runtime_internal.h"
#include "sparsejit/sparsejit.hpp"

namespace sparsejit {
namespace {

// ---- fakes: no GPU, no compiler ----
class NoopKernel final : public Kernel {
 public:
  Status launch(Dim3 grid, Dim3, unsigned, void*, void** args) const override {
    // Touch the arguments so the packing cannot be optimized away.
    sink_ += grid.x + reinterpret_cast<std::uintptr_t>(*args);
    return ok_status();
  }
  std::string attributes_json() const override { return "{}"; }
  mutable std::uintptr_t sink_ = 0;
};

class FakeDriver final : public Driver {
 public:
  Vendor vendor() const override { return Vendor::nvidia; }
  bool available() const override { return true; }
  std::string unavailable_reason() const override { return ""; }
  int device_count() const override { return 1; }
  Result<DeviceInfo> device_info(int) const override { return make_error("driver", "fake"); }
  Result<int> current_device() const override { return 0; }
  Result<std::unique_ptr<Module>> load(int, const std::vector<std::uint8_t>&) const override { return make_error("load", "fake"); }
  Result<void*> malloc(int, std::size_t) const override { return make_error("driver", "fake"); }
  Status free(int, void*) const override { return ok_status(); }
  Status copy_to_device(int, void*, const void*, std::size_t) const override { return ok_status(); }
  Status copy_to_host(int, void*, const void*, std::size_t) const override { return ok_status(); }
  Status memset(int, void*, int, std::size_t) const override { return ok_status(); }
  Status synchronize(int) const override { return ok_status(); }
};

// MiniMax-M3 at TP8: 8 query heads over 1 KV head, head_dim 128, top-16; bf16.
constexpr std::int64_t kHeads = 8, kKvHeads = 1, kDim = 128, kTopk = 16, kReqs = 32, kPages = 64, kMaxBlocks = 16;

struct Buffers {
  void *q, *kv, *topk, *bt, *seq, *prefix, *cu, *out, *ws;
  std::size_t ws_bytes;
};

PrefillArgs prefill_args(const Buffers& b) {
  PrefillArgs a;
  a.q = b.q;
  a.q_stride[0] = kHeads * kDim, a.q_stride[1] = kDim, a.q_stride[2] = 1;
  a.kv_cache = b.kv;
  a.kv_stride[0] = kKvHeads * 128 * 2 * kDim, a.kv_stride[1] = 128 * 2 * kDim, a.kv_stride[2] = 2 * kDim, a.kv_stride[3] = 1;
  a.v_offset = kDim;
  a.num_pages = kPages;
  a.topk_idx = b.topk;
  a.topk_stride[0] = kReqs * kTopk, a.topk_stride[1] = kTopk, a.topk_stride[2] = 1;
  a.block_table = b.bt;
  a.block_table_stride = kMaxBlocks;
  a.max_blocks = kMaxBlocks;
  a.cu_seqlens_q = b.cu;
  a.seq_lens = b.seq;
  a.prefix_lens = b.prefix;
  a.output = b.out;
  std::memcpy(a.output_stride, a.q_stride, sizeof a.q_stride);
  a.total_q = kReqs, a.num_heads = kHeads, a.num_kv_heads = kKvHeads, a.head_dim = kDim, a.topk = kTopk, a.batch = kReqs;
  a.max_query_len = 1;
  a.q_dtype = DType::bf16, a.kv_dtype = DType::bf16, a.scale_mode = ScaleMode::none;
  a.sm_scale = 0.0883883f;
  return a;
}

DecodeArgs decode_args(const Buffers& b) {
  const PrefillArgs p = prefill_args(b);
  DecodeArgs a;
  a.q = p.q;
  std::memcpy(a.q_stride, p.q_stride, sizeof a.q_stride);
  a.kv_cache = p.kv_cache;
  std::memcpy(a.kv_stride, p.kv_stride, sizeof a.kv_stride);
  a.v_offset = p.v_offset;
  a.num_pages = p.num_pages;
  a.topk_idx = p.topk_idx;
  std::memcpy(a.topk_stride, p.topk_stride, sizeof a.topk_stride);
  a.block_table = p.block_table;
  a.block_table_stride = p.block_table_stride;
  a.max_blocks = p.max_blocks;
  a.seq_lens = p.seq_lens;
  a.output = p.output;
  std::memcpy(a.output_stride, p.output_stride, sizeof a.output_stride);
  a.total_q = kReqs, a.num_heads = kHeads, a.num_kv_heads = kKvHeads, a.head_dim = kDim, a.topk = kTopk, a.num_reqs = kReqs;
  a.decode_query_len = 1;
  a.q_dtype = DType::bf16, a.kv_dtype = DType::bf16, a.scale_mode = ScaleMode::none;
  a.sm_scale = p.sm_scale;
  a.workspace = b.ws;
  a.workspace_bytes = b.ws_bytes;
  return a;
}

// Median host microseconds per call.
template <class Call, class Drain>
double median_us(int iterations, int batch, Call&& call, Drain&& drain) {
  std::vector<double> per_call;
  per_call.reserve(iterations / batch + 1);
  for (int done = 0; done < iterations; done += batch) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < batch; ++i) call();
    const auto t1 = std::chrono::steady_clock::now();
    per_call.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / batch);
    drain();
  }
  std::nth_element(per_call.begin(), per_call.begin() + per_call.size() / 2, per_call.end());
  return per_call[per_call.size() / 2];
}

struct Measured {
  double prefill_us = 0, decode_us = 0;
};

// Times both ops on `rt` (kernels must load on the first call); false + message on any failure.
bool measure(Runtime& rt, const Buffers& b, void* stream, int iterations, int batch, const std::function<void()>& drain, Measured& m,
             std::string& error) {
  const PrefillArgs pa = prefill_args(b);
  const DecodeArgs da = decode_args(b);
  for (const CallStatus& st : {rt.sparse_attn_prefill(pa, stream), rt.sparse_attn_decode(da, stream)}) {
    if (!st) {
      error = st.message;
      return false;
    }
  }
  drain();
  bool failed = false;
  m.prefill_us = median_us(iterations, batch, [&] { failed |= !rt.sparse_attn_prefill(pa, stream).ok; }, drain);
  m.decode_us = median_us(iterations, batch, [&] { failed |= !rt.sparse_attn_decode(da, stream).ok; }, drain);
  if (failed) error = "a timed call failed";
  return !failed;
}

int run(int iterations, int batch) {
  std::printf("sparsejit host overhead per call, in-memory hit (median of %d batches of %d calls)\n", iterations / batch, batch);
  std::printf("shapes: %lld reqs, %lld heads / %lld kv heads, head_dim %lld, topk %lld, bf16\n", (long long)kReqs, (long long)kHeads,
              (long long)kKvHeads, (long long)kDim, (long long)kTopk);
  int rc = 0;

  // 1) The real thing, when there is a GPU.
  if (auto rt = RuntimeAccess::create(RuntimeOptions{}); rt) {
    const Driver& d = RuntimeAccess::driver(**rt);
    const int dev = (*rt)->device();
    std::vector<void*> owned;
    auto alloc = [&](std::size_t bytes) -> void* {
      auto p = d.malloc(dev, bytes);
      if (!p) return nullptr;
      (void)d.memset(dev, *p, 0, bytes);
      owned.push_back(*p);
      return *p;
    };
    Buffers b{};
    b.q = alloc(kReqs * kHeads * kDim * 2);
    b.kv = alloc(kPages * kKvHeads * 128 * 2 * kDim * 2);
    b.topk = alloc(kKvHeads * kReqs * kTopk * 4);
    b.bt = alloc(kReqs * kMaxBlocks * 4);
    b.seq = alloc(kReqs * 4);
    b.prefix = alloc(kReqs * 4);
    b.cu = alloc((kReqs + 1) * 4);
    b.out = alloc(kReqs * kHeads * kDim * 2);
    b.ws_bytes = (*rt)->decode_workspace_bytes(kReqs, kHeads, kKvHeads, kDim, kTopk);
    b.ws = alloc(b.ws_bytes);
    Measured m;
    std::string error;
    if (std::find(owned.begin(), owned.end(), nullptr) != owned.end() || owned.size() != 9) {
      std::printf("GPU: device allocation failed\n");
      rc = 1;
    } else if (measure(**rt, b, nullptr, iterations, batch, [&] { (void)d.synchronize(dev); }, m, error)) {
      std::printf("GPU (%s, cuLaunchKernel included):\n  prefill  %.3f us/call\n  decode   %.3f us/call (attention + merge: 2 launches)\n",
                  ("device " + std::to_string(dev)).c_str(), m.prefill_us, m.decode_us);
    } else {
      std::printf("GPU: %s\n", error.c_str());
      rc = 1;
    }
    (void)d.synchronize(dev);
    for (void* p : owned)
      if (p) (void)d.free(dev, p);
  } else {
    std::printf("GPU: not measured (%s)\n", rt.error().describe(false).c_str());
  }

  // 2) Everything except the driver's launch: fake driver, no-op kernels.
  static FakeDriver fake;
  RuntimeTestHooks hooks;
  hooks.driver = &fake;
  hooks.info.target = "sm_90";
  hooks.info.name = "fake";
  hooks.make_kernel = [](const KernelConfig&) -> Result<std::shared_ptr<Kernel>> { return std::shared_ptr<Kernel>(std::make_shared<NoopKernel>()); };
  auto rt = RuntimeAccess::create_for_testing(std::move(hooks));
  if (!rt) {
    std::printf("fake driver: %s\n", rt.error().describe(false).c_str());
    return 1;
  }
  // Plausible non-null device addresses (never dereferenced on the host).
  auto addr = [](std::uintptr_t i) { return reinterpret_cast<void*>(0x7f0000000000ull + (i << 20)); };
  Buffers b{addr(1), addr(2), addr(3), addr(4), addr(5), addr(6), addr(7), addr(8), addr(9), 0};
  b.ws_bytes = (*rt)->decode_workspace_bytes(kReqs, kHeads, kKvHeads, kDim, kTopk);
  Measured m;
  std::string error;
  if (!measure(**rt, b, nullptr, iterations, batch, [] {}, m, error)) {
    std::printf("fake driver: %s\n", error.c_str());
    return 1;
  }
  std::printf("host path without the driver launch (fake driver, no-op kernels):\n  prefill  %.3f us/call\n  decode   %.3f us/call (2 lookups + 2 parameter blocks)\n",
              m.prefill_us, m.decode_us);
  return rc;
}

}  // namespace
}  // namespace sparsejit

int main(int argc, char** argv) {
  int iterations = 200000, batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--iterations") iterations = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--batch") batch = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: %s [--iterations N] [--batch B]\n", argv[0]);
      return 2;
    }
  }
  if (iterations < batch) iterations = batch;
  return sparsejit::run(iterations, batch);
}
