// GPU test harness: device buffers through the driver layer (CUDA device 0),
// one Runtime shared by every GPU test, a temp kernel cache dir for the run,
// and a per-case error summary printed at the end of the run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sparsejit/sparsejit.hpp"

namespace sparsejit::gputest {

// True when a CUDA device is present; otherwise *reason says why not.
bool gpu_available(std::string* reason);

// The Runtime shared by all GPU tests (created on first use, after the global
// environment pointed SPARSEJIT_CACHE_DIR at a fresh temp dir); null if creation failed.
Runtime* shared_runtime();

constexpr int kDevice = 0;

// Owns device memory on kDevice. Move-only. Errors abort the test through
// the returned status strings (checked by the callers with ASSERT_*).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Empty string on success, the driver's message otherwise.
  std::string allocate(std::size_t bytes);
  std::string upload(const void* host, std::size_t bytes);  // allocates `bytes` and copies
  std::string fill(int byte);                               // memset of the whole buffer
  std::string download(void* host) const;                   // copies the whole buffer

  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

template <class T>
std::string upload_vector(DeviceBuffer& buf, const std::vector<T>& v) {
  return buf.upload(v.data(), v.size() * sizeof(T));
}

std::string synchronize();

// Max relative error per case, printed as a table when the run ends.
void record_case_error(const std::string& name, double rel_err, std::uint64_t seed);

}  // namespace sparsejit::gputest
