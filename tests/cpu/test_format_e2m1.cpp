// Format core, e2m1 (fp4): decode of all 16 codes, every rounding threshold and tie,
// saturation, NaN, signed zero, packing (format/e2m1.h) -- against hand tables and against
// CUDA's host-callable conversion __nv_cvt_float_to_fp4 (<cuda_fp4.h>), the oracle the spec
// names, on a large sample of float bit patterns.
#include <cuda_fp4.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "nvfp4moe/format/e2m1.h"

namespace nvfp4moe {
namespace {

uint8_t oracle_e2m1(float x) {
  return uint8_t(__nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest));
}

float oracle_e2m1_to_float(uint8_t code) {
  __half_raw h = __nv_cvt_fp4_to_halfraw(__nv_fp4_storage_t(code), __NV_E2M1);
  return __half2float(__half(h));
}

// Compares e2m1_from_float with the oracle over the float bit patterns lo, lo+stride, ... <= hi
// (64-bit loop so the full 32-bit range works); reports the first mismatch and the count.
void expect_matches_oracle(uint64_t lo, uint64_t hi, uint64_t stride) {
  uint64_t mismatches = 0, checked = 0;
  uint32_t first_bits = 0;
  for (uint64_t b = lo; b <= hi; b += stride, ++checked) {
    float x = float_from_bits(uint32_t(b));
    if (e2m1_from_float(x) != oracle_e2m1(x)) {
      if (mismatches++ == 0) first_bits = uint32_t(b);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << checked << " inputs in [0x" << std::hex << lo << ", 0x"
                            << hi << "] step " << std::dec << stride << "; first at bits 0x"
                            << std::hex << first_bits << " (" << float_from_bits(first_bits)
                            << "): ours 0x" << int(e2m1_from_float(float_from_bits(first_bits)))
                            << ", CUDA 0x" << int(oracle_e2m1(float_from_bits(first_bits)));
}

TEST(FormatE2M1, DecodesAllSixteenCodes) {
  const float expected[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                              -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  for (int c = 0; c < 16; ++c) {
    float v = e2m1_to_float(uint8_t(c));
    EXPECT_EQ(float_bits(v), float_bits(expected[c])) << "code " << c << " decoded to " << v;
    EXPECT_EQ(v, oracle_e2m1_to_float(uint8_t(c))) << "code " << c;
    // Only the low nibble is the code.
    EXPECT_EQ(float_bits(e2m1_to_float(uint8_t(c | 0xf0))), float_bits(expected[c]));
  }
}

TEST(FormatE2M1, EveryCodeValueEncodesToItself) {
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(e2m1_from_float(e2m1_to_float(uint8_t(c))), c) << "code " << c;
  }
}

// Each midpoint between neighbouring magnitudes, exactly and one float ulp either side.
// At the midpoint the even code (mantissa bit 0) wins.
TEST(FormatE2M1, RoundsAtEveryThresholdAndTie) {
  struct Case {
    float threshold;
    uint8_t below, at, above;
  };
  const Case cases[] = {
      {0.25f, 0, 0, 1},  // 0 | 0.5: tie -> 0
      {0.75f, 1, 2, 2},  // 0.5 | 1: tie -> 1.0 (code 2)
      {1.25f, 2, 2, 3},  // 1 | 1.5: tie -> 1.0
      {1.75f, 3, 4, 4},  // 1.5 | 2: tie -> 2.0 (code 4)
      {2.5f, 4, 4, 5},   // 2 | 3: tie -> 2.0
      {3.5f, 5, 6, 6},   // 3 | 4: tie -> 4.0 (code 6)
      {5.0f, 6, 6, 7},   // 4 | 6: tie -> 4.0
  };
  for (const Case& c : cases) {
    const float t = c.threshold;
    const float below = std::nextafter(t, 0.0f), above = std::nextafter(t, 10.0f);
    EXPECT_EQ(e2m1_from_float(below), c.below) << "just below " << t;
    EXPECT_EQ(e2m1_from_float(t), c.at) << "at " << t;
    EXPECT_EQ(e2m1_from_float(above), c.above) << "just above " << t;
    // Mirror image: same magnitude code with the sign bit.
    EXPECT_EQ(e2m1_from_float(-below), c.below | 8) << "just above " << -t;
    EXPECT_EQ(e2m1_from_float(-t), c.at | 8) << "at " << -t;
    EXPECT_EQ(e2m1_from_float(-above), c.above | 8) << "just below " << -t;
    for (float x : {below, t, above, -below, -t, -above}) {
      EXPECT_EQ(e2m1_from_float(x), oracle_e2m1(x)) << "x = " << x;
    }
  }
}

TEST(FormatE2M1, SaturatesToSix) {
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {6.0f, std::nextafter(6.0f, 7.0f), 6.5f, 7.0f, 7.5f, 8.0f, 1e10f,
                  std::numeric_limits<float>::max(), inf}) {
    EXPECT_EQ(e2m1_from_float(x), 7) << "x = " << x;
    EXPECT_EQ(e2m1_from_float(-x), 15) << "x = " << -x;
    EXPECT_EQ(e2m1_from_float(x), oracle_e2m1(x));
    EXPECT_EQ(e2m1_from_float(-x), oracle_e2m1(-x));
  }
}

TEST(FormatE2M1, NanBecomesPositiveSix) {
  // Quiet, signalling, negative and payload-carrying NaNs alike.
  for (uint32_t bits : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xffc00000u, 0xff800001u,
                        0xffffffffu, 0x7fa5a5a5u}) {
    float x = float_from_bits(bits);
    EXPECT_EQ(e2m1_from_float(x), 7) << "bits 0x" << std::hex << bits;
    EXPECT_EQ(oracle_e2m1(x), 7) << "bits 0x" << std::hex << bits;
  }
}

TEST(FormatE2M1, NegativesRoundingToZeroKeepTheSign) {
  const float denorm_min = std::numeric_limits<float>::denorm_min();
  for (float x : {0.0f, denorm_min, 1e-30f, 0.1f, 0.25f}) {
    EXPECT_EQ(e2m1_from_float(x), 0) << "x = " << x;
    EXPECT_EQ(e2m1_from_float(-x), 8) << "x = " << -x;
    EXPECT_EQ(e2m1_from_float(-x), oracle_e2m1(-x));
  }
}

// Every 31st float bit pattern over all 2^32 (31 is prime, so the sample walks through every
// exponent and mantissa residue), including Inf/NaN/subnormals of both signs.
TEST(FormatE2M1, MatchesCudaOracleOnStridedBitPatterns) {
  expect_matches_oracle(0, 0xffffffffull, 31);
}

// Every float in [0.2, 6.5] and [-6.5, -0.2]: all thresholds, ties and their neighbourhoods.
TEST(FormatE2M1, MatchesCudaOracleOnEveryFloatNearThresholds) {
  const uint32_t lo = float_bits(0.2f), hi = float_bits(6.5f);
  expect_matches_oracle(lo, hi, 1);
  expect_matches_oracle(lo | 0x80000000u, hi | 0x80000000u, 1);
}

TEST(FormatE2M1, PacksElementTwoIInTheLowNibble) {
  EXPECT_EQ(pack_e2m1x2(0x3, 0xA), 0xA3);
  EXPECT_EQ(pack_e2m1x2(0xF3, 0xFA), 0xA3);  // only low nibbles are packed
  EXPECT_EQ(unpack_e2m1_low(0xA3), 0x3);
  EXPECT_EQ(unpack_e2m1_high(0xA3), 0xA);
  // The same order as CUDA's fp4x2: .x (the first element) in the low nibble.
  const float2 pair = {1.5f, -4.0f};
  EXPECT_EQ(pack_e2m1x2(e2m1_from_float(pair.x), e2m1_from_float(pair.y)),
            uint8_t(__nv_cvt_float2_to_fp4x2(pair, __NV_E2M1, cudaRoundNearest)));

  const uint8_t row[3] = {0x21, 0x43, 0x65};  // elements 1, 2, 3, 4, 5, 6
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(e2m1_code_at(row, i), i + 1) << "element " << i;
}

}  // namespace
}  // namespace nvfp4moe
