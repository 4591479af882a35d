// bf16 and fp16 <-> float32, bit level, round-to-nearest-even; host and device.
// The activation dtypes travel as raw uint16_t bits through the CPU model so that it needs
// no CUDA header; the GPU kernels use the native types and must agree bit for bit.
// NaN handling follows CUDA (cvt.rn.{bf16,f16}.f32 and the host functions of cuda_bf16.h /
// cuda_fp16.h): float -> bf16/fp16 gives the canonical NaN 0x7FFF whatever the sign and
// payload; fp16 -> float gives the canonical float NaN 0x7FFFFFFF; bf16 -> float is a shift.
#pragma once

#include "nvfp4moe/common/host_device.h"

namespace nvfp4moe {

enum class ActDType : int { kBF16 = 0, kFP16 = 1 };

inline const char* to_string(ActDType t) { return t == ActDType::kBF16 ? "bf16" : "fp16"; }

NVFP4MOE_HD float bf16_to_float(uint16_t b) { return float_from_bits(uint32_t(b) << 16); }

inline constexpr uint16_t kCanonicalNaN16 = 0x7fff;  // what CUDA's conversions produce

// float -> bf16, round to nearest even (overflow rounds to Inf); NaN -> 0x7FFF.
NVFP4MOE_HD uint16_t bf16_from_float(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return kCanonicalNaN16;
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return uint16_t((u + rounding_bias) >> 16);
}

NVFP4MOE_HD float fp16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return float_from_bits(mant ? 0x7fffffffu : (sign | 0x7f800000u));  // nan/inf
  if (exp == 0) {
    // zero or subnormal: value = mant * 2^-24, exact in float
    float v = float(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return float_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

// float -> fp16, round to nearest even, overflow to inf (IEEE); NaN -> 0x7FFF.
NVFP4MOE_HD uint16_t fp16_from_float(float x) {
  uint32_t u = float_bits(x);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return kCanonicalNaN16;
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {
    // below the smallest fp16 normal (2^-14): subnormal, unit 2^-24
    if (a < 0x33000000u) return sign;  // < 2^-25: rounds to zero (2^-25 itself ties to 0)
    uint32_t exp = a >> 23;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp;  // value = mant * 2^(exp-150); unit 2^-24 -> shift by (126-exp)
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  uint32_t q = ((a >> 13) - (112u << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;
  return uint16_t(sign | q);
}

NVFP4MOE_HD float act_to_float(uint16_t bits, ActDType t) {
  return t == ActDType::kBF16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

NVFP4MOE_HD uint16_t act_from_float(float x, ActDType t) {
  return t == ActDType::kBF16 ? bf16_from_float(x) : fp16_from_float(x);
}

}  // namespace nvfp4moe
