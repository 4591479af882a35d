// Format core, e4m3 (float8_e4m3fn, the block-scale type): decode of all 256 codes,
// round trips, ties, saturation, subnormals, NaN (format/e4m3.h) -- against hand values and
// CUDA's host-callable conversions of <cuda_fp8.h> (__nv_cvt_float_to_fp8 with
// __NV_SATFINITE, __nv_cvt_fp8_to_halfraw) on a large sample of float bit patterns.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "nvfp4moe/format/e4m3.h"

namespace nvfp4moe {
namespace {

uint8_t oracle_e4m3(float x) {
  return uint8_t(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}

// Every e4m3 value is exact in fp16 (5 exponent bits reach 2^-24), so decoding through
// __half is exact.
float oracle_e4m3_to_float(uint8_t code) {
  __half_raw h = __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(code), __NV_E4M3);
  return __half2float(__half(h));
}

bool is_nan_code(int c) { return (c & 0x7f) == 0x7f; }

void expect_matches_oracle(uint64_t lo, uint64_t hi, uint64_t stride) {
  uint64_t mismatches = 0, checked = 0;
  uint32_t first_bits = 0;
  for (uint64_t b = lo; b <= hi; b += stride, ++checked) {
    float x = float_from_bits(uint32_t(b));
    if (e4m3_from_float(x) != oracle_e4m3(x)) {
      if (mismatches++ == 0) first_bits = uint32_t(b);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << checked << " inputs in [0x" << std::hex << lo << ", 0x"
                            << hi << "] step " << std::dec << stride << "; first at bits 0x"
                            << std::hex << first_bits << " (" << float_from_bits(first_bits)
                            << "): ours 0x" << int(e4m3_from_float(float_from_bits(first_bits)))
                            << ", CUDA 0x" << int(oracle_e4m3(float_from_bits(first_bits)));
}

TEST(FormatE4M3, DecodesAll256Codes) {
  for (int c = 0; c < 256; ++c) {
    float ours = e4m3_to_float(uint8_t(c)), cuda = oracle_e4m3_to_float(uint8_t(c));
    if (is_nan_code(c)) {
      EXPECT_TRUE(std::isnan(ours)) << "code 0x" << std::hex << c;
      EXPECT_TRUE(std::isnan(cuda)) << "code 0x" << std::hex << c;
    } else {
      EXPECT_EQ(float_bits(ours), float_bits(cuda))
          << "code 0x" << std::hex << c << ": " << ours << " vs CUDA " << cuda;
    }
  }
  // Hand values: zero, subnormals (unit 2^-9), smallest normal, one, the maximum.
  EXPECT_EQ(float_bits(e4m3_to_float(0x00)), float_bits(0.0f));
  EXPECT_EQ(float_bits(e4m3_to_float(0x80)), float_bits(-0.0f));
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_float(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_float(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_float(0x6e), 112.0f);
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0xfe), -448.0f);
}

TEST(FormatE4M3, EveryNonNanCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if (is_nan_code(c)) continue;
    EXPECT_EQ(e4m3_from_float(e4m3_to_float(uint8_t(c))), c) << "code 0x" << std::hex << c;
  }
}

// Between each pair of neighbouring non-negative codes c, c+1: the midpoint goes to the even
// code, one float ulp below to c, one above to c+1; mirrored for negatives.
TEST(FormatE4M3, RoundsMidpointsToEvenAndNeighboursToNearest) {
  for (int c = 0; c < 0x7e; ++c) {
    const float lo = e4m3_to_float(uint8_t(c)), hi = e4m3_to_float(uint8_t(c + 1));
    const float mid = 0.5f * (lo + hi);  // exact: both have few significant bits
    ASSERT_GT(mid, lo);
    ASSERT_LT(mid, hi);
    const int even = (c % 2 == 0) ? c : c + 1;
    const float below = std::nextafter(mid, 0.0f), above = std::nextafter(mid, 1000.0f);
    EXPECT_EQ(e4m3_from_float(mid), even) << "midpoint " << mid;
    EXPECT_EQ(e4m3_from_float(below), c) << "below midpoint " << mid;
    EXPECT_EQ(e4m3_from_float(above), c + 1) << "above midpoint " << mid;
    EXPECT_EQ(e4m3_from_float(-mid), even | 0x80) << "midpoint " << -mid;
    EXPECT_EQ(e4m3_from_float(-below), c | 0x80);
    EXPECT_EQ(e4m3_from_float(-above), (c + 1) | 0x80);
    for (float x : {mid, below, above, -mid, -below, -above}) {
      EXPECT_EQ(e4m3_from_float(x), oracle_e4m3(x)) << "x = " << x;
    }
  }
}

TEST(FormatE4M3, SaturatesTo448) {
  const float inf = std::numeric_limits<float>::infinity();
  // 464 is the midpoint between 448 and the NaN code's would-be value 480: still 448.
  for (float x :
       {448.0f, std::nextafter(448.0f, 500.0f), 460.0f, 464.0f, std::nextafter(464.0f, 500.0f),
        480.0f, 1e6f, std::numeric_limits<float>::max(), inf}) {
    EXPECT_EQ(e4m3_from_float(x), 0x7e) << "x = " << x;
    EXPECT_EQ(e4m3_from_float(-x), 0xfe) << "x = " << -x;
    EXPECT_EQ(e4m3_from_float(x), oracle_e4m3(x)) << "x = " << x;
    EXPECT_EQ(e4m3_from_float(-x), oracle_e4m3(-x)) << "x = " << -x;
  }
}

TEST(FormatE4M3, RoundsSubnormalsWithUnitTwoToTheMinusNine) {
  const float u = std::ldexp(1.0f, -10);  // half the subnormal unit
  struct Case {
    float x;
    uint8_t code;
  };
  const Case cases[] = {
      {2 * u, 0x01},                         // 2^-9, the smallest subnormal
      {u, 0x00},                             // 2^-10: tie between 0 and 2^-9 -> 0
      {std::nextafter(u, 1.0f), 0x01},       // just above the tie
      {std::nextafter(u, 0.0f), 0x00},       // just below
      {3 * u, 0x02},                         // tie 1 | 2 -> 2 (2^-8)
      {5 * u, 0x02},                         // tie 2 | 3 -> 2
      {7 * u, 0x04},                         // tie 3 | 4 -> 4
      {15 * u, 0x08},                        // tie 7 | 2^-6 (smallest normal, code 8) -> 8
      {std::nextafter(15 * u, 0.0f), 0x07},  // just below -> largest subnormal
      {1e-30f, 0x00},                        // far below: zero
      {std::numeric_limits<float>::denorm_min(), 0x00},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(e4m3_from_float(c.x), c.code) << "x = " << c.x;
    EXPECT_EQ(e4m3_from_float(-c.x), c.code | 0x80) << "x = " << -c.x;  // sign kept, also on 0
    EXPECT_EQ(e4m3_from_float(c.x), oracle_e4m3(c.x)) << "x = " << c.x;
    EXPECT_EQ(e4m3_from_float(-c.x), oracle_e4m3(-c.x)) << "x = " << -c.x;
  }
}

TEST(FormatE4M3, NanBecomes0x7F) {
  for (uint32_t bits : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xffc00000u, 0xffffffffu}) {
    float x = float_from_bits(bits);
    EXPECT_EQ(e4m3_from_float(x), kE4M3NaN) << "bits 0x" << std::hex << bits;
    EXPECT_EQ(oracle_e4m3(x), kE4M3NaN) << "bits 0x" << std::hex << bits;
  }
}

// Every 31st float bit pattern over all 2^32 (31 is prime: all exponents and mantissa
// residues, Inf, NaN, subnormals of both signs).
TEST(FormatE4M3, MatchesCudaOracleOnStridedBitPatterns) {
  expect_matches_oracle(0, 0xffffffffull, 31);
}

// Every 3rd float in the range the scales live in, [2^-12, 520], both signs: covers all rounding
// positions of the 20 dropped mantissa bits densely.
TEST(FormatE4M3, MatchesCudaOracleDenselyOnTheScaleRange) {
  const uint32_t lo = float_bits(std::ldexp(1.0f, -12)), hi = float_bits(520.0f);
  expect_matches_oracle(lo, hi, 3);
  expect_matches_oracle(lo | 0x80000000u, hi | 0x80000000u, 3);
}

}  // namespace
}  // namespace nvfp4moe
