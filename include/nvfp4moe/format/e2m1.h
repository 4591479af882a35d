// e2m1 (fp4): 1 sign, 2 exponent (bias 1), 1 mantissa bit; no Inf, no NaN.
// Codes 0..7 are +{0, 0.5, 1, 1.5, 2, 3, 4, 6}; bit 3 is the sign.
#pragma once

#include "nvfp4moe/common/host_device.h"

namespace nvfp4moe {

// float -> e2m1 code, round to nearest (ties to the even code), saturating finite:
// |x| > 6 -> 6; NaN -> +6 (code 7); negatives that round to zero keep the sign (code 8).
// This equals PTX cvt.rn.satfinite.e2m1x2.f32 and CUDA's __nv_cvt_float_to_fp4 on every
// float (tests check it). The thresholds are the midpoints between neighbours; a midpoint
// goes to the even code: 0.25->0, 0.75->1.0, 1.25->1.0, 1.75->2, 2.5->2, 3.5->4, 5->4.
NVFP4MOE_HD uint8_t e2m1_from_float(float x) {
  uint32_t u = float_bits(x);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7;  // NaN -> +6
  float v = float_from_bits(a);
  uint8_t code = (v <= 0.25f)  ? 0
                 : (v < 0.75f) ? 1
                 : (v <= 1.25f) ? 2
                 : (v < 1.75f) ? 3
                 : (v <= 2.5f) ? 4
                 : (v < 3.5f)  ? 5
                 : (v <= 5.0f) ? 6
                               : 7;
  return uint8_t(code | ((u >> 28) & 0x8u));
}

// e2m1 code (low 4 bits) -> float. Exact.
NVFP4MOE_HD float e2m1_to_float(uint8_t code) {
  // Magnitudes indexed by the 3 low bits: 0, 0.5, 1, 1.5, 2, 3, 4, 6.
  uint32_t mag = code & 0x7u;
  float v = (mag < 2) ? 0.5f * float(mag) : float(1u << ((mag >> 1) - 1)) * (1.0f + 0.5f * float(mag & 1u));
  return (code & 0x8u) ? -v : v;
}

// Two elements a byte: element 2i in the low nibble, 2i+1 in the high nibble.
NVFP4MOE_HD uint8_t pack_e2m1x2(uint8_t even_elem, uint8_t odd_elem) {
  return uint8_t((even_elem & 0xfu) | ((odd_elem & 0xfu) << 4));
}
NVFP4MOE_HD uint8_t unpack_e2m1_low(uint8_t byte) { return byte & 0xfu; }
NVFP4MOE_HD uint8_t unpack_e2m1_high(uint8_t byte) { return byte >> 4; }

// Code of element i of a packed row.
NVFP4MOE_HD uint8_t e2m1_code_at(const uint8_t* packed_row, int64_t i) {
  uint8_t b = packed_row[i >> 1];
  return (i & 1) ? uint8_t(b >> 4) : uint8_t(b & 0xfu);
}

}  // namespace nvfp4moe
