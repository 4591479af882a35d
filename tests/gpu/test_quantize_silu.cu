// The device fast SiLU (kernels/silu_mul_sm90.cuh) against the CPU model (ref::silu_and_mul):
// special values exactly, every 16-bit gate value within one ulp of the product (mismatch
// rate printed), through the public silu_and_mul. The fused kernel uses the same device
// function; test_quantize_experts.cu checks fused == unfused bit for bit.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>  // gpu_test_util.h uses std::memcmp
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/ref/quantize.h"
#include "test_quantize_util.h"

namespace nvfp4moe::test {
namespace {

// GPU and CPU silu_and_mul of x [rows, 2*inter].
struct SiluRun {
  std::vector<uint16_t> gpu, cpu;
};
SiluRun run_silu(const std::vector<uint16_t>& x, int64_t rows, int64_t inter, ActDType dt, std::optional<float> limit) {
  SiluRun r;
  r.cpu.resize(size_t(rows * inter));
  ref::silu_and_mul(x, dt, rows, inter, limit, r.cpu);
  DeviceBuffer<uint16_t> dx(x), dout(size_t(rows * inter));
  dout.fill_bytes(0xab);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  cuda::silu_and_mul(dx.get(), dt, rows, inter, limit, dout.get(), nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  r.gpu = dout.download();
  return r;
}

bool is_nan16(uint16_t h, ActDType dt) {
  return dt == ActDType::kBF16 ? (h & 0x7fffu) > 0x7f80u : (h & 0x7fffu) > 0x7c00u;
}

// Products one ulp apart: same sign, adjacent encodings (finite or the largest finite / Inf).
bool one_ulp_apart(uint16_t a, uint16_t b) {
  const int d = int(a) - int(b);
  return (a >> 15) == (b >> 15) && (d == 1 || d == -1);
}

// Inputs (after the clamp) where the fast SiLU must give the CPU model's product exactly:
// gate +-0, +-Inf, NaN or <= -89 (exp(-gate) overflows: -0), and up 0, Inf or NaN (the
// product is then 0, Inf or NaN on both sides).
bool exact_inputs(float gate, float up, std::optional<float> limit) {
  if (limit) {
    gate = gate > *limit ? *limit : gate;
    up = up > *limit ? *limit : (up < -*limit ? -*limit : up);
  }
  const bool gate_special = !std::isfinite(gate) || gate == 0.0f || gate <= -89.0f;
  const bool up_special = !std::isfinite(up) || up == 0.0f;
  return gate_special || up_special;
}

std::string describe16(uint16_t h, ActDType dt) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "0x%04x (%g)", unsigned(h), double(act_to_float(h, dt)));
  return buf;
}

// Special gate values (+-0, +-Inf, NaN, subnormals, the fast/precise boundary at -64, where
// exp(-v) overflows (~ -88.7) and far beyond, large positive) times up values 1, -2.5, 0, Inf,
// NaN, ...; with and without the clamp: the CPU model's product exactly where exact_inputs
// says so, else within one ulp.
TEST(QuantizeSiluSm90, FastSiluSpecialValuesEqualCpuSmall) {
  NVFP4MOE_REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> gates = {0.0f,    -0.0f,  inf,     -inf,   nan,     1e-40f, -1e-40f, 1e-30f, -63.5f,
                                    -64.0f,  -64.5f, -80.0f,  -87.0f, -88.5f,  -88.75f, -89.0f, -100.0f, -1e30f,
                                    30.0f,   100.0f, 1e30f,   -5.0f,  7.0f,    7.5f,    -7.5f,  3.0e38f, -3.0e38f,
                                    -20.0f,  -40.0f, -60.0f};
  const std::vector<float> ups = {1.0f, -2.5f, 0.0f, inf, nan, 1e30f, -1e-30f, 8.0f};
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    const int64_t inter = 8 * int64_t((gates.size() + 7) / 8);
    const int64_t rows = int64_t(ups.size());
    std::vector<uint16_t> x(size_t(rows * 2 * inter), act_from_float(0.5f, dt));
    for (int64_t r = 0; r < rows; ++r) {
      for (size_t c = 0; c < gates.size(); ++c) {
        x[size_t(r * 2 * inter) + c] = act_from_float(gates[c], dt);
        x[size_t(r * 2 * inter + inter) + c] = act_from_float(ups[size_t(r)], dt);
      }
    }
    for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
      const SiluRun s = run_silu(x, rows, inter, dt, limit);
      for (int64_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < gates.size(); ++c) {
          const size_t i = size_t(r * inter) + c;
          const uint16_t got = s.gpu[i], want = s.cpu[i];
          const uint16_t gate_bits = x[size_t(r * 2 * inter) + c], up_bits = x[size_t(r * 2 * inter + inter) + c];
          const bool special = exact_inputs(act_to_float(gate_bits, dt), act_to_float(up_bits, dt), limit);
          const std::string what = std::string(to_string(dt)) + " gate=" + std::to_string(gates[c]) +
                                   " up=" + std::to_string(ups[size_t(r)]) + (limit ? " limit=7" : "") +
                                   ": got " + describe16(got, dt) + ", want " + describe16(want, dt);
          if (special) {
            EXPECT_TRUE(got == want || (is_nan16(got, dt) && is_nan16(want, dt))) << what;
          } else {
            EXPECT_TRUE(got == want || one_ulp_apart(got, want)) << what;
          }
        }
      }
    }
  }
}

