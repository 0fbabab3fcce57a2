#include <algorithm>
#include <functional>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "knobs.h"
#include "reliability_util.h"
#include "config.h"
#include "ops/config_select.h"
#include "preset.h"
#include "render.h"

using namespace sparsejit;

namespace {
KernelConfig base() {
  KernelConfig c;
  c.op = Op::prefill;
  c.arch = "sm_90";
  c.head_dim = 128;
  c.topk = 16;
  c.gqa_group = 16;
  c.num_topk_chunks = 1;
  c.sub_k = 64;
  return c;
}
std::string message_of(const KernelConfig& c) {
  auto st = c.validate();
  return st ? std::string() : st.error().message;
}
}  // namespace

TEST(Config, ValidDefaultsPass) { EXPECT_TRUE(base().validate().ok()); }

TEST(Config, MessagesNameFieldValueAndAllowed) {
  auto c = base();
  c.head_dim = 100;
  EXPECT_NE(message_of(c).find("head_dim = 100"), std::string::npos) << message_of(c);
  EXPECT_NE(message_of(c).find("multiple of 16"), std::string::npos);
  c = base();
  c.head_dim = 272;
  EXPECT_NE(message_of(c).find("head_dim = 272"), std::string::npos);
  c = base();
  c.sub_k = 48;
  EXPECT_NE(message_of(c).find("sub_k = 48"), std::string::npos);
  EXPECT_NE(message_of(c).find("divides 128"), std::string::npos);
  c = base();
  c.gqa_group = 17;
  EXPECT_NE(message_of(c).find("gqa_group = 17"), std::string::npos);
  c = base();
  c.op = Op::decode;
  c.num_topk_chunks = 3;
  EXPECT_NE(message_of(c).find("num_topk_chunks = 3"), std::string::npos);
  c.num_topk_chunks = 32;
  EXPECT_NE(message_of(c).find("<= topk"), std::string::npos);
  c = base();
  c.scale_mode = ScaleMode::scalar;
  EXPECT_NE(message_of(c).find("scale_mode = scalar"), std::string::npos);
  c.kv_dtype = DType::fp8_e4m3fn;
  EXPECT_TRUE(c.validate().ok());
  c = base();
  c.q_dtype = DType::fp8_e5m2;
  EXPECT_NE(message_of(c).find("q_dtype"), std::string::npos);
  c = base();
  c.arch = "";
  EXPECT_NE(message_of(c).find("arch"), std::string::npos);
}

TEST(Config, JsonRoundTripIsCanonical) {
  auto c = base();
  c.kv_dtype = DType::fp8_e5m2;
  c.scale_mode = ScaleMode::per_token_head;
  c.launch.threads = 256;
  auto back = KernelConfig::from_json(nlohmann::json::parse(c.canonical()));
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(back->canonical(), c.canonical());
  EXPECT_EQ(back->config_key(), c.config_key());
  // Key order in the input does not matter; the canonical form is sorted.
  auto shuffled = nlohmann::json::parse(
      R"({"sub_k":64,"arch":"sm_90","launch":{"waves_per_eu":1,"threads":128},"op":"prefill","head_dim":128,"topk":16,
          "gqa_group":16,"num_topk_chunks":1,"q_dtype":"bf16","kv_dtype":"bf16","scale_mode":"none"})");
  auto s = KernelConfig::from_json(shuffled);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_EQ(s->canonical(), base().canonical());
}

TEST(Config, JsonErrorsAreClear) {
  auto j = nlohmann::json::parse(base().canonical());
  j["bogus"] = 1;
  auto r = KernelConfig::from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("bogus"), std::string::npos);
  j = nlohmann::json::parse(base().canonical());
  j["head_dim"] = "128";
  r = KernelConfig::from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("head_dim"), std::string::npos);
  j = nlohmann::json::parse(base().canonical());
  j.erase("topk");
  r = KernelConfig::from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("topk"), std::string::npos);
  j = nlohmann::json::parse(base().canonical());
  j["kv_dtype"] = "int4";
  r = KernelConfig::from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("kv_dtype = int4"), std::string::npos);
  EXPECT_FALSE(KernelConfig::from_json(nlohmann::json::array()).ok());
  // Integers outside 32 bits, the unsigned ones past LLONG_MAX too (read as long long, 2^64 - 1 is -1).
  for (const nlohmann::json& bad : {nlohmann::json(18446744073709551615ull), nlohmann::json(2147483648ll), nlohmann::json(-2147483649ll),
                                    nlohmann::json(128.0)}) {
    j = nlohmann::json::parse(base().canonical());
    j["head_dim"] = bad;
    r = KernelConfig::from_json(j);
    ASSERT_FALSE(r.ok()) << bad.dump();
    EXPECT_NE(r.error().message.find("head_dim must be a 32-bit integer, got " + bad.dump()), std::string::npos) << r.error().message;
  }
  j = nlohmann::json::parse(base().canonical());
  j["head_dim"] = 128u;  // non-negative integers parse as unsigned: still fine
  EXPECT_TRUE(KernelConfig::from_json(j).ok());
}

