// The on-disk cache entry: a fixed header that lets a reader reject a
// truncated, bit-flipped or misplaced file before anything is loaded, then the
// code object. All integers little-endian.
//
//   offset  size  field
//   0       8     magic "SJKCENT1"
//   8       4     format version (kEntryFormatVersion)
//   12      4     key length K (bytes of lowercase hex)
//   16      8     payload length N
//   24      64    sha256 of the payload, lowercase hex
//   88      K     the cache key (hex); an entry copied under another key's name is detected
//   88+K    N     payload (the code object)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace sparsejit::cache_format {

inline constexpr std::string_view kEntryMagic = "SJKCENT1";
inline constexpr std::uint32_t kEntryFormatVersion = 1;
inline constexpr std::size_t kEntryFixedHeaderBytes = 8 + 4 + 4 + 8 + 64;

// Cache keys are lowercase hex (2..128 chars): safe as file names, shardable.
bool is_valid_key_hex(std::string_view key);

std::string encode_entry(std::string_view key_hex, const std::uint8_t* payload, std::size_t n);
inline std::string encode_entry(std::string_view key_hex, const std::vector<std::uint8_t>& payload) {
  return encode_entry(key_hex, payload.data(), payload.size());
}

// Validates the header, length, checksum and key; returns the payload or why
// the bytes are not a valid entry for `expected_key`.
Result<std::vector<std::uint8_t>> decode_entry(std::string_view bytes, std::string_view expected_key);

// Little-endian helpers shared with the export archive.
void put_u32(std::string& out, std::uint32_t v);
void put_u64(std::string& out, std::uint64_t v);
std::uint32_t get_u32(const char* p);
std::uint64_t get_u64(const char* p);

}  // namespace sparsejit::cache_format
