#include "cache/entry_format.h"

#include "util/hash.h"

namespace sparsejit::cache_format {

bool is_valid_key_hex(std::string_view key) {
  if (key.size() < 2 || key.size() > 128) return false;
  for (char c : key)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::string encode_entry(std::string_view key_hex, const std::uint8_t* payload, std::size_t n) {
  std::string out;
  out.reserve(kEntryFixedHeaderBytes + key_hex.size() + n);
  out.append(kEntryMagic);
  put_u32(out, kEntryFormatVersion);
  put_u32(out, static_cast<std::uint32_t>(key_hex.size()));
  put_u64(out, n);
  out.append(sha256_hex(payload, n));
  out.append(key_hex);
  out.append(reinterpret_cast<const char*>(payload), n);
  return out;
}

Result<std::vector<std::uint8_t>> decode_entry(std::string_view bytes, std::string_view expected_key) {
  auto bad = [](std::string why) { return make_error("cache", std::move(why)); };
  if (bytes.size() < kEntryFixedHeaderBytes)
    return bad("truncated header (" + std::to_string(bytes.size()) + " bytes)");
  if (bytes.substr(0, 8) != kEntryMagic) return bad("bad magic (not a sparsejit cache entry)");
  std::uint32_t version = get_u32(bytes.data() + 8);
  if (version != kEntryFormatVersion)
    return bad("unsupported entry format version " + std::to_string(version) + " (expected " +
               std::to_string(kEntryFormatVersion) + ")");
  std::uint64_t key_len = get_u32(bytes.data() + 12);
  std::uint64_t payload_len = get_u64(bytes.data() + 16);
  std::string_view checksum = bytes.substr(24, 64);
  if (key_len > 128) return bad("corrupt header (key length " + std::to_string(key_len) + ")");
  std::uint64_t expected_size = kEntryFixedHeaderBytes + key_len + payload_len;
  if (payload_len > bytes.size() || bytes.size() != expected_size)
    return bad("length mismatch: header says " + std::to_string(payload_len) + " payload bytes, file has " +
               std::to_string(bytes.size()) + " bytes in all (truncated or appended to)");
  std::string_view key = bytes.substr(kEntryFixedHeaderBytes, key_len);
  if (key != expected_key)
    return bad("key mismatch: the entry holds key " + std::string(key) + " (copied or swapped from another key)");
  std::string_view payload = bytes.substr(kEntryFixedHeaderBytes + key_len);
  if (sha256_hex(payload) != checksum) return bad("checksum mismatch (corrupted payload)");
  return std::vector<std::uint8_t>(payload.begin(), payload.end());
}

}  // namespace sparsejit::cache_format