TEST(ArchTable, SubKAndLaunchComeFromTheTables) {
  auto g942 = load_arch_table("gfx942:sramecc+:xnack-");
  ASSERT_TRUE(g942.ok()) << g942.error().describe();
  EXPECT_EQ(g942->processor, "gfx942");
  EXPECT_EQ(g942->prefill.sub_k, 32);
  EXPECT_EQ(g942->wave_size, 64);
  EXPECT_EQ(g942->prefill.launch.threads, 64);  // one wave per workgroup
  auto g950 = load_arch_table("gfx950");
  ASSERT_TRUE(g950.ok());
  EXPECT_EQ(g950->prefill.sub_k, 64);
  EXPECT_FALSE(g950->from_fallback);
  // The merge kernel overlaps the split-K kernel (programmatic dependent launch) on sm_90 only.
  auto sm90 = load_arch_table("sm_90");
  ASSERT_TRUE(sm90.ok());
  EXPECT_TRUE(sm90->merge.dependent_launch);
  EXPECT_TRUE(sm90->decode.dependent_launch);  // decode overlaps the previous kernel's tail
  EXPECT_FALSE(sm90->prefill.dependent_launch);
  EXPECT_FALSE(g942->decode.dependent_launch);
  EXPECT_FALSE(g942->merge.dependent_launch);
  EXPECT_FALSE(g950->merge.dependent_launch);
}

// A misspelled knob, or a value of the wrong type or out of range, is an error that names it,
// never silently ignored (or, for a huge target_grid, a minutes-long scan of decode variants).
TEST(ArchTable, UnknownKeysAndBadValuesAreErrorsThatNameThem) {
  using testing_util::ScratchDir;
  ScratchDir t("arch-keys");
  std::filesystem::copy(std::string(SPARSEJIT_SOURCE_DIR) + "/configs", t.path, std::filesystem::copy_options::recursive);
  const std::string sm90 = t.sub("archs/sm_90.json");
  const auto good = nlohmann::json::parse(testing_util::read_text(sm90));
  ScopedKnob dir("SPARSEJIT_CONFIG_DIR", t.path);
  ASSERT_TRUE(load_arch_table("sm_90").ok());
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    const char* where;
  };
  for (const auto& c : std::vector<Case>{
           {[](nlohmann::json& j) { j["ops"]["prefill"]["wgmm"] = true; }, "ops.prefill: unknown key \"wgmm\""},
           {[](nlohmann::json& j) { j["ops"]["decode"]["large_batch"]["min_workgroup"] = 9; }, "ops.decode.large_batch: unknown key"},
           {[](nlohmann::json& j) { j["ops"]["mrege"] = j["ops"]["merge"]; }, "ops: unknown key \"mrege\""},
           {[](nlohmann::json& j) { j["max_dynamic_shared"] = 1; }, "unknown key \"max_dynamic_shared\""},
           {[](nlohmann::json& j) { j["ops"]["decode"]["target_grid"] = 2147483647; }, "ops.decode.target_grid = 2147483647 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["prefill"]["threads"] = 4294967424ull; }, "ops.prefill.threads = 4294967424 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["prefill"]["threads"] = 18446744073709551615ull; },
            "ops.prefill.threads = 18446744073709551615 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["stages"] = -1; }, "ops.decode.stages = -1 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["min_chunk_entries"] = 0; }, "ops.decode.min_chunk_entries = 0 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["min_chunk_entries_above"] = -1; }, "ops.decode.min_chunk_entries_above = -1 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["prefill"]["sub_k"] = 64.5; }, "ops.prefill.sub_k must be an integer"},
           {[](nlohmann::json& j) { j["ops"]["prefill"]["wgmma"] = 1; }, "ops.prefill.wgmma must be true or false"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["large_batch"].erase("min_workgroups"); }, "large_batch.min_workgroups is missing"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["large_batch"]["stages"] = 0; }, "large_batch.stages = 0 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["small_batch"].erase("max_workgroups"); }, "small_batch.max_workgroups is missing"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["small_batch"]["min_entries"] = 2; }, "ops.decode.small_batch: unknown key \"min_entries\""},
           {[](nlohmann::json& j) { j["ops"]["decode"]["small_batch"] = 64; }, "ops.decode.small_batch must be an object"},
           {[](nlohmann::json& j) { j["ops"]["merge"]["template"] = 3; }, "ops.merge.template must be a string"},
           {[](nlohmann::json& j) { j["ops"]["decode"].erase("large_batch"); }, "ops.decode.huge_batch needs large_batch"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["huge_batch"]["min_blocks"] = 33; }, "huge_batch.min_blocks = 33 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["large_batch"]["fp8_stages"] = 0; }, "large_batch.fp8_stages = 0 is out of range"},
           {[](nlohmann::json& j) { j["ops"]["decode"]["fp8_stages"] = 3; }, "ops.decode: unknown key \"fp8_stages\""}}) {
    nlohmann::json j = good;
    c.edit(j);
    testing_util::write_text(sm90, j.dump(1));
    auto a = load_arch_table("sm_90");
    ASSERT_FALSE(a.ok()) << c.where;
    EXPECT_NE(a.error().message.find(c.where), std::string::npos) << a.error().message;
    EXPECT_NE(a.error().message.find("sm_90.json"), std::string::npos) << a.error().message;
  }
}

