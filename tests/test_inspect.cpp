// inspect + the ELF reader: synthetic ELF files for the malformed-input
// paths (no toolchain needed), then real code objects from clang++-22 (AMD)
// and nvcc (NVIDIA) checked against what the compilers themselves report.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>

#include "inspect.h"
#include "util/elf.h"

namespace sparsejit {
namespace {

using json = nlohmann::json;
using Bytes = std::vector<std::uint8_t>;

void put_u16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = v & 0xff;
  b[at + 1] = v >> 8;
}
void put_u32(Bytes& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = (v >> (8 * i)) & 0xff;
}
void put_u64(Bytes& b, std::size_t at, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = (v >> (8 * i)) & 0xff;
}
void append_u32(Bytes& b, std::uint32_t v) {
  b.resize(b.size() + 4);
  put_u32(b, b.size() - 4, v);
}

// A minimal ELF64: header, one SHT_NOTE section with one note, .shstrtab,
// section headers last (so any truncation cuts into them).
Bytes synthetic_elf(std::uint16_t machine, const std::string& owner, std::uint32_t note_type, const Bytes& desc) {
  Bytes note;
  append_u32(note, static_cast<std::uint32_t>(owner.size() + 1));
  append_u32(note, static_cast<std::uint32_t>(desc.size()));
  append_u32(note, note_type);
  note.insert(note.end(), owner.begin(), owner.end());
  note.push_back(0);
  while (note.size() % 4) note.push_back(0);
  for (const auto byte : desc) note.push_back(byte);  // not insert(): GCC 12 -Wstringop-overread false positive
  while (note.size() % 4) note.push_back(0);
  const std::string shstrtab = std::string("\0.note\0.shstrtab\0", 17);

  Bytes b(64, 0);
  const std::size_t note_off = b.size();
  for (const auto byte : note) b.push_back(byte);  // not insert(): the same GCC 12 false positive
  const std::size_t str_off = b.size();
  b.insert(b.end(), shstrtab.begin(), shstrtab.end());
  while (b.size() % 8) b.push_back(0);
  const std::size_t shoff = b.size();
  b.resize(shoff + 3 * 64, 0);
  auto section = [&](int i, std::uint32_t name, std::uint32_t type, std::size_t off, std::size_t size) {
    const std::size_t h = shoff + i * 64;
    put_u32(b, h + 0, name);
    put_u32(b, h + 4, type);
    put_u64(b, h + 24, off);
    put_u64(b, h + 32, size);
    put_u64(b, h + 48, 4);
  };
  section(1, 1, elf::kSectionNote, note_off, note.size());
  section(2, 7, 3 /*SHT_STRTAB*/, str_off, shstrtab.size());

  b[0] = 0x7f, b[1] = 'E', b[2] = 'L', b[3] = 'F', b[4] = 2, b[5] = 1, b[6] = 1;
  put_u16(b, 16, 3);  // ET_DYN
  put_u16(b, 18, machine);
  put_u32(b, 20, 1);
  put_u64(b, 40, shoff);
  put_u32(b, 48, 0x54c);  // gfx942, xnack any, sramecc any
  put_u16(b, 52, 64);
  put_u16(b, 58, 64);
  put_u16(b, 60, 3);
  put_u16(b, 62, 2);
  return b;
}

json sample_metadata() {
  return {{"amdhsa.version", {1, 2}},
          {"amdhsa.target", "amdgcn-amd-amdhsa--gfx942"},
          {"amdhsa.kernels",
           {{{".name", "k"},
             {".symbol", "k.kd"},
             {".vgpr_count", 40},
             {".agpr_count", 8},
             {".sgpr_count", 20},
             {".group_segment_fixed_size", 4096},
             {".private_segment_fixed_size", 16},
             {".wavefront_size", 64},
             {".vgpr_spill_count", 3},
             {".sgpr_spill_count", 1},
             {".max_flat_workgroup_size", 256}}}}};
}

Bytes synthetic_amdgpu(const json& metadata) {
  return synthetic_elf(elf::kMachineAmdgpu, "AMDGPU", 32, json::to_msgpack(metadata));
}

TEST(ElfReader, RejectsGarbageAndTruncatedInput) {
  EXPECT_FALSE(elf::File::parse({}).ok());
  const std::string garbage = "this is not an ELF file at all, but it is long enough to hold a header.";
  const Bytes g(garbage.begin(), garbage.end());
  auto r = elf::File::parse(g);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("magic"), std::string::npos) << r.error().describe();

