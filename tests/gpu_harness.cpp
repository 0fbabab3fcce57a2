#include "gpu_harness.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>

#include "device/device.h"
#include "knobs.h"

namespace sparsejit::gputest {
namespace {

struct State {
  std::mutex mu;
  bool runtime_tried = false;
  std::unique_ptr<Runtime> runtime;
  struct Row {
    std::string name;
    double rel_err;
    std::uint64_t seed;
  };
  std::vector<Row> rows;
};

State& state() {
  static State* s = new State;  // never destroyed: the Runtime is released in the environment's TearDown
  return *s;
}

// With a GPU: kernels compile into a fresh temp cache dir (so the run proves
// the NVRTC path, and leaves nothing behind), and nothing may disable compiling.
class GpuEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string reason;
    if (!gpu_available(&reason)) return;
    char tmpl[] = "/tmp/sparsejit-gputest-XXXXXX";
    if (const char* dir = mkdtemp(tmpl)) {
      cache_dir_ = dir;
      cache_knob_.emplace("SPARSEJIT_CACHE_DIR", cache_dir_);
    } else {
      std::cerr << "[ warning  ] mkdtemp failed; kernels go to the default cache dir\n";
    }
    no_disable_knob_.emplace("SPARSEJIT_DISABLE_COMPILE", std::nullopt);
  }

  void TearDown() override {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.runtime.reset();  // modules unload while the driver is certainly alive
      if (!s.rows.empty()) {
        std::cout << "\n[ summary  ] GPU attention: max relative error per case (bound 1e-2)\n";
        for (const auto& r : s.rows)
          std::cout << "[ summary  ]   " << std::left << std::setw(72) << r.name << " " << std::scientific << std::setprecision(3)
                    << r.rel_err << std::defaultfloat << "  seed=" << r.seed << "\n";
      }
    }
    no_disable_knob_.reset();
    cache_knob_.reset();
    if (!cache_dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(cache_dir_, ec);
    }
  }

 private:
  std::string cache_dir_;
  std::optional<ScopedKnob> cache_knob_, no_disable_knob_;
};

[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new GpuEnvironment);

std::string err(const Status& st) { return st ? std::string() : st.error().describe(); }

}  // namespace

bool gpu_available(std::string* reason) {
  const Driver& d = cuda_driver();
  if (!d.available()) {
    if (reason) *reason = "CUDA driver unavailable: " + d.unavailable_reason();
    return false;
  }
  if (d.device_count() <= 0) {
    if (reason) *reason = "CUDA driver loaded but no device";
    return false;
  }
  return true;
}

Runtime* shared_runtime() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.runtime_tried) {
    s.runtime_tried = true;
    RuntimeOptions opt;
    opt.device = kDevice;
    s.runtime = Runtime::create(opt);
  }
  return s.runtime.get();
}

void record_case_error(const std::string& name, double rel_err, std::uint64_t seed) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.rows.push_back({name, rel_err, seed});
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) (void)cuda_driver().free(kDevice, ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)cuda_driver().free(kDevice, ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

std::string DeviceBuffer::allocate(std::size_t bytes) {
  if (ptr_) (void)cuda_driver().free(kDevice, ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  auto p = cuda_driver().malloc(kDevice, bytes == 0 ? 16 : bytes);
  if (!p) return p.error().describe();
  ptr_ = *p;
  bytes_ = bytes;
  return {};
}

std::string DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (auto e = allocate(bytes); !e.empty()) return e;
  if (bytes == 0) return {};
  return err(cuda_driver().copy_to_device(kDevice, ptr_, host, bytes));
}

std::string DeviceBuffer::fill(int byte) {
  if (bytes_ == 0) return {};
  return err(cuda_driver().memset(kDevice, ptr_, byte, bytes_));
}

std::string DeviceBuffer::download(void* host) const {
  if (bytes_ == 0) return {};
  return err(cuda_driver().copy_to_host(kDevice, host, ptr_, bytes_));
}

std::string synchronize() { return err(cuda_driver().synchronize(kDevice)); }

}  // namespace sparsejit::gputest
