#include "util/elf.h"

#include <cstring>

namespace sparsejit::elf {
namespace {

constexpr std::size_t kHeaderSize = 64;
constexpr std::size_t kSectionHeaderSize = 64;
constexpr std::size_t kSymbolSize = 24;
constexpr std::uint16_t kSectionIndexExtended = 0xffff;  // SHN_XINDEX

Error elf_error(const std::string& message) { return make_error("inspect", "ELF: " + message); }

// NUL-terminated string at `offset` inside a string table; the NUL must be in bounds.
Result<std::string_view> string_at(std::span<const std::uint8_t> table, std::uint64_t offset,
                                   const char* what) {
  if (offset >= table.size())
    return elf_error(std::string(what) + " name offset " + std::to_string(offset) + " is outside its string table");
  const auto* begin = reinterpret_cast<const char*>(table.data()) + offset;
  const void* nul = std::memchr(begin, 0, table.size() - offset);
  if (nul == nullptr) return elf_error(std::string(what) + " name is not NUL-terminated inside its string table");
  return std::string_view(begin, static_cast<const char*>(nul) - begin);
}

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

std::uint16_t load_u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t load_u32(const std::uint8_t* p) {
  return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[3]) << 24);
}
std::uint64_t load_u64(const std::uint8_t* p) { return std::uint64_t(load_u32(p)) | (std::uint64_t(load_u32(p + 4)) << 32); }

