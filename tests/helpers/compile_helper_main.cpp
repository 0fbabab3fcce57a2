// Stand-in for `sparsejit compile --helper ...` until the CLI wires it: the
// subprocess tests spawn this with the same argv and framing.
#include <string>
#include <vector>

#include "compiler/helper_main.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return sparsejit::compile_helper_main(args);
}
