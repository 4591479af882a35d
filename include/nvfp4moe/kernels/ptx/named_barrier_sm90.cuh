// Named CTA barriers (sm_90): a subset of the CTA's warps meets while the others go on.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// Barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32), e.g. the
// consumer warps of a warp-specialized kernel while the producer stays in its loop.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace nvfp4moe::kernels::ptx
