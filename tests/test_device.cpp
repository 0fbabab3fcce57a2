// Driver layer tests. The first group runs anywhere (no GPU: the drivers must
// report why and return errors, never crash); the GPU group skips visibly
// unless a CUDA device is present.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "device/device.h"

namespace sparsejit::detail {
// Defined in src/device/hip.cpp; no AMD GPU anywhere to test it through the driver.
std::string hip_target_from_properties(const unsigned char* props, std::size_t size, std::size_t arch_name_offset);
}  // namespace sparsejit::detail

namespace sparsejit {
namespace {

std::vector<const Driver*> all_drivers() { return {&cuda_driver(), &hip_driver()}; }

const char* vendor_name(const Driver& d) { return d.vendor() == Vendor::nvidia ? "CUDA" : "HIP"; }

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// out[i] = 2 * i for i < n. PTX text (cuModuleLoadData JIT-compiles it), so the
// test needs no compiler backend; .target sm_50 runs on every current GPU.
constexpr const char* kDoubleIndexPtx = R"(
.version 7.0
.target sm_50
.address_size 64

.visible .entry double_index(
    .param .u64 double_index_out,
    .param .u32 double_index_n
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<7>;
    .reg .b64 %rd<5>;

    ld.param.u64 %rd1, [double_index_out];
    ld.param.u32 %r1, [double_index_n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    cvta.to.global.u64 %rd2, %rd1;
    mul.wide.u32 %rd3, %r5, 4;
    add.s64 %rd4, %rd2, %rd3;
    shl.b32 %r6, %r5, 1;
    st.global.u32 [%rd4], %r6;
DONE:
    ret;
}
)";

// ---------------------------------------------------------------- anywhere

TEST(DeviceDriver, ReportsVendor) {
  EXPECT_EQ(cuda_driver().vendor(), Vendor::nvidia);
  EXPECT_EQ(hip_driver().vendor(), Vendor::amd);
  EXPECT_EQ(&cuda_driver(), &cuda_driver());  // process-wide singletons
}

TEST(DeviceDriver, AvailabilityComesWithReasonOrDevices) {
  for (const Driver* d : all_drivers()) {
    SCOPED_TRACE(vendor_name(*d));
    if (d->available()) {
      EXPECT_GT(d->device_count(), 0);
      EXPECT_TRUE(d->unavailable_reason().empty()) << d->unavailable_reason();
    } else {
      EXPECT_EQ(d->device_count(), 0);
      EXPECT_FALSE(d->unavailable_reason().empty());
      std::cout << "[ info     ] " << vendor_name(*d) << " unavailable: " << d->unavailable_reason() << "\n";
    }
  }
}

TEST(DeviceDriver, UnavailableOrOutOfRangeDeviceGivesErrors) {
  for (const Driver* d : all_drivers()) {
    SCOPED_TRACE(vendor_name(*d));
    const int bad = d->device_count();  // first ordinal past the end (0 when there are none)
    auto info = d->device_info(bad);
    ASSERT_FALSE(info.ok());
    EXPECT_FALSE(info.error().message.empty());
    EXPECT_FALSE(d->device_info(-1).ok());

    auto module = d->load(bad, bytes("\x7f"
                                     "ELF"));
    ASSERT_FALSE(module.ok());
    EXPECT_EQ(module.error().stage, "load");

    EXPECT_FALSE(d->malloc(bad, 16).ok());
    int host = 0;
    EXPECT_FALSE(d->copy_to_device(bad, &host, &host, sizeof(host)).ok());
    EXPECT_FALSE(d->copy_to_host(bad, &host, &host, sizeof(host)).ok());
    EXPECT_FALSE(d->memset(bad, &host, 0, sizeof(host)).ok());
    EXPECT_FALSE(d->free(bad, &host).ok());
    EXPECT_FALSE(d->synchronize(bad).ok());
    if (!d->available()) {
      auto current = d->current_device();
      ASSERT_FALSE(current.ok());
      EXPECT_NE(current.error().message.find(d->unavailable_reason()), std::string::npos) << current.error().describe();
    }
  }
}

// With a device this reaches the driver's loader, which must answer with an
// Error; without one the driver must refuse before touching anything.
TEST(DeviceDriver, GarbageCodeObjectsAreErrorsNotCrashes) {
  std::vector<std::vector<std::uint8_t>> garbage = {
      {},
      {1, 2, 3},
      bytes("\x7f"
            "ELF"),                             // ELF magic, no header
      bytes("__CLANG_OFFLOAD_BUNDLE__"),        // bundle magic, no entries
      bytes("this is not PTX and has no NUL"),  // unterminated text
  };
  // An ELF64 header whose section table lies far past the end of the buffer.
  std::vector<std::uint8_t> elf(64, 0);
  std::memcpy(elf.data(),
              "\x7f"
              "ELF",
              4);
  elf[4] = 2;
  elf[0x28] = 0x00;
  elf[0x29] = 0x10;  // e_shoff = 4096
  elf[0x3A] = 64;    // e_shentsize
  elf[0x3C] = 4;     // e_shnum
  garbage.push_back(elf);

  for (const Driver* d : all_drivers()) {
    SCOPED_TRACE(vendor_name(*d));
    for (const auto& image : garbage) {
      auto module = d->load(0, image);
      ASSERT_FALSE(module.ok()) << image.size() << "-byte image loaded";
      EXPECT_EQ(module.error().stage, "load");
      EXPECT_FALSE(module.error().message.empty());
    }
  }
}

TEST(DeviceDriver, ConcurrentFirstUseIsSafe) {
  std::vector<std::thread> threads;
  std::vector<int> counts(8, -1);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&counts, i] {
      const Driver& d = (i % 2) ? cuda_driver() : hip_driver();
      counts[i] = d.available() ? d.device_count() : 0;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(counts[i], (i % 2) ? cuda_driver().device_count() : hip_driver().device_count());
  }
}

TEST(DeviceDriver, HipArchNameFromPropertiesLayouts) {
  constexpr std::size_t kR0000 = 396, kR0600 = 1160;
  std::vector<unsigned char> props(16384, 0);
  std::strcpy(reinterpret_cast<char*>(props.data()), "AMD Instinct MI300X gfx942-ish name");
  std::strcpy(reinterpret_cast<char*>(props.data() + kR0600), "gfx942:sramecc+:xnack-");
  EXPECT_EQ(detail::hip_target_from_properties(props.data(), props.size(), kR0600), "gfx942:sramecc+:xnack-");
  // Wrong layout guess: the offset holds no target id, the scan finds the field.
  EXPECT_EQ(detail::hip_target_from_properties(props.data(), props.size(), kR0000), "gfx942:sramecc+:xnack-");

  std::vector<unsigned char> old(16384, 0);
  std::strcpy(reinterpret_cast<char*>(old.data() + kR0000), "gfx90a:sramecc+:xnack-");
  EXPECT_EQ(detail::hip_target_from_properties(old.data(), old.size(), kR0000), "gfx90a:sramecc+:xnack-");

  // A name alone (inside name[256]) or an unterminated field is not a target.
  std::vector<unsigned char> none(2048, 0);
  std::strcpy(reinterpret_cast<char*>(none.data()), "gfx1100");
  EXPECT_EQ(detail::hip_target_from_properties(none.data(), none.size(), kR0000), "");
  std::memset(none.data() + kR0000, 'a', 256);
  std::memcpy(none.data() + kR0000, "gfx90a", 6);
  EXPECT_EQ(detail::hip_target_from_properties(none.data(), none.size(), kR0000), "");
}

// ---------------------------------------------------------------- GPU (CUDA)

class DeviceCudaGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_driver().available()) GTEST_SKIP() << "no CUDA device: " << cuda_driver().unavailable_reason();
  }
  const Driver& d = cuda_driver();
};

