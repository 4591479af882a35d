// wgmma ordering instructions and the shared-memory matrix descriptor. One instruction per
// function.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// Order prior register writes (A fragments, accumulators) before the next wgmma reads them.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// Close the group of wgmma issued since the last commit.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Wait until at most N committed wgmma groups are pending (their registers are then free).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keep the compiler from moving accumulator reads/writes across a wgmma boundary.
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fence_operand(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// Descriptor of a K-major operand tile in shared memory with the 128-byte swizzle: rows of
// 128 bytes (64 bf16 along K), 8-row groups 1024 bytes apart (stride byte offset), the tile
// base 1024-byte aligned. Advancing `addr` by 32 bytes selects the next 16-wide K slice (the
// hardware applies the XOR swizzle to the final address bits).
//   bits  0-13: addr >> 4   bits 16-29: leading byte offset >> 4 (unused here: 1)
//   bits 32-45: stride byte offset >> 4 (1024)   bits 62-63: layout (1 = 128-byte swizzle)
__device__ __forceinline__ uint64_t smem_desc_k128b(uint32_t addr) {
  uint64_t d = 0;
  d |= uint64_t((addr >> 4) & 0x3fff);
  d |= uint64_t(1) << 16;
  d |= uint64_t(1024 >> 4) << 32;
  d |= uint64_t(1) << 62;
  return d;
}

}  // namespace nvfp4moe::kernels::ptx
