// Register-level dequantization of the prepared weights (gemm_layout_sm90.cuh): e2m1 codes ->
// bf16 by shifts and masks (9 integer operations per 8 codes), re-encoded scales -> bf16 by one
// multiply-add, one bf16x2 multiply per A register. Every step is exact (gemm_layout_sm90.cuh).
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"
#include "nvfp4moe/kernels/ptx/bf16x2_mul_sm90.cuh"

namespace nvfp4moe::kernels {

// bf16x2 {S, S}, S = s * 2^119, from re-encoded scale byte B (0 or 1) of a thread's scale pair.
template <int B>
__device__ __forceinline__ uint32_t scale_to_bf16x2(uint32_t pair) {
  const uint32_t dup = __byte_perm(pair, 0u, 0x4040u | (B << 8) | B);  // byte B at bits 0-7 and 16-23
  return dup * 16u + (kScaleBf16Bias | (kScaleBf16Bias << 16));
}


// The four mma A registers of one k16 step from code word w and the bf16x2 scales of rows r0
// (registers 0, 2) and r0 + 8 (registers 1, 3). The extractions are the ones the layout's bit
// positions (code_bit) were chosen for: each gives v * 2^-126 as two bf16.
__device__ __forceinline__ void dequant_a_frag(uint32_t w, uint32_t s_r0, uint32_t s_r8, uint32_t (&a)[4]) {
  a[0] = ptx::bf16x2_mul(w & kCodeMaskQ, s_r0);
  a[1] = ptx::bf16x2_mul((w << 3) & kCodeMaskQ, s_r8);
  a[2] = ptx::bf16x2_mul((w << 6) & kCodeMaskQ, s_r0);
  a[3] = ptx::bf16x2_mul((((w >> 7) & kCodeMaskJ3) * kCodeMulJ3) & kCodeMaskQ, s_r8);
}

}  // namespace nvfp4moe::kernels
