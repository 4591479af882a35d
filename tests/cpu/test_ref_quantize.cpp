// CPU golden model of NVFP4 quantization (ref/quantize.h): hand-computed blocks, the spec
// recipe re-derived with CUDA's own fp8/fp4 conversions, NaN/Inf/zero rules, the dequantization
// error bound, per-expert layouts (empty experts, one expert with every row, 256 experts, gather
// maps), SiLU*Mul with and without a limit, fused == unfused, and argument validation.
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/quantize.h"

namespace nvfp4moe::ref {
namespace {

constexpr ActDType kDTypes[] = {ActDType::kBF16, ActDType::kFP16};
const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<uint16_t> to_act(const std::vector<float>& v, ActDType t) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = act_from_float(v[i], t);
  return out;
}

// Bitwise comparison that names the first mismatching byte and counts them all.
void expect_same_bytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i] && mismatches++ == 0) first = i;
  }
  EXPECT_EQ(mismatches, 0u) << what << ": first mismatch at byte " << first << " (got 0x"
                            << std::hex << int(got[first]) << ", want 0x" << int(want[first])
                            << std::dec << ") of " << got.size();
}

struct Quantized {
  std::vector<uint8_t> codes, scales;
};

Quantized run_quantize(const std::vector<uint16_t>& x, ActDType t, int64_t rows, int64_t k,
                       float g) {
  Quantized q{std::vector<uint8_t>(size_t(rows * k / 2), 0xab),
              std::vector<uint8_t>(size_t(swizzled_scale_bytes(rows, k)), 0xab)};
  quantize(x, t, rows, k, g, q.codes, q.scales);
  return q;
}

// Random activations [rows, k]: each 16-block gets its own magnitude 2^[-6, 6] (so block scales
// vary within a tensor), values roughly normal, some exact zeros.
std::vector<uint16_t> random_act(std::mt19937& rng, int64_t rows, int64_t k, ActDType t) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-6, 6), percent(0, 99);
  std::vector<float> v(size_t(rows * k));
  for (size_t b = 0; b < v.size(); b += kBlockSize) {
    const float mag = std::ldexp(1.0f, exponent(rng));
    for (size_t i = b; i < b + kBlockSize; ++i) v[i] = percent(rng) < 5 ? 0.0f : normal(rng) * mag;
  }
  return to_act(v, t);
}

// Structured activations: small integers times a power of two per block (the "nice" inputs of
// exact tests). They hit the ties where the order of operations matters far more often than
// random values do.
std::vector<uint16_t> structured_act(std::mt19937& rng, int64_t rows, int64_t k, ActDType t) {
  std::uniform_int_distribution<int> exponent(-9, 3), small(-12, 12);
  std::vector<float> v(size_t(rows * k));
  for (size_t b = 0; b < v.size(); b += kBlockSize) {
    const int e = exponent(rng);
    for (size_t i = b; i < b + kBlockSize; ++i) v[i] = std::ldexp(float(small(rng)), e);
  }
  return to_act(v, t);
}

