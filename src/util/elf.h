// A small, bounds-checked ELF64 little-endian reader for GPU code objects
// (AMDGPU code objects and CUDA cubins). It is a view over the caller's bytes:
// nothing is copied, so the bytes must outlive the File and everything it
// returns. Every offset is checked before it is read; a malformed file gives
// an Error, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace sparsejit::elf {

inline constexpr std::uint16_t kMachineCuda = 190;    // EM_CUDA
inline constexpr std::uint16_t kMachineAmdgpu = 224;  // EM_AMDGPU

inline constexpr std::uint32_t kSectionSymtab = 2;   // SHT_SYMTAB
inline constexpr std::uint32_t kSectionNote = 7;     // SHT_NOTE
inline constexpr std::uint32_t kSectionNobits = 8;   // SHT_NOBITS
inline constexpr std::uint32_t kSectionDynsym = 11;  // SHT_DYNSYM

inline constexpr std::uint8_t kSymbolFunc = 2;  // STT_FUNC
inline constexpr std::uint8_t kBindLocal = 0;   // STB_LOCAL

struct Section {
  std::uint32_t index = 0;
  std::string_view name;
  std::uint32_t type = 0;
  std::uint64_t flags = 0;
  std::uint64_t size = 0;  // sh_size; for NOBITS the memory size, data() is empty
  std::uint32_t link = 0;
  std::uint32_t info = 0;
  std::uint64_t align = 0;
  std::uint64_t entsize = 0;
  std::span<const std::uint8_t> data;  // file bytes (empty for NOBITS)
};

struct Note {
  std::string_view owner;  // name without its trailing NUL
  std::uint32_t type = 0;
  std::span<const std::uint8_t> desc;
};

struct Symbol {
  std::uint32_t index = 0;
  std::string_view name;
  std::uint8_t type = 0;  // STT_*
  std::uint8_t bind = 0;  // STB_*
  std::uint8_t other = 0;
  std::uint16_t section = 0;  // st_shndx
  std::uint64_t value = 0;
  std::uint64_t size = 0;
};

// Little-endian loads that the caller has bounds-checked.
std::uint16_t load_u16(const std::uint8_t* p);
std::uint32_t load_u32(const std::uint8_t* p);
std::uint64_t load_u64(const std::uint8_t* p);

// True when [offset, offset + length) lies inside a buffer of `total` bytes (no overflow).
constexpr bool in_bounds(std::uint64_t offset, std::uint64_t length, std::uint64_t total) {
  return offset <= total && length <= total - offset;
}

class File {
 public:
  // Validates the header and the section table (every section's bytes and name in bounds).
  static Result<File> parse(std::span<const std::uint8_t> bytes);

  std::uint16_t machine() const { return machine_; }
  std::uint16_t type() const { return type_; }
  std::uint32_t flags() const { return flags_; }
  std::uint8_t os_abi() const { return os_abi_; }
  std::uint8_t abi_version() const { return abi_version_; }

  const std::vector<Section>& sections() const { return sections_; }
  // First section with this exact name, or nullptr.
  const Section* section(std::string_view name) const;

  // Notes of every SHT_NOTE section, in file order.
  Result<std::vector<Note>> notes() const;
  // .symtab (or .dynsym when there is no .symtab); empty when neither exists.
  Result<std::vector<Symbol>> symbols() const;

 private:
  std::span<const std::uint8_t> bytes_;
  std::uint16_t machine_ = 0, type_ = 0;
  std::uint32_t flags_ = 0;
  std::uint8_t os_abi_ = 0, abi_version_ = 0;
  std::vector<Section> sections_;
};

}  // namespace sparsejit::elf
