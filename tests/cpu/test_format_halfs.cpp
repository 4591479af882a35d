// Format core, activation dtypes: bf16 / fp16 <-> float32 (format/halfs.h) against the
// host functions of <cuda_bf16.h> / <cuda_fp16.h> (the device conversions the GPU kernels use
// give the same bits), on every 16-bit pattern and on a large sample of float bit patterns,
// including subnormals, overflow to Inf, and NaN (canonical 0x7FFF).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "nvfp4moe/format/halfs.h"

namespace nvfp4moe {
namespace {

uint16_t oracle_bf16(float x) { return __nv_bfloat16_raw(__float2bfloat16_rn(x)).x; }
uint16_t oracle_fp16(float x) { return __half_raw(__float2half_rn(x)).x; }
float oracle_bf16_to_float(uint16_t b) {
  __nv_bfloat16_raw r;
  r.x = b;
  return __bfloat162float(__nv_bfloat16(r));
}
float oracle_fp16_to_float(uint16_t h) {
  __half_raw r;
  r.x = h;
  return __half2float(__half(r));
}

bool is_nan16(uint16_t h, ActDType t) {
  return t == ActDType::kBF16 ? (h & 0x7fff) > 0x7f80 : (h & 0x7fff) > 0x7c00;
}

// Compares ours(x) with oracle(x) over float bit patterns lo, lo+stride, ... <= hi.
template <typename Ours, typename Oracle>
void expect_matches_oracle(const char* what, Ours ours, Oracle oracle, uint64_t lo, uint64_t hi,
                           uint64_t stride) {
  uint64_t mismatches = 0, checked = 0;
  uint32_t first_bits = 0;
  for (uint64_t b = lo; b <= hi; b += stride, ++checked) {
    float x = float_from_bits(uint32_t(b));
    if (ours(x) != oracle(x)) {
      if (mismatches++ == 0) first_bits = uint32_t(b);
    }
  }
  const float first = float_from_bits(first_bits);
  EXPECT_EQ(mismatches, 0u) << what << ": of " << checked << " inputs in [0x" << std::hex << lo
                            << ", 0x" << hi << "] step " << std::dec << stride
                            << "; first at bits 0x" << std::hex << first_bits << " (" << first
                            << "): ours 0x" << ours(first) << ", CUDA 0x" << oracle(first);
}

TEST(FormatHalfs, Bf16ToFloatMatchesCudaOnAllPatterns) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    ASSERT_EQ(float_bits(bf16_to_float(uint16_t(h))), float_bits(oracle_bf16_to_float(uint16_t(h))))
        << "bf16 0x" << std::hex << h;
  }
}

TEST(FormatHalfs, Fp16ToFloatMatchesCudaOnAllPatterns) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    ASSERT_EQ(float_bits(fp16_to_float(uint16_t(h))), float_bits(oracle_fp16_to_float(uint16_t(h))))
        << "fp16 0x" << std::hex << h;
  }
}

TEST(FormatHalfs, EveryNonNanPatternRoundTrips) {
  for (ActDType t : {ActDType::kBF16, ActDType::kFP16}) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
      if (is_nan16(uint16_t(h), t)) continue;
      ASSERT_EQ(act_from_float(act_to_float(uint16_t(h), t), t), h)
          << to_string(t) << " 0x" << std::hex << h;
    }
  }
}