// ---------------------------------------------------------------------------------------------
// The spec recipe, written out independently of format/: CUDA's conversions and the layout
// formula, one element at a time.
Quantized spec_quantize(const std::vector<uint16_t>& x, ActDType t, int64_t rows, int64_t k,
                        float g) {
  const int64_t cols = k / 16, padded_cols = (cols + 3) / 4 * 4;
  Quantized q{std::vector<uint8_t>(size_t(rows * k / 2), 0),
              std::vector<uint8_t>(size_t((rows + 127) / 128 * 128 * padded_cols), 0)};
  const float r6 = 1.0f / 6.0f;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float amax = 0.0f;
      bool nan = false;
      for (int64_t i = 0; i < 16; ++i) {
        const float v = act_to_float(x[size_t(r * k + c * 16 + i)], t);
        nan = nan || std::isnan(v);
        if (!std::isnan(v)) amax = std::max(amax, std::fabs(v));
      }
      const uint8_t s =
          nan ? 0x7f : uint8_t(__nv_cvt_float_to_fp8(g * (amax * r6), __NV_SATFINITE, __NV_E4M3));
      const float sf = e4m3_to_float(s);
      const float m = (sf == 0.0f) ? 0.0f : 1.0f / (sf * (1.0f / g));
      for (int64_t i = 0; i < 16; ++i) {
        const float v = act_to_float(x[size_t(r * k + c * 16 + i)], t);
        const uint8_t code = uint8_t(__nv_cvt_float_to_fp4(v * m, __NV_E2M1, cudaRoundNearest));
        const int64_t e = r * k + c * 16 + i;
        q.codes[size_t(e / 2)] |= uint8_t(code << (4 * (e % 2)));
      }
      const int64_t tile = (r / 128) * (padded_cols / 4) + c / 4;
      q.scales[size_t(tile * 512 + (r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4)] = s;
    }
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// Hand-computed: a [2, 32] tensor with amax 12, so g = 448 * 6 / 12 = 224.
//  row 0, block 0 (amax 3): 3 * r6 = 0.5, s = e4m3(224 * 0.5) = 112 = 0x6E,
//                           m = 1 / (112 * (1/224)) = 2   (112 * fl(1/224) rounds to 0.5 exactly)
//  row 0, block 1 (amax 12): 12 * r6 rounds to 2.0, s = 448 = 0x7E, m = 0.5
//  row 1, block 0 (amax 1.5): s = 56 = 0x66, m = 4
//  row 1, block 1 (zeros):    s = 0, m = 0, codes 0
// Scales sit at swizzled offsets (0,0)->0, (0,1)->1, (1,0)->16, (1,1)->17.
// clang-format off
const std::vector<float> kBlockA = {0,    0.25f, 0.5f,   0.75f,   1,       1.25f,  1.5f,   2,
                                    2.5f, 3,     -0.125f, -0.375f, -0.625f, -1.75f, 0.875f, -3};
const std::vector<float> kBlockB = {12,   -12,   1,      0.5f,    7,       -7,     0.75f,  3,
                                    5,    -2.5f, 11,     9,       0,       -0.0f,  6,      2};
// clang-format on

std::vector<float> hand_tensor() {
  std::vector<float> v = kBlockA;
  v.insert(v.end(), kBlockB.begin(), kBlockB.end());
  for (float a : kBlockA) v.push_back(a / 2);
  v.insert(v.end(), 16, 0.0f);
  return v;
}

// A * m = 2A:   0 .5 1 1.5 2 2.5 3 4 | 5 6 -.25 -.75 -1.25 -3.5 1.75 -6
//   codes       0 1  2 3   4 4   5 6 | 6 7  8    A    A     E    4    F   (ties to even code)
// B * m = B/2:  6 -6 .5 .25 3.5 -3.5 .375 1.5 | 2.5 -1.25 5.5 4.5 0 -0 3 1
//   codes       7 F  1  0   6   E    1    3   | 4   A     7   6   0 8  5 2
// clang-format off
const std::vector<uint8_t> kHandCodes = {
    0x10, 0x32, 0x44, 0x65, 0x76, 0xa8, 0xea, 0xf4,  // row 0, block 0
    0xf7, 0x01, 0xe6, 0x31, 0xa4, 0x67, 0x80, 0x25,  // row 0, block 1
    0x10, 0x32, 0x44, 0x65, 0x76, 0xa8, 0xea, 0xf4,  // row 1, block 0: (A/2) * 4 = 2A again
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // row 1, block 1: zeros
};
// clang-format on

std::vector<uint8_t> hand_scales() {
  std::vector<uint8_t> s(512, 0);  // R' = 128, C' = 4
  s[0] = 0x6e;
  s[1] = 0x7e;
  s[16] = 0x66;
  s[17] = 0x00;
  return s;
}

TEST(RefQuantize, HandComputedBlocks) {
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(to_string(t));
    const std::vector<uint16_t> x = to_act(hand_tensor(), t);
    Quantized q = run_quantize(x, t, 2, 32, 224.0f);
    expect_same_bytes(q.codes, kHandCodes, "codes");
    expect_same_bytes(q.scales, hand_scales(), "scales (padding must be zero)");

    EXPECT_EQ(amax_abs(x, t), 12.0f);
    Quantized r{std::vector<uint8_t>(32, 0xab), std::vector<uint8_t>(512, 0xab)};
    EXPECT_EQ(quantize_runtime_scale(x, t, 2, 32, r.codes, r.scales), 224.0f);
    expect_same_bytes(r.codes, kHandCodes, "runtime-scale codes");
    expect_same_bytes(r.scales, hand_scales(), "runtime-scale scales");

    // Decode: e2m1 * s / g, so block A comes back as round(2A) / 2.
    std::vector<float> deq(64);
    dequantize(q.codes, q.scales, 2, 32, 224.0f, deq);
    // clang-format off
    const float want_row0[32] = {0,  0.25f, 0.5f, 0.75f, 1,  1,  1.5f,  2,    // block A: round(2A)/2
                                 2,  3,     -0.0f, -0.5f, -0.5f, -2, 1,  -3,
                                 12, -12,   1,    0,     8,  -8, 1,     3,    // block B: 2 round(B/2)
                                 4,  -2,    12,   8,     0,  -0.0f, 6,  2};
    // clang-format on
    for (int i = 0; i < 32; ++i) EXPECT_EQ(deq[size_t(i)], want_row0[i]) << "element " << i;
    for (int i = 0; i < 16; ++i) EXPECT_EQ(deq[size_t(32 + i)], want_row0[i] / 2) << "row 1, " << i;
    for (int i = 48; i < 64; ++i) EXPECT_EQ(deq[size_t(i)], 0.0f);
  }
}

TEST(RefQuantize, MatchesTheSpecRecipeWrittenWithCudaConversions) {
  const uint32_t seed = 1234567;
  std::mt19937 rng(seed);
  const int64_t shapes[][2] = {{1, 16}, {3, 48}, {19, 112}, {130, 80}, {64, 2048}};
  for (ActDType t : kDTypes) {
    for (const auto& shape : shapes) {
      const int64_t rows = shape[0], k = shape[1];
      SCOPED_TRACE(::testing::Message()
                   << "seed " << seed << " " << to_string(t) << " rows " << rows << " k " << k);
      for (const std::vector<uint16_t>& x :
           {random_act(rng, rows, k, t), structured_act(rng, rows, k, t)}) {
        for (float g : {global_scale_from_amax(amax_abs(x, t)), 1.0f, 37.5f, 2688.0f}) {
          Quantized got = run_quantize(x, t, rows, k, g);
          Quantized want = spec_quantize(x, t, rows, k, g);
          expect_same_bytes(got.codes, want.codes, "codes");
          expect_same_bytes(got.scales, want.scales, "scales");
        }
      }
    }
  }
}

// Random data almost never lands on the ties where the order of operations shows; these
// structured inputs do, and pin the spec's order (docs/FORMAT.md, "Quantization recipe").
TEST(RefQuantize, PinsTheSpecOrderOfOperations) {
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(to_string(t));
    // Scale: g = 2688 / 1.015625 = 2646.64624 (rounded), block amax a = 0.01190185546875.
    // g * (a * r6) rounds to exactly 5.25, the tie between e4m3 5.0 (0x4A) and 5.5 (0x4B):
    // even -> 0x4A. The other order, (g * a) * r6 = 5.2500005, would give 0x4B.
    std::vector<float> v(32, 0.0f);
    v[0] = 1.015625f;
    v[16] = 0.01190185546875f;
    Quantized q{std::vector<uint8_t>(16), std::vector<uint8_t>(512)};
    quantize_runtime_scale(to_act(v, t), t, 1, 32, q.codes, q.scales);
    EXPECT_EQ(q.scales[1], 0x4a);

    // Multiplier: g = 2688 (amax 1), block amax 0.013427734375 -> s = 6 (0x4C). The two
    // correctly rounded steps give m = 1 / (6 * fl(1/2688)) = 447.99997, not 448, so
    // 2^-7 * m = 3.49999976 -> code 5 (3.0), where exact arithmetic would tie to 4.0 (code 6),
    // and 2^-8 * m = 1.74999988 -> code 3 (1.5) instead of 2.0.
    std::fill(v.begin(), v.end(), 0.0f);
    v[0] = 1.0f;
    v[16] = 0.013427734375f;  // * m = 6.0156 -> 6 (code 7)
    v[17] = 0.0078125f;
    v[18] = -0.0078125f;
    v[19] = 0.00390625f;
    EXPECT_EQ(quantize_runtime_scale(to_act(v, t), t, 1, 32, q.codes, q.scales), 2688.0f);
    EXPECT_EQ(q.scales[1], 0x4c);
    EXPECT_EQ(q.codes[8], 0x57);
    EXPECT_EQ(q.codes[9], 0x3d);
  }
}

