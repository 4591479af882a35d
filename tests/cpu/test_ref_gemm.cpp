// Golden model, NVFP4 GEMMs (ref/gemm.h): a 1x16 x 16x2 product done by hand (W4A4 and W4A16),
// exact small-integer data against an independent float reference summed in reverse order,
// random awkward shapes against dequantize -> float64 sums, W4A4 == W4A16 on the dequantized
// activations, grouped == per-expert single GEMMs (empty experts included), per-half alpha,
// NaN propagation, and argument errors that leave the output untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/e2m1.h"
#include "nvfp4moe/format/e4m3.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/gemm.h"
#include "nvfp4moe/ref/quantize.h"

namespace nvfp4moe::ref {
namespace {

// An owned NVFP4 operand [rows, k] built from explicit element codes and scale bytes.
struct Operand {
  std::vector<uint8_t> codes, scales;
  int64_t rows = 0, k = 0;
  Nvfp4View view() const { return Nvfp4View{codes, scales, rows, k}; }
};

// elem: [rows * k] e2m1 codes; sf: [rows * k/16] e4m3 bytes, row-major (swizzled here).
Operand make_operand(const std::vector<uint8_t>& elem, const std::vector<uint8_t>& sf, int64_t rows,
                     int64_t k) {
  Operand o;
  o.rows = rows;
  o.k = k;
  o.codes.assign(size_t(rows * k / 2), 0);
  for (int64_t i = 0; i < rows * k / 2; ++i)
    o.codes[size_t(i)] = pack_e2m1x2(elem[size_t(2 * i)], elem[size_t(2 * i + 1)]);
  o.scales.assign(size_t(swizzled_scale_bytes(rows, k)), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k / 16; ++c) {
      o.scales[size_t(swizzled_scale_offset(r, c, padded_scale_cols(k)))] =
          sf[size_t(r * (k / 16) + c)];
    }
  }
  return o;
}

// Random codes (all 16) and scale bytes in [sf_lo, sf_hi].
Operand random_operand(int64_t rows, int64_t k, std::mt19937& rng, int sf_lo = 0x28,
                       int sf_hi = 0x48) {
  std::uniform_int_distribution<int> code(0, 15), sf(sf_lo, sf_hi);
  std::vector<uint8_t> elem(size_t(rows * k)), scales(size_t(rows * k / 16));
  for (auto& c : elem) c = uint8_t(code(rng));
  for (auto& s : scales) s = uint8_t(sf(rng));
  return make_operand(elem, scales, rows, k);
}

// Small-integer operand: element values {0, +-1, +-2, +-3, +-4, +-6} with block scale 1 or 2,
// so every product and every partial sum of a modest K is an exact float.
Operand small_integer_operand(int64_t rows, int64_t k, std::mt19937& rng) {
  static const uint8_t kIntCodes[] = {0, 2, 4, 5, 6, 7, 10, 12, 13, 14, 15};
  std::uniform_int_distribution<int> pick(0, 10), sf(0, 1);
  std::vector<uint8_t> elem(size_t(rows * k)), scales(size_t(rows * k / 16));
  for (auto& c : elem) c = kIntCodes[pick(rng)];
  for (auto& s : scales) s = sf(rng) ? 0x38 : 0x40;  // 1.0 or 2.0
  return make_operand(elem, scales, rows, k);
}

// Independent decode via ref::dequantize (g = 1): e2m1 * e4m3 as floats [rows, k].
std::vector<float> decode(const Operand& o) {
  std::vector<float> f(size_t(o.rows * o.k));
  dequantize(o.codes, o.scales, o.rows, o.k, 1.0f, f);
  return f;
}

// The documented reference: float(sum_k double(a) * double(b), k ascending) * alpha(n).
std::vector<float> naive_gemm(const std::vector<float>& a, int64_t m, const std::vector<float>& b,
                              int64_t n, int64_t k, HalfAlpha alpha) {
  std::vector<float> out(size_t(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t x = 0; x < k; ++x)
        acc += double(a[size_t(i * k + x)]) * double(b[size_t(j * k + x)]);
      out[size_t(i * n + j)] = float(acc) * (j < n / 2 ? alpha.lo : alpha.hi);
    }
  }
  return out;
}