  const Bytes good = synthetic_amdgpu(sample_metadata());
  ASSERT_TRUE(elf::File::parse(good).ok());
  // Section headers sit at the end, so every proper prefix must be rejected.
  for (std::size_t n = 0; n < good.size(); ++n) {
    const Bytes prefix(good.begin(), good.begin() + n);
    EXPECT_FALSE(elf::File::parse(prefix).ok()) << "prefix of " << n << " bytes";
    EXPECT_FALSE(inspect_code_object(prefix, "", false).ok()) << "prefix of " << n << " bytes";
  }

  Bytes bad_class = good;
  bad_class[4] = 1;  // ELF32
  EXPECT_FALSE(elf::File::parse(bad_class).ok());
  Bytes huge_section = good;
  put_u64(huge_section, elf::load_u64(good.data() + 40) + 64 + 32, ~0ull - 8);  // note sh_size: overflow bait
  EXPECT_FALSE(elf::File::parse(huge_section).ok());
  Bytes bad_name = good;
  put_u32(bad_name, elf::load_u64(good.data() + 40) + 64, 0xfffffff0u);  // sh_name past .shstrtab
  EXPECT_FALSE(elf::File::parse(bad_name).ok());
}

TEST(ElfReader, SurvivesRandomCorruption) {
  const Bytes good = synthetic_amdgpu(sample_metadata());
  std::mt19937 rng(1234);
  for (int round = 0; round < 3000; ++round) {
    Bytes b = good;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
    (void)inspect_code_object(b, "", false);  // must return, not crash or read out of bounds
  }
}

TEST(ElfReader, NotesAndSections) {
  // elf::File is a view: the bytes must outlive it (a temporary here was a use-after-free under ASan).
  const auto bytes = synthetic_elf(elf::kMachineAmdgpu, "Owner", 7, {1, 2, 3});
  auto f = elf::File::parse(bytes);
  ASSERT_TRUE(f.ok()) << f.error().describe();
  EXPECT_EQ(f->machine(), elf::kMachineAmdgpu);
  EXPECT_EQ(f->flags(), 0x54cu);
  ASSERT_NE(f->section(".note"), nullptr);
  EXPECT_EQ(f->section(".missing"), nullptr);
  auto notes = f->notes();
  ASSERT_TRUE(notes.ok());
  ASSERT_EQ(notes->size(), 1u);
  EXPECT_EQ((*notes)[0].owner, "Owner");
  EXPECT_EQ((*notes)[0].type, 7u);
  EXPECT_EQ((*notes)[0].desc.size(), 3u);
}

TEST(Inspect, SyntheticAmdgpuMetadata) {
  auto r = inspect_code_object(synthetic_amdgpu(sample_metadata()), "", false);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->vendor, "amd");
  EXPECT_EQ(r->target, "gfx942");
  ASSERT_EQ(r->kernels.size(), 1u);
  const auto& k = r->kernels[0];
  EXPECT_EQ(k.kernel, "k");
  EXPECT_EQ(k.vgprs, 40);
  EXPECT_EQ(k.agprs, 8);
  EXPECT_EQ(k.sgprs, 20);
  EXPECT_EQ(k.shared_bytes, 4096);
  EXPECT_EQ(k.scratch_bytes, 16);
  EXPECT_EQ(k.wavefront_size, 64);
  EXPECT_EQ(k.vgpr_spills, 3);
  EXPECT_EQ(k.sgpr_spills, 1);
  EXPECT_EQ(k.max_flat_workgroup_size, 256);
  EXPECT_EQ(k.registers, -1);
  const json j = r->to_json();
  EXPECT_EQ(j["kernels"][0]["vgprs"], 40);
  EXPECT_TRUE(j["kernels"][0]["registers"].is_null());

  auto wrong = inspect_code_object(synthetic_amdgpu(sample_metadata()), "gfx950", false);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("gfx942"), std::string::npos);

  // Metadata that is not MessagePack, or lacks the kernel list, is an Error.
  const Bytes junk{0xc1, 0xc1, 0xc1};
  EXPECT_FALSE(inspect_code_object(synthetic_elf(elf::kMachineAmdgpu, "AMDGPU", 32, junk), "", false).ok());
  json no_kernels = sample_metadata();
  no_kernels.erase("amdhsa.kernels");
  EXPECT_FALSE(inspect_code_object(synthetic_amdgpu(no_kernels), "", false).ok());
  // A truncated MessagePack map.
  Bytes packed = json::to_msgpack(sample_metadata());
  packed.resize(packed.size() / 2);
  EXPECT_FALSE(inspect_code_object(synthetic_elf(elf::kMachineAmdgpu, "AMDGPU", 32, packed), "", false).ok());
  // No metadata note at all.
  EXPECT_FALSE(inspect_code_object(synthetic_elf(elf::kMachineAmdgpu, "Other", 32, {}), "", false).ok());
  // Another machine.
  EXPECT_FALSE(inspect_code_object(synthetic_elf(62 /*x86-64*/, "AMDGPU", 32, {}), "", false).ok());
}