TEST(RefQuantize, RuntimeScaleEqualsQuantizeWithGlobalScaleFromAmax) {
  const uint32_t seed = 99;
  std::mt19937 rng(seed);
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " " << to_string(t));
    const std::vector<uint16_t> x = random_act(rng, 37, 160, t);
    const float g_want = global_scale_from_amax(amax_abs(x, t));
    Quantized want = run_quantize(x, t, 37, 160, g_want);
    Quantized got{std::vector<uint8_t>(want.codes.size()),
                  std::vector<uint8_t>(want.scales.size())};
    EXPECT_EQ(quantize_runtime_scale(x, t, 37, 160, got.codes, got.scales), g_want);
    expect_same_bytes(got.codes, want.codes, "codes");
    expect_same_bytes(got.scales, want.scales, "scales");
  }
}

TEST(RefQuantize, AmaxIgnoresNanAndSeesInf) {
  const ActDType t = ActDType::kBF16;
  EXPECT_EQ(amax_abs(to_act({1, -5, kNaN, 2}, t), t), 5.0f);
  EXPECT_EQ(amax_abs(to_act({kNaN, kNaN}, t), t), 0.0f);
  EXPECT_EQ(amax_abs({}, t), 0.0f);
  EXPECT_EQ(amax_abs(to_act({1, -kInf}, t), t), kInf);
  EXPECT_EQ(global_scale_from_amax(kInf), 1.0f);
  EXPECT_EQ(global_scale_from_amax(0.0f), 1.0f);
  EXPECT_EQ(global_scale_from_amax(1e-38f), 1.0f);  // 2688 / 1e-38 overflows
  EXPECT_EQ(global_scale_from_amax(2688.0f), 1.0f);
  EXPECT_EQ(global_scale_from_amax(1e-32f), 2688.0f / 1e-32f);  // <= 2^118: usable
  EXPECT_EQ(global_scale_from_amax(1e-33f), 1.0f);              // > 2^118: treated as zero
}

// A bf16 tensor with amax 1e-34 would get g = 2.7e37 > 2^118, and then a block with scale
// 2^-8 a multiplier of +Inf (0 * Inf = NaN -> +6 for its zero elements). It is treated like an
// all-zero tensor instead: g = 1, every scale zero, every code +-0.
TEST(RefQuantize, TinyTensorBelowTheGlobalScaleLimitQuantizesToZero) {
  std::vector<float> v(32, 0.0f);
  v[0] = 1e-34f;
  v[16] = 1e-39f;  // a block whose scale would be 2^-8
  v[17] = -1e-39f;
  const ActDType t = ActDType::kBF16;
  Quantized q{std::vector<uint8_t>(16, 0xab), std::vector<uint8_t>(512, 0xab)};
  EXPECT_EQ(quantize_runtime_scale(to_act(v, t), t, 1, 32, q.codes, q.scales), 1.0f);
  std::vector<uint8_t> want_codes(16, 0);
  want_codes[8] = 0x80;  // -1e-39 * 0 = -0: code 8
  expect_same_bytes(q.codes, want_codes, "codes");
  expect_same_bytes(q.scales, std::vector<uint8_t>(512, 0), "scales");
}

TEST(RefQuantize, ZeroRowsIsValid) {
  std::vector<uint8_t> none;
  std::vector<float> out;
  EXPECT_NO_THROW(quantize({}, ActDType::kBF16, 0, 64, 1.0f, none, none));
  EXPECT_EQ(quantize_runtime_scale({}, ActDType::kFP16, 0, 64, none, none), 1.0f);
  EXPECT_NO_THROW(dequantize(none, none, 0, 64, 1.0f, out));
  std::vector<uint8_t> scales(size_t(expert_scale_rows_capacity(0, 2) * 4), 0xab);
  const std::vector<int32_t> off = {0, 0, 0};
  const std::vector<float> g = {1, 1};
  EXPECT_NO_THROW(quantize_experts({}, ActDType::kBF16, 0, 64, off, g, {}, 0, none, scales,
                                   expert_scale_rows_capacity(0, 2)));
  // sf_off[E] = 0: no scale row is written, the buffer stays as it was.
  expect_same_bytes(scales, std::vector<uint8_t>(scales.size(), 0xab), "scales");
}

TEST(RefQuantize, AllZeroTensorGetsUnitScaleAndZeroCodes) {
  for (ActDType t : kDTypes) {
    std::vector<uint16_t> x(3 * 64, act_from_float(0.0f, t));
    Quantized q{std::vector<uint8_t>(96, 0xab), std::vector<uint8_t>(512, 0xab)};
    EXPECT_EQ(quantize_runtime_scale(x, t, 3, 64, q.codes, q.scales), 1.0f);
    expect_same_bytes(q.codes, std::vector<uint8_t>(96, 0), "codes");
    expect_same_bytes(q.scales, std::vector<uint8_t>(512, 0), "scales");
  }
}

TEST(RefQuantize, NanBlockGetsScale0x7FAndAllCodesSeven) {
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(to_string(t));
    std::vector<float> v(32, 1.0f);
    v[5] = kNaN;   // block 0: NaN among ones
    v[16] = 0.0f;  // block 1 stays finite
    Quantized q = run_quantize(to_act(v, t), t, 1, 32, 100.0f);
    EXPECT_EQ(q.scales[0], 0x7f);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(q.codes[size_t(i)], 0x77) << "byte " << i;
    EXPECT_NE(q.scales[1], 0x7f);
    EXPECT_EQ(q.codes[8] & 0xf, 0);  // the zero in the finite block
    // The NaN survives dequantization.
    std::vector<float> deq(32);
    dequantize(q.codes, q.scales, 1, 32, 100.0f, deq);
    for (int i = 0; i < 16; ++i) EXPECT_TRUE(std::isnan(deq[size_t(i)])) << "element " << i;
  }
}