// Bitwise comparison of float matrices [*, cols]: names the first mismatch and the count.
::testing::AssertionResult same_bits(const std::vector<float>& got, const std::vector<float>& want,
                                     int64_t cols) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  }
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " mismatches; first at (" << first / cols << ", " << first % cols << "): got "
         << got[size_t(first)] << ", want " << want[size_t(first)];
}

// e2m1 code of an exactly representable value.
uint8_t code_of(float v) { return e2m1_from_float(v); }

TEST(RefGemm, HandComputed1x16x16x2) {
  // A: e2m1 values with block scale 2.0 (e4m3 0x40) -> dequantized
  //    [2, 4, 1, -2, 6, 0, 8, -12, 3, 0, 0, 0, 0, 0, 0, 2]   (sum 12)
  const float a_vals[16] = {1, 2, 0.5f, -1, 3, 0, 4, -6, 1.5f, 0, 0, 0, 0, 0, 0, 1};
  // B row 0: all 1.0 with scale 0.5 (0x30) -> 0.5 each: dot = 0.5 * 12 = 6.
  // B row 1: 6 at k=0, 0.5 at k=1, -2 at k=7, scale 1.0 (0x38): dot = 2*6 + 4*0.5 + (-12)(-2) = 38.
  std::vector<uint8_t> a_elem(16), b_elem(32, code_of(0.0f));
  for (int i = 0; i < 16; ++i) a_elem[size_t(i)] = code_of(a_vals[i]);
  for (int i = 0; i < 16; ++i) b_elem[size_t(i)] = code_of(1.0f);
  b_elem[16] = code_of(6.0f);
  b_elem[17] = code_of(0.5f);
  b_elem[23] = code_of(-2.0f);
  Operand a = make_operand(a_elem, {0x40}, 1, 16);
  Operand b = make_operand(b_elem, {0x30, 0x38}, 2, 16);
  // alpha_lo = 0.25 (row 0), alpha_hi = 2 (row 1): out = [1.5, 76].
  std::vector<float> out(2, -1.0f);
  gemm_w4a4(a.view(), b.view(), HalfAlpha{0.25f, 2.0f}, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], 76.0f);

  // W4A16 with the same dequantized A as bf16 (all exactly representable).
  std::vector<uint16_t> a16(16);
  for (int i = 0; i < 16; ++i) a16[size_t(i)] = bf16_from_float(a_vals[i] * 2.0f);
  std::vector<float> out16(2, -1.0f);
  gemm_w4a16(a16, ActDType::kBF16, 1, b.view(), HalfAlpha{0.25f, 2.0f}, out16);
  EXPECT_EQ(out16[0], 1.5f);
  EXPECT_EQ(out16[1], 76.0f);
  // ... and as fp16.
  for (int i = 0; i < 16; ++i) a16[size_t(i)] = fp16_from_float(a_vals[i] * 2.0f);
  gemm_w4a16(a16, ActDType::kFP16, 1, b.view(), HalfAlpha{0.25f, 2.0f}, out16);
  EXPECT_EQ(out16[0], 1.5f);
  EXPECT_EQ(out16[1], 76.0f);
}

// The output is float(sum) * alpha, two roundings, not float(sum * alpha): pick a sum whose
// float rounding changes the product. sum = 2^24 + 1 (exact in double, rounds to 2^24 in float).
TEST(RefGemm, RoundsSumToFloatThenMultipliesByAlpha) {
  // K = 32. Block 0: 16 elements 4 * 256 (scale 0x78 = 2^8) on both sides: 16 * 2^20 = 2^24.
  // Block 1: one product 1 * 1 (scale 0x38 = 1). The exact sum 2^24 + 1 rounds to 2^24 in float.
  std::vector<uint8_t> a_elem(32, 0), b_elem(32, 0);
  for (int i = 0; i < 16; ++i) a_elem[size_t(i)] = b_elem[size_t(i)] = code_of(4.0f);
  a_elem[16] = b_elem[16] = code_of(1.0f);
  Operand a = make_operand(a_elem, {0x78, 0x38}, 1, 32);
  Operand b = make_operand(b_elem, {0x78, 0x38}, 1, 32);
  // sum = 16 * 2^20 + 1 = 2^24 + 1 -> float 2^24 (tie to even); * alpha 3 = 3 * 2^24 exactly.
  // float(sum * 3) would be float(3 * 2^24 + 3) = 3 * 2^24 + 4.
  std::vector<float> out(1);
  gemm_w4a4(a.view(), b.view(), HalfAlpha{3.0f, 3.0f}, out);
  EXPECT_EQ(out[0], 3.0f * 16777216.0f);
}

