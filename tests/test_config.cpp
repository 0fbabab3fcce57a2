#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "arch_table.h"
#include "config.h"
#include "ops/config_select.h"
#include "preset.h"

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
  auto t = load_arch_table("sm_90");
  ASSERT_TRUE(t.ok());
  // target grid 256 on sm_90: mirrors vLLM's TARGET_GRID heuristic.
  EXPECT_EQ(decode_chunks(*t, 1, 4, 16), 16);
  EXPECT_EQ(decode_chunks(*t, 8, 4, 16), 8);
  EXPECT_EQ(decode_chunks(*t, 64, 4, 16), 1);
  EXPECT_EQ(decode_chunks(*t, 3, 1, 16), 16);
  EXPECT_EQ(decode_chunks(*t, 20, 1, 16), 8);
  EXPECT_EQ(decode_chunks(*t, 1, 1, 5), 4);
  for (int q = 1; q < 300; ++q) {
    const int c = decode_chunks(*t, q, 1, 16);
    EXPECT_EQ(c & (c - 1), 0);
    EXPECT_EQ(c, decode_chunks(*t, q, 1, 16));
  }
}

TEST(Preset, MiniMaxM3ExpandsToDistinctValidConfigs) {
  auto p = load_preset("minimax-m3");
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(p->num_heads, 64);
  EXPECT_EQ(p->num_kv_heads, 4);
  for (const char* arch : {"sm_90", "gfx942", "gfx950", "gfx90a"}) {
    auto cs = expand_preset(*p, arch);
    ASSERT_TRUE(cs.ok()) << cs.error().describe();
    // 2 distinct GQA groups (16, 8) x 2 variants: 4 prefill + 20 decode (chunks 1..16) + 5 merge.
    EXPECT_EQ(cs->size(), 29u) << arch;
    for (const auto& c : *cs) EXPECT_TRUE(c.validate().ok());
  }
  EXPECT_FALSE(load_preset("no-such-model").ok());
}
