// The out-of-process compile helper: `sparsejit compile --helper ...` reads a
// kernel source on stdin, compiles it in-process with one backend, and writes
// one framed record to stdout. The parent side lives in subprocess.cpp.
//
// argv (after the program name):
//   compile --helper --backend <name> --target <id> [--option=<opt>]... [--name <hint>]
//   compile --helper --backend <name> --probe-version
// (`--option <opt>` and `--backend=<name>`, `--target=<id>`, `--name=<hint>` are accepted too.)
//
// stdout framing (little-endian), so truncated or foreign output is detected:
//   "SJCO" | kind:u8 | payload_len:u64 | log_len:u64 | payload | log | "OCJS"
//   kind 'O': payload = code object bytes, log = compiler warnings     (exit 0)
//   kind 'V': payload = version() text, log empty                      (exit 0)
//   kind 'E': payload = message '\0' dumped-source path, log = compiler log (exit 1)
// Exit 2 = usage error (message on stderr, no frame). Anything else on stdout,
// a missing trailer, or trailing bytes is "no valid framing".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace sparsejit {

struct HelperArgs {
  std::string backend;
  std::string target;
  std::vector<std::string> options;
  std::string name_hint;
  bool probe_version = false;
};

// Compiles stdin with `backend` in this process and writes the frame to stdout.
// Returns the process exit code (0 ok, 1 compile error, 2 usage).
int run_compile_helper(const std::string& backend, const std::string& target,
                       const std::vector<std::string>& options, bool probe_version,
                       const std::string& name_hint = "");

// Parses the argv above (starting at "compile" or at "--helper"); nullopt + message on misuse.
std::optional<HelperArgs> parse_helper_args(const std::vector<std::string>& args, std::string* error);
// parse_helper_args + run_compile_helper; for a CLI that wants to forward argv as is.
int compile_helper_main(const std::vector<std::string>& args);

// True inside the helper process: backends then probe and compile in-process
// instead of spawning yet another helper.
bool running_as_helper();

// ---- framing (shared by the helper and the parent) ----
enum class FrameKind : char { object = 'O', version = 'V', error = 'E' };
struct Frame {
  FrameKind kind = FrameKind::error;
  std::string payload;
  std::string log;
};
std::string encode_frame(const Frame& frame);
// nullopt when `bytes` is not exactly one well-formed frame.
std::optional<Frame> decode_frame(std::string_view bytes);

// Runs `<helper> compile --helper --backend <backend> --probe-version` and
// returns the version text it printed (used by backends that must not probe in-process).
Result<std::string> probe_version_in_helper(const std::string& backend);

}  // namespace sparsejit