TEST(RefGemm, ExactSmallIntegersMatchReverseOrderFloatSum) {
  const uint32_t seed = 1234;
  std::mt19937 rng(seed);
  for (int64_t m : {1, 3, 19}) {
    for (int64_t n : {2, 5, 34}) {
      for (int64_t k : {16, 48, 272}) {
        Operand a = small_integer_operand(m, k, rng), b = small_integer_operand(n, k, rng);
        std::vector<float> af = decode(a), bf = decode(b);
        std::vector<float> want(size_t(m * n));
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            float acc = 0.0f;  // float, reverse k: exact for this data, so order cannot matter
            for (int64_t x = k - 1; x >= 0; --x)
              acc += af[size_t(i * k + x)] * bf[size_t(j * k + x)];
            want[size_t(i * n + j)] = acc * (j < n / 2 ? 0.5f : 0.25f);
          }
        }
        std::vector<float> got(size_t(m * n));
        gemm_w4a4(a.view(), b.view(), HalfAlpha{0.5f, 0.25f}, got);
        EXPECT_TRUE(same_bits(got, want, n))
            << "seed " << seed << " m " << m << " n " << n << " k " << k;
      }
    }
  }
}

TEST(RefGemm, RandomShapesMatchDequantizedFloat64Reference) {
  const uint32_t seed = 777;
  std::mt19937 rng(seed);
  for (int64_t m : {1, 3, 19, 40}) {
    for (int64_t n : {1, 6, 34, 130}) {
      for (int64_t k : {16, 64, 272}) {
        Operand a = random_operand(m, k, rng), b = random_operand(n, k, rng);
        HalfAlpha alpha{0.37f, 1.9f};
        std::vector<float> got(size_t(m * n));
        gemm_w4a4(a.view(), b.view(), alpha, got);
        EXPECT_TRUE(same_bits(got, naive_gemm(decode(a), m, decode(b), n, k, alpha), n))
            << "seed " << seed << " m " << m << " n " << n << " k " << k;
        // Repeated runs give the same bits (threads split the work, never the sums).
        std::vector<float> again(size_t(m * n));
        gemm_w4a4(a.view(), b.view(), alpha, again);
        EXPECT_TRUE(same_bits(again, got, n));
      }
    }
  }
}

// W4A4 equals W4A16 fed the dequantized activations (e2m1 * e4m3 is exact in bf16 and fp16):
// with gA = 1 both alphas are 1/gB and both sums see identical products in the same order.
TEST(RefGemm, W4A4EqualsW4A16OnDequantizedActivations) {
  const uint32_t seed = 99;
  std::mt19937 rng(seed);
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    const int64_t m = 19, n = 34, k = 96;
    // fp16 has no room for 6 * 448: keep A's scales <= 4 there.
    Operand a = random_operand(m, k, rng, 0x20, dt == ActDType::kFP16 ? 0x48 : 0x7e);
    Operand b = random_operand(n, k, rng);
    std::vector<float> af = decode(a);
    std::vector<uint16_t> a16(af.size());
    for (size_t i = 0; i < af.size(); ++i) {
      a16[i] = act_from_float(af[i], dt);
      ASSERT_EQ(act_to_float(a16[i], dt), af[i]) << "not exact at " << i;
    }
    const float gb = 3.0f;
    std::vector<float> w4a4(size_t(m * n)), w4a16(size_t(m * n));
    gemm_w4a4(a.view(), b.view(), HalfAlpha{1.0f / (1.0f * gb), 1.0f / (1.0f * gb)}, w4a4);
    gemm_w4a16(a16, dt, m, b.view(), HalfAlpha{1.0f / gb, 1.0f / gb}, w4a16);
    EXPECT_TRUE(same_bits(w4a16, w4a4, n)) << "seed " << seed << " dtype " << to_string(dt);
  }
}

