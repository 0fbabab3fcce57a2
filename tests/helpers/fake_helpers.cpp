// A misbehaving compile helper for fault injection. SJ_FAKE_HELPER_MODE:
//   crash   abort() like HIPRTC does on an unknown target
//   hang    never answer (the parent's timeout must kill it)
//   garbage random bytes on stdout, exit 0
//   ok      a valid frame holding "\x7f" "ELF" + the stdin bytes
//   flood   4 MiB on stderr without reading stdin, then a valid frame (no pipe deadlock)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "compiler/helper_main.h"

namespace {

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) std::exit(3);
    off += static_cast<size_t>(n);
  }
}

std::string read_stdin() {
  std::string s;
  char buf[65536];
  for (ssize_t n; (n = ::read(0, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
  return s;
}

}  // namespace

int main() {
  const char* m = std::getenv("SJ_FAKE_HELPER_MODE");
  std::string mode = m ? m : "";
  if (mode == "crash") {
    std::fprintf(stderr, "munmap_chunk(): invalid pointer\n");
    std::abort();
  }
  if (mode == "hang") {
    for (;;) ::pause();
  }
  if (mode == "garbage") {
    std::mt19937 rng(42);
    std::string junk(4096, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    write_all(1, junk);
    return 0;
  }
  sparsejit::Frame f;
  f.kind = sparsejit::FrameKind::object;
  if (mode == "flood") {
    write_all(2, std::string(4 << 20, 'w'));
    f.payload = "\x7f" "ELF";
  } else if (mode == "ok") {
    f.payload = "\x7f" "ELF" + read_stdin();
    f.log = "fake warning";
  } else {
    std::fprintf(stderr, "fake helper: unknown SJ_FAKE_HELPER_MODE '%s'\n", mode.c_str());
    return 2;
  }
  write_all(1, sparsejit::encode_frame(f));
  return 0;
}
