#include "util/hash.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace sparsejit {

std::string sha256_hex(const void* data, std::size_t n) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, n, md, &len, EVP_sha256(), nullptr) != 1) throw std::runtime_error("EVP_Digest(sha256) failed");
  static const char* hexd = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (unsigned i = 0; i < len; ++i) {
    out[2 * i] = hexd[md[i] >> 4];
    out[2 * i + 1] = hexd[md[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) { return sha256_hex(data.data(), data.size()); }

}  // namespace sparsejit
