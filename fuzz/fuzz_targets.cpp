// libFuzzer targets (optional, never in CI): built only with
// -DSPARSEJIT_FUZZ=ON and clang (see fuzz/CMakeLists.txt). One binary per
// target, selected by SJ_FUZZ_TARGET at compile time. The bounded
// property-based versions that CI runs are in tests/test_fuzz.cpp.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cache/entry_format.h"
#include "compiler/helper_main.h"
#include "config.h"
#include "ops/validate.h"

namespace {

std::string_view as_view(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Reads fixed-size fields from the input, zero-filled past its end.
struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  template <class T>
  T take() {
    T v{};
    std::size_t k = sizeof(T) < n ? sizeof(T) : n;
    __builtin_memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};

template <class A>
void fill_common(A& a, Reader& r) {
  auto ptr = [&r]() -> void* { return r.take<std::uint8_t>() & 1 ? reinterpret_cast<void*>(0x10000) : nullptr; };
  a.q = ptr(), a.kv_cache = ptr(), a.topk_idx = ptr(), a.block_table = ptr(), a.seq_lens = ptr(), a.output = ptr();
  a.k_scale = ptr(), a.v_scale = ptr();
  for (auto& s : a.q_stride) s = r.take<std::int64_t>();
  for (auto& s : a.output_stride) s = r.take<std::int64_t>();
  for (auto& s : a.kv_stride) s = r.take<std::int64_t>();
  a.num_pages = r.take<std::int64_t>(), a.max_blocks = r.take<std::int64_t>();
  a.total_q = r.take<std::int64_t>(), a.num_heads = r.take<std::int64_t>(), a.num_kv_heads = r.take<std::int64_t>();
  a.head_dim = r.take<std::int64_t>(), a.topk = r.take<std::int64_t>();
  a.q_dtype = static_cast<sparsejit::DType>(r.take<std::uint8_t>() % 8);
  a.kv_dtype = static_cast<sparsejit::DType>(r.take<std::uint8_t>() % 8);
  a.scale_mode = static_cast<sparsejit::ScaleMode>(r.take<std::uint8_t>() % 4);
  a.sm_scale = r.take<float>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sparsejit;
#if SJ_FUZZ_TARGET == 1  // config_json
  auto j = nlohmann::json::parse(as_view(data, size), nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded()) {
    auto c = KernelConfig::from_json(j);
    if (c.ok() && !KernelConfig::from_json(c->to_json()).ok()) __builtin_trap();  // must round-trip
  }
#elif SJ_FUZZ_TARGET == 2  // entry_decode
  std::string_view bytes = as_view(data, size);
  auto d = cache_format::decode_entry(bytes, "00ff");
  if (d.ok() && cache_format::encode_entry("00ff", *d) != bytes) __builtin_trap();  // exact format
#elif SJ_FUZZ_TARGET == 3  // frame_decode
  std::string_view bytes = as_view(data, size);
  auto f = decode_frame(bytes);
  if (f && encode_frame(*f) != bytes) __builtin_trap();
#elif SJ_FUZZ_TARGET == 4  // validate_args
  Reader r{data, size};
  if (r.take<std::uint8_t>() & 1) {
    PrefillArgs a;
    fill_common(a, r);
    a.cu_seqlens_q = a.prefix_lens = reinterpret_cast<void*>(0x20000);
    a.batch = r.take<std::int64_t>(), a.max_query_len = r.take<std::int64_t>();
    (void)validate_prefill(a);
  } else {
    DecodeArgs a;
    fill_common(a, r);
    a.num_reqs = r.take<std::int64_t>(), a.decode_query_len = r.take<std::int64_t>();
    a.workspace = reinterpret_cast<void*>(0x30000), a.workspace_bytes = r.take<std::uint64_t>();
    (void)validate_decode(a, r.take<std::uint64_t>());
  }
#else
#error "SJ_FUZZ_TARGET must be 1..4"
#endif
  return 0;
}
