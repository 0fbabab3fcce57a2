// The Runtime's host path without a GPU: a fake driver and injected no-op
// kernels (src/runtime_internal.h). Covers the graph-capture refusal, warming,
// the in-memory hit (no rebuild) and SPARSEJIT_RECORD from the runtime.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "device/device.h"
#include "knobs.h"
#include "manifest.h"
#include "runtime_internal.h"
#include "sparse_attn_params.h"

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

// Records what an attention kernel was launched with: its parameter block and, for a
// config with launch.tma, the tensor maps of its second parameter (a merge kernel's
// parameters are another struct: not read).
class RecordingKernel final : public Kernel {
 public:
  RecordingKernel(const KernelConfig& c, std::atomic<int>* launches)
      : attention_(c.op != Op::merge), tma_(c.launch.tma), launches_(launches) {}
  Status launch(Dim3, Dim3 block, unsigned, void*, void** args) const override {
    ++*launches_;
    if (!attention_) return ok_status();
    params = *static_cast<const SjAttnParams*>(args[0]);
    if (tma_) maps = *static_cast<const SjTmaMaps*>(args[1]);
    threads = block.x;
    return ok_status();
  }
  std::string attributes_json() const override { return "{}"; }
  mutable SjAttnParams params{};
  mutable SjTmaMaps maps{};
  mutable unsigned threads = 0;

 private:
  bool attention_, tma_;
  std::atomic<int>* launches_;
};

