// e4m3 (float8_e4m3fn): bias 7, no Inf, NaN = 0x7F/0xFF, max 448, min normal 2^-6,
// min subnormal 2^-9. Used for the per-16-element block scales.
#pragma once

#include "nvfp4moe/common/host_device.h"

namespace nvfp4moe {

inline constexpr float kE4M3Max = 448.0f;
inline constexpr uint8_t kE4M3NaN = 0x7f;

// float -> e4m3, round to nearest even, saturate finite (+-Inf and |x| > 448 -> +-448),
// NaN -> 0x7F. Equals __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3) (tests check it).
NVFP4MOE_HD uint8_t e4m3_from_float(float x) {
  uint32_t u = float_bits(x);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return kE4M3NaN;
  if (a >= 0x43e00000u) return uint8_t(sign | 0x7eu);  // >= 448 (incl. Inf) -> 448
  if (a < 0x3c800000u) {
    // Subnormal range (< 2^-6): unit 2^-9. Scaling by 512 is exact in float.
    float s = float_from_bits(a) * 512.0f;
    uint32_t q = uint32_t(s);
    float frac = s - float(q);
    if (frac > 0.5f || (frac == 0.5f && (q & 1u))) ++q;  // q == 8 is 2^-6, code 0x08: correct
    return uint8_t(sign | q);
  }
  uint32_t exp = (a >> 23) - 120u;  // e4m3 biased exponent, 1..15
  uint32_t mant = a & 0x7fffffu;
  uint32_t q = (exp << 3) | (mant >> 20);
  uint32_t rem = mant & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (q & 1u))) ++q;
  if (q > 0x7eu) q = 0x7eu;  // rounding past 448 saturates (0x7F would be NaN)
  return uint8_t(sign | q);
}

// e4m3 -> float. Exact; 0x7F/0xFF -> NaN.
NVFP4MOE_HD float e4m3_to_float(uint8_t b) {
  uint32_t sign = uint32_t(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xfu;
  uint32_t mant = b & 0x7u;
  if (exp == 0xf && mant == 0x7) return float_from_bits(0x7fc00000u | sign);
  if (exp == 0) {
    float v = float(mant) * 0.001953125f;  // mant * 2^-9
    return sign ? -v : v;
  }
  return float_from_bits(sign | ((exp + 120u) << 23) | (mant << 20));
}

}  // namespace nvfp4moe