// Every 16-bit gate pattern (65536 values, NaNs and Infs included) times a few up values:
// products equal to the CPU model's or one ulp away; non-finite and zero results equal.
TEST(QuantizeSiluSm90, FastSiluAllGateValuesWithinOneUlp) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t inter = 4096, rows = 16;  // 65536 gate values, one per (row, column)
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (float up : {1.0f, -0.75f, 3.0f}) {
      for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
        std::vector<uint16_t> x(size_t(rows * 2 * inter));
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < inter; ++c) {
            x[size_t(r * 2 * inter + c)] = uint16_t(r * inter + c);
            x[size_t(r * 2 * inter + inter + c)] = act_from_float(up, dt);
          }
        }
        const SiluRun s = run_silu(x, rows, inter, dt, limit);
        int64_t diff = 0, far = 0, special_diff = 0;
        std::string first_far;
        for (size_t i = 0; i < s.gpu.size(); ++i) {
          const uint16_t got = s.gpu[i], want = s.cpu[i];
          if (got == want || (is_nan16(got, dt) && is_nan16(want, dt))) continue;
          ++diff;
          const uint16_t gate_bits = uint16_t(i);  // row r, column c hold pattern r * inter + c
          if (exact_inputs(act_to_float(gate_bits, dt), up, limit)) ++special_diff;
          if (!one_ulp_apart(got, want) && first_far.empty()) {
            first_far = "gate " + describe16(gate_bits, dt) + ": got " + describe16(got, dt) + ", want " +
                        describe16(want, dt);
          }
          far += !one_ulp_apart(got, want);
        }
        std::printf("[fast silu vs CPU] %s up=%g limit=%s: %lld of %zu products differ (%.4f%%), all by 1 ulp: %s\n",
                    to_string(dt), double(up), limit ? "7" : "none", (long long)diff, s.gpu.size(),
                    100.0 * double(diff) / double(s.gpu.size()), far == 0 ? "yes" : "NO");
        EXPECT_EQ(far, 0) << to_string(dt) << " up=" << up << ": products more than 1 ulp away, first at " << first_far;
        EXPECT_EQ(special_diff, 0) << to_string(dt) << " up=" << up << ": products of special inputs differ";
        // Tolerance of the rate: 1% of the products (the measured rate is printed).
        EXPECT_LE(double(diff), 0.01 * double(s.gpu.size())) << to_string(dt) << " up=" << up;
      }
    }
  }
}

}  // namespace
}  // namespace nvfp4moe::test