TEST(ArchTable, ExplicitFallbackByPrefix) {
  auto sm89 = load_arch_table("sm_89");
  ASSERT_TRUE(sm89.ok());
  EXPECT_TRUE(sm89->from_fallback);
  EXPECT_EQ(sm89->vendor, "nvidia");
  auto gfx1100 = load_arch_table("gfx1100");
  ASSERT_TRUE(gfx1100.ok());
  EXPECT_EQ(gfx1100->vendor, "amd");
  auto bad = load_arch_table("tpu_v5");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("tpu_v5"), std::string::npos);
  EXPECT_FALSE(load_arch_table("../../etc/passwd").ok());
}

TEST(ConfigSelect, DecodeChunksArePowersOfTwoAndPure) {
  // vLLM's TARGET_GRID heuristic, with sm_90's target grid of 128 workgroups.
  auto t = load_arch_table("sm_90");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(decode_chunks(*t, 1, 4, 16), 16);
  EXPECT_EQ(decode_chunks(*t, 8, 4, 16), 4);
  EXPECT_EQ(decode_chunks(*t, 64, 4, 16), 1);
  EXPECT_EQ(decode_chunks(*t, 3, 1, 16), 16);
  // One-entry chunks only up to 64 workgroups (min_chunk_entries 2 above 64): 8 requests of one
  // kv head split 8 ways, not 16 (docs/PERF.md, fifteenth session).
  EXPECT_EQ(decode_chunks(*t, 8, 1, 16), 8);
  // sm_90 merges 2 chunks inside their cluster, more with the merge kernel.
  EXPECT_FALSE(decode_uses_merge_kernel(*t, 1));
  EXPECT_FALSE(decode_uses_merge_kernel(*t, 2));
  EXPECT_TRUE(decode_uses_merge_kernel(*t, 4));
  EXPECT_EQ(decode_chunks(*t, 20, 1, 16), 4);
  EXPECT_EQ(decode_chunks(*t, 1, 1, 5), 4);
  for (int q = 1; q < 300; ++q) {
    const int c = decode_chunks(*t, q, 1, 16);
    EXPECT_EQ(c & (c - 1), 0);
    EXPECT_EQ(c, decode_chunks(*t, q, 1, 16));
  }
}

TEST(ConfigSelect, MinChunkEntriesCapsTheSplitOfLargeGrids) {
  auto t = load_arch_table("sm_90");
  ASSERT_TRUE(t.ok());
  ArchTable a = *t;
  a.decode.target_grid = 128;
  a.decode.min_chunk_entries = 1;
  EXPECT_EQ(decode_chunks(a, 8, 1, 16), 16);  // one entry per chunk, 128 workgroups
  a.decode.min_chunk_entries = 2;
  a.decode.min_chunk_entries_above = 0;       // everywhere
  EXPECT_EQ(decode_chunks(a, 8, 1, 16), 8);
  EXPECT_EQ(decode_chunks(a, 1, 1, 16), 8);
  EXPECT_EQ(decode_chunks(a, 1, 1, 5), 4);    // 4 chunks walk ceil(5 / 4) = 2 entries: enough
  EXPECT_EQ(decode_chunks(a, 1, 1, 2), 1);    // 2 chunks would walk one entry each: one chunk
  EXPECT_EQ(decode_chunks(a, 8, 4, 16), 4);   // the grid binds first: unchanged
  EXPECT_EQ(decode_chunks(a, 1, 1, 1), 1);
  a.decode.min_chunk_entries_above = 64;      // sm_90's: one-entry chunks only on small grids
  EXPECT_EQ(decode_chunks(a, 8, 1, 16), 8);   // 128 workgroups -> 8 chunks, 64 workgroups
  EXPECT_EQ(decode_chunks(a, 5, 1, 16), 8);   // 80 -> 40
  EXPECT_EQ(decode_chunks(a, 4, 1, 16), 16);  // 64 workgroups: as fine as the top-k allows
  EXPECT_EQ(decode_chunks(a, 1, 4, 16), 16);
  EXPECT_EQ(decode_chunks(a, 16, 1, 16), 8);  // two entries a chunk already
  a.decode.min_chunk_entries = 64;
  a.decode.min_chunk_entries_above = 0;
  EXPECT_EQ(decode_chunks(a, 1, 1, 16), 1);
}