// ---- real toolchains ----

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "sparsejit-test-inspect-XXXXXX").string();
    if (::mkdtemp(t.data()) != nullptr) path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool have_command(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const KernelResources* find_kernel(const Inspection& in, const std::string& name) {
  for (const auto& k : in.kernels)
    if (k.kernel == name) return &k;
  return nullptr;
}

const char* kHipKernel = R"(
extern "C" __attribute__((global)) void lds_kernel(float* out, const float* in) {
  __attribute__((shared)) float s[256];
  unsigned t = __builtin_amdgcn_workitem_id_x();
  s[t] = in[t] * 2.0f;
  __builtin_amdgcn_s_barrier();
  out[t] = s[255 - t];
}
)";

void check_amd(const std::string& arch, bool bundled) {
  if (!have_command("clang++-22")) GTEST_SKIP() << "clang++-22 not found on PATH";
  // clang bundles the code object with clang-offload-bundler (package clang-tools-22).
  if (bundled && !have_command("clang-offload-bundler") && !std::filesystem::exists("/usr/lib/llvm-22/bin/clang-offload-bundler"))
    GTEST_SKIP() << "clang-offload-bundler not found (clang-tools-22)";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  write_text(dir.path() + "/k.hip", kHipKernel);
  // Without --no-gpu-bundle-output clang wraps the code object in an offload bundle.
  const std::string cmd = "clang++-22 -x hip --cuda-device-only --offload-arch=" + arch +
                          (bundled ? "" : " --no-gpu-bundle-output") + " -nogpulib -nogpuinc -O3 -o " +
                          dir.path() + "/out.co " + dir.path() + "/k.hip 2>" + dir.path() + "/log.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_text(dir.path() + "/log.txt");

  auto r = inspect_code_object(read_bytes(dir.path() + "/out.co"), bundled ? arch : "", true);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->vendor, "amd");
  EXPECT_EQ(r->target.substr(0, arch.size()), arch);
  const auto* k = find_kernel(*r, "lds_kernel");
  ASSERT_NE(k, nullptr);
  EXPECT_GT(k->vgprs, 0);
  EXPECT_GT(k->sgprs, 0);
  EXPECT_EQ(k->shared_bytes, 1024);
  EXPECT_EQ(k->scratch_bytes, 0);
  EXPECT_EQ(k->wavefront_size, 64);
  EXPECT_EQ(k->vgpr_spills, 0);
  EXPECT_GT(k->max_flat_workgroup_size, 0);
  if (r->disassembler.rfind("none", 0) == 0) {
    EXPECT_TRUE(r->disassembly.empty());
  } else {
    EXPECT_NE(r->disassembler.find("--mcpu=" + arch), std::string::npos) << r->disassembler;
    EXPECT_NE(r->disassembly.find("s_endpgm"), std::string::npos) << r->disassembly;
    EXPECT_NE(r->disassembly.find("ds_write"), std::string::npos) << r->disassembly;
  }
}

TEST(Inspect, AmdGfx942FromOffloadBundle) { check_amd("gfx942", true); }
TEST(Inspect, AmdGfx950CodeObject) { check_amd("gfx950", false); }

const char* kCudaKernels = R"(
extern "C" __global__ void shared_kernel(float* out, const float* in) {
  __shared__ float s[128];
  s[threadIdx.x] = in[threadIdx.x] * 2.0f;
  __syncthreads();
  out[threadIdx.x] = s[127 - threadIdx.x];
}
// Register-hungry: with -maxrregcount=40 ptxas must spill to local memory.
extern "C" __global__ void hungry(float* out, const float* in, int n) {
  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = in[threadIdx.x + i * 32];
  for (int k = 0; k < n; ++k) {
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = acc[i] * acc[(i + 1) & 63] + acc[(i * 7) & 63];
  }
  float s = 0;
#pragma unroll
  for (int i = 0; i < 64; ++i) s += acc[i];
  out[threadIdx.x] = s;
}
__device__ __noinline__ float callee(const float* p, int n) {
  float loc[16];
  for (int i = 0; i < 16; ++i) loc[i] = p[i * n];
  return loc[n & 15];
}
extern "C" __global__ void __launch_bounds__(256) caller(float* out, const float* in, int n) { out[threadIdx.x] = callee(in, n); }
)";

