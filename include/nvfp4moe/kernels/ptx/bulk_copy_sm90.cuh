// Asynchronous bulk copies global -> shared (sm_90 TMA unit): a contiguous run of bytes, or a
// box of a 2-D tensor described by a CUtensorMap (which also applies the shared-memory
// swizzle). Both complete their bytes on an mbarrier (ptx/mbarrier_sm90.cuh); one thread
// issues each. One instruction per function.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// Copy `bytes` (multiple of 16; src and dst 16-byte aligned) from global to shared memory,
// completing them on the barrier at `bar`.
__device__ __forceinline__ void bulk_copy_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}

// Copy the box at element coordinates (x, y) (x innermost) of the 2-D tensor `map` into
// shared memory at dst, laid out and swizzled as the map says, completing the box's bytes on
// the barrier at `bar` (elements outside the tensor are written as zeros and counted too).
// `map` must live in kernel parameter space (__grid_constant__), constant or global memory.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int x, int y, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar)
      : "memory");
}

// Fetch the tensor map's descriptor ahead of its first use.
__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

}  // namespace nvfp4moe::kernels::ptx
