#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sparsejit {

// SHA-256 (OpenSSL EVP) as lowercase hex.
std::string sha256_hex(std::string_view data);
std::string sha256_hex(const void* data, std::size_t n);

}  // namespace sparsejit