TEST(FormatHalfs, HandValues) {
  const float inf = std::numeric_limits<float>::infinity();
  // bf16: ties to even on the 16 dropped bits, overflow rounds to Inf.
  EXPECT_EQ(bf16_from_float(1.0f), 0x3f80);
  EXPECT_EQ(bf16_from_float(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie -> even
  EXPECT_EQ(bf16_from_float(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(bf16_from_float(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  EXPECT_EQ(bf16_from_float(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(bf16_from_float(-inf), 0xff80);
  EXPECT_EQ(bf16_from_float(-0.0f), 0x8000);
  // fp16: 65504 is the largest finite; 65520 (the midpoint to 2^16) and above go to Inf.
  EXPECT_EQ(fp16_from_float(65504.0f), 0x7bff);
  EXPECT_EQ(fp16_from_float(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(fp16_from_float(65520.0f), 0x7c00);
  EXPECT_EQ(fp16_from_float(-1e10f), 0xfc00);
  EXPECT_EQ(fp16_from_float(inf), 0x7c00);
  // fp16 subnormals: unit 2^-24; 2^-25 ties to zero, anything above it rounds up.
  EXPECT_EQ(fp16_from_float(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(fp16_from_float(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(fp16_from_float(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(fp16_from_float(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(fp16_from_float(3 * std::ldexp(1.0f, -25)), 0x0002);  // tie 1 | 2 -> 2
  EXPECT_EQ(fp16_from_float(std::ldexp(1.0f, -14)), 0x0400);      // smallest normal
  EXPECT_EQ(fp16_from_float(std::ldexp(1023.5f, -24)), 0x0400);   // tie 0x3ff | 0x400 -> even
  // NaN of any sign/payload -> canonical 0x7FFF, as CUDA's conversions give.
  for (uint32_t bits : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffffffffu}) {
    EXPECT_EQ(bf16_from_float(float_from_bits(bits)), kCanonicalNaN16);
    EXPECT_EQ(fp16_from_float(float_from_bits(bits)), kCanonicalNaN16);
  }
  EXPECT_EQ(float_bits(fp16_to_float(0xfe01)), 0x7fffffffu);
  EXPECT_EQ(float_bits(fp16_to_float(0xfc00)), float_bits(-inf));
  // The dtype dispatch.
  EXPECT_EQ(act_from_float(1.5f, ActDType::kBF16), 0x3fc0);
  EXPECT_EQ(act_from_float(1.5f, ActDType::kFP16), 0x3e00);
  EXPECT_EQ(act_to_float(0x3fc0, ActDType::kBF16), 1.5f);
  EXPECT_EQ(act_to_float(0x3e00, ActDType::kFP16), 1.5f);
}

// Every 31st float bit pattern over all 2^32: every exponent, Inf, NaN, subnormals, both signs.
TEST(FormatHalfs, FloatToBf16MatchesCudaOnStridedBitPatterns) {
  expect_matches_oracle("bf16", bf16_from_float, oracle_bf16, 0, 0xffffffffull, 31);
}

TEST(FormatHalfs, FloatToFp16MatchesCudaOnStridedBitPatterns) {
  expect_matches_oracle("fp16", fp16_from_float, oracle_fp16, 0, 0xffffffffull, 31);
}

// Densely where fp16 rounding is special: the subnormal range and below ([2^-26, 2^-13]) and the
// overflow edge ([60000, 70000]), both signs; plus bf16 around 1.0 (every float in [1, 2)).
TEST(FormatHalfs, MatchesCudaDenselyAtTheEdges) {
  const uint32_t sub_lo = float_bits(std::ldexp(1.0f, -26)),
                 sub_hi = float_bits(std::ldexp(1.0f, -13));
  const uint32_t ovf_lo = float_bits(60000.0f), ovf_hi = float_bits(70000.0f);
  for (uint32_t sign : {0u, 0x80000000u}) {
    expect_matches_oracle("fp16 subnormal", fp16_from_float, oracle_fp16, sub_lo | sign,
                          sub_hi | sign, 1);
    expect_matches_oracle("fp16 overflow", fp16_from_float, oracle_fp16, ovf_lo | sign,
                          ovf_hi | sign, 1);
  }
  expect_matches_oracle("bf16 [1, 2)", bf16_from_float, oracle_bf16, float_bits(1.0f),
                        float_bits(2.0f) - 1, 1);
}

}  // namespace
}  // namespace nvfp4moe