TEST(RefQuantize, InfSaturatesTheScaleTo448AndItsCodeToSix) {
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(to_string(t));
    std::vector<float> v = {kInf, -kInf, 2, -4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    // g = 112: m = 1 / (448 / 112) = 0.25, so 2 -> 0.5 (code 1), -4 -> -1 (code A), 1 -> 0.25 (0).
    Quantized q = run_quantize(to_act(v, t), t, 1, 16, 112.0f);
    EXPECT_EQ(q.scales[0], 0x7e);
    EXPECT_EQ(q.codes[0], 0xf7);  // +Inf -> +6, -Inf -> -6
    EXPECT_EQ(q.codes[1], 0xa1);
    EXPECT_EQ(q.codes[2], 0x00);
    // At run time an Inf amax gives g = 1: the same saturation.
    Quantized r{std::vector<uint8_t>(8), std::vector<uint8_t>(512)};
    EXPECT_EQ(quantize_runtime_scale(to_act(v, t), t, 1, 16, r.codes, r.scales), 1.0f);
    EXPECT_EQ(r.scales[0], 0x7e);
    EXPECT_EQ(r.codes[0], 0xf7);
  }
}

// A static (calibrated) g too large for the data: the block scale saturates at 448 and the
// codes at 6 instead of overflowing.
TEST(RefQuantize, StaticScaleExceededSaturates) {
  std::vector<float> v(16, 0.0f);
  v[0] = 100.0f;  // 100 * r6 * 224 = 3733 -> s = 448, m = 0.5: 100 * 0.5 = 50 -> 6
  v[1] = -10.0f;  // -5 -> -4 (tie 4 | 6 at 5 goes to 4)
  Quantized q = run_quantize(to_act(v, ActDType::kBF16), ActDType::kBF16, 1, 16, 224.0f);
  EXPECT_EQ(q.scales[0], 0x7e);
  EXPECT_EQ(q.codes[0], 0xe7);
}

// Error bound of quantize -> dequantize (derived in docs/FORMAT.md, "Accuracy"). With S the
// decoded block scale and u = S / g the block's unit, t = |x| / u lands on the e2m1 grid:
//   |x - deq| <= h(t) * u    h = 0.25 for t <= 2, 0.5 for t <= 4, 1 above (half the gap),
// and, when the scale is an e4m3 normal (ideal g*amax/6 >= 2^-6, not saturated), the e4m3
// rounding keeps S within 2^-4 of ideal, so t <= 6 * 16/15 = 6.4 (saturation costs <= 0.4 u)
// and u <= (17/16) * amax_block / 6. Float slack: 4 roundings on the way in and one on the way
// out, bounded by (|x| + |deq|) * 2^-20.
TEST(RefQuantize, DequantizationErrorWithinTheDerivedBound) {
  const uint32_t seed = 4242;
  std::mt19937 rng(seed);
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " " << to_string(t));
    const int64_t rows = 41, k = 256;
    const std::vector<uint16_t> x = random_act(rng, rows, k, t);
    const float g = global_scale_from_amax(amax_abs(x, t));
    Quantized q = run_quantize(x, t, rows, k, g);
    std::vector<float> deq(size_t(rows * k));
    dequantize(q.codes, q.scales, rows, k, g, deq);
    int64_t violations = 0, checked_normal = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < k / 16; ++c) {
        float amax_b = 0;
        for (int i = 0; i < 16; ++i)
          amax_b = std::max(amax_b, std::fabs(act_to_float(x[size_t(r * k + c * 16 + i)], t)));
        const float s =
            e4m3_to_float(q.scales[size_t(swizzled_scale_offset(r, c, 4 * ((k / 16 + 3) / 4)))]);
        const double u = double(s) / g, ideal = double(g) * amax_b / 6;
        const bool normal_scale = ideal >= std::ldexp(1.0, -6) && ideal <= 448;
        for (int i = 0; i < 16; ++i) {
          const size_t e = size_t(r * k + c * 16 + i);
          const double xv = act_to_float(x[e], t), d = deq[e], err = std::fabs(xv - d);
          const double slack = (std::fabs(xv) + std::fabs(d)) * std::ldexp(1.0, -20);
          double bound;
          if (s == 0) {
            bound = std::fabs(xv);  // everything flushed: only when g*amax/6 <= 2^-10
            if (ideal > std::ldexp(1.0, -10) * (1 + 1e-6)) ++violations;
          } else {
            const double tt = std::fabs(xv) / u;
            if (tt > 6) {
              bound = std::fabs(xv) - 6 * u;  // saturated
              if (normal_scale && tt > 6.4 * (1 + 1e-6)) ++violations;
            } else {
              bound = (tt <= 2 ? 0.25 : tt <= 4 ? 0.5 : 1.0) * u;
            }
          }
          if (err > bound + slack) {
            if (violations++ == 0)
              ADD_FAILURE() << "row " << r << " col " << c * 16 + i << ": x " << xv << " deq " << d
                            << " scale " << s;
          }
          if (normal_scale) {
            ++checked_normal;
            if (err > (17.0 / 16.0) * amax_b / 6 + slack) ++violations;
          }
        }
      }
    }
    EXPECT_EQ(violations, 0);
    EXPECT_GT(checked_normal, rows * k / 2);  // the bound was exercised on normal scales
  }
}

// ---------------------------------------------------------------------------------------------
// Per-expert quantization.

struct ExpertCase {
  int64_t rows_in, k, rows_out;
  std::vector<int32_t> off;
  std::vector<float> g;
  std::vector<int32_t> gather;   // empty: identity
  int64_t extra_scale_rows = 0;  // beyond the capacity bound
};

int64_t scale_rows_of(const ExpertCase& c) {
  const int64_t e = int64_t(c.g.size());
  return expert_scale_rows_capacity(c.off[size_t(e)], e) + c.extra_scale_rows;
}

Quantized run_experts(const std::vector<uint16_t>& x, ActDType t, const ExpertCase& c) {
  const int64_t scale_rows = scale_rows_of(c);
  Quantized q{std::vector<uint8_t>(size_t(c.rows_out * c.k / 2), 0xab),
              std::vector<uint8_t>(size_t(scale_rows * padded_scale_cols(c.k)), 0xab)};
  quantize_experts(x, t, c.rows_in, c.k, c.off, c.g, c.gather, c.rows_out, q.codes, q.scales,
                   scale_rows);
  return q;
}

