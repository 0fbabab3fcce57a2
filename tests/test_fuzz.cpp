// Bounded property-based fuzzing of every parser and validator that takes
// outside input: kernel config JSON, model preset JSON (the manifest reader),
// the template renderer, the cache entry decoder, the compile-helper frame
// decoder and the ops argument validation. Each target runs up to
// kIterations inputs or kSeconds, whichever comes first (x SPARSEJIT_SOAK),
// and checks real properties: no exception escapes, errors are clear values,
// accepted inputs round-trip. Run under ASan/UBSan by scripts/test-sanitizers.sh.
// Deterministic seeds: a failure reproduces; SPARSEJIT_FUZZ_SEED varies them.
#include <climits>
#include <chrono>
#include <filesystem>
#include <functional>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "cache/entry_format.h"
#include "compiler/helper_main.h"
#include "config.h"
#include "knobs.h"
#include "manifest.h"
#include "ops/config_select.h"
#include "ops/validate.h"
#include "preset.h"
#include "reliability_util.h"
#include "render.h"

namespace sparsejit {
namespace {

using testing_util::ScratchDir;
using testing_util::soak_factor;

constexpr long kIterations = 20000;
constexpr double kSeconds = 2.0;

std::uint64_t seed_for(const char* target) {
  std::uint64_t s = std::hash<std::string>{}(target);
  if (const char* e = std::getenv("SPARSEJIT_FUZZ_SEED")) s ^= std::strtoull(e, nullptr, 0);
  return s;
}

// Runs `one` until the iteration or time budget is spent; returns executions.
long fuzz_loop(const char* target, const std::function<void(std::mt19937_64&, long)>& one) {
  std::mt19937_64 rng(seed_for(target));
  const long iters = kIterations * soak_factor();
  const double budget = kSeconds * soak_factor();
  auto t0 = std::chrono::steady_clock::now();
  long n = 0;
  for (; n < iters; ++n) {
    if ((n & 63) == 0 && testing_util::seconds_since(t0) > budget) break;
    one(rng, n);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << target << ": first failure at execution " << n << " (seed " << seed_for(target) << ")";
      break;
    }
  }
  std::printf("[ figures ] fuzz %s: %ld executions in %.2f s\n", target, n, testing_util::seconds_since(t0));
  return n;
}

// Text of a json for failure messages (dump() throws on invalid UTF-8).
std::string shown(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::int64_t interesting_int(std::mt19937_64& r) {
  static const std::int64_t table[] = {0, 1, -1, 2, 7, 8, 15, 16, 17, 31, 32, 64, 100, 127, 128, 129, 255, 256, 257,
                                       512, 1024, 4096, 4097, 65535, 65536, INT_MAX, INT_MIN, (1ll << 31), -(1ll << 31) - 1,
                                       LLONG_MAX, LLONG_MIN, LLONG_MAX / 2, (1ll << 62), -(1ll << 40)};
  if (r() % 3 == 0) return static_cast<std::int64_t>(r());
  return table[r() % (sizeof table / sizeof table[0])];
}

std::string random_text(std::mt19937_64& r, std::size_t max_len) {
  static const char* words[] = {"{{", "}}", "{{>", "{{> ", "{{HEAD_DIM}}", "{{TOPK}}", "{{x}}", "{{ }}", "{{>common.cuh}}",
                                "{{> ../etc/passwd}}", "{{>/abs}}", "..", "\n", "\0", "\xff", "}", "{", "A", "_", "bf16",
                                "prefill", "decode", "merge", "sm_90", "gfx942", "fp8_e4m3fn", "none", "per_token_head"};
  std::string s;
  std::size_t len = r() % (max_len + 1);
  while (s.size() < len) {
    if (r() % 2) s += words[r() % (sizeof words / sizeof words[0])];
    else s.push_back(static_cast<char>(r() % 256));
  }
  return s;
}

nlohmann::json random_json(std::mt19937_64& r, int depth) {
  switch (r() % (depth > 0 ? 9 : 6)) {
    case 0: return nullptr;
    case 1: return r() % 2 == 0;
    case 2: return interesting_int(r);
    case 3: return static_cast<std::uint64_t>(r());
    case 4: {
      static const double d[] = {0.5, -0.0, 1e308, -1e308, 128.0, 16.000001, NAN, INFINITY};
      double v = d[r() % 8];
      return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    }
    case 5: return random_text(r, 12);
    case 6: {
      auto a = nlohmann::json::array();
      for (int i = 0, n = static_cast<int>(r() % 4); i < n; ++i) a.push_back(random_json(r, depth - 1));
      return a;
    }
    default: {
      static const char* keys[] = {"op", "arch", "head_dim", "topk", "gqa_group", "num_topk_chunks", "sub_k", "q_dtype",
                                   "kv_dtype", "scale_mode", "launch", "threads", "waves_per_eu", "extra"};
      auto o = nlohmann::json::object();
      for (int i = 0, n = static_cast<int>(r() % 5); i < n; ++i) o[keys[r() % 14]] = random_json(r, depth - 1);
      return o;
    }
  }
}

nlohmann::json valid_config_json(std::mt19937_64& r) {
  static const char* ops[] = {"prefill", "decode", "merge"};
  static const char* archs[] = {"sm_90", "sm_80", "gfx942", "gfx950", "gfx90a", "gfx942:sramecc+:xnack-"};
  static const char* kv[] = {"bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2"};
  nlohmann::json j = {{"op", ops[r() % 3]}, {"arch", archs[r() % 6]}, {"head_dim", 64 << (r() % 3)},
                      {"topk", 1 << (r() % 6)}, {"gqa_group", 1 << (r() % 5)}, {"num_topk_chunks", 1 << (r() % 3)},
                      {"sub_k", 32 << (r() % 3)}, {"q_dtype", r() % 2 ? "bf16" : "fp16"}, {"kv_dtype", kv[r() % 4]},
                      {"scale_mode", "none"}, {"launch", {{"threads", 128}, {"waves_per_eu", 1}}}};
  return j;
}

// ---- KernelConfig::from_json ----

TEST(Fuzz, KernelConfigFromJson) {
  long accepted = 0;
  long n = fuzz_loop("config_from_json", [&](std::mt19937_64& r, long) {
    nlohmann::json j = r() % 4 == 0 ? random_json(r, 3) : valid_config_json(r);
    if (j.is_object()) {
      for (int m = 0, nm = static_cast<int>(r() % 4); m < nm; ++m) {
        static const char* keys[] = {"op", "arch", "head_dim", "topk", "gqa_group", "num_topk_chunks", "sub_k",
                                     "q_dtype", "kv_dtype", "scale_mode", "launch"};
        const char* k = keys[r() % 11];
        switch (r() % 4) {
          case 0: j.erase(k); break;
          case 1: j[k] = random_json(r, 2); break;
          case 2: j[k] = interesting_int(r); break;
          default:
            if (!j["launch"].is_object()) j["launch"] = nlohmann::json::object();
            j["launch"][r() % 2 ? "threads" : "waves_per_eu"] = interesting_int(r);
            break;
        }
      }
    }
    try {
      auto c = KernelConfig::from_json(j);
      if (c.ok()) {
        ++accepted;
        EXPECT_TRUE(c->validate().ok()) << shown(j);
        auto again = KernelConfig::from_json(c->to_json());
        ASSERT_TRUE(again.ok()) << c->canonical();
        EXPECT_EQ(again->canonical(), c->canonical());
        EXPECT_EQ(again->config_key(), c->config_key());
        EXPECT_FALSE(c->kernel_name().empty());
      } else {
        EXPECT_EQ(c.error().stage, "config") << shown(j);
        EXPECT_FALSE(c.error().message.empty());
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception escaped from_json: " << e.what() << " for " << shown(j);
    }
  });
  EXPECT_GT(accepted, 0) << "the generator never produced a valid config (weak fuzzing)";
  EXPECT_GT(n, 1000);
}

// ---- model presets (the JSON manifest reader) through SPARSEJIT_CONFIG_DIR ----

TEST(Fuzz, PresetManifestReader) {
  ScratchDir t("fuzz-preset");
  std::filesystem::create_directories(t.sub("models"));
  std::filesystem::copy(std::string(SPARSEJIT_SOURCE_DIR) + "/configs/archs", t.sub("archs"),
                        std::filesystem::copy_options::recursive);
  const auto base = nlohmann::json::parse(testing_util::read_text(std::string(SPARSEJIT_SOURCE_DIR) +
                                                                   "/configs/models/minimax-m3.json"));
  ScopedKnob dir("SPARSEJIT_CONFIG_DIR", t.path);
  long accepted = 0;
  long n = fuzz_loop("preset_reader", [&](std::mt19937_64& r, long) {
    std::string text;
    if (r() % 5 == 0) {
      text = random_text(r, 200);
    } else {
      nlohmann::json j = base;
      static const char* keys[] = {"name", "num_heads", "num_kv_heads", "head_dim", "topk", "tensor_parallel",
                                   "variants", "default_archs", "description"};
      for (int m = 0, nm = static_cast<int>(1 + r() % 3); m < nm; ++m) {
        const char* k = keys[r() % 9];
        switch (r() % 4) {
          case 0: j.erase(k); break;
          case 1: j[k] = random_json(r, 2); break;
          case 2: j[k] = interesting_int(r); break;
          default: j["tensor_parallel"] = {interesting_int(r), 1}; break;
        }
      }
      text = shown(j);
      if (r() % 4 == 0) text.resize(r() % (text.size() + 1));  // truncated file
    }
    testing_util::write_text(t.sub("models/fuzz.json"), text);
    try {
      auto p = load_preset("fuzz");
      if (!p.ok()) {
        EXPECT_EQ(p.error().stage, "preset");
        return;
      }
      auto configs = expand_preset(*p, "sm_90");
      if (configs.ok()) {
        ++accepted;
        for (const auto& c : *configs) EXPECT_TRUE(c.validate().ok());
      } else {
        EXPECT_FALSE(configs.error().message.empty());
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception escaped the preset reader: " << e.what() << " for " << text;
    }
  });
  EXPECT_GT(accepted, 0);
  EXPECT_GT(n, 200);
}

// ---- arch tables (configs/archs/*.json) through SPARSEJIT_CONFIG_DIR ----

// A mutated table either loads or is refused with an arch error; what a loaded one chooses for
// MiniMax-M3's shapes is a config that validates and renders, or a clear error. Never a throw,
// a crash or a hang (the decode variant scan is bounded by the table's ranges).
TEST(Fuzz, ArchTableReader) {
  ScratchDir t("fuzz-arch");
  std::filesystem::copy(std::string(SPARSEJIT_SOURCE_DIR) + "/configs", t.path, std::filesystem::copy_options::recursive);
  const std::string path = t.sub("archs/sm_90.json");
  const auto base = nlohmann::json::parse(testing_util::read_text(path));
  ScopedKnob dir("SPARSEJIT_CONFIG_DIR", t.path);
  static const char* op_names[] = {"prefill", "decode", "merge"};
  static const char* knobs[] = {"threads", "waves_per_eu", "sub_k", "target_grid", "min_chunk_entries", "min_chunk_entries_above", "stages", "min_blocks", "wgmma", "q_row_groups",
                                "union_entries", "max_cluster", "kv_head_split", "dependent_launch", "template", "large_batch", "small_batch", "huge_batch", "bogus"};
  long loaded = 0, chosen = 0;
  long n = fuzz_loop("arch_table", [&](std::mt19937_64& r, long) {
    nlohmann::json j = base;
    for (int m = 0, nm = static_cast<int>(1 + r() % 3); m < nm; ++m) {
      auto& op = j["ops"][op_names[r() % 3]];
      const char* k = knobs[r() % (sizeof(knobs) / sizeof(knobs[0]))];
      switch (r() % 5) {
        case 0: op.erase(k); break;
        case 1: op[k] = random_json(r, 1); break;
        case 2: {
          const int which = static_cast<int>(r() % 3);  // large, small, huge
          auto& tier = op[which == 0 ? "large_batch" : which == 1 ? "small_batch" : "huge_batch"];
          if (!tier.is_object()) tier = nlohmann::json::object();
          tier[r() % 2 ? (which == 1 ? "max_workgroups" : "min_workgroups") : r() % 2 ? "min_blocks" : "threads"] = interesting_int(r);
          break;
        }
        default: op[k] = interesting_int(r) % 300; break;  // mostly near the real ranges
      }
    }
    std::string text = shown(j);
    if (r() % 8 == 0) text.resize(r() % (text.size() + 1));  // truncated file
    testing_util::write_text(path, text);
    try {
      auto a = load_arch_table("sm_90");
      if (!a.ok()) {
        EXPECT_EQ(a.error().stage, "arch");
        return;
      }
      ++loaded;
      for (auto [h, kvh, d] : {std::tuple<int, int, int>{64, 4, 128}, {8, 1, 128}, {64, 64, 256}}) {
        AttnShape sh;
        sh.num_heads = h, sh.num_kv_heads = kvh, sh.head_dim = d, sh.topk = 16;
        std::vector<KernelConfig> cs{prefill_config(*a, sh)};
        for (const DecodeChoice& v : decode_variants(*a, kvh, 16, sh.num_heads / sh.num_kv_heads))
          cs.push_back(decode_config(*a, sh, v.chunks, v.launch, v.kv_head_split));
        for (const auto& c : cs) {
          if (!c.validate().ok()) continue;
          auto rendered = render_kernel(c, *a);
          if (rendered.ok()) ++chosen;
          else EXPECT_FALSE(rendered.error().message.empty());
        }
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception escaped the arch table path: " << e.what() << " for " << text;
    }
  });
  EXPECT_GT(loaded, 0);
  EXPECT_GT(chosen, 0);
  // Each execution renders up to ~30 kernels (every decode variant of three shapes): ~1300
  // executions in a plain build, ~65 under ThreadSanitizer.
  EXPECT_GT(n, 40);
}

// ---- the recorded manifest (SPARSEJIT_RECORD / warm --manifest) ----

TEST(Fuzz, RecordedManifestReader) {
  ScratchDir t("fuzz-manifest");
  const std::string path = t.sub("manifest.jsonl");
  long accepted = 0;
  long n = fuzz_loop("manifest_reader", [&](std::mt19937_64& r, long) {
    std::string text;
    for (int line = 0, lines = static_cast<int>(r() % 5); line < lines; ++line) {
      switch (r() % 4) {
        case 0: text += random_text(r, 60); break;
        case 1: text += shown(random_json(r, 2)); break;
        default: {
          std::string l = shown(valid_config_json(r));
          if (r() % 3 == 0) l.resize(r() % (l.size() + 1));
          text += l;
        }
      }
      text += r() % 8 ? "\n" : "\r\n";
    }
    testing_util::write_text(path, text);
    try {
      auto m = read_manifest(path);
      if (m.ok()) {
        ++accepted;
        std::set<std::string> seen;
        for (const auto& c : *m) {
          EXPECT_TRUE(c.validate().ok());
          EXPECT_TRUE(seen.insert(c.canonical()).second) << "duplicate config returned";
        }
      } else {
        EXPECT_FALSE(m.error().message.empty());
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception escaped read_manifest: " << e.what();
    }
  });
  EXPECT_GT(accepted, 0);
  EXPECT_GT(n, 200);
}

// ---- render_template over random template text ----

TEST(Fuzz, TemplateRenderer) {
  ScratchDir t("fuzz-render");
  testing_util::write_text(t.sub("part.cuh"), "P{{TOPK}}");
  testing_util::write_text(t.sub("self.cuh"), "{{> self.cuh}}");
  ScopedKnob dir("SPARSEJIT_TEMPLATE_DIR", t.path);
  long ok_renders = 0;
  long n = fuzz_loop("render_template", [&](std::mt19937_64& r, long) {
    std::string text = random_text(r, 64);
    testing_util::write_text(t.sub("fuzz.cu"), text);
    TemplateValues values;
    if (r() % 2) values["HEAD_DIM"] = "128";
    if (r() % 2) values["TOPK"] = "16";
    try {
      auto out = render_template("fuzz.cu", values);
      if (out.ok()) {
        ++ok_renders;
        // Strict: nothing of the template syntax survives, every value was used.
        EXPECT_EQ(out->find("{{"), std::string::npos) << "template syntax survived rendering";
        for (const auto& [k, v] : values)
          EXPECT_NE(text.find("{{" + k + "}}"), std::string::npos) << "an unused value for " << k << " was accepted";
        if (values.empty()) {
          EXPECT_EQ(*out, text);
        }
      } else {
        EXPECT_EQ(out.error().stage == "render" || out.error().stage == "resource", true) << out.error().stage;
        EXPECT_FALSE(out.error().message.empty());
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception escaped render_template: " << e.what();
    }
    // A well-formed template renders to exactly the substituted text.
    std::string good = "a{{HEAD_DIM}}b{{> part.cuh}}c" + std::to_string(r() % 1000);
    testing_util::write_text(t.sub("good.cu"), good);
    auto g = render_template("good.cu", {{"HEAD_DIM", "128"}, {"TOPK", "16"}});
    ASSERT_TRUE(g.ok()) << g.error().message;
    EXPECT_EQ(*g, "a128bP16c" + good.substr(good.rfind('c') + 1));
  });
  auto cycle = render_template("self.cuh", {});
  EXPECT_FALSE(cycle.ok());
  EXPECT_GT(n, 200);  // file-system bound: two files written per execution
  (void)ok_renders;
}

// ---- cache entry decoder ----

TEST(Fuzz, CacheEntryDecoder) {
  long n = fuzz_loop("decode_entry", [&](std::mt19937_64& r, long) {
    std::string key(64, '0');
    for (auto& c : key) c = "0123456789abcdef"[r() % 16];
    std::vector<std::uint8_t> payload(r() % 300);
    for (auto& b : payload) b = static_cast<std::uint8_t>(r());
    const std::string good = cache_format::encode_entry(key, payload);
    auto ok = cache_format::decode_entry(good, key);
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(*ok, payload);
    std::string bad = good;
    switch (r() % 6) {
      case 0: bad.resize(r() % bad.size()); break;
      case 1: bad += static_cast<char>(r()); break;
      case 2:
        for (int i = 0, m = static_cast<int>(1 + r() % 4); i < m; ++i) {
          std::size_t at = r() % bad.size();
          bad[at] = static_cast<char>(bad[at] ^ (1 + r() % 255));
        }
        break;
      case 3: {  // lengths that point anywhere
        std::size_t at = 12 + (r() % 2) * 4;
        for (int i = 0; i < 4; ++i) bad[at + i] = static_cast<char>(r());
        break;
      }
      case 4: bad = random_text(r, 200); break;
      default: bad.insert(r() % bad.size(), 1, static_cast<char>(r())); break;
    }
    auto d = cache_format::decode_entry(bad, key);
    if (bad != good) {
      EXPECT_FALSE(d.ok()) << "a damaged entry was accepted";
      if (!d.ok()) {
        EXPECT_FALSE(d.error().message.empty());
      }
    }
    EXPECT_FALSE(cache_format::decode_entry(good, key.substr(0, 63) + (key[63] == 'a' ? "b" : "a")).ok());
  });
  EXPECT_GT(n, 1000);
}

// ---- compile-helper frame decoder ----

TEST(Fuzz, HelperFrameDecoder) {
  long n = fuzz_loop("decode_frame", [&](std::mt19937_64& r, long) {
    Frame f;
    f.kind = static_cast<FrameKind>("OVE"[r() % 3]);
    f.payload = random_text(r, 100);
    f.log = random_text(r, 50);
    const std::string good = encode_frame(f);
    auto back = decode_frame(good);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->payload, f.payload);
    EXPECT_EQ(back->log, f.log);
    std::string bad = good;
    switch (r() % 5) {
      case 0: bad.resize(r() % bad.size()); break;
      case 1: bad += random_text(r, 8); break;
      case 2: {
        std::size_t at = r() % bad.size();
        bad[at] = static_cast<char>(bad[at] ^ (1 + r() % 255));
        break;
      }
      case 3:
        for (int i = 5; i < 21; ++i) bad[i] = static_cast<char>(r());  // both lengths
        break;
      default: bad = random_text(r, 64); break;
    }
    // The decoder is exact: whatever it accepts re-encodes to the same bytes.
    auto d = decode_frame(bad);
    if (d) {
      EXPECT_EQ(encode_frame(*d), bad);
    }
  });
  EXPECT_GT(n, 1000);
}

// ---- ops argument validation ----

template <class A>
void randomize_common(A& a, std::mt19937_64& r) {
  auto ptr = [&r]() -> void* { return r() % 8 == 0 ? nullptr : reinterpret_cast<void*>(0x10000 + 256 * (r() % 64)); };
  auto pick = [&r](std::int64_t good) { return r() % 3 == 0 ? interesting_int(r) : good; };
  a.q = ptr();
  a.kv_cache = ptr();
  a.topk_idx = ptr();
  a.block_table = ptr();
  a.seq_lens = ptr();
  a.output = ptr();
  a.k_scale = ptr();
  a.v_scale = ptr();
  for (auto& s : a.q_stride) s = pick(1);
  for (auto& s : a.output_stride) s = pick(1);
  for (auto& s : a.kv_stride) s = pick(1);
  for (auto& s : a.topk_stride) s = pick(1);
  a.num_pages = pick(64);
  a.max_blocks = pick(16);
  const std::int64_t kvh = 1 + static_cast<std::int64_t>(r() % 4);
  a.num_kv_heads = pick(kvh);
  a.num_heads = pick(kvh * (1 + static_cast<std::int64_t>(r() % 16)));
  a.head_dim = pick(128);
  a.topk = pick(16);
  a.total_q = pick(8);
  a.q_dtype = static_cast<DType>(r() % 3 == 0 ? static_cast<int>(r() % 256) : static_cast<int>(r() % 2));
  a.kv_dtype = static_cast<DType>(r() % 3 == 0 ? static_cast<int>(r() % 256) : static_cast<int>(r() % 4));
  a.scale_mode = static_cast<ScaleMode>(r() % 3 == 0 ? static_cast<int>(r() % 256) : static_cast<int>(r() % 3));
  static const float scales[] = {0.088f, 0.f, -1.f, 1e30f, INFINITY, NAN, 1e-30f};
  a.sm_scale = scales[r() % 7];
}

template <class A>
void expect_clear_error(const Status& st, const A& a) {
  if (st.ok()) {
    // Accepted arguments satisfy what the kernels rely on.
    EXPECT_GE(a.num_kv_heads, 1);
    EXPECT_EQ(a.num_heads % a.num_kv_heads, 0);
    EXPECT_LE(a.num_heads / a.num_kv_heads, 16);
    EXPECT_TRUE(a.head_dim >= 16 && a.head_dim <= 256 && a.head_dim % 16 == 0);
    EXPECT_TRUE(a.topk >= 1 && a.topk <= 4096);
    EXPECT_GE(a.max_blocks, 1);
    EXPECT_GE(a.num_pages, 1);
    EXPECT_TRUE(a.sm_scale > 0.f && std::isfinite(a.sm_scale));
    EXPECT_TRUE(a.q && a.kv_cache && a.topk_idx && a.block_table && a.seq_lens && a.output);
  } else {
    EXPECT_EQ(st.error().stage, "validate");
    EXPECT_EQ(st.error().message.rfind("argument ", 0), 0u) << st.error().message;
  }
}

TEST(Fuzz, OpsArgumentValidation) {
  long accepted = 0;
  long n = fuzz_loop("validate_args", [&](std::mt19937_64& r, long i) {
    if (i % 2 == 0) {
      PrefillArgs a;
      randomize_common(a, r);
      a.cu_seqlens_q = r() % 8 ? reinterpret_cast<void*>(0x20000) : nullptr;
      a.prefix_lens = r() % 8 ? reinterpret_cast<void*>(0x30000) : nullptr;
      a.batch = r() % 3 ? 2 : interesting_int(r);
      a.max_query_len = r() % 3 ? 4 : interesting_int(r);
      auto st = validate_prefill(a);
      accepted += st.ok();
      expect_clear_error(st, a);
      if (st.ok()) {
        EXPECT_TRUE(a.batch >= 1 && a.batch <= 65535);
        EXPECT_TRUE(a.max_query_len >= 0 && a.max_query_len <= a.total_q);
      }
    } else {
      DecodeArgs a;
      randomize_common(a, r);
      a.decode_query_len = r() % 3 ? 1 + static_cast<std::int64_t>(r() % 4) : interesting_int(r);
      a.num_reqs = r() % 3 ? a.total_q / std::max<std::int64_t>(1, a.decode_query_len) : interesting_int(r);
      if (r() % 2 && a.decode_query_len > 0 && a.num_reqs >= 0 && a.num_reqs < (1ll << 31) && a.decode_query_len < (1ll << 31))
        a.total_q = a.num_reqs * a.decode_query_len;
      a.workspace = r() % 8 ? reinterpret_cast<void*>(0x40000 + 16 * (r() % 2)) : nullptr;
      a.workspace_bytes = r() % 3 ? (1u << 20) : static_cast<std::size_t>(r());
      const std::size_t need = r() % 2 ? (1u << 16) : static_cast<std::size_t>(r());
      auto st = validate_decode(a, need);
      accepted += st.ok();
      expect_clear_error(st, a);
      if (st.ok()) {
        EXPECT_GE(a.decode_query_len, 1);
        EXPECT_GE(a.workspace_bytes, need);
        std::int64_t q = 0;
        EXPECT_FALSE(__builtin_mul_overflow(a.num_reqs, a.decode_query_len, &q)) << "a wrapping num_reqs was accepted";
        EXPECT_EQ(q, a.total_q);
      }
    }
  });
  EXPECT_GT(accepted, 0) << "the generator never produced valid arguments (weak fuzzing)";
  EXPECT_GT(n, 1000);
}

}  // namespace
}  // namespace sparsejit
