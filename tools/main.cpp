// The sparsejit CLI (placeholder until the commands land).
#include <cstdio>
int main() { std::puts("sparsejit"); return 0; }
