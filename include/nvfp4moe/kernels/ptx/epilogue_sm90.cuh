// The instructions of a staged GEMM epilogue (sm_90): accumulator fragments into shared memory
// by stmatrix, a barrier for the threads that share the staging buffer, 16-byte global stores.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// Four 8x8 b16 matrices, transposed on the way out. Register i holds, in the mma C-fragment
// layout, row lane / 4 and columns 2 (lane % 4) + {0 (low half), 1 (high half)} of matrix i;
// lanes 8i..8i+7 give the shared addresses of matrix i's memory rows 0..7, and memory row j
// receives fragment column j (16 contiguous bytes: rows 0..7 of that column).
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t row_addr, uint32_t r0, uint32_t r1, uint32_t r2,
                                                  uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(row_addr), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32):
// warpgroups synchronize among themselves while the other warps of the CTA go on.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void st_global_v4(void* p, uint4 v) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

}  // namespace nvfp4moe::kernels::ptx
