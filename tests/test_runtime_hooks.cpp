// The Runtime's host path without a GPU: a fake driver and injected no-op
// kernels (src/runtime_internal.h). Covers the graph-capture refusal, warming,
// the in-memory hit (no rebuild) and SPARSEJIT_RECORD from the runtime.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "device/device.h"
#include "knobs.h"
#include "manifest.h"
#include "runtime_internal.h"

namespace sparsejit {
namespace {

class NoopKernel final : public Kernel {
 public:
  NoopKernel(std::atomic<int>* launches, std::atomic<int>* dependent) : launches_(launches), dependent_(dependent) {}
  Status launch(Dim3, Dim3, unsigned, void*, void**) const override {
    ++*launches_;
    return ok_status();
  }
  Status launch_dependent(Dim3 g, Dim3 b, unsigned s, void* st, void** a) const override {
    ++*dependent_;
    return launch(g, b, s, st, a);
  }
  std::string attributes_json() const override { return "{}"; }

 private:
  std::atomic<int>* launches_;
  std::atomic<int>* dependent_;
};

class FakeDriver final : public Driver {
 public:
  bool capturing = false;
  bool capture_query_fails = false;
  Vendor vendor() const override { return Vendor::nvidia; }
  bool available() const override { return true; }
  std::string unavailable_reason() const override { return ""; }
  int device_count() const override { return 1; }
  Result<DeviceInfo> device_info(int) const override { return make_error("driver", "fake"); }
  Result<int> current_device() const override { return 0; }
  Result<std::unique_ptr<Module>> load(int, const std::vector<std::uint8_t>&) const override { return make_error("load", "fake"); }
  Result<bool> stream_is_capturing(void*) const override {
    if (capture_query_fails) return make_error("capture", "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT (906)");
    return capturing;
  }
  Result<void*> malloc(int, std::size_t) const override { return make_error("driver", "fake"); }
  Status free(int, void*) const override { return ok_status(); }
  Status copy_to_device(int, void*, const void*, std::size_t) const override { return ok_status(); }
  Status copy_to_host(int, void*, const void*, std::size_t) const override { return ok_status(); }
  Status memset(int, void*, int, std::size_t) const override { return ok_status(); }
  Status synchronize(int) const override { return ok_status(); }
};

struct Fixture {
  FakeDriver driver;
  std::atomic<int> built{0}, launches{0}, dependent{0};
  std::vector<KernelConfig> configs;
  std::unique_ptr<Runtime> rt;
  Fixture() {
    RuntimeTestHooks h;
    h.driver = &driver;
    h.info.target = "sm_90";
    h.make_kernel = [this](const KernelConfig& c) -> Result<std::shared_ptr<Kernel>> {
      ++built;
      configs.push_back(c);
      return std::shared_ptr<Kernel>(std::make_shared<NoopKernel>(&launches, &dependent));
    };
    auto r = RuntimeAccess::create_for_testing(std::move(h));
    if (r) rt = std::move(*r);
  }
};

void* fake_ptr(int i) { return reinterpret_cast<void*>(std::uintptr_t(0x10000) * (i + 1)); }

constexpr std::int64_t H = 16, KVH = 1, D = 128, TOPK = 16;

PrefillArgs prefill(std::int64_t total_q) {
  PrefillArgs a;
  a.q = fake_ptr(0);
  a.q_stride[0] = H * D, a.q_stride[1] = D, a.q_stride[2] = 1;
  a.kv_cache = fake_ptr(1);
  a.kv_stride[0] = KVH * 128 * 2 * D, a.kv_stride[1] = 128 * 2 * D, a.kv_stride[2] = 2 * D, a.kv_stride[3] = 1;
  a.v_offset = D;
  a.num_pages = 8;
  a.topk_idx = fake_ptr(2);
  a.topk_stride[0] = total_q * TOPK, a.topk_stride[1] = TOPK, a.topk_stride[2] = 1;
  a.block_table = fake_ptr(3);
  a.block_table_stride = 8;
  a.max_blocks = 8;
  a.cu_seqlens_q = fake_ptr(4);
  a.seq_lens = fake_ptr(5);
  a.prefix_lens = fake_ptr(6);
  a.output = fake_ptr(7);
  a.output_stride[0] = H * D, a.output_stride[1] = D, a.output_stride[2] = 1;
  a.total_q = total_q, a.num_heads = H, a.num_kv_heads = KVH, a.head_dim = D, a.topk = TOPK, a.batch = 1, a.max_query_len = total_q;
  a.sm_scale = 0.088f;
  return a;
}

DecodeArgs decode(const Runtime& rt, std::int64_t reqs) {
  const PrefillArgs p = prefill(reqs);
  DecodeArgs a;
  a.q = p.q;
  std::copy(p.q_stride, p.q_stride + 3, a.q_stride);
  a.kv_cache = p.kv_cache;
  std::copy(p.kv_stride, p.kv_stride + 4, a.kv_stride);
  a.v_offset = p.v_offset;
  a.num_pages = p.num_pages;
  a.topk_idx = p.topk_idx;
  std::copy(p.topk_stride, p.topk_stride + 3, a.topk_stride);
  a.block_table = p.block_table;
  a.block_table_stride = p.block_table_stride;
  a.max_blocks = p.max_blocks;
  a.seq_lens = p.seq_lens;
  a.output = p.output;
  std::copy(p.output_stride, p.output_stride + 3, a.output_stride);
  a.total_q = reqs, a.num_heads = H, a.num_kv_heads = KVH, a.head_dim = D, a.topk = TOPK, a.num_reqs = reqs, a.decode_query_len = 1;
  a.sm_scale = 0.088f;
  a.workspace_bytes = rt.decode_workspace_bytes(reqs, H, KVH, D, TOPK);
  a.workspace = fake_ptr(8);
  return a;
}

KernelShape shape() {
  KernelShape s;
  s.num_heads = H, s.num_kv_heads = KVH, s.head_dim = D, s.topk = TOPK;
  return s;
}

TEST(RuntimeHooks, CompileDuringCaptureIsRefusedWithAClearError) {
  Fixture f;
  ASSERT_TRUE(f.rt);
  f.driver.capturing = true;
  CallStatus st = f.rt->sparse_attn_prefill(prefill(4), nullptr);
  ASSERT_FALSE(st.ok);
  EXPECT_EQ(st.stage, "capture");
  EXPECT_NE(st.message.find("capturing a CUDA/HIP graph"), std::string::npos) << st.message;
  EXPECT_NE(st.message.find("warm"), std::string::npos) << st.message;
  EXPECT_EQ(f.built, 0);
  EXPECT_EQ(f.launches, 0);

  // When the driver cannot tell (legacy stream during a global capture), refuse too.
  f.driver.capturing = false;
  f.driver.capture_query_fails = true;
  st = f.rt->sparse_attn_decode(decode(*f.rt, 4), nullptr);
  ASSERT_FALSE(st.ok);
  EXPECT_EQ(st.stage, "capture");
  EXPECT_NE(st.message.find("cannot tell"), std::string::npos) << st.message;
  EXPECT_EQ(f.built, 0);
}

TEST(RuntimeHooks, WarmedKernelsLaunchDuringCaptureWithoutRebuilding) {
  Fixture f;
  ASSERT_TRUE(f.rt);
  ASSERT_TRUE(f.rt->warm_prefill(shape()).ok);
  ASSERT_TRUE(f.rt->warm_decode(shape(), 0).ok);  // every split-K chunk count
  const int built = f.built;
  EXPECT_GE(built, 3);  // prefill + at least one (decode, merge) pair
  f.driver.capturing = true;
  int expected_launches = 1, merges = 0;  // prefill
  for (std::int64_t reqs : {1, 2, 3, 7, 16, 64, 200, 1000}) {
    CallStatus st = f.rt->sparse_attn_decode(decode(*f.rt, reqs), nullptr);
    EXPECT_TRUE(st.ok) << reqs << ": " << st.message;
    // No workspace <=> no merge kernel (one chunk, or chunks merged in their cluster).
    const bool merge = f.rt->decode_workspace_bytes(reqs, H, KVH, D, TOPK) != 0;
    expected_launches += merge ? 2 : 1;
    merges += merge;
  }
  EXPECT_GT(merges, 0);
  EXPECT_EQ(f.dependent, merges) << "sm_90 launches every merge as a programmatic dependent of the split-K kernel";
  CallStatus st = f.rt->sparse_attn_prefill(prefill(3), nullptr);
  EXPECT_TRUE(st.ok) << st.message;
  EXPECT_EQ(f.built, built);
  EXPECT_EQ(f.launches, expected_launches);
  EXPECT_EQ(RuntimeAccess::loaded_kernels(*f.rt), std::size_t(built));
}

TEST(RuntimeHooks, InMemoryHitNeverRebuildsAndValidationStillNamesTheArgument) {
  Fixture f;
  ASSERT_TRUE(f.rt);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(f.rt->sparse_attn_prefill(prefill(5), nullptr).ok);
  EXPECT_EQ(f.built, 1);
  EXPECT_EQ(f.launches, 100);
  PrefillArgs bad = prefill(5);
  bad.topk_idx = nullptr;
  CallStatus st = f.rt->sparse_attn_prefill(bad, nullptr);
  ASSERT_FALSE(st.ok);
  EXPECT_EQ(st.stage, "validate");
  EXPECT_NE(st.message.find("topk_idx"), std::string::npos) << st.message;
}

TEST(RuntimeHooks, RaggedDecodeNeedsBothArraysAndDropsTheUniformTotal) {
  Fixture f;
  ASSERT_TRUE(f.rt);
  DecodeArgs a = decode(*f.rt, 3);
  a.query_start_loc = fake_ptr(16);  // without token_to_req_indices
  CallStatus st = f.rt->sparse_attn_decode(a, nullptr);
  ASSERT_FALSE(st.ok);
  EXPECT_NE(st.message.find("query_start_loc/token_to_req_indices"), std::string::npos) << st.message;
  // Both: total_q is whatever query_start_loc says (here 7 rows for 3 requests), not num_reqs * decode_query_len.
  a.token_to_req_indices = fake_ptr(17);
  a.total_q = 7;
  a.workspace_bytes = f.rt->decode_workspace_bytes(7, H, KVH, D, TOPK);
  st = f.rt->sparse_attn_decode(a, nullptr);
  EXPECT_TRUE(st.ok) << st.message;
  a.num_reqs = 0;
  st = f.rt->sparse_attn_decode(a, nullptr);
  ASSERT_FALSE(st.ok);
  EXPECT_NE(st.message.find("num_reqs"), std::string::npos) << st.message;
}

TEST(RuntimeHooks, ManyThreadsDifferentShapesAndStreamsBuildEachKernelOnce) {
  // One Runtime shared by 8 threads, each launching its own shapes (prefill
  // lengths and decode batch sizes, hence different kernels and chunk counts)
  // on its own "stream". Run under ThreadSanitizer by scripts/test-sanitizers.sh.
  Fixture f;
  ASSERT_TRUE(f.rt);
  constexpr int kThreads = 8, kRounds = 200;
  std::atomic<int> failures{0}, calls{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&, t] {
      void* stream = reinterpret_cast<void*>(std::uintptr_t(0x1000) * (t + 1));
      for (int r = 0; r < kRounds; ++r) {
        const std::int64_t reqs = 1 + (t * 37 + r) % 300;  // spans every chunk count and the large-batch launch
        const CallStatus d = f.rt->sparse_attn_decode(decode(*f.rt, reqs), stream);
        const CallStatus p = f.rt->sparse_attn_prefill(prefill(1 + (t + r) % 9), stream);
        failures += !d.ok + !p.ok;
        calls += 2;
      }
    });
  for (auto& th : pool) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Every distinct config was built exactly once, however many threads wanted it at once.
  std::set<std::string> distinct;
  for (const auto& c : f.configs) distinct.insert(c.canonical());
  EXPECT_EQ(distinct.size(), f.configs.size()) << "a config was built twice";
  EXPECT_EQ(static_cast<std::size_t>(f.built.load()), RuntimeAccess::loaded_kernels(*f.rt));
  EXPECT_GE(f.launches.load(), calls.load());  // decode with a merge launches twice
}

TEST(RuntimeHooks, WarmRejectsBadShapes) {
  Fixture f;
  ASSERT_TRUE(f.rt);
  KernelShape s = shape();
  s.num_kv_heads = 0;
  CallStatus st = f.rt->warm_prefill(s);
  ASSERT_FALSE(st.ok);
  EXPECT_NE(st.message.find("num_kv_heads"), std::string::npos) << st.message;
  s = shape();
  s.head_dim = 100;
  st = f.rt->warm_decode(s, 1);
  ASSERT_FALSE(st.ok);
  EXPECT_NE(st.message.find("head_dim"), std::string::npos) << st.message;
}

TEST(RuntimeHooks, RecordsEveryDistinctConfigItNeeded) {
  const std::string path = std::filesystem::temp_directory_path() / ("sparsejit-record-" + std::to_string(getpid()) + ".jsonl");
  std::filesystem::remove(path);
  {
    ScopedKnob record("SPARSEJIT_RECORD", path);
    Fixture f;
    ASSERT_TRUE(f.rt);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(f.rt->sparse_attn_prefill(prefill(2), nullptr).ok);
      ASSERT_TRUE(f.rt->sparse_attn_decode(decode(*f.rt, 2), nullptr).ok);
    }
    // A config refused during a capture is recorded too: it is what ops must warm.
    f.driver.capturing = true;
    EXPECT_FALSE(f.rt->sparse_attn_decode(decode(*f.rt, 256), nullptr).ok);
    auto m = read_manifest(path);
    ASSERT_TRUE(m) << m.error().describe();
    // prefill, decode + merge (2 reqs: 16 chunks), decode (256 reqs: 1 chunk, no merge), refused
    ASSERT_EQ(m->size(), 4u);
    ASSERT_EQ(f.configs.size(), 3u);  // the fourth was refused, never built
    for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ((*m)[i].canonical(), f.configs[i].canonical());
    EXPECT_EQ(to_string((*m)[3].op), std::string("decode"));
    EXPECT_EQ((*m)[3].num_topk_chunks, 1);
    EXPECT_EQ(to_string((*m)[0].op), std::string("prefill"));
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace sparsejit
