// Runtime: the engine-facing entry points. The hot path (a kernel already
// loaded for these shapes) is a shared-lock hash lookup plus the launch.
#include <cstring>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "arch_table.h"
#include "device/device.h"
#include "kernel_builder.h"
#include "knobs.h"
#include "log.h"
#include "manifest.h"
#include "ops/config_select.h"
#include "ops/validate.h"
#include "runtime_internal.h"
#include "sparse_attn_params.h"
#include "sparsejit/sparsejit.hpp"

namespace sparsejit {
namespace {

CallStatus to_call_status(const Error& e) {
  CallStatus s;
  s.ok = false;
  s.stage = e.stage;
  s.message = e.describe(true);
  return s;
}

// Everything that selects a kernel on one device, packed for hashing.
struct HotKey {
  std::uint64_t a = 0, b = 0;
  bool operator==(const HotKey& o) const { return a == o.a && b == o.b; }
};
struct HotKeyHash {
  std::size_t operator()(const HotKey& k) const { return std::hash<std::uint64_t>()(k.a * 0x9e3779b97f4a7c15ull ^ k.b); }
};
HotKey hot_key(Op op, std::int64_t head_dim, std::int64_t topk, std::int64_t group, int chunks, DType q, DType kv, ScaleMode sm,
               DecodeLaunch launch = DecodeLaunch::base, int kv_head_split = 1) {
  HotKey k;
  k.a = (std::uint64_t(op) << 56) | (std::uint64_t(head_dim) << 40) | (std::uint64_t(topk) << 16) | std::uint64_t(group);
  k.b = (std::uint64_t(kv_head_split) << 56) | (std::uint64_t(chunks) << 32) | (std::uint64_t(launch) << 24) | (std::uint64_t(q) << 16) |
        (std::uint64_t(kv) << 8) | std::uint64_t(sm);
  return k;
}
// The kv head split needs the group; shapes that cannot have one (no kv heads yet) split nothing.
std::int64_t group_of(std::int64_t num_heads, std::int64_t num_kv_heads) { return num_kv_heads > 0 ? num_heads / num_kv_heads : 1; }

// The parameter fields prefill and decode share (pointers, strides, bounds, scale).
template <class Args>
void pack_common(const Args& a, SjAttnParams& p) {
  p.q = a.q;
  p.kv = a.kv_cache;
  p.topk = a.topk_idx;
  p.block_table = a.block_table;
  p.seq_lens = a.seq_lens;
  p.k_scale = a.k_scale;
  p.v_scale = a.v_scale;
  for (int i = 0; i < 3; ++i) {
    p.q_stride[i] = a.q_stride[i];
    p.topk_stride[i] = a.topk_stride[i];
  }
  for (int i = 0; i < 4; ++i) p.kv_stride[i] = a.kv_stride[i];
  for (int i = 0; i < 2; ++i) {
    p.ks_stride[i] = a.k_scale_stride[i];
    p.vs_stride[i] = a.v_scale_stride[i];
  }
  p.v_offset = a.v_offset;
  p.bt_stride = a.block_table_stride;
  p.total_q = a.total_q;
  p.num_heads = a.num_heads;
  p.max_blocks = a.max_blocks;
  p.num_pages = a.num_pages;
  p.sm_scale_log2 = a.sm_scale * 1.4426950408889634f;
  // 16-byte K/V copies need unit dim stride and 16-byte aligned rows, pages, heads and V offset.
  const std::int64_t esize = dtype_bytes(a.kv_dtype);
  bool vec16 = a.kv_stride[3] == 1 && (a.head_dim * esize) % 16 == 0 && (a.v_offset * esize) % 16 == 0 &&
               reinterpret_cast<std::uintptr_t>(a.kv_cache) % 16 == 0;
  for (int i = 0; i < 3; ++i) vec16 = vec16 && (a.kv_stride[i] * esize) % 16 == 0;
  bool q_vec16 = a.q_stride[2] == 1 && (a.q_stride[0] * 2) % 16 == 0 && (a.q_stride[1] * 2) % 16 == 0 &&
                 reinterpret_cast<std::uintptr_t>(a.q) % 16 == 0;
  p.flags = (vec16 ? SJ_FLAG_KV_VEC16 : 0) | (q_vec16 ? SJ_FLAG_Q_VEC16 : 0);
}

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// The merge kernel depends on head_dim, q's dtype and the chunk count only (warm and call use this one key).
HotKey merge_key(std::int64_t head_dim, DType q_dtype, int chunks) {
  return hot_key(Op::merge, head_dim, 0, 0, chunks, q_dtype, q_dtype, ScaleMode::none);
}

// Decode's split-K workspace: the partial outputs [chunks, total_q, heads, head_dim],
// then the LSEs [chunks, total_q, heads], each 256-byte aligned. Empty when no merge
// kernel runs (one chunk, or chunks merged in their cluster) or the shapes are empty.
struct DecodeWorkspace {
  std::size_t lse_offset = 0, bytes = 0;
};
DecodeWorkspace decode_workspace(const ArchTable& arch, int chunks, std::int64_t total_q, std::int64_t num_heads, std::int64_t head_dim) {
  if (total_q <= 0 || num_heads <= 0 || head_dim <= 0 || !decode_uses_merge_kernel(arch, chunks)) return {};
  const std::size_t rows = std::size_t(chunks) * std::size_t(total_q) * std::size_t(num_heads);
  DecodeWorkspace w;
  w.lse_offset = align_up(rows * std::size_t(head_dim) * sizeof(float));
  w.bytes = w.lse_offset + align_up(rows * sizeof(float));
  return w;
}

}  // namespace

struct Runtime::Impl {
  const Driver* driver = nullptr;
  int device = 0;
  DeviceInfo info;
  ArchTable arch;
  KernelBuilder builder{default_cache()};
  // Tests and the host-overhead benchmark: replaces build + load (runtime_internal.h).
  std::function<Result<std::shared_ptr<Kernel>>(const KernelConfig&)> make_kernel_for_testing;

