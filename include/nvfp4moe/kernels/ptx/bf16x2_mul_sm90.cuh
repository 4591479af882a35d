// The packed bf16 multiply both NVFP4 dequantizations end in (the GEMM's weights,
// gemm_dequant_sm90.cuh, and the activations' block values, nvfp4_block_sm90.cuh). One
// instruction.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// Round-to-nearest bf16x2 multiply (sm_90: one HMUL2.BF16). Both callers' products are exact.
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

}  // namespace nvfp4moe::kernels::ptx
