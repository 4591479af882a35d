// The NVFP4 quantization arithmetic of one 16-element block, shared by the CPU golden model
// and the GPU kernels so that both follow the spec step for step (see docs/FORMAT.md):
//
//   g   = 448 * 6 / amax(|x|)            (global "encode" scale; 1 if that is not finite or 0)
//   s   = e4m3(g * (amax_block * r6))    (r6 = 1/6 rounded to float; NaN in block -> 0x7F)
//   m   = (s == 0) ? 0 : 1 / (float(s) * (1 / g))   (two correctly rounded steps)
//   q_i = e2m1(x_i * m)
//
// Every operation is a single IEEE float operation with no add, so no FMA contraction can
// change it; the GPU build must not use --use_fast_math (it would make 1/x approximate).
#pragma once

#include "nvfp4moe/common/host_device.h"
#include "nvfp4moe/format/e2m1.h"
#include "nvfp4moe/format/e4m3.h"

namespace nvfp4moe {

inline constexpr float kE2M1Max = 6.0f;
inline constexpr float kOneSixth = 1.0f / 6.0f;  // r6: 1/6 rounded to float32

// Correctly rounded 1/x on host and device.
NVFP4MOE_HD float reciprocal_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __frcp_rn(x);
#else
  return 1.0f / x;
#endif
}

NVFP4MOE_HD bool is_nan_f32(float x) { return (float_bits(x) & 0x7fffffffu) > 0x7f800000u; }
NVFP4MOE_HD bool is_finite_f32(float x) { return (float_bits(x) & 0x7f800000u) != 0x7f800000u; }

// max(a, |x|) ignoring NaN in x (fmaxf semantics, written out so host and device agree).
NVFP4MOE_HD float abs_max_ignore_nan(float a, float x) {
  float ax = float_from_bits(float_bits(x) & 0x7fffffffu);
  return (ax > a) ? ax : a;  // a comparison with NaN is false: NaN is skipped
}

// Largest usable global scale. With g <= 2^118, s * (1/g) >= 2^-9 * 2^-118 = 2^-127 for every
// nonzero scale s, so the multiplier 1 / (s * (1/g)) stays finite. A larger g would make it
// +Inf for small blocks, and 0 * Inf turns a zero element into NaN -> code 7 (+6).
inline constexpr float kMaxGlobalScale = 0x1p118f;  // 3.3e35: amax below ~8.1e-33

NVFP4MOE_HD bool is_usable_global_scale(float g) {
  return is_finite_f32(g) && g > 0.0f && g <= kMaxGlobalScale;
}

// Global encode scale from a tensor's amax: 448 * 6 / amax; 1 when that is not usable
// (all-zero tensor, amax Inf or NaN, amax so small -- below ~8.1e-33, only reachable in bf16 --
// that g would exceed kMaxGlobalScale). With g = 1 such a tiny tensor quantizes to zero codes.
NVFP4MOE_HD float global_scale_from_amax(float amax) {
  float g = (kE4M3Max * kE2M1Max) / amax;
  return is_usable_global_scale(g) ? g : 1.0f;
}

// e4m3 block-scale byte from the block's amax (NaN ignored) and whether it held a NaN.
NVFP4MOE_HD uint8_t block_scale_code(float block_amax, bool block_has_nan, float g) {
  if (block_has_nan) return kE4M3NaN;
  return e4m3_from_float(g * (block_amax * kOneSixth));
}

// The multiplier applied to each element before the e2m1 conversion.
NVFP4MOE_HD float block_multiplier(uint8_t scale_code, float g) {
  float s = e4m3_to_float(scale_code);
  if (s == 0.0f) return 0.0f;
  return reciprocal_rn(s * reciprocal_rn(g));
}

// Quantize 16 floats of one block: 8 packed bytes (element 2i low nibble) and the scale byte.
NVFP4MOE_HD void quantize_block16(const float* x, float g, uint8_t* packed, uint8_t* scale) {
  float amax = 0.0f;
  bool has_nan = false;
  for (int i = 0; i < 16; ++i) {
    has_nan = has_nan || is_nan_f32(x[i]);
    amax = abs_max_ignore_nan(amax, x[i]);
  }
  uint8_t s = block_scale_code(amax, has_nan, g);
  float m = block_multiplier(s, g);
  for (int i = 0; i < 8; ++i) {
    packed[i] = pack_e2m1x2(e2m1_from_float(x[2 * i] * m), e2m1_from_float(x[2 * i + 1] * m));
  }
  *scale = s;
}

// Decode one element: e2m1 value * scale / g (the tensor-level "decode" form 1/g).
NVFP4MOE_HD float dequantize_element(uint8_t code, uint8_t scale_code, float g) {
  return e2m1_to_float(code) * e4m3_to_float(scale_code) / g;
}

}  // namespace nvfp4moe