  struct Loaded {
    std::unique_ptr<Module> module;
    std::shared_ptr<Kernel> kernel;
    KernelConfig config;
    unsigned dynamic_shared = 0;  // config.dynamic_shared_bytes(), computed once
    unsigned threads = 0;
  };
  mutable std::shared_mutex mu;
  std::unordered_map<HotKey, std::shared_ptr<Loaded>, HotKeyHash> loaded;
  std::mutex build_mu;  // one build+load per Runtime at a time (the cache merges across runtimes)

  // The hot path is the first block: a shared-lock lookup, no allocation. On a
  // miss `make_config` gives the config, which is recorded (SPARSEJIT_RECORD),
  // then built and loaded unless `stream` is capturing a graph.
  template <class MakeConfig>
  Result<const Loaded*> kernel_for(const HotKey& hk, MakeConfig&& make_config, void* stream, bool check_capture) {
    {
      std::shared_lock<std::shared_mutex> lock(mu);
      auto it = loaded.find(hk);
      if (it != loaded.end()) return it->second.get();
    }
    return load_missing(hk, make_config(), stream, check_capture);
  }

  Result<const Loaded*> load_missing(const HotKey& hk, const KernelConfig& config, void* stream, bool check_capture) {
    std::lock_guard<std::mutex> build_lock(build_mu);
    {
      std::shared_lock<std::shared_mutex> lock(mu);
      auto it = loaded.find(hk);
      if (it != loaded.end()) return it->second.get();
    }
    {
      // Another key that resolves to the same config (a launch tier that falls back to
      // another's, e.g. huge_batch where two workgroups do not fit an SM) shares its kernel:
      // nothing is built or loaded, so this is fine during a capture too.
      std::unique_lock<std::shared_mutex> lock(mu);
      for (const auto& [key, entry] : loaded)
        if (entry->config == config) {
          std::shared_ptr<Loaded> same = entry;
          loaded.emplace(hk, same);
          return same.get();
        }
    }
    if (const std::string& manifest = knobs().record; !manifest.empty()) {
      // Recorded when needed, before building: a config that could not be built
      // (e.g. refused during a capture) is exactly what ops must warm.
      if (auto st = record_config(manifest, config); !st) log::warn_once("record:" + manifest, st.error().describe(false));
    }
    if (check_capture) {
      // Compiling is slow and loading a module inside a capture invalidates it:
      // refuse, and say how to avoid it.
      auto capturing = driver->stream_is_capturing(stream);
      if (!capturing || *capturing) {
        std::string why = capturing ? "the stream is capturing a CUDA/HIP graph"
                                    : "cannot tell whether the stream is capturing (" + capturing.error().message + ")";
        return make_error("capture", "kernel " + config.kernel_name() + " " + config.canonical() + " is not loaded and " + why +
                                         ": building it now would break the capture. Warm it before capturing: run the call once "
                                         "outside the capture, Runtime::warm_prefill/warm_decode, sj_warm_prefill/sj_warm_decode, "
                                         "or `sparsejit warm --manifest` with a SPARSEJIT_RECORD manifest");
      }
    }
    auto entry = std::make_shared<Loaded>();
    entry->config = config;
    if (make_kernel_for_testing) {
      auto k = make_kernel_for_testing(config);
      if (!k) return k.error();
      entry->kernel = std::move(*k);
    } else {
      auto built = builder.build(config);
      if (!built) return built.error();
      auto module = driver->load(device, built->object->binary);
      if (!module) return module.error();
      auto fn = (*module)->function(built->kernel_name);
      if (!fn) return fn.error();
      entry->module = std::move(*module);
      entry->kernel = *fn;
    }
    entry->dynamic_shared = static_cast<unsigned>(config.dynamic_shared_bytes());
    entry->threads = static_cast<unsigned>(config.launch.threads);
    if (auto st = entry->kernel->set_max_dynamic_shared_bytes(entry->dynamic_shared); !st) return st.error();
    const Loaded* k = entry.get();
    std::unique_lock<std::shared_mutex> lock(mu);
    loaded.emplace(hk, std::move(entry));
    return k;
  }