TEST_F(DeviceCudaGpu, DeviceInfo) {
  auto info = d.device_info(0);
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_FALSE(info->name.empty());
  EXPECT_EQ(info->target.rfind("sm_", 0), 0u) << info->target;
  EXPECT_GT(info->multiprocessors, 0);
  EXPECT_GE(info->shared_mem_per_block_optin, 48u * 1024);
  std::cout << "[ info     ] device 0: " << info->name << " " << info->target << ", " << info->multiprocessors
            << " SMs, " << info->shared_mem_per_block_optin << " B shared opt-in\n";
}

TEST_F(DeviceCudaGpu, MemoryRoundTrip) {
  constexpr std::size_t kBytes = 4096;
  auto ptr = d.malloc(0, kBytes);
  ASSERT_TRUE(ptr.ok()) << ptr.error().describe();
  std::vector<std::uint8_t> host(kBytes, 0);
  ASSERT_TRUE(d.memset(0, *ptr, 0xAB, kBytes).ok());
  ASSERT_TRUE(d.copy_to_host(0, host.data(), *ptr, kBytes).ok());
  for (auto b : host) ASSERT_EQ(b, 0xAB);

  for (std::size_t i = 0; i < kBytes; ++i) host[i] = static_cast<std::uint8_t>(i * 7);
  ASSERT_TRUE(d.copy_to_device(0, *ptr, host.data(), kBytes).ok());
  std::vector<std::uint8_t> back(kBytes, 0);
  ASSERT_TRUE(d.copy_to_host(0, back.data(), *ptr, kBytes).ok());
  EXPECT_EQ(back, host);
  EXPECT_TRUE(d.synchronize(0).ok());
  EXPECT_TRUE(d.free(0, *ptr).ok());
}