TEST(Preset, MiniMaxM3ExpandsToDistinctValidConfigs) {
  auto p = load_preset("minimax-m3");
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(p->num_heads, 64);
  EXPECT_EQ(p->num_kv_heads, 4);
  for (const char* arch : {"sm_90", "gfx942", "gfx950", "gfx90a"}) {
    auto cs = expand_preset(*p, arch);
    ASSERT_TRUE(cs.ok()) << cs.error().describe();
    // 2 distinct GQA groups (16, 8) x 2 variants: 4 prefill + the decodes of every chunk count the
    // runtime can pick (1..16: 20) + a merge (bf16 q) for each count that needs one: sm_90 merges
    // 2 chunks in their cluster (merges for 4, 8, 16), AMD uses the merge kernel from 2 up. sm_90
    // also has large-batch decodes (>= 128 workgroups of >= 4 entries: 1, 2 and 4 chunks): 12 more,
    // small-batch ones (<= 64 workgroups: 16 chunks): 4 more, and huge-batch ones (>= 256
    // workgroups: 1 chunk) where two workgroups fit an SM, the fp8 variant's: 2 more.
    const bool nvidia = std::string(arch).starts_with("sm_");
    EXPECT_EQ(cs->size(), nvidia ? 45u : 28u) << arch;
    for (const auto& c : *cs) {
      EXPECT_TRUE(c.validate().ok());
      if (c.op == Op::merge) EXPECT_GT(c.num_topk_chunks, 1) << "a one-chunk decode writes its output itself";
      if (nvidia && c.op == Op::decode) EXPECT_EQ(c.launch.cluster, c.num_topk_chunks == 2 ? 2 : 1) << c.canonical();
    }
  }
  EXPECT_FALSE(load_preset("no-such-model").ok());
}

