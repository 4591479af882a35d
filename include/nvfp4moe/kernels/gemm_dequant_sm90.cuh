// Register-level dequantization of the prepared weights (gemm_layout_sm90.cuh): e2m1 codes ->
// bf16 by shifts and masks, re-encoded scales -> bf16 by one multiply-add, one bf16x2
// multiply per A register. Every step is exact (see gemm_layout_sm90.cuh).
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"

namespace nvfp4moe::kernels {

// bf16x2 (v_lo, v_hi) * 2^-126 of nibbles 3-J (low half) and 7-J (high half) of q: the sign
// goes to bit 15/31, the three exponent/mantissa bits to bits 6-8/22-24.
template <int J>
__device__ __forceinline__ uint32_t e2m1x2_to_bf16x2_raw(uint32_t q) {
  uint32_t s = q << (4 * J);
  return (s & 0x80008000u) | ((s >> 6) & 0x01c001c0u);
}

// bf16x2 {S, S}, S = s * 2^119, from re-encoded scale byte B of word w.
template <int B>
__device__ __forceinline__ uint32_t scale_to_bf16x2(uint32_t w) {
  uint32_t pair = __byte_perm(w, 0u, 0x4040u | (B << 8) | B);  // byte B at bits 0-7 and 16-23
  return pair * 16u + (kScaleBf16Bias | (kScaleBf16Bias << 16));
}

// Round-to-nearest bf16x2 multiply (exact here: at most 5 significant bits in the product).
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

// The four A registers of one k16 step from code word q and the scales of rows r0 / r0+8.
__device__ __forceinline__ void dequant_a_frag(uint32_t q, uint32_t s_r0, uint32_t s_r8, uint32_t (&a)[4]) {
  a[0] = bf16x2_mul(e2m1x2_to_bf16x2_raw<0>(q), s_r0);
  a[1] = bf16x2_mul(e2m1x2_to_bf16x2_raw<1>(q), s_r8);
  a[2] = bf16x2_mul(e2m1x2_to_bf16x2_raw<2>(q), s_r0);
  a[3] = bf16x2_mul(e2m1x2_to_bf16x2_raw<3>(q), s_r8);
}

}  // namespace nvfp4moe::kernels