// Loads, launches on the legacy default stream, checks out[i] == 2 i.
void run_double_index(const Driver& d, const Kernel& kernel, unsigned n) {
  auto out = d.malloc(0, n * sizeof(std::uint32_t));
  ASSERT_TRUE(out.ok()) << out.error().describe();
  ASSERT_TRUE(d.memset(0, *out, 0xFF, n * sizeof(std::uint32_t)).ok());
  void* out_ptr = *out;
  void* args[] = {&out_ptr, &n};
  Status launched = kernel.launch(Dim3{(n + 127) / 128}, Dim3{128}, 0, nullptr, args);
  ASSERT_TRUE(launched.ok()) << launched.error().describe();
  Status synced = d.synchronize(0);
  ASSERT_TRUE(synced.ok()) << synced.error().describe();
  std::vector<std::uint32_t> host(n, 0);
  ASSERT_TRUE(d.copy_to_host(0, host.data(), *out, n * sizeof(std::uint32_t)).ok());
  for (unsigned i = 0; i < n; ++i) ASSERT_EQ(host[i], 2 * i) << "at " << i;
  EXPECT_TRUE(d.free(0, *out).ok());
}

TEST_F(DeviceCudaGpu, PtxLoadLaunchAndAttributes) {
  auto module = d.load(0, bytes(kDoubleIndexPtx));  // no trailing NUL: the driver layer adds it
  ASSERT_TRUE(module.ok()) << module.error().describe();
  auto kernel = (*module)->function("double_index");
  ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
  run_double_index(d, **kernel, 1000);

  std::string attrs = (*kernel)->attributes_json();
  for (const char* key : {"\"registers\"", "\"shared_bytes\"", "\"local_bytes\"", "\"max_threads\""}) {
    EXPECT_NE(attrs.find(key), std::string::npos) << attrs;
  }
  EXPECT_EQ(attrs.find("error"), std::string::npos) << attrs;

  auto current = d.current_device();
  ASSERT_TRUE(current.ok()) << current.error().describe();
  EXPECT_EQ(*current, 0);
}

TEST_F(DeviceCudaGpu, MissingFunctionIsNamedInTheError) {
  auto module = d.load(0, bytes(kDoubleIndexPtx));
  ASSERT_TRUE(module.ok()) << module.error().describe();
  auto kernel = (*module)->function("no_such_kernel_xyz");
  ASSERT_FALSE(kernel.ok());
  EXPECT_EQ(kernel.error().stage, "load");
  EXPECT_NE(kernel.error().message.find("no_such_kernel_xyz"), std::string::npos) << kernel.error().describe();
}

TEST_F(DeviceCudaGpu, BadPtxGivesTheJitLog) {
  auto module = d.load(0, bytes(".version 7.0\n.target sm_50\n.address_size 64\nthis is not ptx;\n"));
  ASSERT_FALSE(module.ok());
  EXPECT_EQ(module.error().stage, "load");
  EXPECT_NE(module.error().message.find("CUDA_ERROR"), std::string::npos) << module.error().describe();
  std::cout << "[ info     ] " << module.error().describe() << "\n";
}

