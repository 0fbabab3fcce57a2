#include "inspect.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string_view>

#include "util/elf.h"
#include "util/fs.h"

extern char** environ;

namespace sparsejit {
namespace {

using json = nlohmann::json;

Error inspect_error(const std::string& message, const std::string& target = {}) {
  Error e = make_error("inspect", message);
  e.target = target;
  return e;
}

// "gfx942:sramecc+:xnack-" -> "gfx942"; "sm_90a" -> "sm_90a".
std::string processor_of(const std::string& target_id) { return target_id.substr(0, target_id.find(':')); }

// ---------------------------------------------------------------- subprocess

// A temp file holding the code object for an external disassembler; removed on scope exit.
class TempFile {
 public:
  static Result<TempFile> create(std::span<const std::uint8_t> bytes, const std::string& suffix) {
    const char* dir = std::getenv("TMPDIR");
    std::string path = std::string(dir && *dir ? dir : "/tmp") + "/sparsejit-inspect-XXXXXX" + suffix;
    fs::UniqueFd fd(mkstemps(path.data(), static_cast<int>(suffix.size())));
    if (!fd.valid()) return inspect_error("cannot create a temp file " + path + ": " + fs::errno_text(errno));
    TempFile t;
    t.path_ = path;
    if (auto st = fs::write_all(fd.get(), bytes.data(), bytes.size()); !st.ok()) return inspect_error(st.message);
    return t;
  }
  TempFile() = default;
  TempFile(TempFile&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool is_executable_file(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// A disassembler candidate: executable name and the arguments before the file.
struct Tool {
  std::string name;
  std::vector<std::string> args;
};

// The first of `tools` found on PATH or in `extra_dirs` (earlier tools win), as a full path.
std::optional<std::pair<std::string, const Tool*>> find_tool(const std::vector<Tool>& tools,
                                                             const std::vector<std::string>& extra_dirs) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest(path);
    while (!rest.empty()) {
      const auto colon = rest.find(':');
      const auto dir = rest.substr(0, colon);
      if (!dir.empty()) dirs.emplace_back(dir);
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  dirs.insert(dirs.end(), extra_dirs.begin(), extra_dirs.end());
  for (const auto& tool : tools)
    for (const auto& dir : dirs)
      if (is_executable_file(dir + "/" + tool.name)) return std::make_pair(dir + "/" + tool.name, &tool);
  return std::nullopt;
}

// Runs `argv` (no shell, so no quoting issues with paths) and returns its
// stdout; stderr goes to a temp file that only an error reads.
Result<std::string> run_capture(const std::vector<std::string>& argv) {
  auto err_file = TempFile::create({}, ".stderr");
  if (!err_file) return std::move(err_file).error();
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return inspect_error("pipe: " + fs::errno_text(errno));
  fs::UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_file->path().c_str(), O_WRONLY | O_TRUNC, 0);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();  // so the read below sees EOF when the child exits
  if (rc != 0) return inspect_error("cannot run " + argv[0] + ": " + fs::errno_text(rc));

  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string err;
    (void)fs::read_file(err_file->path(), err, false);
    Error e = inspect_error(argv[0] + " failed (" +
                            (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                               : "signal " + std::to_string(WTERMSIG(status))) +
                            ")");
    e.log = err;
    return e;
  }
  return out;
}

// Disassembles with the first tool found; otherwise `disassembler` says why.
void disassemble(std::span<const std::uint8_t> code, const std::vector<Tool>& tools,
                 const std::vector<std::string>& extra_dirs, const std::string& suffix, Inspection& out) {
  const auto found = find_tool(tools, extra_dirs);
  if (!found) {
    std::string names;
    for (const auto& t : tools) names += (names.empty() ? "" : ", ") + t.name;
    out.disassembler = "none: " + names + " not found on PATH";
    for (const auto& d : extra_dirs) out.disassembler += " or in " + d;
    return;
  }
  auto file = TempFile::create(code, suffix);
  if (!file) {
    out.disassembler = "none: " + file.error().message;
    return;
  }
  std::vector<std::string> argv{found->first};
  argv.insert(argv.end(), found->second->args.begin(), found->second->args.end());
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
  argv.push_back(file->path());
  auto text = run_capture(argv);
  if (!text) {
    out.disassembler = "none: " + command + " failed: " + text.error().message + "\n" + text.error().log;
    return;
  }
  out.disassembler = command;
  out.disassembly = std::move(*text);
}

// ---------------------------------------------------------------- AMD

constexpr std::string_view kBundleMagic = "__CLANG_OFFLOAD_BUNDLE__";
constexpr std::string_view kCompressedBundleMagic = "CCOB";
constexpr std::uint32_t kNoteAmdgpuMetadata = 32;  // NT_AMDGPU_METADATA
constexpr std::uint32_t kAmdgpuMachMask = 0xff;    // EF_AMDGPU_MACH

// EF_AMDGPU_MACH values of the processors sparsejit builds for; only used
// when a code object has no amdhsa.target in its metadata.
constexpr std::pair<std::uint32_t, std::string_view> kAmdgpuMachs[] = {
    {0x30, "gfx908"}, {0x3f, "gfx90a"}, {0x40, "gfx940"}, {0x4b, "gfx941"}, {0x4c, "gfx942"}, {0x4f, "gfx950"},
};

bool starts_with(std::span<const std::uint8_t> bytes, std::string_view magic) {
  return bytes.size() >= magic.size() && std::memcmp(bytes.data(), magic.data(), magic.size()) == 0;
}

// The AMDGPU code object inside a clang offload bundle (what `clang -x hip
// --cuda-device-only` writes by default): header, entry count, then per entry
// {u64 offset, u64 size, u64 triple length, triple}.
Result<std::span<const std::uint8_t>> unbundle(std::span<const std::uint8_t> bytes, const std::string& target) {
  const std::uint64_t total = bytes.size();
  std::uint64_t p = kBundleMagic.size();
  if (!elf::in_bounds(p, 8, total)) return inspect_error("offload bundle: truncated header", target);
  const std::uint64_t count = elf::load_u64(bytes.data() + p);
  p += 8;
  struct Entry {
    std::string triple;
    std::span<const std::uint8_t> code;
  };
  std::vector<Entry> amdgcn;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (!elf::in_bounds(p, 24, total)) return inspect_error("offload bundle: truncated entry table", target);
    const std::uint64_t offset = elf::load_u64(bytes.data() + p);
    const std::uint64_t size = elf::load_u64(bytes.data() + p + 8);
    const std::uint64_t triple_size = elf::load_u64(bytes.data() + p + 16);
    p += 24;
    if (!elf::in_bounds(p, triple_size, total)) return inspect_error("offload bundle: truncated entry name", target);
    std::string triple(reinterpret_cast<const char*>(bytes.data() + p), triple_size);
    p += triple_size;
    if (!elf::in_bounds(offset, size, total))
      return inspect_error("offload bundle: entry " + triple + " lies outside the file", target);
    if (triple.find("amdgcn") != std::string::npos && size > 0) amdgcn.push_back({triple, bytes.subspan(offset, size)});
  }
  if (amdgcn.empty()) return inspect_error("offload bundle holds no amdgcn code object", target);
  if (!target.empty()) {
    // Triples end in "--<target id>": "hipv4-amdgcn-amd-amdhsa--gfx942".
    for (const auto& e : amdgcn) {
      const auto dashes = e.triple.rfind("--");
      if (dashes != std::string::npos && processor_of(e.triple.substr(dashes + 2)) == processor_of(target)) return e.code;
    }
  }
  if (amdgcn.size() == 1) return amdgcn.front().code;
  std::string names;
  for (const auto& e : amdgcn) names += " " + e.triple;
  return inspect_error("offload bundle holds several code objects (" + names.substr(1) +
                           "); name the target to pick one",
                       target);
}

long long field(const json& kernel, const char* key) {
  const auto it = kernel.find(key);
  if (it == kernel.end() || !it->is_number_integer()) return -1;
  return it->get<long long>();
}

Result<Inspection> inspect_amdgpu(std::span<const std::uint8_t> code, const elf::File& file,
                                  const std::string& target, bool with_disassembly) {
  auto notes = file.notes();
  if (!notes) return std::move(notes).error();
  const elf::Note* metadata_note = nullptr;
  for (const auto& n : *notes)
    if (n.owner == "AMDGPU" && n.type == kNoteAmdgpuMetadata) metadata_note = &n;
  if (metadata_note == nullptr)
    return inspect_error("AMDGPU code object has no NT_AMDGPU_METADATA note (code object v2 is not supported)", target);

  json metadata;
  try {
    // Not strict: the note may carry padding after the map.
    metadata = json::from_msgpack(metadata_note->desc.begin(), metadata_note->desc.end(), /*strict=*/false,
                                  /*allow_exceptions=*/false);
  } catch (const json::exception& e) {
    return inspect_error(std::string("AMDGPU metadata: ") + e.what(), target);
  }
  if (metadata.is_discarded() || !metadata.is_object())
    return inspect_error("AMDGPU metadata note is not a valid MessagePack map", target);

  Inspection out;
  out.vendor = "amd";
  // The binary's own processor: amdhsa.target ("amdgcn-amd-amdhsa--gfx942:xnack-"), else e_flags.
  std::string binary_target;
  if (auto it = metadata.find("amdhsa.target"); it != metadata.end() && it->is_string()) {
    const auto s = it->get<std::string>();
    const auto dashes = s.rfind("--");
    binary_target = dashes == std::string::npos ? s : s.substr(dashes + 2);
  } else {
    for (const auto& [mach, name] : kAmdgpuMachs)
      if ((file.flags() & kAmdgpuMachMask) == mach) binary_target = name;
  }
  if (!target.empty() && !binary_target.empty() && processor_of(target) != processor_of(binary_target))
    return inspect_error("code object is built for " + binary_target + ", not " + target, target);
  out.target = target.empty() ? binary_target : target;

  const auto kernels = metadata.find("amdhsa.kernels");
  if (kernels == metadata.end() || !kernels->is_array())
    return inspect_error("AMDGPU metadata has no amdhsa.kernels list", out.target);
  for (const auto& k : *kernels) {
    if (!k.is_object()) return inspect_error("AMDGPU metadata: an amdhsa.kernels entry is not a map", out.target);
    KernelResources r;
    if (auto it = k.find(".name"); it != k.end() && it->is_string()) r.kernel = it->get<std::string>();
    r.vgprs = static_cast<int>(field(k, ".vgpr_count"));
    r.agprs = static_cast<int>(field(k, ".agpr_count"));
    r.sgprs = static_cast<int>(field(k, ".sgpr_count"));
    r.shared_bytes = field(k, ".group_segment_fixed_size");
    r.scratch_bytes = field(k, ".private_segment_fixed_size");
    r.wavefront_size = static_cast<int>(field(k, ".wavefront_size"));
    r.vgpr_spills = static_cast<int>(field(k, ".vgpr_spill_count"));
    r.sgpr_spills = static_cast<int>(field(k, ".sgpr_spill_count"));
    r.max_flat_workgroup_size = field(k, ".max_flat_workgroup_size");
    out.kernels.push_back(std::move(r));
  }

  if (with_disassembly) {
    std::vector<std::string> args{"-d"};
    if (!out.target.empty()) args.push_back("--mcpu=" + processor_of(out.target));
    disassemble(code, {{"llvm-objdump-22", args}, {"llvm-objdump", args}}, {"/usr/lib/llvm-22/bin"}, ".co", out);
  }
  return out;
}

// ---------------------------------------------------------------- NVIDIA

// .nv.info attribute records: {u8 format, u8 attribute, ...}. Format 4
// (EIFMT_SVAL) carries a u16 payload size and the payload; formats 1-3
// (no value / u8 / u16) fill the remaining 2 bytes.
constexpr std::uint8_t kFormatSized = 0x04;
// Attribute codes, each checked against `ptxas -v` on CUDA 13 sm_90 cubins.
// Keyed ones carry {u32 symbol index, u32 value} and live in the global
// .nv.info section (older toolchains put them in .nv.info.<kernel>).
constexpr std::uint8_t kAttrMaxThreads = 0x05;    // {u32 x, y, z} from __launch_bounds__
constexpr std::uint8_t kAttrFrameSize = 0x11;     // this function's stack frame
constexpr std::uint8_t kAttrMinStackSize = 0x12;  // "cumulative stack size" (frame + callees)
constexpr std::uint8_t kAttrMaxStackSize = 0x23;  // emitted with call graphs; not seen with CUDA 13
constexpr std::uint8_t kAttrRegCount = 0x2f;      // registers per thread
// sm_90+ cubins place the 1 KiB system-reserved shared window (the driver's
// "reserved shared memory per block") at the start of each kernel's
// .nv.shared section and mark it with a .nv.shared.reserved.<n> section;
// ptxas -v reports the user's bytes without it.
constexpr long long kReservedSharedWindow = 1024;
constexpr long long kMaxThreadsPerBlock = 1024;  // CUDA's per-block limit on every sm_XX
constexpr int kWarpSize = 32;

struct NvKernelAttrs {
  long long frame = -1, min_stack = -1, max_stack = -1;
};

// The SM number from e_flags: bits 8-15 in cubin ABI version 8 (CUDA 13), bits 0-7 before.
int cuda_sm_of(const elf::File& file) {
  return file.abi_version() >= 8 ? static_cast<int>((file.flags() >> 8) & 0xff) : static_cast<int>(file.flags() & 0xff);
}

// "sm_90a" / "compute_90" -> 90; -1 when it does not look like one.
int sm_number(const std::string& target) {
  const auto underscore = target.find('_');
  if (underscore == std::string::npos) return -1;
  int n = 0, digits = 0;
  for (std::size_t i = underscore + 1; i < target.size() && target[i] >= '0' && target[i] <= '9' && digits < 4; ++i, ++digits)
    n = n * 10 + (target[i] - '0');
  return digits ? n : -1;
}

Result<Inspection> inspect_cubin(std::span<const std::uint8_t> code, const elf::File& file, const std::string& target,
                                 bool with_disassembly) {
  Inspection out;
  out.vendor = "nvidia";
  const int sm = cuda_sm_of(file);
  const std::string binary_target = "sm_" + std::to_string(sm);
  if (!target.empty() && sm_number(target) != sm)
    return inspect_error("cubin is built for " + binary_target + ", not " + target, target);
  out.target = target.empty() ? binary_target : target;

  auto symbols = file.symbols();
  if (!symbols) return std::move(symbols).error();
  const auto& sections = file.sections();
  std::map<std::uint32_t, std::size_t> kernel_of_symbol;
  std::map<std::string, std::size_t, std::less<>> kernel_of_name;
  std::vector<NvKernelAttrs> attrs;
  for (const auto& s : *symbols) {
    // Entry points: global FUNC symbols alone in their .text.<name> section;
    // device functions are local ("$kernel$callee") or share the section.
    if (s.type != elf::kSymbolFunc || s.bind == elf::kBindLocal || s.section >= sections.size()) continue;
    if (sections[s.section].name != ".text." + std::string(s.name)) continue;
    KernelResources r;
    r.kernel = std::string(s.name);
    r.wavefront_size = kWarpSize;
    kernel_of_symbol[s.index] = out.kernels.size();
    kernel_of_name[r.kernel] = out.kernels.size();
    out.kernels.push_back(std::move(r));
    attrs.emplace_back();
  }

  const std::string_view info_prefix = ".nv.info.";
  for (const auto& section : sections) {
    if (section.name != ".nv.info" && !section.name.starts_with(info_prefix)) continue;
    std::optional<std::size_t> section_kernel;
    if (section.name.starts_with(info_prefix)) {
      const auto it = kernel_of_name.find(section.name.substr(info_prefix.size()));
      if (it != kernel_of_name.end()) section_kernel = it->second;
    }
    const auto d = section.data;
    std::uint64_t p = 0;
    while (p < d.size()) {
      if (!elf::in_bounds(p, 4, d.size()))
        return inspect_error("cubin: truncated attribute in " + std::string(section.name), out.target);
      const std::uint8_t format = d[p], attribute = d[p + 1];
      if (format < 1 || format > kFormatSized)
        return inspect_error("cubin: unknown attribute format " + std::to_string(format) + " in " +
                                 std::string(section.name),
                             out.target);
      std::span<const std::uint8_t> payload;
      if (format == kFormatSized) {
        const std::uint16_t size = elf::load_u16(d.data() + p + 2);
        if (!elf::in_bounds(p + 4, size, d.size()))
          return inspect_error("cubin: attribute payload past the end of " + std::string(section.name), out.target);
        payload = d.subspan(p + 4, size);
        p += 4 + size;
      } else {
        p += 4;
      }
      if (payload.empty()) continue;
      if (attribute == kAttrMaxThreads && section_kernel && payload.size() >= 12) {
        long long threads = 1;
        for (int i = 0; i < 3; ++i) threads *= std::max<std::uint32_t>(1, elf::load_u32(payload.data() + 4 * i));
        out.kernels[*section_kernel].max_flat_workgroup_size = threads;
        continue;
      }
      if (payload.size() < 8) continue;
      const auto k = kernel_of_symbol.find(elf::load_u32(payload.data()));
      if (k == kernel_of_symbol.end()) continue;  // a device function's own frame
      const long long value = elf::load_u32(payload.data() + 4);
      switch (attribute) {
        case kAttrRegCount: out.kernels[k->second].registers = static_cast<int>(value); break;
        case kAttrFrameSize: attrs[k->second].frame = value; break;
        case kAttrMinStackSize: attrs[k->second].min_stack = value; break;
        case kAttrMaxStackSize: attrs[k->second].max_stack = value; break;
        default: break;
      }
    }
  }

  bool reserved_window = false;
  for (const auto& s : sections)
    if (s.name.starts_with(".nv.shared.reserved.")) reserved_window = true;
  for (std::size_t i = 0; i < out.kernels.size(); ++i) {
    auto& r = out.kernels[i];
    // Local memory per thread: the largest of the recorded stack figures.
    r.scratch_bytes = std::max({attrs[i].frame, attrs[i].min_stack, attrs[i].max_stack});
    long long shared = 0;  // no .nv.shared.<kernel> section: no static shared memory
    if (const auto* s = file.section(".nv.shared." + r.kernel)) {
      shared = static_cast<long long>(s->size);
      if (reserved_window) shared = std::max(0LL, shared - kReservedSharedWindow);
    }
    r.shared_bytes = shared;
    if (r.max_flat_workgroup_size < 0) r.max_flat_workgroup_size = kMaxThreadsPerBlock;
  }

  if (with_disassembly) {
    disassemble(code, {{"cuobjdump", {"-sass"}}, {"nvdisasm", {}}}, {"/usr/local/cuda/bin"}, ".cubin", out);
  }
  return out;
}

}  // namespace

json Inspection::to_json() const {
  const auto known = [](long long v) -> json { return v < 0 ? json(nullptr) : json(v); };
  json ks = json::array();
  for (const auto& k : kernels) {
    ks.push_back({{"kernel", k.kernel},
                  {"vgprs", known(k.vgprs)},
                  {"agprs", known(k.agprs)},
                  {"sgprs", known(k.sgprs)},
                  {"registers", known(k.registers)},
                  {"shared_bytes", known(k.shared_bytes)},
                  {"scratch_bytes", known(k.scratch_bytes)},
                  {"wavefront_size", known(k.wavefront_size)},
                  {"vgpr_spills", known(k.vgpr_spills)},
                  {"sgpr_spills", known(k.sgpr_spills)},
                  {"max_flat_workgroup_size", known(k.max_flat_workgroup_size)}});
  }
  return json{{"vendor", vendor},
              {"target", target},
              {"kernels", std::move(ks)},
              {"disassembler", disassembler},
              {"disassembly", disassembly}};
}

Result<Inspection> inspect_code_object(const std::vector<std::uint8_t>& binary, const std::string& target,
                                       bool with_disassembly) {
  std::span<const std::uint8_t> code(binary);
  if (starts_with(code, kCompressedBundleMagic))
    return inspect_error("compressed offload bundle: unbundle it first (clang-offload-bundler -unbundle)", target);
  if (starts_with(code, kBundleMagic)) {
    auto inner = unbundle(code, target);
    if (!inner) return std::move(inner).error();
    code = *inner;
  }
  auto file = elf::File::parse(code);
  if (!file) {
    Error e = std::move(file).error();
    e.target = target;
    return e;
  }
  switch (file->machine()) {
    case elf::kMachineAmdgpu: return inspect_amdgpu(code, *file, target, with_disassembly);
    case elf::kMachineCuda: return inspect_cubin(code, *file, target, with_disassembly);
    default:
      return inspect_error("ELF e_machine " + std::to_string(file->machine()) +
                               " is neither AMDGPU (224) nor CUDA (190)",
                           target);
  }
}

}  // namespace sparsejit