// Each expert's codes and its scale block at sf_off[e] equal quantize() of that expert's
// (gathered) rows with its g; code rows past off[E] are zero; scale bytes past sf_off[E]
// keep run_experts' 0xab (not written).
void expect_experts_match_quantize(const std::vector<uint16_t>& x, ActDType t, const ExpertCase& c,
                                   const Quantized& q) {
  const int64_t num_experts = int64_t(c.g.size()), k = c.k, pc = padded_scale_cols(k);
  std::vector<int32_t> sf_off(size_t(num_experts + 1));
  expert_scale_offsets(c.off.data(), int(num_experts), sf_off.data());
  std::vector<uint8_t> want_codes(q.codes.size(), 0), want_scales(q.scales.size(), 0xab);
  std::fill_n(want_scales.begin(), sf_off[size_t(num_experts)] * pc, uint8_t(0));
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t begin = c.off[size_t(e)], count = c.off[size_t(e + 1)] - begin;
    std::vector<uint16_t> rows(size_t(count * k));
    for (int64_t i = 0; i < count; ++i) {
      const int64_t src = c.gather.empty() ? begin + i : c.gather[size_t(begin + i)];
      std::copy_n(x.begin() + src * k, k, rows.begin() + i * k);
    }
    Quantized alone = run_quantize(rows, t, count, k, c.g[size_t(e)]);
    std::copy(alone.codes.begin(), alone.codes.end(), want_codes.begin() + begin * k / 2);
    ASSERT_EQ(int64_t(alone.scales.size()), (sf_off[size_t(e + 1)] - sf_off[size_t(e)]) * pc);
    std::copy(alone.scales.begin(), alone.scales.end(),
              want_scales.begin() + sf_off[size_t(e)] * pc);
  }
  expect_same_bytes(q.codes, want_codes, "codes");
  expect_same_bytes(q.scales, want_scales, "scales");
}

std::vector<int32_t> random_offsets(std::mt19937& rng, int num_experts, int32_t rows,
                                    int empty_percent) {
  std::vector<int32_t> counts(size_t(num_experts), 0);
  for (int32_t i = 0; i < rows; ++i) {
    int e;
    do e = int(rng() % uint32_t(num_experts));
    while (int(rng() % 100) < empty_percent && e % 3 == 0);  // thin out every third expert
    ++counts[size_t(e)];
  }
  std::vector<int32_t> off(size_t(num_experts) + 1, 0);
  for (int e = 0; e < num_experts; ++e) off[size_t(e) + 1] = off[size_t(e)] + counts[size_t(e)];
  return off;
}

std::vector<float> random_global_scales(std::mt19937& rng, int num_experts) {
  std::uniform_real_distribution<float> lg(-3.0f, 3.0f);
  std::vector<float> g(static_cast<size_t>(num_experts));
  for (float& v : g) v = std::exp2(lg(rng)) * 100.0f;
  return g;
}

TEST(RefQuantizeExperts, RandomSplitsWithEmptyExperts) {
  const uint32_t seed = 777;
  std::mt19937 rng(seed);
  for (ActDType t : kDTypes) {
    for (int trial = 0; trial < 4; ++trial) {
      SCOPED_TRACE(::testing::Message()
                   << "seed " << seed << " " << to_string(t) << " trial " << trial);
      ExpertCase c;
      c.k = 16 * (1 + trial * 3);  // 16, 64, 112, 160: padded columns 4, 4, 8, 12
      c.rows_in = 150 + trial * 40;
      c.rows_out = c.rows_in + trial;  // rows past off[E] must come out zero
      c.off = random_offsets(rng, 7, int32_t(c.rows_in), 80);
      c.off[3] = c.off[2];  // at least one empty expert in the middle
      for (size_t e = 4; e < c.off.size(); ++e) c.off[e] = std::max(c.off[e], c.off[e - 1]);
      c.off.back() = int32_t(c.rows_in);
      c.g = random_global_scales(rng, 7);
      c.extra_scale_rows = 128 * trial;
      const std::vector<uint16_t> x = random_act(rng, c.rows_in, c.k, t);
      expect_experts_match_quantize(x, t, c, run_experts(x, t, c));
    }
  }
}

TEST(RefQuantizeExperts, OneExpertTakesEveryRow) {
  const uint32_t seed = 31337;
  std::mt19937 rng(seed);
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " " << to_string(t));
    ExpertCase c{300, 48, 300, {0, 0, 0, 0, 300, 300, 300, 300, 300}, random_global_scales(rng, 8),
                 {},  0};
    const std::vector<uint16_t> x = random_act(rng, c.rows_in, c.k, t);
    Quantized q = run_experts(x, t, c);
    expect_experts_match_quantize(x, t, c, q);
    // With a single expert the layout is exactly quantize()'s, followed by zero bytes.
    Quantized alone = run_quantize(x, t, 300, 48, c.g[3]);
    expect_same_bytes(q.codes, alone.codes, "codes vs quantize()");
    std::vector<uint8_t> head(q.scales.begin(), q.scales.begin() + int64_t(alone.scales.size()));
    expect_same_bytes(head, alone.scales, "scales vs quantize()");
  }
}

TEST(RefQuantizeExperts, TwoHundredFiftySixExperts) {
  const uint32_t seed = 256;
  std::mt19937 rng(seed);
  const ActDType t = ActDType::kBF16;
  ExpertCase c;
  c.k = 32;
  c.rows_in = c.rows_out = 700;
  c.off = random_offsets(rng, 256, 700, 50);
  c.g = random_global_scales(rng, 256);
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const std::vector<uint16_t> x = random_act(rng, c.rows_in, c.k, t);
  expect_experts_match_quantize(x, t, c, run_experts(x, t, c));
}

TEST(RefQuantizeExperts, AllExpertsEmpty) {
  ExpertCase c{5, 16, 9, {0, 0, 0, 0}, {1, 2, 3}, {}, 0};
  std::mt19937 rng(1);
  const std::vector<uint16_t> x = random_act(rng, 5, 16, ActDType::kFP16);
  Quantized q = run_experts(x, ActDType::kFP16, c);
  expect_same_bytes(q.codes, std::vector<uint8_t>(q.codes.size(), 0), "codes");
  // sf_off[E] = 0: no scale byte written.
  expect_same_bytes(q.scales, std::vector<uint8_t>(q.scales.size(), 0xab), "scales untouched");
}

