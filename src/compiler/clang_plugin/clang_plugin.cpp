// placeholder: the in-process Clang/LLVM backend lands here