class FakeDriver final : public Driver {
 public:
  bool capturing = false;
  bool capture_query_fails = false;
  bool tensor_maps = false;                          // encode_tensor_map succeeds (else: the base class's error)
  mutable std::vector<TensorMap16> encoded;          // every map asked for (read when no call runs)
  mutable std::mutex encoded_mu;                     // calls may come from many threads
  Status encode_tensor_map(const TensorMap16& m, void* out) const override {
    {
      std::lock_guard<std::mutex> lock(encoded_mu);
      encoded.push_back(m);
    }
    if (!tensor_maps) return Driver::encode_tensor_map(m, out);
    std::memset(out, 0, 128);
    std::memcpy(out, &m.base, sizeof m.base);  // a recognizable map: its base address first
    return ok_status();
  }
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

// sm_90's large decode launch (launch.tma): the runtime encodes K and V tensor maps for every
// call (5-D: dims within 64, key, 64-dim group, kv head, page; a box of one sub-tile) and
// passes them as the kernel's second parameter with SJ_FLAG_KV_TMA. Without the maps (a
// driver that cannot encode them, or rows that are not 16-byte aligned) the flag stays off:
// the kernel's producer warp then loads elements.
TEST(RuntimeHooks, LargeDecodePassesTensorMapsOfKAndV) {
  FakeDriver driver;
  driver.tensor_maps = true;
  std::atomic<int> launches{0};
  std::vector<std::pair<KernelConfig, std::shared_ptr<RecordingKernel>>> kernels;
  RuntimeTestHooks h;
  h.driver = &driver;
  h.info.target = "sm_90";
  h.make_kernel = [&](const KernelConfig& c) -> Result<std::shared_ptr<Kernel>> {
    auto k = std::make_shared<RecordingKernel>(c, &launches);
    kernels.emplace_back(c, k);
    return std::shared_ptr<Kernel>(k);
  };
  auto created = RuntimeAccess::create_for_testing(std::move(h));
  ASSERT_TRUE(created.ok()) << created.error().describe();
  Runtime& rt = **created;

  // 200 requests x 1 kv head, one chunk: >= 128 workgroups of 16 entries.
  DecodeArgs a = decode(rt, 200);
  ASSERT_TRUE(rt.sparse_attn_decode(a, nullptr).ok);
  ASSERT_EQ(kernels.size(), 1u);
  const KernelConfig& c = kernels[0].first;
  ASSERT_TRUE(c.launch.tma) << c.canonical();
  const RecordingKernel& k = *kernels[0].second;
  EXPECT_EQ(k.threads, 288u);
  ASSERT_EQ(driver.encoded.size(), 2u);
  const std::uint64_t dims[5] = {64, 128, D / 64, KVH, 8};
  const std::uint64_t strides[4] = {2 * D * 2, 64 * 2, 128 * 2 * D * 2, KVH * 128 * 2 * D * 2};
  const std::uint32_t box[5] = {64, std::uint32_t(c.sub_k), D / 64, 1, 1};
  for (int i = 0; i < 2; ++i) {
    const Driver::TensorMap16& m = driver.encoded[i];
    EXPECT_EQ(m.base, static_cast<const char*>(a.kv_cache) + i * D * 2) << (i ? "V" : "K");
    EXPECT_EQ(m.rank, 5u);
    for (int d = 0; d < 5; ++d) EXPECT_EQ(m.dims[d], dims[d]) << d;
    for (int d = 0; d < 4; ++d) EXPECT_EQ(m.strides[d], strides[d]) << d;
    for (int d = 0; d < 5; ++d) EXPECT_EQ(m.box[d], box[d]) << d;
  }
  EXPECT_TRUE(k.params.flags & SJ_FLAG_KV_VEC16);
  EXPECT_TRUE(k.params.flags & SJ_FLAG_KV_TMA);
  const void* k_base = nullptr;
  const void* v_base = nullptr;
  std::memcpy(&k_base, k.maps.k, sizeof k_base);
  std::memcpy(&v_base, k.maps.v, sizeof v_base);
  EXPECT_EQ(k_base, a.kv_cache);
  EXPECT_EQ(v_base, static_cast<const char*>(a.kv_cache) + D * 2);

  // Every call encodes its own maps: another cache (another layer) gets its own addresses.
  driver.encoded.clear();
  a.kv_cache = fake_ptr(20);
  ASSERT_TRUE(rt.sparse_attn_decode(a, nullptr).ok);
  ASSERT_EQ(driver.encoded.size(), 2u);
  EXPECT_EQ(driver.encoded[0].base, fake_ptr(20));
  std::memcpy(&k_base, k.maps.k, sizeof k_base);
  EXPECT_EQ(k_base, fake_ptr(20));

  // A driver without tensor maps: launched all the same, without the flag.
  driver.tensor_maps = false;
  ASSERT_TRUE(rt.sparse_attn_decode(a, nullptr).ok);
  EXPECT_TRUE(k.params.flags & SJ_FLAG_KV_VEC16);
  EXPECT_FALSE(k.params.flags & SJ_FLAG_KV_TMA);

  // Rows that are not 16-byte aligned: no maps asked for.
  driver.tensor_maps = true;
  driver.encoded.clear();
  DecodeArgs odd = decode(rt, 200);
  odd.kv_stride[2] = 2 * D + 4, odd.kv_stride[1] = 128 * (2 * D + 4), odd.kv_stride[0] = KVH * 128 * (2 * D + 4);
  ASSERT_TRUE(rt.sparse_attn_decode(odd, nullptr).ok);
  EXPECT_TRUE(driver.encoded.empty());
  EXPECT_FALSE(k.params.flags & (SJ_FLAG_KV_VEC16 | SJ_FLAG_KV_TMA));

  auto last_decode = [&]() -> const KernelConfig& {
    for (auto it = kernels.rbegin(); it != kernels.rend(); ++it)
      if (it->first.op == Op::decode) return it->first;
    return kernels.front().first;
  };
  // 16 requests: 8 chunks of two entries, 128 workgroups: the op's cp.async launch, no producer warp, no maps.
  driver.encoded.clear();
  ASSERT_TRUE(rt.sparse_attn_decode(decode(rt, 16), nullptr).ok);
  EXPECT_TRUE(driver.encoded.empty());
  EXPECT_FALSE(last_decode().launch.tma) << last_decode().canonical();
  EXPECT_EQ(last_decode().launch.threads, 128);
  EXPECT_EQ(last_decode().num_topk_chunks, 8);
  // 8 requests: 8 chunks of two entries on 64 workgroups (not 16 of one on 128: sm_90's
  // min_chunk_entries), the small-batch launch.
  ASSERT_TRUE(rt.sparse_attn_decode(decode(rt, 8), nullptr).ok);
  EXPECT_EQ(last_decode().num_topk_chunks, 8);
  EXPECT_EQ(last_decode().launch.threads, 160);
  // 4 requests: 64 workgroups, the small-batch launch: a producer warp copies whole 128-key blocks.
  driver.encoded.clear();
  ASSERT_TRUE(rt.sparse_attn_decode(decode(rt, 4), nullptr).ok);
  ASSERT_EQ(driver.encoded.size(), 2u);
  EXPECT_EQ(driver.encoded[0].box[1], 128u);
  EXPECT_TRUE(last_decode().launch.tma) << last_decode().canonical();
  EXPECT_EQ(last_decode().launch.threads, 160);
  EXPECT_EQ(last_decode().num_topk_chunks, 16);
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
  const std::int64_t batches[] = {1, 2, 3, 7, 16, 64, 200, 1000};
  for (std::int64_t reqs : batches) {
    CallStatus st = f.rt->sparse_attn_decode(decode(*f.rt, reqs), nullptr);
    EXPECT_TRUE(st.ok) << reqs << ": " << st.message;
    // No workspace <=> no merge kernel (one chunk, or chunks merged in their cluster).
    const bool merge = f.rt->decode_workspace_bytes(reqs, H, KVH, D, TOPK) != 0;
    expected_launches += merge ? 2 : 1;
    merges += merge;
  }
  EXPECT_GT(merges, 0);
  // sm_90: every decode kernel is a programmatic dependent of what ran before it, and every
  // merge one of its split-K kernel; prefill launches plainly.
  EXPECT_EQ(f.dependent, int(std::size(batches)) + merges);
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

// A table that asks for decode.kv_head_split: warming covers every (split, chunks, launch) the
// calls take, the grid has num_kv_heads x split workgroups per query and chunk, each kernel takes
// group / split query heads, and the workspace and chunk count agree with what launched.
class GridKernel final : public Kernel {
 public:
  GridKernel(const KernelConfig& c, std::vector<std::pair<KernelConfig, Dim3>>* launched, std::mutex* mu)
      : config_(c), launched_(launched), mu_(mu) {}
  Status launch(Dim3 grid, Dim3, unsigned, void*, void**) const override {
    std::lock_guard<std::mutex> lock(*mu_);
    launched_->emplace_back(config_, grid);
    return ok_status();
  }
  Status launch_dependent(Dim3 g, Dim3 b, unsigned s, void* st, void** a) const override { return launch(g, b, s, st, a); }
  std::string attributes_json() const override { return "{}"; }

 private:
  KernelConfig config_;
  std::vector<std::pair<KernelConfig, Dim3>>* launched_;
  std::mutex* mu_;
};

TEST(RuntimeHooks, KvHeadSplitFromTheTableIsWarmedAndLaunchedAsPlanned) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("sparsejit-split-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::copy(std::string(SPARSEJIT_SOURCE_DIR) + "/configs", dir, std::filesystem::copy_options::recursive);
  {
    nlohmann::json t = nlohmann::json::parse(std::ifstream(dir / "archs/sm_90.json"));
    t["ops"]["decode"]["kv_head_split"] = 4;
    std::ofstream(dir / "archs/sm_90.json") << t.dump(1);
  }
  ScopedKnob config_dir("SPARSEJIT_CONFIG_DIR", dir.string());
  FakeDriver driver;
  int built = 0;
  std::mutex mu;
  std::vector<std::pair<KernelConfig, Dim3>> launched;
  RuntimeTestHooks h;
  h.driver = &driver;
  h.info.target = "sm_90";
  h.make_kernel = [&](const KernelConfig& c) -> Result<std::shared_ptr<Kernel>> {
    ++built;
    return std::shared_ptr<Kernel>(std::make_shared<GridKernel>(c, &launched, &mu));
  };
  auto r = RuntimeAccess::create_for_testing(std::move(h));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  Runtime& rt = **r;
  KernelShape sh = shape();
  ASSERT_TRUE(rt.warm_decode(sh, 0).ok);
  const int warmed = built;
  driver.capturing = true;  // nothing may build from here on
  std::set<int> splits;
  for (std::int64_t reqs : {1, 2, 8, 16, 32, 64, 65, 128, 300}) {
    launched.clear();
    CallStatus st = rt.sparse_attn_decode(decode(rt, reqs), nullptr);
    ASSERT_TRUE(st.ok) << reqs << ": " << st.message;
    ASSERT_FALSE(launched.empty());
    const KernelConfig& k = launched.front().first;
    const Dim3 grid = launched.front().second;
    SCOPED_TRACE("total_q " + std::to_string(reqs) + ": " + k.canonical());
    EXPECT_EQ(k.op, Op::decode);
    EXPECT_EQ(k.gqa_group * k.kv_head_split, H / KVH);
    EXPECT_EQ(grid.x, unsigned(reqs));
    EXPECT_EQ(grid.y, unsigned(KVH * k.kv_head_split));
    EXPECT_EQ(grid.z, unsigned(k.num_topk_chunks));
    EXPECT_EQ(k.num_topk_chunks, rt.decode_num_chunks(reqs, H, KVH, TOPK));
    EXPECT_LE(std::int64_t(grid.x) * grid.y * grid.z, std::max<std::int64_t>(128, reqs * KVH)) << "within target_grid";
    EXPECT_EQ(launched.size(), k.num_topk_chunks > 2 ? 2u : 1u) << "the merge kernel beyond a cluster's 2 chunks";
    EXPECT_EQ(rt.decode_workspace_bytes(reqs, H, KVH, D, TOPK) != 0, launched.size() == 2);
    splits.insert(k.kv_head_split);
  }
  EXPECT_EQ(built, warmed) << "warm_decode built every kernel the calls took";
  EXPECT_EQ(splits, (std::set<int>{1, 2, 4}));
  std::filesystem::remove_all(dir);
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