TEST(RefQuantizeExperts, GatherMapEqualsQuantizingTheGatheredCopy) {
  const uint32_t seed = 8080;
  std::mt19937 rng(seed);
  for (ActDType t : kDTypes) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " " << to_string(t));
    // 50 tokens, top-4 routing: 200 rows, each token gathered several times; the map is longer
    // than off[E] (as a max-sized device buffer would be) and its tail is never read.
    ExpertCase c;
    c.k = 80;
    c.rows_in = 50;
    c.rows_out = 210;
    c.off = random_offsets(rng, 9, 200, 60);
    c.g = random_global_scales(rng, 9);
    c.gather.resize(215);
    for (int32_t& v : c.gather) v = int32_t(rng() % 50);
    const std::vector<uint16_t> x = random_act(rng, c.rows_in, c.k, t);
    Quantized q = run_experts(x, t, c);
    expect_experts_match_quantize(x, t, c, q);

    std::vector<uint16_t> gathered(size_t(200 * c.k));
    for (int64_t i = 0; i < 200; ++i)
      std::copy_n(x.begin() + c.gather[size_t(i)] * c.k, c.k, gathered.begin() + i * c.k);
    ExpertCase plain = c;
    plain.gather.clear();
    plain.rows_in = 200;
    Quantized want = run_experts(gathered, t, plain);
    expect_same_bytes(q.codes, want.codes, "codes vs gathered copy");
    expect_same_bytes(q.scales, want.scales, "scales vs gathered copy");
  }
}

TEST(RefQuantizeExperts, DequantizeExpertsInvertsTheLayout) {
  const uint32_t seed = 5150;
  std::mt19937 rng(seed);
  const ActDType t = ActDType::kBF16;
  ExpertCase c{140, 64, 150, random_offsets(rng, 5, 140, 70), random_global_scales(rng, 5),
               {},  128};
  const std::vector<uint16_t> x = random_act(rng, c.rows_in, c.k, t);
  Quantized q = run_experts(x, t, c);
  std::vector<float> got(size_t(c.rows_out * c.k), -1.0f);
  dequantize_experts(q.codes, q.scales, c.rows_out, c.k, c.off, c.g, scale_rows_of(c), got);
  for (int64_t e = 0; e < 5; ++e) {
    const int64_t begin = c.off[size_t(e)], count = c.off[size_t(e + 1)] - begin;
    std::vector<uint16_t> rows(x.begin() + begin * c.k, x.begin() + (begin + count) * c.k);
    Quantized alone = run_quantize(rows, t, count, c.k, c.g[size_t(e)]);
    std::vector<float> want(size_t(count * c.k));
    dequantize(alone.codes, alone.scales, count, c.k, c.g[size_t(e)], want);
    for (int64_t i = 0; i < count * c.k; ++i) {
      ASSERT_EQ(float_bits(got[size_t(begin * c.k + i)]), float_bits(want[size_t(i)]))
          << "seed " << seed << " expert " << e << " element " << i;
    }
  }
  for (int64_t i = c.off.back() * c.k; i < c.rows_out * c.k; ++i) ASSERT_EQ(got[size_t(i)], 0.0f);
}

// ---------------------------------------------------------------------------------------------
// SiLU * Mul.

// x [1, 2*n]: gate values then up values.
std::vector<uint16_t> gate_up(const std::vector<float>& gate, const std::vector<float>& up,
                              ActDType t) {
  std::vector<float> v = gate;
  v.insert(v.end(), up.begin(), up.end());
  return to_act(v, t);
}

// Expected bits computed in double from silu(v) = v / (1 + e^-v) and rounded to each dtype;
// every value is at least 0.07 of an ulp away from a rounding midpoint, so any float evaluation
// gives the same bits.
TEST(RefSiluAndMul, HandValuesWithoutLimit) {
  const std::vector<float> gate = {1, 0, -2, 20, -20, 0.5f}, up = {2, 5, 3, 1, 1, -1.5f};
  const uint16_t want_bf16[] = {0x3fbb, 0x0000, 0xbf37, 0x41a0, 0xb331, 0xbeef};
  const uint16_t want_fp16[] = {0x3dd9, 0x0000, 0xb9b9, 0x4d00, 0x8001, 0xb778};
  for (ActDType t : kDTypes) {
    std::vector<uint16_t> out(6, 0xdead);
    silu_and_mul(gate_up(gate, up, t), t, 1, 6, std::nullopt, out);
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(out[size_t(i)], t == ActDType::kBF16 ? want_bf16[i] : want_fp16[i])
          << to_string(t) << " gate " << gate[size_t(i)] << " up " << up[size_t(i)];
    }
  }
}

// limit 7: gate' = min(gate, 7) (no lower clamp), up' = clamp(up, -7, 7).
TEST(RefSiluAndMul, HandValuesWithLimit) {
  const std::vector<float> gate = {10, 3, -10, 7.5f, 1}, up = {1, -9, 8, 7.5f, 2};
  const uint16_t want_bf16[] = {0x40e0, 0xc1a0, 0xbb50, 0x4244, 0x3fbb};  // silu(7), -7 silu(3),
  const uint16_t want_fp16[] = {0x46fe, 0xcd00, 0x9a82, 0x521f, 0x3dd9};  // 7 silu(-10), 7 silu(7)
  for (ActDType t : kDTypes) {
    std::vector<uint16_t> out(5, 0xdead);
    silu_and_mul(gate_up(gate, up, t), t, 1, 5, 7.0f, out);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(out[size_t(i)], t == ActDType::kBF16 ? want_bf16[i] : want_fp16[i])
          << to_string(t) << " gate " << gate[size_t(i)] << " up " << up[size_t(i)];
    }
  }
}

TEST(RefSiluAndMul, NanPropagatesWithAndWithoutLimit) {
  for (ActDType t : kDTypes) {
    for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
      std::vector<uint16_t> out(2);
      silu_and_mul(gate_up({kNaN, 1}, {1, kNaN}, t), t, 1, 2, limit, out);
      EXPECT_EQ(out[0], kCanonicalNaN16) << to_string(t);
      EXPECT_EQ(out[1], kCanonicalNaN16) << to_string(t);
    }
  }
}

