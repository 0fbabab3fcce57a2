// sparsejit: warm, emit, compile (and the out-of-process compile helper),
// inspect, cache administration, archs, plan.
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "compiler/helper_main.h"

int main(int argc, char** argv) {
  // The compile helper is the hot path of `warm`: dispatch before building the CLI.
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--helper") {
      std::vector<std::string> args(argv + 1, argv + argc);
      return sparsejit::compile_helper_main(args);
    }
  }
  CLI::App app{"sparsejit: runtime JIT kernels for MiniMax-M3 block-sparse attention (generate, compile, cache, launch)"};
  app.require_subcommand(1);
  app.fallthrough();  // --json is accepted after the subcommand too
  sparsejit::cli::Globals g;
  app.add_flag("--json", g.json, "Machine-readable JSON output");
  sparsejit::cli::add_archs(app, g);
  sparsejit::cli::add_emit(app, g);
  sparsejit::cli::add_compile(app, g);
  sparsejit::cli::add_warm(app, g);
  sparsejit::cli::add_cache(app, g);
  sparsejit::cli::add_inspect(app, g);
  sparsejit::cli::add_plan(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
