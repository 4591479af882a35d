// Helpers of the NVFP4 quantization GPU tests: seeded activations with edge values mixed in,
// expert splits, and bitwise comparisons of codes / swizzled scales that name the first
// mismatching coordinate.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe::test {

inline uint32_t test_seed(uint32_t salt) {
  return 0x5eed0000u + salt;  // fixed per test case; printed in every failure message
}

// Random activations [rows, k] where each 16-element block is one of: ordinary values over a
// wide exponent range, exact e2m1 ties (block max 6, elements on midpoints: with g = 1 the
// multiplier is 1), values far beyond saturation, tiny values (subnormal or zero scales),
// all zeros, or ordinary values with +-Inf or NaN mixed in. edge = false gives ordinary
// blocks only.
inline std::vector<uint16_t> random_activations(int64_t rows, int64_t k, ActDType dtype, uint32_t seed,
                                                bool edge = true) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> kind_dist(0, 15);
  const bool fp16 = dtype == ActDType::kFP16;
  const int max_exp = fp16 ? 14 : 40, min_exp = fp16 ? -20 : -60;
  std::uniform_int_distribution<int> exp_dist(min_exp, max_exp);
  static const float kTies[] = {6.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f,
                                -0.25f, -0.75f, -1.25f, -1.75f, -2.5f, -3.5f, -5.0f, 0.0f};
  std::vector<uint16_t> x(size_t(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < k / 16; ++b) {
      const int kind = edge ? kind_dist(rng) : 0;
      const float block_scale = std::ldexp(1.0f, exp_dist(rng));
      for (int i = 0; i < 16; ++i) {
        float v = unit(rng) * block_scale;
        switch (kind) {
          case 10: v = kTies[(i + b) % 16]; if (i == 0) v = 6.0f; break;   // exact ties
          case 11: v = unit(rng) * (fp16 ? 60000.0f : 1e30f); break;      // beyond saturation
          case 12: v = unit(rng) * (fp16 ? 3e-7f : 1e-36f); break;         // tiny
          case 13: v = 0.0f; if (i == 5) v = -0.0f; break;                 // zeros
          case 14: if (i == 3) v = (b & 1) ? -INFINITY : INFINITY; break;  // +-Inf
          case 15: if (i == 7) v = NAN; break;                             // NaN
          default: break;
        }
        x[size_t(r * k + b * 16 + i)] = act_from_float(v, dtype);
      }
    }
  }
  return x;
}

// Finite moderate activations for the SiLU inputs (gate/up around [-8, 8]), a few edge
// values (large negative gate, values beyond a clamp limit) mixed in.
inline std::vector<uint16_t> random_silu_inputs(int64_t rows, int64_t two_inter, ActDType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-8.0f, 8.0f);
  std::uniform_int_distribution<int> edge(0, 63);
  std::vector<uint16_t> x(size_t(rows * two_inter));
  for (auto& v : x) {
    float f = unit(rng);
    const int e = edge(rng);
    if (e == 0) f = -100.0f;  // exp(-gate) overflows: silu -> -0
    if (e == 1) f = 30.0f;    // beyond a SwiGLU limit
    if (e == 2) f = 0.0f;
    v = act_from_float(f, dtype);
  }
  return x;
}

// Expert offsets [E+1] from per-expert counts.
inline std::vector<int32_t> offsets_from_counts(const std::vector<int32_t>& counts) {
  std::vector<int32_t> off(counts.size() + 1, 0);
  for (size_t e = 0; e < counts.size(); ++e) off[e + 1] = off[e] + counts[e];
  return off;
}

// Splits `rows` over `experts` experts: "random" (multinomial, some empty), "one" (expert
// e = experts/2 takes every row), "skewed" (half the rows to expert 0, the rest random, every
// third expert empty).
inline std::vector<int32_t> split_rows(int32_t rows, int experts, const std::string& how, uint32_t seed) {
  std::vector<int32_t> counts(size_t(experts), 0);
  std::mt19937 rng(seed);
  if (how == "one") {
    counts[size_t(experts / 2)] = rows;
    return counts;
  }
  int32_t left = rows;
  if (how == "skewed") {
    counts[0] = rows / 2;
    left -= rows / 2;
  }
  std::uniform_int_distribution<int> pick(0, experts - 1);
  for (int32_t i = 0; i < left; ++i) {
    int e = pick(rng);
    if (how == "skewed" && e % 3 == 2) e = 0;
    counts[size_t(e)] += 1;
  }
  return counts;
}

// got == want element for element, else a failure naming the count, the first mismatch (where
// `where(i)` describes index i) and the two values there.
template <typename T, typename Where>
::testing::AssertionResult elements_equal(const std::vector<T>& got, const std::vector<T>& want, const char* unit,
                                          const Where& where, const std::string& what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != " << want.size();
  }
  size_t first = got.size(), count = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      if (first == got.size()) first = i;
      ++count;
    }
  }
  if (count == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << count << " of " << got.size() << " " << unit
                                       << " differ; first at " << where(first) << " (got 0x" << std::hex
                                       << +got[first] << ", want 0x" << +want[first] << std::dec << ")";
}

// Codes [rows, k/2]: equal bytes, else the first mismatching (row, element pair) and the count.
inline ::testing::AssertionResult codes_equal(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                                              int64_t k, const std::string& what) {
  return elements_equal(got, want, "code bytes", [&](size_t i) {
    const int64_t row = int64_t(i) / (k / 2), col = 2 * (int64_t(i) % (k / 2));
    return "row " + std::to_string(row) + ", elements " + std::to_string(col) + ".." + std::to_string(col + 1);
  }, what);
}

// Values [rows, k] (k % 64 == 0) in natural order rearranged into the GEMM's K order
// (cuda::ValuesOrder::kGemm): within each 64-column block, natural column 16q + 4s + 2h + b
// goes to 16s + 8h + 2q + b. Written from the formula, independently of the kernels' lane maths.
inline std::vector<uint16_t> to_gemm_k_order(const std::vector<uint16_t>& natural, int64_t rows, int64_t k) {
  std::vector<uint16_t> out(natural.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int64_t block = c / 64, q = (c % 64) / 16, s = (c % 16) / 4, h = (c % 4) / 2, b = c % 2;
      out[size_t(r * k + block * 64 + 16 * s + 8 * h + 2 * q + b)] = natural[size_t(r * k + c)];
    }
  }
  return out;
}

// Equal values, else the first mismatching (row, column) of the [rows, k] matrix and the count.
inline ::testing::AssertionResult values_equal(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want,
                                               int64_t k, const std::string& what) {
  return elements_equal(got, want, "values", [&](size_t i) {
    return "row " + std::to_string(int64_t(i) / k) + ", column " + std::to_string(int64_t(i) % k);
  }, what);
}

// Swizzled scales: equal bytes, else the first mismatching (scale row, scale column).
inline ::testing::AssertionResult scales_equal(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                                               int64_t k, const std::string& what) {
  return elements_equal(got, want, "scale bytes", [&](size_t i) {
    int64_t r = 0, c = 0;
    swizzled_scale_coord(int64_t(i), padded_scale_cols(k), &r, &c);
    return "scale row " + std::to_string(r) + ", column " + std::to_string(c) + " (byte " + std::to_string(i) + ")";
  }, what);
}

}  // namespace nvfp4moe::test
