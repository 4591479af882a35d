// Asynchronous bulk copies (sm_90 TMA unit). Global -> shared: a contiguous run of bytes, or a
// box of a 2-D tensor described by a CUtensorMap (which also applies the shared-memory
// swizzle); both complete their bytes on an mbarrier (ptx/mbarrier_sm90.cuh). Shared -> global:
// a contiguous run, tracked per issuing thread in bulk async-groups (commit, then wait until the
// group's source has been read or its writes are done). One thread issues each copy. One
// instruction per function.
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

// Copy `bytes` (multiple of 16; src and dst 16-byte aligned) from shared memory at `src` to
// global memory, in this thread's current bulk async-group. The thread's earlier generic-proxy
// writes of `src` must be fenced first (fence_proxy_async_smem), and other threads' writes
// fenced by them and ordered by a barrier.
__device__ __forceinline__ void bulk_copy_s2g(void* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(src), "r"(bytes)
               : "memory");
}

// Close this thread's current bulk async-group (the shared -> global copies issued since the
// last commit).
__device__ __forceinline__ void bulk_commit_group() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed bulk groups still read their shared-memory
// source (their global writes may still be in flight): the source may then be overwritten.
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

// Wait until at most N of this thread's committed bulk groups are incomplete (writes done).
template <int N>
__device__ __forceinline__ void bulk_wait_group() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace nvfp4moe::kernels::ptx
