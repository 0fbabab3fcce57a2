#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "knobs.h"
#include "log.h"
#include "util/hash.h"

TEST(Hash, Sha256KnownVector) {
  EXPECT_EQ(sparsejit::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Knobs, ScopedOverrideRestores) {
  {
    sparsejit::ScopedKnob k("SPARSEJIT_CACHE", "off");
    EXPECT_EQ(sparsejit::knobs().cache_mode, sparsejit::CacheMode::off);
  }
  EXPECT_NE(sparsejit::knobs().cache_mode, sparsejit::CacheMode::off);
}

// The hot path's warning: built and said once, whatever the number of calls and threads.
TEST(Log, WarnOnceBuildsAndSaysItsMessageOnceAcrossThreads) {
  if (sparsejit::knobs().log_level == "off" || sparsejit::knobs().log_level == "error")
    GTEST_SKIP() << "SPARSEJIT_LOG_LEVEL=" << sparsejit::knobs().log_level << " hides warnings";
  sparsejit::log::WarnOnce once;
  std::atomic<int> built{0};
  testing::internal::CaptureStderr();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        once([&] {
          ++built;
          return std::string("sj-warn-once-probe");
        });
    });
  for (auto& t : threads) t.join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(built.load(), 1);
  std::size_t said = 0;
  for (std::size_t pos = err.find("sj-warn-once-probe"); pos != std::string::npos; pos = err.find("sj-warn-once-probe", pos + 1)) ++said;
  EXPECT_EQ(said, 1u) << err;
}