// Grouped GEMMs: activations quantized per expert (ref::quantize_experts layout) against one
// single GEMM per expert on the same rows, with empty experts and one expert owning everything.
TEST(RefGemm, GroupedEqualsPerExpertSingleGemms) {
  const uint32_t seed = 4242;
  std::mt19937 rng(seed);
  const int64_t n = 34, k = 80;
  const std::vector<std::vector<int32_t>> splits = {
      {0, 19}, {0, 0, 5, 5, 12, 12}, {0, 3, 3, 3, 133}, {0, 0, 0}};
  for (const auto& off : splits) {
    const int64_t e_count = int64_t(off.size()) - 1, m = off.back();
    std::vector<uint16_t> x(size_t(m * k));
    std::normal_distribution<float> nd(0.0f, 2.0f);
    for (auto& v : x) v = bf16_from_float(nd(rng));
    std::vector<float> g(static_cast<size_t>(e_count));
    for (int64_t e = 0; e < e_count; ++e) g[size_t(e)] = 448.0f * 6.0f / float(4 + e);
    const int64_t scale_rows = expert_scale_rows_capacity(m, e_count);
    std::vector<uint8_t> codes(size_t(m * k / 2)),
        scales(size_t(scale_rows * padded_scale_cols(k)));
    quantize_experts(x, ActDType::kBF16, m, k, off, g, {}, m, codes, scales, scale_rows);

    std::vector<Operand> b;
    std::vector<Nvfp4View> bv;
    std::vector<HalfAlpha> alpha;
    for (int64_t e = 0; e < e_count; ++e) b.push_back(random_operand(n, k, rng));
    for (int64_t e = 0; e < e_count; ++e) {
      bv.push_back(b[size_t(e)].view());
      alpha.push_back(HalfAlpha{1.0f / (g[size_t(e)] * 5.0f), 1.0f / (g[size_t(e)] * 7.0f)});
    }
    std::vector<float> grouped(size_t(m * n), -1.0f), grouped16(size_t(m * n), -1.0f);
    grouped_gemm_w4a4(codes, scales, scale_rows, k, off, bv, alpha, grouped);
    grouped_gemm_w4a16(x, ActDType::kBF16, k, off, bv, alpha, grouped16);

    std::vector<float> want(size_t(m * n)), want16(size_t(m * n));
    for (int64_t e = 0; e < e_count; ++e) {
      const int64_t r0 = off[size_t(e)], rows = off[size_t(e + 1)] - r0;
      std::span<const uint16_t> xe(x.data() + r0 * k, size_t(rows * k));
      std::vector<uint8_t> ce(size_t(rows * k / 2)), se(size_t(swizzled_scale_bytes(rows, k)));
      quantize(xe, ActDType::kBF16, rows, k, g[size_t(e)], ce, se);
      std::span<float> out_e(want.data() + r0 * n, size_t(rows * n));
      gemm_w4a4(Nvfp4View{ce, se, rows, k}, bv[size_t(e)], alpha[size_t(e)], out_e);
      gemm_w4a16(xe, ActDType::kBF16, rows, bv[size_t(e)], alpha[size_t(e)],
                 std::span<float>(want16.data() + r0 * n, size_t(rows * n)));
    }
    EXPECT_TRUE(same_bits(grouped, want, n)) << "seed " << seed << " E " << e_count << " M " << m;
    EXPECT_TRUE(same_bits(grouped16, want16, n))
        << "seed " << seed << " E " << e_count << " M " << m;
  }
}

// Per-half alpha with an odd N: rows n < N/2 (= 2 of 5) take lo, the rest hi.
TEST(RefGemm, PerHalfAlphaSplitsAtNOverTwo) {
  std::mt19937 rng(5);
  Operand a = small_integer_operand(3, 32, rng), b = small_integer_operand(5, 32, rng);
  std::vector<float> one(15), split(15);
  gemm_w4a4(a.view(), b.view(), HalfAlpha{1.0f, 1.0f}, one);
  gemm_w4a4(a.view(), b.view(), HalfAlpha{2.0f, -4.0f}, split);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 5; ++j) {
      EXPECT_EQ(split[size_t(i * 5 + j)], one[size_t(i * 5 + j)] * (j < 2 ? 2.0f : -4.0f))
          << i << "," << j;
    }
  }
}