TEST(RefSiluAndMul, FusedQuantizeEqualsSiluThenQuantizeExperts) {
  const uint32_t seed = 2024;
  std::mt19937 rng(seed);
  for (ActDType t : kDTypes) {
    for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
      SCOPED_TRACE(::testing::Message()
                   << "seed " << seed << " " << to_string(t) << (limit ? " limit 7" : " no limit"));
      const int64_t rows = 133, inter = 96;
      const std::vector<uint16_t> x = random_act(rng, rows, 2 * inter, t);
      const std::vector<int32_t> off = random_offsets(rng, 6, 120, 50);  // rows past 120 idle
      const std::vector<float> g = random_global_scales(rng, 6);
      const int64_t scale_rows = expert_scale_rows_capacity(120, 6);

      std::vector<uint16_t> act(size_t(rows * inter));
      silu_and_mul(x, t, rows, inter, limit, act);
      Quantized want{std::vector<uint8_t>(size_t(rows * inter / 2)),
                     std::vector<uint8_t>(size_t(scale_rows * padded_scale_cols(inter)), 0xab)};
      quantize_experts(act, t, rows, inter, off, g, {}, rows, want.codes, want.scales, scale_rows);

      Quantized got{std::vector<uint8_t>(want.codes.size(), 0xab),
                    std::vector<uint8_t>(want.scales.size(), 0xab)};
      silu_and_mul_quantize_experts(x, t, rows, inter, limit, off, g, got.codes, got.scales,
                                    scale_rows);
      expect_same_bytes(got.codes, want.codes, "codes");
      expect_same_bytes(got.scales, want.scales, "scales");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bad arguments: nvfp4moe::Error naming the argument, outputs untouched.

template <typename Fn>
void expect_error_naming(const std::string& needle, Fn&& fn) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected nvfp4moe::Error naming '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not name '" << needle << "'";
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

template <typename T>
void expect_untouched(const std::vector<T>& v, T sentinel, const char* what) {
  const auto bad = std::find_if(v.begin(), v.end(), [&](T b) { return b != sentinel; });
  EXPECT_EQ(bad, v.end()) << what << " written at index " << (bad - v.begin());
}

TEST(RefQuantizeArgs, QuantizeAndDequantizeRejectBadArguments) {
  const ActDType t = ActDType::kBF16;
  std::vector<uint16_t> x(3 * 32, act_from_float(1.0f, t));
  std::vector<uint8_t> codes(48, 0xcd), scales(512, 0xcd);
  std::vector<float> out(96, -7.0f);
  auto q = [&](std::span<const uint16_t> xs, ActDType dt, int64_t rows, int64_t k, float g,
               std::span<uint8_t> c, std::span<uint8_t> s) { quantize(xs, dt, rows, k, g, c, s); };
  expect_error_naming("k:", [&] { q(x, t, 3, 24, 1.0f, codes, scales); });
  expect_error_naming("k:", [&] { q(x, t, 6, 0, 1.0f, codes, scales); });
  expect_error_naming("rows:", [&] { q(x, t, -1, 32, 1.0f, codes, scales); });
  expect_error_naming("x:", [&] { q(std::span(x).first(95), t, 3, 32, 1.0f, codes, scales); });
  expect_error_naming("codes:", [&] { q(x, t, 3, 32, 1.0f, std::span(codes).first(47), scales); });
  expect_error_naming("scales:",
                      [&] { q(x, t, 3, 32, 1.0f, codes, std::span(scales).first(511)); });
  for (float g : {0.0f, -1.0f, kNaN, kInf, 1e36f}) {
    expect_error_naming("g:", [&] { q(x, t, 3, 32, g, codes, scales); });
  }
  expect_error_naming("dtype", [&] { q(x, static_cast<ActDType>(7), 3, 32, 1.0f, codes, scales); });
  expect_error_naming(
      "x:", [&] { quantize_runtime_scale(std::span(x).first(90), t, 3, 32, codes, scales); });
  expect_error_naming("dtype", [&] { amax_abs(x, static_cast<ActDType>(2)); });
  expect_untouched(codes, uint8_t(0xcd), "codes");
  expect_untouched(scales, uint8_t(0xcd), "scales");

  expect_error_naming("g:", [&] { dequantize(codes, scales, 3, 32, 0.0f, out); });
  expect_error_naming("out:",
                      [&] { dequantize(codes, scales, 3, 32, 1.0f, std::span(out).first(95)); });
  expect_error_naming("codes:",
                      [&] { dequantize(std::span(codes).first(40), scales, 3, 32, 1.0f, out); });
  expect_error_naming("scales:",
                      [&] { dequantize(codes, std::span(scales).first(500), 3, 32, 1.0f, out); });
  expect_error_naming("k:", [&] { dequantize(codes, scales, 6, 17, 1.0f, out); });
  expect_untouched(out, -7.0f, "out");
}

TEST(RefQuantizeArgs, QuantizeExpertsRejectsBadArguments) {
  const ActDType t = ActDType::kFP16;
  // A valid baseline: 3 experts over 9 of 12 output rows, k = 32.
  const int64_t rows_in = 10, k = 32, rows_out = 12;
  std::vector<uint16_t> x(size_t(rows_in * k), act_from_float(0.5f, t));
  std::vector<int32_t> off = {0, 4, 4, 9};
  std::vector<float> g = {1, 2, 3};
  std::vector<int32_t> gather = {0, 1, 2, 3, 4, 5, 6, 7, 9};
  const int64_t scale_rows = expert_scale_rows_capacity(9, 3);  // 512
  std::vector<uint8_t> codes(size_t(rows_out * k / 2), 0xcd), scales(size_t(scale_rows * 4), 0xcd);
  auto run = [&](auto mutate) {
    std::vector<uint16_t> x2 = x;
    std::vector<int32_t> off2 = off, gather2 = gather;
    std::vector<float> g2 = g;
    int64_t rows_in2 = rows_in, rows_out2 = rows_out, scale_rows2 = scale_rows, k2 = k;
    std::span<uint8_t> codes2 = codes, scales2 = scales;
    std::span<const int32_t> gather_span = gather2;
    mutate(x2, off2, g2, gather_span, rows_in2, rows_out2, scale_rows2, k2, codes2, scales2);
    quantize_experts(x2, t, rows_in2, k2, off2, g2, gather_span, rows_out2, codes2, scales2,
                     scale_rows2);
  };
  // Sanity: the baseline itself is accepted (on copies of the outputs).
  {
    std::vector<uint8_t> c2 = codes, s2 = scales;
    EXPECT_NO_THROW(
        quantize_experts(x, t, rows_in, k, off, g, gather, rows_out, c2, s2, scale_rows));
  }
  using V16 = std::vector<uint16_t>;
  using VI = std::vector<int32_t>;
  using VF = std::vector<float>;
  using SI = std::span<const int32_t>;
  using SB = std::span<uint8_t>;
#define MUTATE(body)                                                                 \
  [&](V16& x2, VI& off2, VF& g2, SI& gather2, int64_t& rows_in2, int64_t& rows_out2, \
      int64_t& scale_rows2, int64_t& k2, SB& codes2, SB& scales2) {                  \
    (void)x2, (void)off2, (void)g2, (void)gather2, (void)rows_in2, (void)rows_out2;  \
    (void)scale_rows2, (void)k2, (void)codes2, (void)scales2;                        \
    body;                                                                            \
  }
  expect_error_naming("off[0]", [&] { run(MUTATE(off2[0] = 1)); });
  expect_error_naming("non-decreasing", [&] { run(MUTATE(off2[2] = 3)); });
  expect_error_naming("off[E]", [&] { run(MUTATE(off2[3] = 13)); });
  expect_error_naming("off:", [&] { run(MUTATE(off2.push_back(9))); });
  expect_error_naming("g:", [&] { run(MUTATE(g2.clear(); off2 = {0})); });
  expect_error_naming("g[1]", [&] { run(MUTATE(g2[1] = kNaN)); });
  expect_error_naming("g[2]", [&] { run(MUTATE(g2[2] = 0.0f)); });
  expect_error_naming("gather:", [&] {
    VI short_gather = {0, 1, 2};
    run(MUTATE(gather2 = short_gather));
  });
  expect_error_naming("gather[3]", [&] {
    VI bad = gather;
    bad[3] = 10;  // == rows_in
    run(MUTATE(gather2 = bad));
  });
  expect_error_naming("gather[0]", [&] {
    VI bad = gather;
    bad[0] = -1;
    run(MUTATE(gather2 = bad));
  });
  expect_error_naming("rows_in",
                      [&] { run(MUTATE(gather2 = SI(); rows_in2 = 8; x2.resize(8 * 32))); });
  expect_error_naming("scale_rows", [&] { run(MUTATE(scale_rows2 = 500)); });
  expect_error_naming("scale_rows",
                      [&] { run(MUTATE(scale_rows2 = 384; scales2 = scales2.first(384 * 4))); });
  expect_error_naming("scales:", [&] { run(MUTATE(scales2 = scales2.first(2047))); });
  expect_error_naming("codes:", [&] { run(MUTATE(codes2 = codes2.first(100))); });
  expect_error_naming("x:", [&] { run(MUTATE(x2.pop_back())); });
  expect_error_naming("k:", [&] { run(MUTATE(k2 = 40)); });
  expect_error_naming("rows_out", [&] { run(MUTATE(rows_out2 = -1)); });
#undef MUTATE
  expect_untouched(codes, uint8_t(0xcd), "codes");
  expect_untouched(scales, uint8_t(0xcd), "scales");
}

TEST(RefQuantizeArgs, SiluAndDequantizeExpertsRejectBadArguments) {
  const ActDType t = ActDType::kBF16;
  const int64_t rows = 5, inter = 32;
  std::vector<uint16_t> x(size_t(rows * 2 * inter), act_from_float(1.0f, t));
  std::vector<uint16_t> out(size_t(rows * inter), 0xcdcd);
  expect_error_naming("inter", [&] { silu_and_mul(x, t, rows, 0, std::nullopt, out); });
  expect_error_naming(
      "x:", [&] { silu_and_mul(std::span(x).first(100), t, rows, inter, std::nullopt, out); });
  expect_error_naming(
      "out:", [&] { silu_and_mul(x, t, rows, inter, std::nullopt, std::span(out).first(10)); });
  for (float limit : {kNaN, -1.0f, 0.0f, kInf}) {
    expect_error_naming("limit", [&] { silu_and_mul(x, t, rows, inter, limit, out); });
  }
  expect_untouched(out, uint16_t(0xcdcd), "out");

  const std::vector<int32_t> off = {0, 2, 5};
  const std::vector<float> g = {1, 1};
  const int64_t scale_rows = expert_scale_rows_capacity(5, 2);
  std::vector<uint8_t> codes(size_t(rows * inter / 2), 0xcd), scales(size_t(scale_rows * 4), 0xcd);
  auto fused = [&](int64_t inter2, std::span<const uint16_t> x2, std::span<const int32_t> off2,
                   std::optional<float> limit, int64_t scale_rows2) {
    silu_and_mul_quantize_experts(x2, t, rows, inter2, limit, off2, g, codes, scales, scale_rows2);
  };
  std::vector<uint16_t> x24(size_t(rows * 2 * 24), 0);
  expect_error_naming("inter", [&] { fused(24, x24, off, std::nullopt, scale_rows); });
  expect_error_naming("limit", [&] { fused(inter, x, off, -3.0f, scale_rows); });
  expect_error_naming("off[E]", [&] {
    fused(inter, x, std::vector<int32_t>{0, 2, 6}, std::nullopt, scale_rows);
  });
  expect_error_naming("scale_rows", [&] { fused(inter, x, off, std::nullopt, 128); });
  expect_untouched(codes, uint8_t(0xcd), "codes");
  expect_untouched(scales, uint8_t(0xcd), "scales");

  std::vector<float> deq(size_t(rows * inter), -7.0f);
  expect_error_naming("off[0]", [&] {
    dequantize_experts(codes, scales, rows, inter, std::vector<int32_t>{1, 2, 5}, g, scale_rows,
                       deq);
  });
  expect_error_naming("out:", [&] {
    dequantize_experts(codes, scales, rows, inter, off, g, scale_rows, std::span(deq).first(3));
  });
  expect_error_naming("g[0]", [&] {
    dequantize_experts(codes, scales, rows, inter, off, std::vector<float>{-1, 1}, scale_rows, deq);
  });
  expect_untouched(deq, -7.0f, "deq");
}

}  // namespace
}  // namespace nvfp4moe::ref
