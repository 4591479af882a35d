// The instruction of a staged GEMM epilogue (sm_90): accumulator fragments into shared memory.
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

}  // namespace nvfp4moe::kernels::ptx