TEST_F(DeviceCudaGpu, KernelOutlivesItsModule) {
  std::shared_ptr<Kernel> kernel;
  {
    auto module = d.load(0, bytes(kDoubleIndexPtx));
    ASSERT_TRUE(module.ok()) << module.error().describe();
    auto k = (*module)->function("double_index");
    ASSERT_TRUE(k.ok()) << k.error().describe();
    kernel = *k;
  }
  run_double_index(d, *kernel, 257);
}

// A fresh thread has no current context: the launch must still find the module's.
TEST_F(DeviceCudaGpu, LaunchFromThreadWithoutContext) {
  auto module = d.load(0, bytes(kDoubleIndexPtx));
  ASSERT_TRUE(module.ok()) << module.error().describe();
  auto kernel = (*module)->function("double_index");
  ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
  std::thread worker([&] {
    unsigned n = 64;
    void* out_ptr = nullptr;
    auto out = d.malloc(0, n * sizeof(std::uint32_t));
    ASSERT_TRUE(out.ok()) << out.error().describe();
    out_ptr = *out;
    void* args[] = {&out_ptr, &n};
    std::thread fresh([&] {
      Status launched = (*kernel)->launch(Dim3{1}, Dim3{64}, 0, nullptr, args);
      EXPECT_TRUE(launched.ok()) << launched.error().describe();
    });
    fresh.join();
    ASSERT_TRUE(d.synchronize(0).ok());
    std::vector<std::uint32_t> host(n, 0);
    ASSERT_TRUE(d.copy_to_host(0, host.data(), *out, n * sizeof(std::uint32_t)).ok());
    for (unsigned i = 0; i < n; ++i) ASSERT_EQ(host[i], 2 * i);
    EXPECT_TRUE(d.free(0, *out).ok());
  });
  worker.join();
}

// The launch path is one driver call; report its host cost. Fewer launches
// than the driver's queue holds, so the GPU's pace doesn't enter the number;
// the bound is loose on purpose (shared hosts are noisy).
TEST_F(DeviceCudaGpu, LaunchHostOverhead) {
  auto module = d.load(0, bytes(kDoubleIndexPtx));
  ASSERT_TRUE(module.ok()) << module.error().describe();
  auto kernel = (*module)->function("double_index");
  ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
  unsigned n = 128;
  auto out = d.malloc(0, n * sizeof(std::uint32_t));
  ASSERT_TRUE(out.ok()) << out.error().describe();
  void* out_ptr = *out;
  void* args[] = {&out_ptr, &n};
  constexpr int kLaunches = 500;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*kernel)->launch(Dim3{1}, Dim3{128}, 0, nullptr, args).ok());
  ASSERT_TRUE(d.synchronize(0).ok());
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kLaunches; ++i) ASSERT_TRUE((*kernel)->launch(Dim3{1}, Dim3{128}, 0, nullptr, args).ok());
  auto host_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(d.synchronize(0).ok());
  std::cout << "[ info     ] launch host cost: " << host_ns / kLaunches << " ns per launch\n";
  EXPECT_LT(host_ns / kLaunches, 50000.0);
  EXPECT_TRUE(d.free(0, *out).ok());
}

// ---------------------------------------------------------------- GPU (HIP)

TEST(DeviceHipGpu, MemoryRoundTrip) {
  const Driver& d = hip_driver();
  if (!d.available()) GTEST_SKIP() << "no HIP device: " << d.unavailable_reason();
  auto info = d.device_info(0);
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_EQ(info->target.rfind("gfx", 0), 0u) << info->target;
  constexpr std::size_t kBytes = 4096;
  auto ptr = d.malloc(0, kBytes);
  ASSERT_TRUE(ptr.ok()) << ptr.error().describe();
  std::vector<std::uint8_t> host(kBytes, 0x5A), back(kBytes, 0);
  ASSERT_TRUE(d.copy_to_device(0, *ptr, host.data(), kBytes).ok());
  ASSERT_TRUE(d.copy_to_host(0, back.data(), *ptr, kBytes).ok());
  EXPECT_EQ(back, host);
  ASSERT_TRUE(d.memset(0, *ptr, 0, kBytes).ok());
  ASSERT_TRUE(d.synchronize(0).ok());
  EXPECT_TRUE(d.free(0, *ptr).ok());
}

}  // namespace
}  // namespace sparsejit
