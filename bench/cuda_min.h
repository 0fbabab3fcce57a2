// The few CUDA driver API entry points the benchmark and the GPU tests' own
// streams need (events, streams, graphs, memory), dlopen'd from libcuda.so.1 so
// the binary runs on machines with any driver and builds where no CUDA is installed.
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace sjbench {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = void*;
using CUstream = void*;
using CUevent = void*;
using CUgraph = void*;
using CUgraphExec = void*;

struct Cuda {
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDriverGetVersion)(int*) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuCtxSynchronize)() = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr*, std::size_t) = nullptr;
  CUresult (*cuMemFree)(CUdeviceptr) = nullptr;
  CUresult (*cuMemGetInfo)(std::size_t*, std::size_t*) = nullptr;
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void*, std::size_t) = nullptr;
  CUresult (*cuMemcpyDtoH)(void*, CUdeviceptr, std::size_t) = nullptr;
  CUresult (*cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, std::size_t) = nullptr;
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, std::size_t, CUstream) = nullptr;
  CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, std::size_t) = nullptr;
  CUresult (*cuStreamCreate)(CUstream*, unsigned) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
  CUresult (*cuStreamDestroy)(CUstream) = nullptr;
  CUresult (*cuEventCreate)(CUevent*, unsigned) = nullptr;
  CUresult (*cuEventRecord)(CUevent, CUstream) = nullptr;
  CUresult (*cuEventSynchronize)(CUevent) = nullptr;
  CUresult (*cuEventElapsedTime)(float*, CUevent, CUevent) = nullptr;
  CUresult (*cuStreamBeginCapture)(CUstream, int) = nullptr;
  CUresult (*cuStreamEndCapture)(CUstream, CUgraph*) = nullptr;
  CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec*, CUgraph, unsigned long long) = nullptr;
  CUresult (*cuGraphLaunch)(CUgraphExec, CUstream) = nullptr;
  CUresult (*cuGraphExecDestroy)(CUgraphExec) = nullptr;
  CUresult (*cuGraphDestroy)(CUgraph) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;

  std::string error;  // empty when loaded

  bool load() {
    void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      error = std::string("dlopen libcuda.so.1: ") + dlerror();
      return false;
    }
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn) {
        error += std::string(error.empty() ? "" : ", ") + "missing " + name;
        ok = false;
      }
    };
    sym(cuInit, "cuInit");
    sym(cuDriverGetVersion, "cuDriverGetVersion");
    sym(cuDeviceGet, "cuDeviceGet");
    sym(cuDeviceGetName, "cuDeviceGetName");
    sym(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    sym(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
    sym(cuCtxSetCurrent, "cuCtxSetCurrent");
    sym(cuCtxSynchronize, "cuCtxSynchronize");
    sym(cuMemAlloc, "cuMemAlloc_v2");
    sym(cuMemFree, "cuMemFree_v2");
    sym(cuMemGetInfo, "cuMemGetInfo_v2");
    sym(cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    sym(cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    sym(cuMemcpyDtoD, "cuMemcpyDtoD_v2");
    sym(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    sym(cuMemsetD8, "cuMemsetD8_v2");
    sym(cuStreamCreate, "cuStreamCreate");
    sym(cuStreamSynchronize, "cuStreamSynchronize");
    sym(cuStreamDestroy, "cuStreamDestroy_v2");
    sym(cuEventCreate, "cuEventCreate");
    sym(cuEventRecord, "cuEventRecord");
    sym(cuEventSynchronize, "cuEventSynchronize");
    sym(cuEventElapsedTime, "cuEventElapsedTime");
    sym(cuStreamBeginCapture, "cuStreamBeginCapture_v2");
    sym(cuStreamEndCapture, "cuStreamEndCapture");
    sym(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags");
    sym(cuGraphLaunch, "cuGraphLaunch");
    sym(cuGraphExecDestroy, "cuGraphExecDestroy");
    sym(cuGraphDestroy, "cuGraphDestroy");
    sym(cuGetErrorString, "cuGetErrorString");
    return ok;
  }

  std::string text(CUresult rc) const {
    const char* s = nullptr;
    if (cuGetErrorString && cuGetErrorString(rc, &s) == 0 && s) return s;
    return "CUDA error " + std::to_string(rc);
  }
};

inline Cuda& cuda() {
  static Cuda c;
  return c;
}

// Aborts with the driver's message: the benchmark has no use for a half-set-up case.
#define SJB_CHECK(call)                                                                              \
  do {                                                                                               \
    ::sjbench::CUresult rc_ = (call);                                                                \
    if (rc_ != 0) {                                                                                  \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                      \
                   ::sjbench::cuda().text(rc_).c_str());                                             \
      std::exit(2);                                                                                  \
    }                                                                                                \
  } while (0)

}  // namespace sjbench