struct PtxasReport {
  int registers = -1;
  long long stack = 0, smem = 0;
};

// `ptxas -v` lines per entry function: "Function properties for NAME",
// "N bytes stack frame", "Used N registers, ..., N bytes smem, N bytes cumulative stack size".
std::map<std::string, PtxasReport> parse_ptxas(const std::string& log) {
  std::map<std::string, PtxasReport> out;
  std::string current;
  std::istringstream in(log);
  std::string line;
  const std::regex props(R"(Function properties for (\S+))"), frame(R"((\d+) bytes stack frame)"),
      used(R"(Used (\d+) registers)"), smem(R"((\d+) bytes smem)"), cumulative(R"((\d+) bytes cumulative stack size)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, props)) current = m[1];
    if (current.empty()) continue;
    if (std::regex_search(line, m, frame)) out[current].stack = std::max(out[current].stack, std::stoll(m[1]));
    if (std::regex_search(line, m, used)) out[current].registers = std::stoi(m[1]);
    if (std::regex_search(line, m, smem)) out[current].smem = std::stoll(m[1]);
    if (std::regex_search(line, m, cumulative)) out[current].stack = std::max(out[current].stack, std::stoll(m[1]));
  }
  return out;
}

TEST(Inspect, NvidiaCubinMatchesPtxas) {
  const std::string nvcc = "/usr/local/cuda/bin/nvcc";
  if (::access(nvcc.c_str(), X_OK) != 0) GTEST_SKIP() << nvcc << " not found";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  write_text(dir.path() + "/k.cu", kCudaKernels);
  const std::string cmd = nvcc + " -cubin -arch=sm_90 -maxrregcount=40 -Xptxas -v -o " + dir.path() + "/k.cubin " +
                          dir.path() + "/k.cu >" + dir.path() + "/log.txt 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_text(dir.path() + "/log.txt");
  const auto ptxas = parse_ptxas(read_text(dir.path() + "/log.txt"));
  ASSERT_EQ(ptxas.count("shared_kernel"), 1u) << read_text(dir.path() + "/log.txt");

  auto r = inspect_code_object(read_bytes(dir.path() + "/k.cubin"), "sm_90", true);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->vendor, "nvidia");
  EXPECT_EQ(r->target, "sm_90");
  ASSERT_EQ(r->kernels.size(), 3u);  // callee is a device function, not a kernel

  const auto* s = find_kernel(*r, "shared_kernel");
  ASSERT_NE(s, nullptr);
  EXPECT_GT(s->registers, 0);
  EXPECT_EQ(s->shared_bytes, 512);
  EXPECT_EQ(s->scratch_bytes, 0);
  EXPECT_EQ(s->wavefront_size, 32);
  EXPECT_EQ(s->max_flat_workgroup_size, 1024);
  EXPECT_EQ(find_kernel(*r, "caller")->max_flat_workgroup_size, 256);
  EXPECT_GT(find_kernel(*r, "hungry")->scratch_bytes, 0);
  EXPECT_GT(find_kernel(*r, "caller")->scratch_bytes, 0);

  for (const auto& k : r->kernels) {
    ASSERT_EQ(ptxas.count(k.kernel), 1u) << k.kernel;
    const auto& p = ptxas.at(k.kernel);
    EXPECT_EQ(k.registers, p.registers) << k.kernel;
    EXPECT_EQ(k.shared_bytes, p.smem) << k.kernel;
    EXPECT_EQ(k.scratch_bytes, p.stack) << k.kernel;
  }

  if (r->disassembler.rfind("none", 0) == 0) {
    EXPECT_TRUE(r->disassembly.empty());
    EXPECT_NE(r->disassembler.find("cuobjdump"), std::string::npos) << r->disassembler;
  } else {
    EXPECT_NE(r->disassembly.find("shared_kernel"), std::string::npos);
  }

  auto wrong = inspect_code_object(read_bytes(dir.path() + "/k.cubin"), "sm_80", false);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("sm_90"), std::string::npos) << wrong.error().describe();
}

}  // namespace
}  // namespace sparsejit
