// Read-only global loads for streamed operands, and the L2 prefetch of a streamed range. One
// instruction per function.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// 16 / 8 bytes of a streamed-once operand (the NVFP4 weights): non-coherent path, not kept in
// L1 (L1 stays for the activations, which every warp of a CTA re-reads).
__device__ __forceinline__ uint4 ld_stream_v4(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ uint2 ld_stream_v2(const void* p) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

// 2 bytes of a streamed-once operand (a thread's weight scale pair).
__device__ __forceinline__ uint32_t ld_stream_u16(const void* p) {
  uint16_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u16 %0, [%1];\n" : "=h"(v) : "l"(p));
  return v;
}

// 16 bytes of a re-read operand (activations): non-coherent, cached in L1.
__device__ __forceinline__ uint4 ld_cached_v4(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// 4 bytes of a re-read operand (activations): non-coherent, cached in L1.
__device__ __forceinline__ uint32_t ld_cached_u32(const void* p) {
  uint32_t v;
  asm volatile("ld.global.nc.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
  return v;
}

// 16 bytes that other CTAs of the same launch wrote (after their fence and the counter that
// tells this CTA they are done): through L2 (.cg), never a stale L1 or non-coherent line.
__device__ __forceinline__ uint4 ld_l2_v4(const void* p) {
  uint4 v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

// Ask the TMA unit to bring `bytes` (a multiple of 16, 16-byte aligned address) into L2. No
// registers, no shared memory and no completion to wait for: the decode GEMM uses it to keep
// more of the weight stream in flight than its register ring holds.
__device__ __forceinline__ void prefetch_l2_bulk(const void* p, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p), "r"(bytes) : "memory");
}

}  // namespace nvfp4moe::kernels::ptx
