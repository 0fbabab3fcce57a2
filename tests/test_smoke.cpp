#include <gtest/gtest.h>

#include "knobs.h"
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
