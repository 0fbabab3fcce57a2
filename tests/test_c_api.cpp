// The C ABI boundary (include/sparsejit/sparsejit.h): status codes plus the
// thread-local message, NULL handling, no exceptions across, the struct sizes
// bindings rely on. The GPU case skips visibly without a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "sparsejit/sparsejit.h"

namespace {

TEST(CApi, IdentityAndStructSizes) {
  EXPECT_EQ(sj_abi_version(), SJ_ABI_VERSION);
  EXPECT_STREQ(sj_version(), SPARSEJIT_VERSION_FOR_TESTS);
  EXPECT_EQ(sj_struct_size("sj_prefill_args"), sizeof(sj_prefill_args));
  EXPECT_EQ(sj_struct_size("sj_decode_args"), sizeof(sj_decode_args));
  EXPECT_EQ(sj_struct_size("sj_kernel_shape"), sizeof(sj_kernel_shape));
  EXPECT_EQ(sj_struct_size("nope"), 0u);
  EXPECT_EQ(sj_struct_size(nullptr), 0u);
  EXPECT_STREQ(sj_status_string(SJ_ERROR_GRAPH_CAPTURE), "SJ_ERROR_GRAPH_CAPTURE");
  EXPECT_STREQ(sj_status_string(static_cast<sj_status>(999)), "SJ_ERROR_UNKNOWN");
}

TEST(CApi, NullArgumentsAreStatusCodesWithMessages) {
  EXPECT_EQ(sj_runtime_create(nullptr, nullptr), SJ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sj_last_error()).find("argument out"), std::string::npos) << sj_last_error();
  sj_decode_args d;
  std::memset(&d, 0, sizeof d);
  EXPECT_EQ(sj_sparse_attn_decode(nullptr, &d, nullptr), SJ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sj_last_error()).find("runtime"), std::string::npos);
  EXPECT_EQ(sj_sparse_attn_prefill(nullptr, nullptr, nullptr), SJ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sj_warm_decode(nullptr, nullptr, 0), SJ_ERROR_INVALID_ARGUMENT);
  std::uint64_t bytes = 0;
  EXPECT_EQ(sj_decode_workspace_bytes(nullptr, 1, 1, 1, 1, 1, &bytes), SJ_ERROR_INVALID_ARGUMENT);
  sj_runtime_destroy(nullptr);  // a no-op
  EXPECT_EQ(sj_runtime_device(nullptr), -1);
}

TEST(CApi, OptionsNeedTheirSize) {
  sj_runtime_options o;
  std::memset(&o, 0, sizeof o);  // struct_size 0: not initialized
  sj_runtime* rt = reinterpret_cast<sj_runtime*>(0x1);
  EXPECT_EQ(sj_runtime_create(&o, &rt), SJ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(rt, nullptr);
  EXPECT_NE(std::string(sj_last_error()).find("sj_runtime_options_init"), std::string::npos);
  sj_runtime_options_init(&o);
  EXPECT_EQ(o.struct_size, sizeof o);
  EXPECT_EQ(o.device, -1);
}

TEST(CApi, LastErrorIsPerThread) {
  EXPECT_EQ(sj_sparse_attn_prefill(nullptr, nullptr, nullptr), SJ_ERROR_INVALID_ARGUMENT);
  const std::string mine = sj_last_error();
  std::string theirs = "unset";
  std::thread([&] { theirs = sj_last_error(); }).join();
  EXPECT_EQ(theirs, "");
  EXPECT_EQ(std::string(sj_last_error()), mine);
}

TEST(CApi, CacheStatusJsonWithoutARuntime) {
  std::size_t needed = 0;
  char small[4];
  EXPECT_EQ(sj_cache_status_json(nullptr, small, sizeof small, &needed), SJ_ERROR_BUFFER_TOO_SMALL);
  ASSERT_GT(needed, sizeof small);
  std::string buf(needed, '\0');
  ASSERT_EQ(sj_cache_status_json(nullptr, buf.data(), buf.size(), &needed), SJ_OK) << sj_last_error();
  auto j = nlohmann::json::parse(buf.c_str());
  EXPECT_TRUE(j.contains("mode"));
  EXPECT_TRUE(j.contains("user_dir"));
  EXPECT_TRUE(j.contains("older_schema_bytes"));  // what the size cap counts besides this schema's entries
}

TEST(CApi, CreateReportsNoDeviceOrWorks) {
  sj_runtime* rt = nullptr;
  const sj_status st = sj_runtime_create(nullptr, &rt);
  if (st == SJ_ERROR_NO_DEVICE) {
    EXPECT_EQ(rt, nullptr);
    EXPECT_NE(std::string(sj_last_error()).find("no GPU"), std::string::npos) << sj_last_error();
    GTEST_SKIP() << "no GPU: " << sj_last_error();
  }
  ASSERT_EQ(st, SJ_OK) << sj_last_error();
  // With a GPU: warm every decode chunk count, then the status shows them loaded.
  sj_kernel_shape s;
  std::memset(&s, 0, sizeof s);
  s.num_heads = 16, s.num_kv_heads = 1, s.head_dim = 128, s.topk = 16;
  s.q_dtype = SJ_DTYPE_BF16, s.kv_dtype = SJ_DTYPE_BF16, s.scale_mode = SJ_SCALE_NONE;
  EXPECT_EQ(sj_warm_decode(rt, &s, 0), SJ_OK) << sj_last_error();
  EXPECT_EQ(sj_warm_prefill(rt, &s), SJ_OK) << sj_last_error();
  s.num_kv_heads = 3;
  EXPECT_EQ(sj_warm_prefill(rt, &s), SJ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sj_last_error()).find("num_kv_heads"), std::string::npos) << sj_last_error();
  char buf[4096];
  ASSERT_EQ(sj_cache_status_json(rt, buf, sizeof buf, nullptr), SJ_OK) << sj_last_error();
  EXPECT_GE(nlohmann::json::parse(buf)["loaded_kernels"].get<int>(), 3);
  // A bad decode is rejected with the argument named, not launched.
  sj_decode_args d;
  std::memset(&d, 0, sizeof d);
  EXPECT_EQ(sj_sparse_attn_decode(rt, &d, nullptr), SJ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sj_last_error()).find("argument q"), std::string::npos) << sj_last_error();
  sj_runtime_destroy(rt);
}

}  // namespace