// A NaN block scale (0x7F) in A makes its whole row NaN; other rows are unaffected.
TEST(RefGemm, NanScalePropagatesToItsRow) {
  std::mt19937 rng(8);
  Operand a = random_operand(3, 32, rng), b = random_operand(4, 32, rng);
  a.scales[size_t(swizzled_scale_offset(1, 1, padded_scale_cols(32)))] = kE4M3NaN;
  std::vector<float> out(12);
  gemm_w4a4(a.view(), b.view(), HalfAlpha{}, out);
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_TRUE(std::isnan(out[size_t(4 + j)]));
    EXPECT_FALSE(std::isnan(out[size_t(j)]));
    EXPECT_FALSE(std::isnan(out[size_t(8 + j)]));
  }
}

TEST(RefGemm, GemmF32SumsExactProductsInDouble) {
  // Products exact in double; the sum 1 + 2^-30 - 1 survives in double, not in float.
  std::vector<float> a = {1.0f, std::ldexp(1.0f, -15), -1.0f};
  std::vector<float> b = {1.0f, std::ldexp(1.0f, -15), 1.0f};
  std::vector<float> out(1);
  gemm_f32(a, 1, b, 1, 3, out);
  EXPECT_EQ(out[0], std::ldexp(1.0f, -30));
  std::vector<float> empty_k(4, -1.0f);
  gemm_f32({}, 2, {}, 2, 0, empty_k);
  for (float v : empty_k) EXPECT_EQ(v, 0.0f);
}

TEST(RefGemm, DequantizeUnscaledMatchesReferenceDequantize) {
  std::mt19937 rng(3);
  Operand b = random_operand(130, 48, rng);
  std::vector<float> got(size_t(130 * 48));
  dequantize_unscaled(b.view(), got);
  EXPECT_TRUE(same_bits(got, decode(b), 48));
}

TEST(RefGemm, RoundToActRoundsToNearestEven) {
  std::vector<float> in = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), -2.0f};
  std::vector<uint16_t> out(3);
  round_to_act(in, ActDType::kBF16, out);
  EXPECT_EQ(out[0], 0x3F80);  // tie -> even (1.0)
  EXPECT_EQ(out[1], 0x3F82);  // tie -> even (1 + 2^-6)
  EXPECT_EQ(out[2], 0xC000);
  round_to_act(in, ActDType::kFP16, out);
  EXPECT_EQ(out[0], 0x3C04);  // 1 + 2^-8 exact in fp16
  EXPECT_EQ(out[2], 0xC000);
  std::vector<uint16_t> short_out(2);
  EXPECT_THROW(round_to_act(in, ActDType::kBF16, short_out), Error);
}