TEST(Config, PipelinedTemplateFieldsValidateAndRoundTrip) {
  auto sm90 = load_arch_table("sm_90");
  ASSERT_TRUE(sm90.ok());
  AttnShape s;
  s.num_heads = 64, s.num_kv_heads = 4, s.head_dim = 128, s.topk = 16;
  const KernelConfig pre = prefill_config(*sm90, s);
  EXPECT_EQ(pre.templ, kTemplateAttentionNv);
  EXPECT_EQ(pre.q_tile, 4);  // G = 16: one query per 16-row group, 4 warps
  EXPECT_GE(pre.launch.stages, 1);
  // sm_90 prefill: one stage, registers capped for 3 workgroups per SM (measured fastest on the H100).
  EXPECT_EQ(pre.launch.min_blocks, 3);
  // ... and its 64 rows multiply with wgmma, built for sm_90a.
  EXPECT_TRUE(pre.launch.wgmma);
  EXPECT_EQ(pre.compile_target(), "sm_90a");
  EXPECT_EQ(pre.to_json()["launch"]["wgmma"], true);
  EXPECT_GT(pre.dynamic_shared_bytes(), 48u * 1024) << "needs the opt-in above 48 KiB";
  EXPECT_EQ(pre.shared_bytes(), 0u) << "no static shared memory in the pipelined template";
  auto back = KernelConfig::from_json(pre.to_json());
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(*back, pre);

  KernelConfig c = pre;
  c.q_tile = 3;  // 3 row groups do not divide 4 warps
  EXPECT_NE(c.validate().error().message.find("q_tile"), std::string::npos) << c.validate().error().message;
  c = pre;
  c.launch.cluster = 4;  // prefill has no split-K to merge
  EXPECT_NE(c.validate().error().message.find("launch.cluster"), std::string::npos);
  c = pre;
  c.launch.min_blocks = 0;
  EXPECT_NE(c.validate().error().message.find("launch.min_blocks"), std::string::npos);
  c.launch.min_blocks = 33;
  EXPECT_NE(c.validate().error().message.find("launch.min_blocks"), std::string::npos);
  c = pre;
  c.templ = kTemplateAttention, c.launch.stages = 1, c.q_tile = 1, c.launch.min_blocks = 2;  // the generic template has no such bound
  c.launch.wgmma = false;
  EXPECT_NE(c.validate().error().message.find("min_blocks"), std::string::npos) << c.validate().error().message;
  c = pre;
  // wgmma needs whole warpgroups of 16-row groups, a prefill, sm_90, and wgmma's shapes.
  for (auto bad : std::vector<std::function<void(KernelConfig&)>>{
           [](KernelConfig& k) { k.op = Op::decode, k.q_tile = 1, k.num_topk_chunks = 1; },
           [](KernelConfig& k) { k.arch = "sm_80"; },
           [](KernelConfig& k) { k.head_dim = 256; },
           [](KernelConfig& k) { k.sub_k = 16; },
           [](KernelConfig& k) { k.q_tile = 2, k.launch.threads = 64; },  // 2 row groups: half a warpgroup
           [](KernelConfig& k) { k.q_tile = 2; },                          // 2 row groups, 4 warps: key split
           [](KernelConfig& k) { k.templ = kTemplateAttention, k.launch.stages = 1, k.q_tile = 1, k.launch.min_blocks = 1; }}) {
    c = pre;
    bad(c);
    ASSERT_FALSE(c.validate().ok()) << c.canonical();
    EXPECT_NE(c.validate().error().message.find("launch.wgmma"), std::string::npos) << c.validate().error().message;
    c.launch.wgmma = false;
    EXPECT_EQ(c.compile_target(), c.arch);
  }
  // fp8 K/V: every stage also holds the sub-tile's raw bytes (K then V, head_dim bytes a key).
  AttnShape f8 = s;
  f8.kv_dtype = DType::fp8_e4m3fn, f8.scale_mode = ScaleMode::scalar;
  const KernelConfig pre_f8 = prefill_config(*sm90, f8);
  EXPECT_EQ(pre_f8.launch.stages, pre.launch.stages);
  EXPECT_EQ(pre_f8.dynamic_shared_bytes(),
            pre.dynamic_shared_bytes() + std::size_t(pre.launch.stages) * 2 * pre.sub_k * pre.head_dim);
  // Written only when set: a config without it keeps the spelling (and cache key) it had.
  c = pre;
  c.launch.wgmma = false;
  EXPECT_FALSE(c.to_json()["launch"].contains("wgmma"));
  EXPECT_NE(c.config_key(), pre.config_key());
  nlohmann::json j = pre.to_json();
  j["launch"]["wgmma"] = 1;
  EXPECT_NE(KernelConfig::from_json(j).error().message.find("wgmma"), std::string::npos);
  // Shapes it does not fit fall back to mma.sync: G = 1 packs 16 queries in one row group (key split).
  AttnShape g1 = s;
  g1.num_kv_heads = 64;
  const KernelConfig pre_g1 = prefill_config(*sm90, g1);
  EXPECT_FALSE(pre_g1.launch.wgmma) << pre_g1.canonical();
  EXPECT_TRUE(pre_g1.validate().ok());
  AttnShape d256 = s;
  d256.head_dim = 256;
  EXPECT_FALSE(prefill_config(*sm90, d256).launch.wgmma);
  c = pre;
  c.templ = kTemplateAttention;  // the generic template is single-stage, one query per workgroup
  EXPECT_FALSE(c.validate().ok());
  c.templ = "attention_v2.cu";
  EXPECT_NE(c.validate().error().message.find("template"), std::string::npos);

  EXPECT_EQ(decode_config(*sm90, s, 2).launch.cluster, 2);
  // Large batches (>= 128 workgroups on sm_90, each walking >= 4 top-k entries) take the
  // table's large-batch launch.
  EXPECT_EQ(decode_launch(*sm90, 16, 4, 1, 16), DecodeLaunch::small);  // 64 workgroups
  EXPECT_EQ(decode_launch(*sm90, 32, 4, 1, 16), DecodeLaunch::large);
  EXPECT_EQ(decode_launch(*sm90, 8, 4, 4, 16), DecodeLaunch::large);  // 4 entries each
  EXPECT_EQ(decode_launch(*sm90, 8, 1, 16, 16), DecodeLaunch::base);  // 128 workgroups of one entry
  EXPECT_EQ(decode_launch(*sm90, 4, 4, 8, 16), DecodeLaunch::base);
  EXPECT_EQ(decode_launch(*sm90, 65, 1, 1, 16), DecodeLaunch::base);  // 65 workgroups
  // Small ones (up to 64 workgroups: one request at TP1, 16 one-block chunks at TP4/TP8) take
  // the small-batch launch: tensor copies of whole 128-key blocks by a producer warp and 4 math warps.
  EXPECT_EQ(decode_launch(*sm90, 1, 4, 16, 16), DecodeLaunch::small);
  EXPECT_EQ(decode_launch(*sm90, 1, 1, 16, 16), DecodeLaunch::small);
  const KernelConfig small = decode_config(*sm90, s, 16, DecodeLaunch::small);
  EXPECT_EQ(small.launch.threads, 160);
  EXPECT_TRUE(small.launch.tma);
  EXPECT_EQ(small.sub_k, 128);
  EXPECT_EQ(small.nv_warp_layout().key_split, 4);
  EXPECT_EQ(small.launch.cluster, 1) << "16 chunks: the merge kernel";
  EXPECT_TRUE(small.validate().ok()) << small.validate().error().describe();
  EXPECT_STREQ(to_string(DecodeLaunch::small), "small_batch");
  EXPECT_STREQ(to_string(DecodeLaunch::large), "large_batch");
  EXPECT_STREQ(to_string(DecodeLaunch::base), "base");
  // A table without small_batch (or large_batch) gives the op's launch for that tier.
  {
    ArchTable no_tiers = *sm90;
    no_tiers.decode.small_max_workgroups = 0;
    no_tiers.decode.large_min_workgroups = 0;
    EXPECT_EQ(decode_launch(no_tiers, 1, 4, 16, 16), DecodeLaunch::base);
    EXPECT_EQ(decode_launch(no_tiers, 32, 4, 1, 16), DecodeLaunch::base);
    EXPECT_EQ(decode_config(no_tiers, s, 16, DecodeLaunch::small).canonical(), decode_config(no_tiers, s, 16).canonical());
  }
  const KernelConfig big = decode_config(*sm90, s, 1, DecodeLaunch::large);
  EXPECT_EQ(big.launch.threads, 288);  // 8 math warps and the producer
  EXPECT_TRUE(big.launch.tma);
  EXPECT_EQ(big.nv_warp_layout().key_split, 8);
  EXPECT_EQ(big.sub_k, 128);
  EXPECT_TRUE(big.validate().ok()) << big.validate().error().describe();

  // The large-batch decode on sm_90 streams K/V with tensor copies: launch.threads counts the
  // producer warp, the warp layout only the math warps. The stages hold unpadded swizzled rows
  // from a 1024-byte aligned offset, and each adds a full, an empty and a V-full mbarrier; the warps share
  // each sub-tile's P (DIM_SPLIT in attention_nv.cu). Smaller
  // decodes keep cp.async (measured faster there, docs/PERF.md).
  EXPECT_FALSE(decode_config(*sm90, s, 2).launch.tma);
  const KernelConfig dec = decode_config(*sm90, s, 2, DecodeLaunch::large);
  ASSERT_TRUE(dec.launch.tma) << dec.canonical();
  EXPECT_EQ(dec.launch.cluster, 2);
  EXPECT_EQ(dec.launch.threads, 288);
  EXPECT_EQ(dec.nv_warp_layout().warps, 8);
  EXPECT_EQ(dec.nv_warp_layout().key_split, 8);
  EXPECT_TRUE(dec.validate().ok()) << dec.validate().error().describe();
  c = dec;
  c.launch.tma = false, c.launch.threads = 256;
  {
    const std::size_t q = 16 * (128 + 8) * 2, stage = 2 * 128 * (128 + 8) * 2, stage_sw = 2 * 128 * 128 * 2;
    // ... and two sub-tiles' P of one query (16 rows of sub_k + 8 halves) and each math warp's row
    // maxima, then its row sums.
    const std::size_t shared_p = 2 * 16 * (128 + 8) * 2 + 3 * 8 * 16 * 4;
    EXPECT_EQ(dec.dynamic_shared_bytes(), c.dynamic_shared_bytes() - q - dec.launch.stages * stage + 5 * 1024 +
                                              dec.launch.stages * stage_sw + dec.launch.stages * 3 * 8 + shared_p);
  }
  EXPECT_FALSE(c.to_json()["launch"].contains("tma"));  // written only when set
  EXPECT_EQ(dec.to_json()["launch"]["tma"], true);
  auto dec_back = KernelConfig::from_json(dec.to_json());
  ASSERT_TRUE(dec_back.ok()) << dec_back.error().describe();
  EXPECT_EQ(dec_back->canonical(), dec.canonical());
  j = dec.to_json();
  j["launch"]["tma"] = "yes";
  EXPECT_NE(KernelConfig::from_json(j).error().message.find("tma must be true or false"), std::string::npos);
  // fp8 K/V are dequantized in shared memory by every thread: no tensor copies, no producer warp.
  const KernelConfig dec_f8 = decode_config(*sm90, f8, 2, DecodeLaunch::large);
  EXPECT_FALSE(dec_f8.launch.tma);
  EXPECT_EQ(dec_f8.launch.threads, 256);
  EXPECT_EQ(dec_f8.nv_warp_layout().key_split, 8);
  EXPECT_TRUE(dec_f8.validate().ok()) << dec_f8.validate().error().describe();
  // fp8 at small batch: the small launch's sub-tiles, without the producer warp.
  const KernelConfig small_f8 = decode_config(*sm90, f8, 16, DecodeLaunch::small);
  EXPECT_FALSE(small_f8.launch.tma);
  EXPECT_EQ(small_f8.launch.threads, 128);
  EXPECT_EQ(small_f8.sub_k, 128);
  EXPECT_TRUE(small_f8.validate().ok()) << small_f8.validate().error().describe();
  for (auto bad : std::vector<std::function<void(KernelConfig&)>>{
           [](KernelConfig& k) { k.arch = "sm_80"; },
           [](KernelConfig& k) { k.op = Op::prefill, k.num_topk_chunks = 1, k.launch.cluster = 1; },
           [](KernelConfig& k) { k.kv_dtype = DType::fp8_e5m2; },
           [](KernelConfig& k) { k.launch.threads = 32; },
           [](KernelConfig& k) { k.head_dim = 96; },  // not whole 128-byte swizzle rows
           [](KernelConfig& k) { k.templ = kTemplateAttention, k.launch.stages = 1, k.launch.cluster = 1, k.launch.min_blocks = 1; }}) {
    c = dec;
    bad(c);
    ASSERT_FALSE(c.validate().ok()) << c.canonical();
    EXPECT_NE(c.validate().error().message.find("launch.tma"), std::string::npos) << c.validate().error().message;
  }
  const auto variants = decode_variants(*sm90, 4, 16, 16);
  auto listed_as = [](const std::vector<DecodeChoice>& l, int split, int chunks, DecodeLaunch launch) {
    return std::find(l.begin(), l.end(), DecodeChoice{split, chunks, launch}) != l.end();
  };
  EXPECT_TRUE(listed_as(variants, 1, 1, DecodeLaunch::large));
  EXPECT_TRUE(listed_as(variants, 1, 16, DecodeLaunch::small));
  EXPECT_TRUE(listed_as(variants, 1, 8, DecodeLaunch::base));
  // Every total_q up to well past the thresholds picks one of the listed choices, with or
  // without a kv head split in the table.
  ArchTable split_table = *sm90;
  split_table.decode.kv_head_split = 4;
  for (const ArchTable* table : std::initializer_list<const ArchTable*>{&*sm90, &split_table}) {
    for (std::int64_t kvh : {1, 4})
      for (std::int64_t topk : {16, 300})
        for (std::int64_t group : {16, 8, 1}) {
          const auto listed = decode_variants(*table, kvh, topk, group);
          for (std::int64_t t = 1; t <= 4096; ++t) {
            const DecodeChoice v = decode_choice(*table, t, kvh, group, topk);
            EXPECT_TRUE(listed_as(listed, v.kv_head_split, v.chunks, v.launch)) << "kvh " << kvh << " topk " << topk << " total_q " << t;
            if (table == &*sm90) {
              EXPECT_EQ(v.kv_head_split, 1) << "the shipped table splits no kv head (until measured)";
              EXPECT_EQ(v.chunks, decode_chunks(*table, t, kvh, topk));
            }
          }
        }
  }
  EXPECT_EQ(decode_config(*sm90, s, 8).launch.cluster, 1) << "8 chunks: the merge kernel (faster on the H100)";

  // kv_head_split: off in the shipped table; with a table that asks, the largest power of two
  // within it that divides the group and keeps total_q x kv heads x S within target_grid (128).
  EXPECT_EQ(decode_kv_head_split(*sm90, 64, 1, 16), 1);
  EXPECT_EQ(decode_kv_head_split(split_table, 64, 1, 16), 2);   // 128 workgroups, one chunk
  EXPECT_EQ(decode_kv_head_split(split_table, 32, 1, 16), 4);
  EXPECT_EQ(decode_kv_head_split(split_table, 8, 1, 16), 4);    // the table's most
  EXPECT_EQ(decode_kv_head_split(split_table, 128, 1, 16), 1);  // the grid is full already
  EXPECT_EQ(decode_kv_head_split(split_table, 8, 1, 2), 2);     // within the group
  EXPECT_EQ(decode_kv_head_split(split_table, 8, 1, 1), 1);
  EXPECT_EQ(decode_kv_head_split(split_table, 8, 1, 6), 2);     // a power of two dividing it
  EXPECT_EQ(decode_kv_head_split(split_table, 8, 1, 0), 1);     // shapes not validated yet (no heads): no split
  EXPECT_EQ(decode_kv_head_split(split_table, 8, 1, -16), 1);
  EXPECT_EQ(decode_kv_head_split(split_table, 16, 4, 16), 2);
  {
    const DecodeChoice b64 = decode_choice(split_table, 64, 1, 16, 16);
    EXPECT_EQ(b64.kv_head_split, 2);
    EXPECT_EQ(b64.chunks, 1);
    EXPECT_EQ(b64.launch, DecodeLaunch::large);
    AttnShape tp4 = s;
    tp4.num_heads = 16, tp4.num_kv_heads = 1;
    const KernelConfig k = decode_config(split_table, tp4, b64.chunks, b64.launch, b64.kv_head_split);
    EXPECT_EQ(k.gqa_group, 8) << "each workgroup takes half the group";
    EXPECT_EQ(k.kv_head_split, 2);
    ASSERT_TRUE(k.validate().ok()) << k.validate().error().describe();
    EXPECT_EQ(k.to_json()["kv_head_split"], 2);
    auto back = KernelConfig::from_json(k.to_json());
    ASSERT_TRUE(back.ok()) << back.error().describe();
    EXPECT_EQ(*back, k);
    EXPECT_FALSE(decode_config(*sm90, tp4, 1, DecodeLaunch::large).to_json().contains("kv_head_split")) << "1: not written";
    KernelConfig bad = k;
    bad.kv_head_split = 3;
    EXPECT_NE(bad.validate().error().message.find("kv_head_split"), std::string::npos);
    bad = prefill_config(*sm90, tp4);
    bad.kv_head_split = 2;
    EXPECT_NE(bad.validate().error().message.find("kv_head_split"), std::string::npos) << "decode only";
  }

  // A config written before template/q_tile existed still reads, as the generic kernel.
  nlohmann::json old = pre.to_json();
  old.erase("template"), old.erase("q_tile"), old["launch"].erase("stages"), old["launch"].erase("cluster"), old["launch"].erase("min_blocks"), old["launch"].erase("wgmma");
  old["launch"].erase("tma");
  auto legacy = KernelConfig::from_json(old);
  ASSERT_TRUE(legacy.ok()) << legacy.error().describe();
  EXPECT_EQ(legacy->templ, kTemplateAttention);
  EXPECT_EQ(legacy->q_tile, 1);

  // The NVIDIA template on an AMD target is refused by name.
  auto gfx = load_arch_table("gfx942");
  ASSERT_TRUE(gfx.ok());
  KernelConfig amd = pre;
  amd.arch = "gfx942";
  amd.launch.wgmma = false;
  auto r = render_kernel(amd, *gfx);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("NVIDIA"), std::string::npos) << r.error().message;

  // min_blocks reaches the kernel's launch bounds.
  auto nv = render_kernel(pre, *sm90);
  ASSERT_TRUE(nv.ok()) << nv.error().describe();
  EXPECT_NE(nv->source.find("__launch_bounds__(128, 3)"), std::string::npos);
}

