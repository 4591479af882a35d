// Warp-level tensor-core MMA (mma.sync, no warpgroup sync, no async proxy): the decode GEMM's
// multiply. One instruction per function.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// d += A x B, m16n8k16, bf16 inputs, fp32 accumulators. Fragments (g = lane/4, q = lane%4):
//   a[0]: (row g,   k 2q..2q+1)   a[1]: (row g+8, k 2q..2q+1)
//   a[2]: (row g,   k 2q+8..9)    a[3]: (row g+8, k 2q+8..9)      (low half = lower k)
//   b[0]: (k 2q..2q+1, col g)     b[1]: (k 2q+8..9, col g)
//   d[0..1]: (row g, cols 2q, 2q+1)   d[2..3]: (row g+8, cols 2q, 2q+1)
// Per warp this is exactly one warp's slice of wgmma m64nNk16's A fragment, so the prepared
// weight layout (gemm_layout_sm90.cuh) feeds it unchanged.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                  uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace nvfp4moe::kernels::ptx
