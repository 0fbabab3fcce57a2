// Shared pieces of the sparsejit CLI: every command registers itself on the
// CLI11 app and prints JSON with --json for scripts.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "config.h"
#include "util/result.h"

namespace sparsejit::cli {

struct Globals {
  bool json = false;
};

void add_archs(CLI::App& app, Globals& g);
void add_emit(CLI::App& app, Globals& g);
void add_compile(CLI::App& app, Globals& g);
void add_warm(CLI::App& app, Globals& g);
void add_cache(CLI::App& app, Globals& g);
void add_inspect(CLI::App& app, Globals& g);
void add_plan(CLI::App& app, Globals& g);

// --q-dtype, --kv-dtype and --scale-mode, parsed; an error names the flag.
struct DtypeFlags {
  DType q, kv;
  ScaleMode scale_mode;
};
Result<DtypeFlags> parse_dtype_flags(const std::string& q_dtype, const std::string& kv_dtype, const std::string& scale_mode);

// Shape flags shared by emit/compile/inspect: either --config FILE or the flags.
struct ShapeFlags {
  std::string op = "prefill";
  std::string arch;
  std::string config_file;
  int head_dim = 128, topk = 16, gqa_group = 16, chunks = 0, sub_k = 0, threads = 0;
  std::string q_dtype = "bf16", kv_dtype = "bf16", scale_mode = "none";
  std::string launch = "base";  // decode: which of the table's launches (base, small_batch, large_batch, huge_batch)
  void add_to(CLI::App& cmd);
  // The config: from the file, or the flags with the arch table's launch defaults.
  Result<KernelConfig> resolve() const;
};

// Prints an error (stderr, or a JSON object on stdout with --json) and returns the exit code.
int fail(const Globals& g, const Error& e, int code = 1);
void print_json(const nlohmann::json& j);

}  // namespace sparsejit::cli
