// Which SMs share a GPC? A thread-block cluster always runs inside one GPC, so
// SMs that ever hold blocks of the same cluster belong to the same GPC. This
// launches clusters of one block per SM (shared memory forces that) many times
// and joins the SMs of each cluster; it also asks how many clusters of each size
// fit at once. Used with bench/timeline.py --gpc-map (docs/PERF.md, ninth session).
//   nvcc -O2 -arch sm_90 -o gpc_map bench/gpc_map.cu && ./gpc_map > gpc_map.json
#include <cuda_runtime.h>

#include <cstdio>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#define CHECK(x)                                                                           \
  do {                                                                                     \
    cudaError_t e = (x);                                                                   \
    if (e != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

__global__ void where(int* out) {
  unsigned smid, cluster;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
  asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(cluster));
  if (threadIdx.x == 0) {
    out[2 * blockIdx.x] = (int)smid;
    out[2 * blockIdx.x + 1] = (int)cluster;
  }
  // Stay a while, so the clusters of one launch are spread over the GPU together.
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); while (t - t0 < 20000);
}

static int find(std::vector<int>& p, int x) { return p[x] == x ? x : p[x] = find(p, p[x]); }

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  const size_t smem = prop.sharedMemPerBlockOptin;  // one block per SM
  CHECK(cudaFuncSetAttribute(where, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  CHECK(cudaFuncSetAttribute(where, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  std::vector<int> parent(sms);
  std::iota(parent.begin(), parent.end(), 0);
  std::map<int, int> fit;
  int* d = nullptr;
  const int max_blocks = 4 * sms;
  CHECK(cudaMalloc(&d, 2 * sizeof(int) * max_blocks));
  std::vector<int> h(2 * max_blocks);
  for (int size : {2, 4, 8, 16}) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr = {};
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = size, attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
    cfg.blockDim = dim3(32);
    cfg.dynamicSmemBytes = smem;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    cfg.gridDim = dim3(size);
    if (cudaOccupancyMaxActiveClusters(&clusters, where, &cfg) != cudaSuccess) clusters = 0;
    fit[size] = clusters;
    if (clusters == 0) continue;
    const int blocks = (max_blocks / size) * size;
    cfg.gridDim = dim3(blocks);
    for (int rep = 0; rep < 20; ++rep) {
      CHECK(cudaLaunchKernelEx(&cfg, where, d));
      CHECK(cudaDeviceSynchronize());
      CHECK(cudaMemcpy(h.data(), d, 2 * sizeof(int) * blocks, cudaMemcpyDeviceToHost));
      for (int b = 0; b < blocks; b += size)
        for (int j = 1; j < size; ++j) parent[find(parent, h[2 * (b + j)])] = find(parent, h[2 * b]);
    }
  }
  std::map<int, std::vector<int>> gpcs;
  for (int s = 0; s < sms; ++s) gpcs[find(parent, s)].push_back(s);
  std::printf("{\"device\": \"%s\", \"sms\": %d, \"max_active_clusters\": {", prop.name, sms);
  bool first = true;
  for (auto& [size, n] : fit) std::printf("%s\"%d\": %d", first ? "" : ", ", size, n), first = false;
  std::printf("},\n \"gpcs\": [");
  first = true;
  for (auto& [root, members] : gpcs) {
    std::printf("%s\n  [", first ? "" : ",");
    for (size_t i = 0; i < members.size(); ++i) std::printf("%s%d", i ? ", " : "", members[i]);
    std::printf("]");
    first = false;
  }
  std::printf("\n]}\n");
  return 0;
}