Result<File> File::parse(std::span<const std::uint8_t> bytes) {
  const std::uint64_t total = bytes.size();
  if (total < kHeaderSize) return elf_error("file is " + std::to_string(total) + " bytes, shorter than an ELF64 header");
  const std::uint8_t* b = bytes.data();
  if (!(b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F')) return elf_error("bad magic (not an ELF file)");
  if (b[4] != 2) return elf_error("not ELF64 (EI_CLASS " + std::to_string(b[4]) + ")");
  if (b[5] != 1) return elf_error("not little-endian (EI_DATA " + std::to_string(b[5]) + ")");

  File f;
  f.bytes_ = bytes;
  f.os_abi_ = b[7];
  f.abi_version_ = b[8];
  f.type_ = load_u16(b + 16);
  f.machine_ = load_u16(b + 18);
  f.flags_ = load_u32(b + 48);
  const std::uint64_t shoff = load_u64(b + 40);
  const std::uint16_t shentsize = load_u16(b + 58);
  std::uint64_t shnum = load_u16(b + 60);
  std::uint32_t shstrndx = load_u16(b + 62);
  if (shoff == 0) return f;  // no section table: legal, just nothing to inspect
  if (shentsize != kSectionHeaderSize)
    return elf_error("section header size " + std::to_string(shentsize) + ", expected 64");
  if (!in_bounds(shoff, kSectionHeaderSize, total)) return elf_error("section header table is outside the file");
  // Extended numbering: with 0xff00+ sections the real count and string
  // table index live in section header 0.
  if (shnum == 0) shnum = load_u64(b + shoff + 32);
  if (shstrndx == kSectionIndexExtended) shstrndx = load_u32(b + shoff + 40);
  if (shnum > (total - shoff) / kSectionHeaderSize) return elf_error("section header table is truncated");
  if (shstrndx >= shnum) return elf_error("section name table index " + std::to_string(shstrndx) + " out of range");

  f.sections_.resize(shnum);
  std::vector<std::uint32_t> name_offsets(shnum);
  for (std::uint64_t i = 0; i < shnum; ++i) {
    const std::uint8_t* h = b + shoff + i * kSectionHeaderSize;
    Section& s = f.sections_[i];
    s.index = static_cast<std::uint32_t>(i);
    name_offsets[i] = load_u32(h + 0);
    s.type = load_u32(h + 4);
    s.flags = load_u64(h + 8);
    const std::uint64_t offset = load_u64(h + 24);
    s.size = load_u64(h + 32);
    s.link = load_u32(h + 40);
    s.info = load_u32(h + 44);
    s.align = load_u64(h + 48);
    s.entsize = load_u64(h + 56);
    if (s.type == 0 || s.type == kSectionNobits) continue;  // SHT_NULL / NOBITS occupy no file bytes
    if (!in_bounds(offset, s.size, total))
      return elf_error("section " + std::to_string(i) + " (offset " + std::to_string(offset) + ", size " +
                       std::to_string(s.size) + ") extends past the end of the " + std::to_string(total) +
                       "-byte file");
    s.data = bytes.subspan(offset, s.size);
  }
  const auto names = f.sections_[shstrndx].data;
  for (std::uint64_t i = 0; i < shnum; ++i) {
    if (i == 0 && name_offsets[i] == 0) continue;
    auto name = string_at(names, name_offsets[i], "section");
    if (!name) return std::move(name).error();
    f.sections_[i].name = *name;
  }
  return f;
}

const Section* File::section(std::string_view name) const {
  for (const auto& s : sections_)
    if (s.name == name) return &s;
  return nullptr;
}

Result<std::vector<Note>> File::notes() const {
  std::vector<Note> out;
  for (const auto& s : sections_) {
    if (s.type != kSectionNote) continue;
    // gABI: 8-byte padding only for sections aligned to 8 (GNU properties); GPU notes use 4.
    const std::uint64_t pad = s.align == 8 ? 8 : 4;
    const auto d = s.data;
    std::uint64_t p = 0;
    while (p < d.size()) {
      if (!in_bounds(p, 12, d.size())) return elf_error("note header truncated in section " + std::string(s.name));
      const std::uint32_t namesz = load_u32(d.data() + p);
      const std::uint32_t descsz = load_u32(d.data() + p + 4);
      Note n;
      n.type = load_u32(d.data() + p + 8);
      p += 12;
      if (!in_bounds(p, namesz, d.size())) return elf_error("note name truncated in section " + std::string(s.name));
      std::string_view owner(reinterpret_cast<const char*>(d.data() + p), namesz);
      if (!owner.empty() && owner.back() == '\0') owner.remove_suffix(1);
      n.owner = owner;
      p = align_up(p + namesz, pad);
      if (!in_bounds(p, descsz, d.size())) return elf_error("note descriptor truncated in section " + std::string(s.name));
      n.desc = d.subspan(p, descsz);
      p = align_up(p + descsz, pad);
      out.push_back(n);
    }
  }
  return out;
}

Result<std::vector<Symbol>> File::symbols() const {
  const Section* table = nullptr;
  for (const auto& s : sections_)
    if (s.type == kSectionSymtab) table = &s;
  if (table == nullptr)
    for (const auto& s : sections_)
      if (s.type == kSectionDynsym) table = &s;
  if (table == nullptr) return std::vector<Symbol>{};
  if (table->entsize != kSymbolSize) return elf_error("symbol entry size " + std::to_string(table->entsize) + ", expected 24");
  if (table->link >= sections_.size()) return elf_error("symbol table names a missing string table");
  const auto strings = sections_[table->link].data;
  const auto d = table->data;
  std::vector<Symbol> out;
  out.reserve(d.size() / kSymbolSize);
  for (std::uint64_t i = 0; i + kSymbolSize <= d.size(); i += kSymbolSize) {
    const std::uint8_t* e = d.data() + i;
    Symbol sym;
    sym.index = static_cast<std::uint32_t>(i / kSymbolSize);
    const std::uint32_t name = load_u32(e);
    sym.type = e[4] & 0xf;
    sym.bind = e[4] >> 4;
    sym.other = e[5];
    sym.section = load_u16(e + 6);
    sym.value = load_u64(e + 8);
    sym.size = load_u64(e + 16);
    if (name != 0) {
      auto n = string_at(strings, name, "symbol");
      if (!n) return std::move(n).error();
      sym.name = *n;
    }
    out.push_back(sym);
  }
  return out;
}

}  // namespace sparsejit::elf