// Bad arguments throw nvfp4moe::Error naming the argument, and write nothing.
TEST(RefGemm, BadArgumentsThrowAndLeaveOutputUntouched) {
  std::mt19937 rng(11);
  Operand a = random_operand(3, 32, rng), b = random_operand(4, 32, rng),
          b48 = random_operand(4, 48, rng);
  std::vector<float> out(12, 42.0f);
  auto expect_error = [&](auto&& fn, const char* needle) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    for (float v : out) ASSERT_EQ(v, 42.0f) << "output written before the error (" << needle << ")";
  };
  expect_error([&] { gemm_w4a4(a.view(), b48.view(), HalfAlpha{}, out); }, "b.k");
  expect_error(
      [&] {
        gemm_w4a4(a.view(), b.view(), HalfAlpha{std::nanf(""), 1.0f}, out);
      },
      "alpha");
  expect_error([&] { gemm_w4a4(a.view(), b.view(), HalfAlpha{1.0f, INFINITY}, out); }, "alpha");
  expect_error(
      [&] {
        std::vector<float> small(11, 42.0f);
        gemm_w4a4(a.view(), b.view(), HalfAlpha{}, small);
      },
      "out");
  expect_error(
      [&] {
        Nvfp4View bad = a.view();
        bad.codes = bad.codes.first(bad.codes.size() - 1);
        gemm_w4a4(bad, b.view(), HalfAlpha{}, out);
      },
      "a.codes");
  expect_error(
      [&] {
        Nvfp4View bad = b.view();
        bad.k = 24;
        gemm_w4a4(a.view(), bad, HalfAlpha{}, out);
      },
      "k");
  expect_error(
      [&] {
        Nvfp4View bad = b.view();
        bad.scales = bad.scales.first(100);
        gemm_w4a4(a.view(), bad, HalfAlpha{}, out);
      },
      "b.scales");
  std::vector<uint16_t> a16(3 * 32, 0);
  expect_error(
      [&] {
        gemm_w4a16(std::span<const uint16_t>(a16).first(95), ActDType::kBF16, 3, b.view(),
                   HalfAlpha{}, out);
      },
      "a:");
  expect_error([&] { gemm_w4a16(a16, ActDType(7), 3, b.view(), HalfAlpha{}, out); }, "dtype");
  expect_error([&] { gemm_w4a16(a16, ActDType::kBF16, -1, b.view(), HalfAlpha{}, out); }, "m:");

  // Grouped: offsets and expert weights.
  std::vector<Nvfp4View> bv = {b.view(), b.view()};
  std::vector<HalfAlpha> al = {HalfAlpha{}, HalfAlpha{}};
  const int64_t sr = expert_scale_rows_capacity(3, 2);
  std::vector<uint8_t> codes(3 * 16), scales(size_t(sr * 4));
  std::vector<int32_t> good = {0, 1, 3};
  expect_error(
      [&] {
        grouped_gemm_w4a4(codes, scales, sr, 32, std::vector<int32_t>{1, 1, 3}, bv, al, out);
      },
      "off");
  expect_error(
      [&] {
        grouped_gemm_w4a4(codes, scales, sr, 32, std::vector<int32_t>{0, 2, 1}, bv, al, out);
      },
      "off");
  expect_error(
      [&] {
        grouped_gemm_w4a4(codes, scales, sr, 32, std::vector<int32_t>{0, 3}, bv, al, out);
      },
      "off");
  expect_error([&] { grouped_gemm_w4a4(codes, scales, 128, 32, good, bv, al, out); }, "scale_rows");
  expect_error(
      [&] {
        grouped_gemm_w4a4(codes, std::span<const uint8_t>(scales).first(10), sr, 32, good, bv, al,
                          out);
      },
      "a_scales");
  expect_error(
      [&] {
        grouped_gemm_w4a4(std::span<const uint8_t>(codes).first(40), scales, sr, 32, good, bv, al,
                          out);
      },
      "a_codes");
  expect_error(
      [&] {
        grouped_gemm_w4a4(codes, scales, sr, 32, good, bv, std::vector<HalfAlpha>{HalfAlpha{}},
                          out);
      },
      "alpha");
  expect_error(
      [&] {
        grouped_gemm_w4a4(codes, scales, sr, 32, good, std::vector<Nvfp4View>{b.view(), b48.view()},
                          al, out);
      },
      "k");
  expect_error(
      [&] { grouped_gemm_w4a4(codes, scales, sr, 32, good, std::vector<Nvfp4View>{}, {}, out); },
      "b:");
  expect_error([&] { grouped_gemm_w4a4(codes, scales, sr, 20, good, bv, al, out); }, "k:");
  expect_error(
      [&] {
        grouped_gemm_w4a16(a16, ActDType::kBF16, 32, std::vector<int32_t>{0, 1, 4}, bv, al, out);
      },
      "a:");
  expect_error(
      [&] {
        grouped_gemm_w4a16(a16, ActDType::kBF16, 32, std::vector<int32_t>{0, 1, 2}, bv, al, out);
      },
      "out");
  // The good call works (the checks above are not vacuous).
  EXPECT_NO_THROW(grouped_gemm_w4a16(a16, ActDType::kBF16, 32, good, bv, al, out));
}

}  // namespace
}  // namespace nvfp4moe::ref