TEST(ConfigSelect, HugeBatchTakesTwoWorkgroupsPerSmWhereTheyFit) {
  // sm_90: from 256 workgroups on, large_batch's launch with min_blocks 2 (two workgroups per SM),
  // where two fit the SM's 228 KiB: fp8 decode that reads K and V from the raw bytes (its stages
  // hold nothing else, docs/PERF.md) does; bf16's tensor-copy launch (139 KiB) does not, and
  // stays large_batch's.
  auto sm90 = load_arch_table("sm_90");
  ASSERT_TRUE(sm90.ok());
  AttnShape s;
  s.num_heads = 64, s.num_kv_heads = 4, s.head_dim = 128, s.topk = 16;
  EXPECT_EQ(decode_launch(*sm90, 63, 4, 1, 16), DecodeLaunch::large);  // 252 workgroups
  EXPECT_EQ(decode_launch(*sm90, 64, 4, 1, 16), DecodeLaunch::huge);   // 256
  EXPECT_EQ(decode_launch(*sm90, 128, 1, 2, 16), DecodeLaunch::huge);  // chunks count: 256
  EXPECT_STREQ(to_string(DecodeLaunch::huge), "huge_batch");
  const KernelConfig bf16_large = decode_config(*sm90, s, 1, DecodeLaunch::large);
  EXPECT_EQ(decode_config(*sm90, s, 1, DecodeLaunch::huge), bf16_large) << "two do not fit: large_batch's launch";
  AttnShape f8 = s;
  f8.kv_dtype = DType::fp8_e4m3fn, f8.scale_mode = ScaleMode::scalar;
  const KernelConfig large = decode_config(*sm90, f8, 1, DecodeLaunch::large), huge = decode_config(*sm90, f8, 1, DecodeLaunch::huge);
  ASSERT_TRUE(huge.nv_raw_v());
  EXPECT_EQ(large.launch.min_blocks, 1);
  EXPECT_EQ(huge.launch.min_blocks, 2);
  // large_batch's fp8_stages (3 for fp8 K/V, where one workgroup runs per SM) is its own:
  // huge_batch starts from large_batch's launch, 2 stages (docs/PERF.md, thirteenth session).
  EXPECT_EQ(large.launch.stages, 3);
  EXPECT_EQ(bf16_large.launch.stages, 2);
  EXPECT_EQ(huge.launch.stages, 2);
  KernelConfig c = huge;
  c.launch.min_blocks = 1, c.launch.stages = 3;
  EXPECT_EQ(c, large) << "huge_batch changes min_blocks alone, and does not take fp8_stages";
  EXPECT_LE(2 * (huge.dynamic_shared_bytes() + 1024), sm90->max_dynamic_shared_bytes + 1024);
  // The raw-fragment path's stages hold the raw bytes alone (mirrors kRawV in attention_nv.cu);
  // sm_80 (no fp8 cvt) keeps the converted tiles. Per stage: K and V tiles (padded rows) and
  // the raw bytes; without the tiles the 8 warps' key-split merge (16 rows of head_dim + 8 + 3
  // floats each), which reuses the stages, is larger.
  KernelConfig two = huge;  // one per SM, two stages
  two.launch.min_blocks = 1;
  KernelConfig tiles = two;
  tiles.arch = "sm_80";
  EXPECT_FALSE(tiles.nv_raw_v());
  const std::size_t tile_bytes = 2 * 128 * (128 + 8) * 2, raw = 2 * 128 * 128, merge = 8 * 16 * (128 + 8 + 3) * 4;
  ASSERT_GT(merge, two.launch.stages * raw);
  EXPECT_EQ(tiles.dynamic_shared_bytes() - two.dynamic_shared_bytes(), std::size_t(two.launch.stages) * (tile_bytes + raw) - merge);
  // With three stages the raw bytes outgrow the merge.
  EXPECT_EQ(large.dynamic_shared_bytes() - two.dynamic_shared_bytes(), 3 * raw - merge);
  // Per-token-head scales take the raw path too, each stage also holding its keys' K and V scales.
  AttnShape pth = f8;
  pth.scale_mode = ScaleMode::per_token_head;
  const KernelConfig pth_huge = decode_config(*sm90, pth, 1, DecodeLaunch::huge);
  EXPECT_TRUE(pth_huge.nv_raw_v());
  EXPECT_EQ(pth_huge.launch.min_blocks, 2);
  c = pth_huge;
  c.launch.stages = 4;  // the stages outgrow the merge: 4 x (raw + 2 x 128 scales)
  EXPECT_EQ(c.dynamic_shared_bytes() - pth_huge.dynamic_shared_bytes(), 4 * (raw + 2 * 128 * 4) - merge);
  c = large;
  c.arch = "sm_80";
  EXPECT_FALSE(c.nv_raw_v());
  c.arch = "sm_89";
  EXPECT_TRUE(c.nv_raw_v());
  c.head_dim = 64;
  EXPECT_FALSE(c.nv_raw_v()) << "head_dim a multiple of 128";
  // Warming covers it: every (chunks, launch) the runtime can pick.
  bool has_huge = false;
  for (const auto& v : decode_variants(*sm90, 4, 16, 16)) has_huge = has_huge || v.launch == DecodeLaunch::huge;
  EXPECT_TRUE(has_huge);
}