  AttnShape shape_of(std::int64_t h, std::int64_t kvh, std::int64_t d, std::int64_t topk, DType q, DType kv, ScaleMode sm) const {
    AttnShape s;
    s.num_heads = h;
    s.num_kv_heads = kvh;
    s.head_dim = d;
    s.topk = topk;
    s.q_dtype = q;
    s.kv_dtype = kv;
    s.scale_mode = sm;
    return s;
  }

  HotKey decode_key(const KernelShape& s, const DecodeChoice& c) const {
    return hot_key(Op::decode, s.head_dim, s.topk, s.num_heads / s.num_kv_heads, c.chunks, s.q_dtype, s.kv_dtype, s.scale_mode, c.launch,
                   c.kv_head_split);
  }
  AttnShape attn_shape(const KernelShape& s) const {
    return shape_of(s.num_heads, s.num_kv_heads, s.head_dim, s.topk, s.q_dtype, s.kv_dtype, s.scale_mode);
  }
};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

std::unique_ptr<Runtime> Runtime::create(const RuntimeOptions& options) {
  auto rt = RuntimeAccess::create(options);
  if (!rt) {
    log::error(rt.error().describe(false));
    return nullptr;
  }
  return std::move(*rt);
}

Result<std::unique_ptr<Runtime>> RuntimeAccess::create(const RuntimeOptions& options) {
  auto impl = std::make_unique<Runtime::Impl>();
  for (const Driver* d : {&cuda_driver(), &hip_driver()}) {
    if (d->available() && d->device_count() > 0) {
      impl->driver = d;
      break;
    }
  }
  if (!impl->driver) {
    return make_error("driver", "no GPU: CUDA: " + cuda_driver().unavailable_reason() + "; HIP: " + hip_driver().unavailable_reason());
  }
  if (options.device >= 0) {
    if (options.device >= impl->driver->device_count())
      return make_error("driver", "device ordinal " + std::to_string(options.device) + " out of range (" +
                                      std::to_string(impl->driver->device_count()) + " devices)");
    impl->device = options.device;
  } else {
    auto cur = impl->driver->current_device();
    impl->device = cur ? *cur : 0;
  }
  auto info = impl->driver->device_info(impl->device);
  if (!info) return info.error();
  impl->info = *info;
  auto arch = load_arch_table(impl->info.target);
  if (!arch) return arch.error();
  impl->arch = *arch;
  log::info("runtime on device " + std::to_string(impl->device) + ": " + impl->info.name + " (" + impl->info.target + ")");
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

Result<std::unique_ptr<Runtime>> RuntimeAccess::create_for_testing(RuntimeTestHooks hooks) {
  if (!hooks.driver || !hooks.make_kernel) return make_error("driver", "create_for_testing needs a driver and make_kernel");
  auto impl = std::make_unique<Runtime::Impl>();
  impl->driver = hooks.driver;
  impl->device = hooks.device;
  impl->info = hooks.info;
  impl->make_kernel_for_testing = std::move(hooks.make_kernel);
  auto arch = load_arch_table(impl->info.target);
  if (!arch) return arch.error();
  impl->arch = *arch;
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

std::size_t RuntimeAccess::loaded_kernels(const Runtime& rt) {
  std::shared_lock<std::shared_mutex> lock(rt.impl_->mu);
  std::unordered_set<const void*> kernels;  // keys that share a config share its entry
  for (const auto& kv : rt.impl_->loaded) kernels.insert(kv.second.get());
  return kernels.size();
}

const Driver& RuntimeAccess::driver(const Runtime& rt) { return *rt.impl_->driver; }

int Runtime::device() const { return impl_->device; }

std::string Runtime::cache_status_json() const {
  const CacheStatus st = impl_->builder.cache().status();
  nlohmann::json j = to_json(st);
  j["device"] = impl_->device;
  j["target"] = impl_->info.target;
  j["loaded_kernels"] = RuntimeAccess::loaded_kernels(*this);
  j["record"] = knobs().record;
  return j.dump();
}

namespace {
Status check_warm_shape(const char* fn, const KernelShape& s) {
  if (s.num_kv_heads < 1 || s.num_heads < 1 || s.num_heads % s.num_kv_heads != 0 || s.topk < 1)
    return make_error("validate", std::string(fn) + ": num_heads must be a positive multiple of num_kv_heads >= 1 and topk >= 1, got num_heads " +
                                      std::to_string(s.num_heads) + ", num_kv_heads " + std::to_string(s.num_kv_heads) + ", topk " +
                                      std::to_string(s.topk));
  return ok_status();
}
}  // namespace

CallStatus Runtime::warm_prefill(const KernelShape& sh) {
  if (auto st = check_warm_shape("warm_prefill", sh); !st) return to_call_status(st.error());
  const KernelConfig config = prefill_config(impl_->arch, impl_->attn_shape(sh));
  if (auto st = config.validate(); !st) return to_call_status(st.error());
  const HotKey hk = hot_key(Op::prefill, sh.head_dim, sh.topk, sh.num_heads / sh.num_kv_heads, 1, sh.q_dtype, sh.kv_dtype, sh.scale_mode);
  auto k = impl_->kernel_for(hk, [&] { return config; }, nullptr, /*check_capture=*/false);
  if (!k) return to_call_status(k.error());
  return {};
}

CallStatus Runtime::warm_decode(const KernelShape& sh, std::int64_t total_q) {
  if (auto st = check_warm_shape("warm_decode", sh); !st) return to_call_status(st.error());
  // The choices decode can make: for this total_q, or for any.
  const std::int64_t group = sh.num_heads / sh.num_kv_heads;
  std::vector<DecodeChoice> variants;
  if (total_q > 0)
    variants.push_back(decode_choice(impl_->arch, total_q, sh.num_kv_heads, group, sh.topk));
  else
    variants = decode_variants(impl_->arch, sh.num_kv_heads, sh.topk, group);
  const AttnShape as = impl_->attn_shape(sh);
  for (const DecodeChoice& v : variants) {
    const KernelConfig attn = decode_config(impl_->arch, as, v.chunks, v.launch, v.kv_head_split);
    if (auto st = attn.validate(); !st) return to_call_status(st.error());
    auto a = impl_->kernel_for(impl_->decode_key(sh, v), [&] { return attn; }, nullptr, false);
    if (!a) return to_call_status(a.error());
    if (!decode_uses_merge_kernel(impl_->arch, v.chunks)) continue;  // the attention kernel writes the output itself
    const KernelConfig merge = merge_config(impl_->arch, sh.head_dim, sh.q_dtype, v.chunks);
    auto m = impl_->kernel_for(merge_key(sh.head_dim, sh.q_dtype, v.chunks), [&] { return merge; }, nullptr, false);
    if (!m) return to_call_status(m.error());
  }
  return {};
}

int Runtime::decode_num_chunks(std::int64_t total_q, std::int64_t num_heads, std::int64_t num_kv_heads, std::int64_t topk) const {
  return decode_choice(impl_->arch, total_q, num_kv_heads, group_of(num_heads, num_kv_heads), topk).chunks;
}

int Runtime::decode_num_chunks(std::int64_t total_q, std::int64_t num_kv_heads, std::int64_t topk) const {
  return decode_num_chunks(total_q, num_kv_heads, num_kv_heads, topk);  // a group of 1: no kv head split
}

std::size_t Runtime::decode_workspace_bytes(std::int64_t total_q, std::int64_t num_heads, std::int64_t num_kv_heads,
                                            std::int64_t head_dim, std::int64_t topk) const {
  const int chunks = decode_choice(impl_->arch, total_q, num_kv_heads, group_of(num_heads, num_kv_heads), topk).chunks;
  return decode_workspace(impl_->arch, chunks, total_q, num_heads, head_dim).bytes;
}

namespace {

// launch.tma: tensor maps of K and V for the decode kernel (SjTmaMaps), 5-D in 16-bit
// elements: (dims within 64, key, 64-dim group, kv head, page), boxes of one sub-tile.
// Needs the 16-byte copies' alignment (SJ_FLAG_KV_VEC16); on success sets
// SJ_FLAG_KV_TMA. When the driver cannot encode them the kernel's producer warp loads
// elements instead (correct, slower), and that is said once.
void encode_kv_maps(const Driver& driver, const DecodeArgs& a, const KernelConfig& c, SjAttnParams& p, SjTmaMaps& maps) {
  if (!(p.flags & SJ_FLAG_KV_VEC16)) return;
  Driver::TensorMap16 m{a.kv_cache,
                        5,
                        {64, std::uint64_t(kSparseBlock), std::uint64_t(a.head_dim / 64), std::uint64_t(a.num_kv_heads),
                         std::uint64_t(a.num_pages)},
                        {std::uint64_t(a.kv_stride[2]) * 2, 64 * 2, std::uint64_t(a.kv_stride[1]) * 2, std::uint64_t(a.kv_stride[0]) * 2},
                        {64, std::uint32_t(c.sub_k), std::uint32_t(a.head_dim / 64), 1, 1}};
  Status st = driver.encode_tensor_map(m, maps.k);
  if (st) {
    m.base = static_cast<const char*>(a.kv_cache) + a.v_offset * 2;
    st = driver.encode_tensor_map(m, maps.v);
  }
  if (!st) {
    static log::WarnOnce no_tensor_maps;  // once per process: this is the hot path
    no_tensor_maps([&] {
      return "decode: K/V tensor maps unavailable (" + st.error().message + "); the producer warp loads elements instead, which is slower";
    });
    return;
  }
  p.flags |= SJ_FLAG_KV_TMA;
}

// As the arch table's op asks: a programmatic dependent launch, or a plain one.
Status launch_as(const OpTuning& op, const Kernel& k, Dim3 grid, Dim3 block, unsigned dynamic_shared, void* stream, void** args) {
  return op.dependent_launch ? k.launch_dependent(grid, block, dynamic_shared, stream, args) : k.launch(grid, block, dynamic_shared, stream, args);
}

}  // namespace

CallStatus Runtime::sparse_attn_prefill(const PrefillArgs& a, void* stream) {
  if (auto st = validate_prefill(a); !st) return to_call_status(st.error());
  if (a.total_q == 0 || a.max_query_len == 0) return {};
  const std::int64_t group = a.num_heads / a.num_kv_heads;
  const HotKey hk = hot_key(Op::prefill, a.head_dim, a.topk, group, 1, a.q_dtype, a.kv_dtype, a.scale_mode);
  auto kernel = impl_->kernel_for(
      hk,
      [&] {
        return prefill_config(impl_->arch, impl_->shape_of(a.num_heads, a.num_kv_heads, a.head_dim, a.topk, a.q_dtype, a.kv_dtype, a.scale_mode));
      },
      stream, /*check_capture=*/true);
  if (!kernel) return to_call_status(kernel.error());

  SjAttnParams p;
  std::memset(&p, 0, sizeof p);
  pack_common(a, p);
  p.prefix_lens = a.prefix_lens;
  p.cu_seqlens_q = a.cu_seqlens_q;
  p.out = a.output;
  for (int i = 0; i < 3; ++i) p.out_stride[i] = a.output_stride[i];
  p.decode_query_len = 0;
  void* args[] = {&p};
  const auto& k = **kernel;
  const std::int64_t q_tile = k.config.q_tile;
  const Dim3 grid{unsigned((a.max_query_len + q_tile - 1) / q_tile), unsigned(a.num_kv_heads), unsigned(a.batch)};
  if (auto st = k.kernel->launch(grid, Dim3{k.threads, 1, 1}, k.dynamic_shared, stream, args); !st) return to_call_status(st.error());
  return {};
}

CallStatus Runtime::sparse_attn_decode(const DecodeArgs& a, void* stream) {
  const std::int64_t group = group_of(a.num_heads, a.num_kv_heads);
  const DecodeChoice choice = decode_choice(impl_->arch, a.total_q, a.num_kv_heads, group, a.topk);
  const int chunks = choice.chunks;
  const DecodeWorkspace ws = decode_workspace(impl_->arch, chunks, a.total_q, a.num_heads, a.head_dim);
  if (auto st = validate_decode(a, ws.bytes); !st) return to_call_status(st.error());
  if (a.total_q == 0) return {};
  auto attn = impl_->kernel_for(
      hot_key(Op::decode, a.head_dim, a.topk, group, chunks, a.q_dtype, a.kv_dtype, a.scale_mode, choice.launch, choice.kv_head_split),
      [&] {
        return decode_config(impl_->arch, impl_->shape_of(a.num_heads, a.num_kv_heads, a.head_dim, a.topk, a.q_dtype, a.kv_dtype, a.scale_mode),
                             chunks, choice.launch, choice.kv_head_split);
      },
      stream, /*check_capture=*/true);
  if (!attn) return to_call_status(attn.error());
  SjAttnParams p;
  std::memset(&p, 0, sizeof p);
  pack_common(a, p);
  p.decode_query_len = a.decode_query_len;
  p.query_start_loc = a.query_start_loc;
  p.token_to_req = a.token_to_req_indices;
  p.num_reqs = a.num_reqs;
  void* args[] = {&p};
  float* o_part = static_cast<float*>(a.workspace);
  float* lse = reinterpret_cast<float*>(static_cast<char*>(a.workspace) + ws.lse_offset);
  // Without a merge kernel the attention kernel (or its cluster) writes the output; with one, it
  // writes the partials, and the merge kernel is found before anything launches.
  const Impl::Loaded* merge = nullptr;
  if (decode_uses_merge_kernel(impl_->arch, chunks)) {
    auto m = impl_->kernel_for(merge_key(a.head_dim, a.q_dtype, chunks),
                               [&] { return merge_config(impl_->arch, a.head_dim, a.q_dtype, chunks); }, stream, true);
    if (!m) return to_call_status(m.error());
    merge = *m;
    p.out = o_part;
    p.lse = lse;
  } else {
    p.out = a.output;
    for (int i = 0; i < 3; ++i) p.out_stride[i] = a.output_stride[i];
  }
  const auto& k = **attn;
  SjTmaMaps maps;  // launch.tma: the kernel's second parameter
  void* tma_args[] = {&p, &maps};
  if (k.config.launch.tma) {
    std::memset(&maps, 0, sizeof maps);
    encode_kv_maps(*impl_->driver, a, k.config, p, maps);
  }
  const Dim3 grid{unsigned(a.total_q), unsigned(a.num_kv_heads * choice.kv_head_split), unsigned(chunks)};
  if (auto st = launch_as(impl_->arch.decode, *k.kernel, grid, Dim3{k.threads, 1, 1}, k.dynamic_shared, stream,
                          k.config.launch.tma ? tma_args : args);
      !st)
    return to_call_status(st.error());
  if (!merge) return {};

  SjMergeParams m;
  std::memset(&m, 0, sizeof m);
  m.o_part = o_part;
  m.lse = lse;
  m.out = a.output;
  for (int i = 0; i < 3; ++i) m.out_stride[i] = a.output_stride[i];
  m.total_q = a.total_q;
  m.num_heads = a.num_heads;
  void* margs[] = {&m};
  const Dim3 mgrid{unsigned(a.total_q), unsigned(a.num_heads), 1}, mblock{merge->threads, 1, 1};
  if (auto st = launch_as(impl_->arch.merge, *merge->kernel, mgrid, mblock, 0, stream, margs); !st)
    return to_call_status(st.error());
  return {};
}

}  // namespace sparsejit
