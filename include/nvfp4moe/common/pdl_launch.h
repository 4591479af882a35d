// Kernel launches with programmatic dependent launch (PDL): the kernel may begin while the
// previous kernel of the stream finishes, hiding the launch latency between the short
// kernels of a forward pass (a few microseconds each at decode batch sizes). The kernel must
// begin with ptx::pdl_prologue() (kernels/ptx/grid_dependency_sm90.cuh). Works in CUDA graph
// capture (programmatic edges). NVFP4MOE_PDL=0 in the environment launches without the
// attribute (same results; for A/B measurements and debugging).
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "nvfp4moe/common/cuda_check.h"

namespace nvfp4moe {

inline bool pdl_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("NVFP4MOE_PDL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

template <typename... KernelArgs, typename... Args>
void launch_pdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem_bytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  NVFP4MOE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace nvfp4moe
