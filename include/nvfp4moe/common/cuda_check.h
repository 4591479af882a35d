// CUDA error handling for launchers: every runtime call and every launch is checked and
// turned into nvfp4moe::Error with the call site.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "nvfp4moe/common/error.h"

#define NVFP4MOE_CUDA_CHECK(expr)                                                              \
  do {                                                                                         \
    cudaError_t nvfp4moe_err_ = (expr);                                                        \
    if (nvfp4moe_err_ != cudaSuccess) {                                                        \
      throw ::nvfp4moe::Error(::nvfp4moe::detail::concat(#expr, " failed: ",                   \
                                                         cudaGetErrorString(nvfp4moe_err_),    \
                                                         " (", __FILE__, ":", __LINE__, ")")); \
    }                                                                                          \
  } while (0)

// After a <<<>>> launch: reports configuration errors at once (asynchronous faults surface
// at the next synchronizing call).
#define NVFP4MOE_CUDA_CHECK_LAUNCH() NVFP4MOE_CUDA_CHECK(cudaGetLastError())

namespace nvfp4moe {

// True when pointer p is aligned to `bytes` (launchers check 16-byte vector access).
inline bool is_aligned(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

}  // namespace nvfp4moe
