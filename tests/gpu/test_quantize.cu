// GPU NVFP4 quantization of one matrix (global scale from device memory, runtime scale),
// dequantization, the fast e2m1 conversion, bad arguments, and (informational) how often the
// widely deployed approximate-reciprocal recipe gives other codes. Reference: the CPU golden
// model (ref/quantize.h), compared bit for bit including padding.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <cstring>  // gpu_test_util.h uses std::memcmp
#include <vector>

#include "gpu_test_util.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/ref/quantize.h"
#include "test_quantize_util.h"

namespace nvfp4moe::test {
namespace {

struct Shape {
  int64_t rows, k;
};
const Shape kSmallShapes[] = {{0, 16},  {1, 16},   {3, 48},   {19, 16},   {19, 48},  {129, 48},
                               {19, 64}, {5, 2048}, {1, 7168}, {3, 7168}, {19, 7168}};
// Runtime scale around the single-launch limit (kernels::kSmallRuntimeMaxElems = 131072
// elements): 16 x 7168 and 128 x 1024 take the one-cluster kernel, 129 x 1024 the two passes.
const Shape kRuntimeEdgeShapes[] = {{16, 7168}, {128, 1024}, {129, 1024}, {2, 65536}};
// Large shapes: wide and narrow slabs of the tile kernel (tile_quant_sm90.cuh), many tiles,
// K not a multiple of 64 (1040); the runtime-scale test runs them through the two-pass path.
const Shape kLargeShapes[] = {{129, 7168}, {1024, 2048}, {333, 4096}, {700, 7168},
                              {4300, 256}, {4400, 2048}, {4300, 1040}, {4300, 512}};

std::string label(const Shape& s, ActDType dt, uint32_t seed) {
  return std::string(to_string(dt)) + " rows=" + std::to_string(s.rows) + " k=" + std::to_string(s.k) +
         " seed=" + std::to_string(seed);
}

// GPU quantize with *g from device memory vs ref::quantize; output buffers poisoned first.
void check_quantize(const Shape& s, ActDType dt, uint32_t seed, float g) {
  const auto x = random_activations(s.rows, s.k, dt, seed);
  const size_t code_bytes = size_t(s.rows * s.k / 2), scale_bytes = size_t(swizzled_scale_bytes(s.rows, s.k));
  std::vector<uint8_t> want_codes(code_bytes), want_scales(scale_bytes);
  ref::quantize(x, dt, s.rows, s.k, g, want_codes, want_scales);

  DeviceBuffer<uint16_t> dx(x);
  DeviceBuffer<float> dg(std::vector<float>{g});
  DeviceBuffer<uint8_t> dcodes(code_bytes), dscales(scale_bytes);
  dcodes.fill_bytes(0xab);
  dscales.fill_bytes(0xab);
  cuda::quantize(dx.get(), dt, s.rows, s.k, dg.get(), dcodes.get(), dscales.get(), nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::string what = label(s, dt, seed) + " g=" + std::to_string(g);
  EXPECT_TRUE(codes_equal(dcodes.download(), want_codes, s.k, what + " codes"));
  EXPECT_TRUE(scales_equal(dscales.download(), want_scales, s.k, what + " scales"));
}

// Counts the non-NaN floats whose fast e2m1 code differs from e2m1_from_float (bad[0]) and
// those whose e2m1_magnitude_bits has a set bit outside the code and the exponent (bad[1]:
// the packed accumulation in quantize_pair8 relies on bits 3..22 and 31 being zero).
__global__ void count_fast_e2m1_mismatches(unsigned long long* bad) {
  unsigned long long local = 0, local_bits = 0;
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < (uint64_t(1) << 32);
       i += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t u = uint32_t(i);
    if ((u & 0x7fffffffu) > 0x7f800000u) continue;
    const float y = __uint_as_float(u);
    local += kernels::e2m1_code_fast(y) != e2m1_from_float(y);
    local_bits += (kernels::e2m1_magnitude_bits(y) & 0x807ffff8u) != 0;
  }
  if (local) atomicAdd(bad, local);
  if (local_bits) atomicAdd(bad + 1, local_bits);
}

// Counts the non-NaN floats whose hardware e4m3 conversion (kernels::e4m3_code_hw, used for
// the block scales) differs from e4m3_from_float, and the e4m3 codes 0..0x7e whose
// e4m3_value_hw differs from e4m3_to_float.
__global__ void count_e4m3_hw_mismatches(unsigned long long* bad) {
  unsigned long long local = 0;
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < (uint64_t(1) << 32);
       i += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t u = uint32_t(i);
    if ((u & 0x7fffffffu) > 0x7f800000u) continue;
    local += kernels::e4m3_code_hw(__uint_as_float(u)) != e4m3_from_float(__uint_as_float(u));
  }
  if (local) atomicAdd(bad, local);
  if (blockIdx.x == 0 && threadIdx.x < 0x7f) {
    const float a = kernels::e4m3_value_hw(threadIdx.x), b = e4m3_to_float(uint8_t(threadIdx.x));
    if (__float_as_uint(a) != __float_as_uint(b)) atomicAdd(bad + 1, 1ull);
  }
}

// Counts the floats in the fast reciprocal's range (kernels::rcp_rn_fast_range) where
// rcp_rn_fast differs from __frcp_rn (counter 0), and the floats outside it that the range test
// accepts or inside it that it rejects, against its definition (exponent field 1..252, sign 0).
__global__ void count_fast_rcp_mismatches(unsigned long long* bad) {
  unsigned long long local = 0, local_range = 0;
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < (uint64_t(1) << 32);
       i += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t u = uint32_t(i);
    const float d = __uint_as_float(u);
    const uint32_t exponent = (u >> 23) & 0xffu;
    const bool in_range = (u >> 31) == 0 && exponent >= 1 && exponent <= 252;
    local_range += kernels::rcp_rn_fast_range(d) != in_range;
    if (in_range) local += __float_as_uint(kernels::rcp_rn_fast(d)) != __float_as_uint(__frcp_rn(d));
  }
  if (local) atomicAdd(bad, local);
  if (local_range) atomicAdd(bad + 1, local_range);
}

// Counts the (codes, scale) pairs where block_values_bf16x8 (bit placement) differs in any bit
// from block_values_bf16x8_reference: every scale byte (NaNs and negatives included) with every
// code byte in all four byte positions (each output pair depends on one code byte and the
// scale), then 2^24 pseudo-random code words with random scales (counter 1).
__global__ void count_block_values_mismatches(unsigned long long* bad) {
  unsigned long long local = 0, local_random = 0;
  const uint32_t tid = blockIdx.x * blockDim.x + threadIdx.x, threads = gridDim.x * blockDim.x;
  auto differs = [](uint32_t codes, uint32_t scale) {
    const uint4 a = kernels::block_values_bf16x8(codes, scale);
    const uint4 b = kernels::block_values_bf16x8_reference(codes, scale);
    return a.x != b.x || a.y != b.y || a.z != b.z || a.w != b.w;
  };
  for (uint32_t i = tid; i < 256u * 256u; i += threads) {
    local += differs((i & 0xffu) * 0x01010101u, i >> 8);
  }
  for (uint32_t i = tid; i < (1u << 24); i += threads) {
    uint32_t x = i * 0x9E3779B9u + 0x7F4A7C15u;  // a bijective mix: distinct words
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    local_random += differs(x, (x * 0xC2B2AE35u) >> 24);
  }
  if (local) atomicAdd(bad, local);
  if (local_random) atomicAdd(bad + 1, local_random);
}

// Runs an exhaustive mismatch-counting kernel (two counters) and returns the counts.
std::vector<unsigned long long> count_mismatches(void (*kernel)(unsigned long long*)) {
  DeviceBuffer<unsigned long long> bad(2);
  bad.fill_bytes(0);
  kernel<<<1024, 256>>>(bad.get());
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  return bad.download();
}

TEST(QuantizeSm90, HardwareE4M3EqualsReferenceOnAllFloatsExhaustive) {
  NVFP4MOE_REQUIRE_GPU();
  const auto counts = count_mismatches(count_e4m3_hw_mismatches);
  EXPECT_EQ(counts[0], 0ull) << "floats where cvt.rn.satfinite.e4m3x2 != e4m3_from_float";
  EXPECT_EQ(counts[1], 0ull) << "codes where e4m3_value_hw != e4m3_to_float";
}

TEST(QuantizeSm90, FastReciprocalEqualsFrcpRnOnItsRangeExhaustive) {
  NVFP4MOE_REQUIRE_GPU();
  const auto counts = count_mismatches(count_fast_rcp_mismatches);
  EXPECT_EQ(counts[0], 0ull) << "floats where rcp_rn_fast != __frcp_rn";
  EXPECT_EQ(counts[1], 0ull) << "floats where rcp_rn_fast_range disagrees with its definition";
}

TEST(QuantizeSm90, FastE2M1EqualsReferenceOnAllFloatsExhaustive) {
  NVFP4MOE_REQUIRE_GPU();
  const auto counts = count_mismatches(count_fast_e2m1_mismatches);
  EXPECT_EQ(counts[0], 0ull) << "floats where e2m1_code_fast != e2m1_from_float";
  EXPECT_EQ(counts[1], 0ull) << "floats where e2m1_magnitude_bits has bits beyond the code and exponent";
}

TEST(QuantizeSm90, BlockValuesBitPlacementEqualsReferenceExhaustive) {
  NVFP4MOE_REQUIRE_GPU();
  const auto counts = count_mismatches(count_block_values_mismatches);
  EXPECT_EQ(counts[0], 0ull) << "(code byte, scale) pairs where block_values_bf16x8 != the reference";
  EXPECT_EQ(counts[1], 0ull) << "random code words where block_values_bf16x8 != the reference";
}

TEST(QuantizeSm90, PlainMatchesReferenceSmall) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 0;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const Shape& s : kSmallShapes) {
      for (float g : {1.0f, 0.3712f, 2688.0f / 6.0f, 7.5e5f}) check_quantize(s, dt, test_seed(++salt), g);
    }
  }
}

TEST(QuantizeSm90, PlainMatchesReferenceLarge) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 100;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const Shape& s : kLargeShapes) check_quantize(s, dt, test_seed(++salt), 1.0f);
  }
}

// Runtime scale: amax, g, 1/g, codes and scales all equal the golden model's.
void check_runtime_scale(const Shape& s, ActDType dt, uint32_t seed, bool edge, bool zeros) {
  auto x = random_activations(s.rows, s.k, dt, seed, edge);
  if (zeros) std::fill(x.begin(), x.end(), uint16_t(0));
  const size_t code_bytes = size_t(s.rows * s.k / 2), scale_bytes = size_t(swizzled_scale_bytes(s.rows, s.k));
  std::vector<uint8_t> want_codes(code_bytes), want_scales(scale_bytes);
  const float want_g = ref::quantize_runtime_scale(x, dt, s.rows, s.k, want_codes, want_scales);
  const float want_amax = ref::amax_abs(x, dt);

  DeviceBuffer<uint16_t> dx(x);
  DeviceBuffer<float> dfloats(3);  // amax, g, 1/g
  dfloats.fill_bytes(0xab);
  DeviceBuffer<uint8_t> dcodes(code_bytes), dscales(scale_bytes);
  dcodes.fill_bytes(0xab);
  dscales.fill_bytes(0xab);
  cuda::quantize_runtime_scale(dx.get(), dt, s.rows, s.k, dcodes.get(), dscales.get(), dfloats.get(),
                               dfloats.get() + 1, dfloats.get() + 2, nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::string what = label(s, dt, seed) + (edge ? " edge" : " plain") + (zeros ? " zeros" : "");
  const auto f = dfloats.download();
  EXPECT_EQ(float_bits(f[0]), float_bits(want_amax)) << what << ": amax " << f[0] << " vs " << want_amax;
  EXPECT_EQ(float_bits(f[1]), float_bits(want_g)) << what << ": g " << f[1] << " vs " << want_g;
  EXPECT_EQ(float_bits(f[2]), float_bits(reciprocal_rn(want_g))) << what << ": 1/g " << f[2];
  EXPECT_TRUE(codes_equal(dcodes.download(), want_codes, s.k, what + " codes"));
  EXPECT_TRUE(scales_equal(dscales.download(), want_scales, s.k, what + " scales"));
}

TEST(QuantizeSm90, RuntimeScaleMatchesReferenceSmall) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 200;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const Shape& s : kSmallShapes) {
      check_runtime_scale(s, dt, test_seed(++salt), true, false);
      check_runtime_scale(s, dt, test_seed(++salt), false, false);
    }
    check_runtime_scale({19, 48}, dt, test_seed(++salt), false, true);  // all zero: g = 1
    for (const Shape& s : kRuntimeEdgeShapes) {
      check_runtime_scale(s, dt, test_seed(++salt), true, false);
      check_runtime_scale(s, dt, test_seed(++salt), false, false);
    }
  }
}

TEST(QuantizeSm90, RuntimeScaleMatchesReferenceLarge) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 300;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const Shape& s : kLargeShapes) check_runtime_scale(s, dt, test_seed(++salt), false, false);
  }
}

TEST(QuantizeSm90, DequantizeMatchesReferenceSmall) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 400;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const Shape& s : kSmallShapes) {
      if (s.rows == 0) continue;
      const uint32_t seed = test_seed(++salt);
      const float g = 0.71f;
      const auto x = random_activations(s.rows, s.k, dt, seed);
      std::vector<uint8_t> codes(size_t(s.rows * s.k / 2)), scales(size_t(swizzled_scale_bytes(s.rows, s.k)));
      ref::quantize(x, dt, s.rows, s.k, g, codes, scales);
      std::vector<float> want(size_t(s.rows * s.k));
      ref::dequantize(codes, scales, s.rows, s.k, g, want);
      std::vector<uint16_t> want_bf16(want.size());
      for (size_t i = 0; i < want.size(); ++i) want_bf16[i] = bf16_from_float(want[i]);

      DeviceBuffer<uint8_t> dcodes(codes), dscales(scales);
      DeviceBuffer<float> dg(std::vector<float>{g}), dout(want.size());
      DeviceBuffer<uint16_t> dout16(want.size());
      dout.fill_bytes(0xab);
      dout16.fill_bytes(0xab);
      cuda::dequantize(dcodes.get(), dscales.get(), s.rows, s.k, dg.get(), dout.get(), nullptr);
      cuda::dequantize_bf16(dcodes.get(), dscales.get(), s.rows, s.k, dg.get(), dout16.get(), nullptr);
      NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
      const std::string what = label(s, dt, seed);
      // NaN scales decode to NaN; the host and the device spell NaN differently: canonicalize.
      auto canonical = [](std::vector<float> v) {
        for (auto& f : v) f = std::isnan(f) ? std::numeric_limits<float>::quiet_NaN() : f;
        return v;
      };
      EXPECT_TRUE(bytes_equal(canonical(dout.download()), canonical(want), what + " dequantize fp32"));
      EXPECT_TRUE(bytes_equal(dout16.download(), want_bf16, what + " dequantize bf16"));
    }
  }
}

TEST(QuantizeSm90, BadArgumentsThrowBeforeLaunch) {
  // Validation happens on the host before any CUDA call: no GPU needed.
  alignas(16) static uint8_t buf[4096];
  const void* x = buf;
  uint8_t* codes = buf;
  uint8_t* scales = buf;
  const float* g = reinterpret_cast<const float*>(buf);
  const int32_t* off = reinterpret_cast<const int32_t*>(buf);
  const auto bf = ActDType::kBF16;
  EXPECT_THROW(cuda::quantize(x, bf, 4, 24, g, codes, scales, nullptr), Error);          // k % 16
  EXPECT_THROW(cuda::quantize(x, bf, 4, 0, g, codes, scales, nullptr), Error);           // k == 0
  EXPECT_THROW(cuda::quantize(x, bf, -1, 16, g, codes, scales, nullptr), Error);         // rows < 0
  EXPECT_THROW(cuda::quantize(buf + 2, bf, 4, 16, g, codes, scales, nullptr), Error);    // x misaligned
  EXPECT_THROW(cuda::quantize(x, bf, 4, 16, g, buf + 8, scales, nullptr), Error);        // codes misaligned
  EXPECT_THROW(cuda::quantize(x, bf, 4, 16, g, codes, buf + 4, nullptr), Error);         // scales misaligned
  EXPECT_THROW(cuda::quantize(x, bf, 4, 16, nullptr, codes, scales, nullptr), Error);    // g null
  EXPECT_THROW(cuda::quantize(x, ActDType(7), 4, 16, g, codes, scales, nullptr), Error); // dtype
  float* amax = reinterpret_cast<float*>(buf);
  EXPECT_THROW(cuda::quantize_runtime_scale(x, bf, 4, 40, codes, scales, amax, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(cuda::quantize_runtime_scale(x, bf, 4, 16, codes, scales, nullptr, nullptr, nullptr, nullptr), Error);
  // Per-expert: capacity too small, E out of range, rows_in < rows_out without gather.
  const int64_t cap = expert_scale_rows_capacity(10, 4);
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 4, g, nullptr, 10, codes, scales, cap - 128, nullptr,
                                      nullptr), Error);
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 4, g, nullptr, 10, codes, scales, cap + 1, nullptr,
                                      nullptr), Error);
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 0, g, nullptr, 10, codes, scales, cap, nullptr, nullptr),
               Error);
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 1025, g, nullptr, 10, codes, scales, 1 << 20, nullptr,
                                      nullptr), Error);
  EXPECT_THROW(cuda::quantize_experts(x, bf, 9, 16, off, 4, g, nullptr, 10, codes, scales, cap, nullptr, nullptr),
               Error);
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off + 1, 4, g, reinterpret_cast<const int32_t*>(buf + 2), 10,
                                      codes, scales, cap, nullptr, nullptr), Error);  // gather misaligned
  // Values only needs both codes and scales null, and the values output.
  void* values = buf;
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 4, g, nullptr, 10, nullptr, scales, cap, nullptr, nullptr,
                                      values), Error);  // codes null alone
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 4, g, nullptr, 10, codes, nullptr, cap, nullptr, nullptr,
                                      values), Error);  // scales null alone
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 4, g, nullptr, 10, nullptr, nullptr, cap, nullptr, nullptr),
               Error);  // nothing to write
  EXPECT_THROW(cuda::quantize_experts(x, bf, 10, 16, off, 4, g, nullptr, 10, nullptr, nullptr, 0, nullptr, nullptr,
                                      buf + 8), Error);  // values misaligned
  EXPECT_THROW(cuda::silu_and_mul_quantize_experts(x, bf, 10, 16, std::nullopt, off, 4, g, nullptr, scales, cap,
                                                   nullptr, nullptr, values), Error);  // codes null alone
  EXPECT_THROW(cuda::silu_and_mul(x, bf, 4, 12, std::nullopt, buf, nullptr), Error);  // inter % 8
  EXPECT_THROW(cuda::silu_and_mul(x, bf, 4, 16, -1.0f, buf, nullptr), Error);         // limit <= 0
  EXPECT_THROW(cuda::silu_and_mul_quantize_experts(x, bf, 10, 24, std::nullopt, off, 4, g, codes, scales, cap,
                                                   nullptr, nullptr), Error);  // inter % 16
  EXPECT_THROW(cuda::dequantize(codes, scales, 4, 8, g, amax, nullptr), Error);
  // A throw must also carry the argument's name.
  try {
    cuda::quantize(x, bf, 4, 24, g, codes, scales, nullptr);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("k:"), std::string::npos) << e.what();
  }
}

// The widely deployed recipe: the same scale byte, but m = rcp.approx.ftz(s * rcp.approx.ftz(g)).
__device__ __forceinline__ float rcp_approx_ftz(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

// One thread per 16-element block of bf16 x [rows, k]: codes [rows, k/2] by the approx recipe.
__global__ void quantize_approx_recipe_kernel(const uint16_t* x, int64_t blocks, float g, uint8_t* codes) {
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    float v[16];
    float amax = 0.0f;
    bool has_nan = false;
    for (int i = 0; i < 16; ++i) {
      v[i] = bf16_to_float(x[b * 16 + i]);
      has_nan = has_nan || is_nan_f32(v[i]);
      amax = abs_max_ignore_nan(amax, v[i]);
    }
    const uint8_t s = block_scale_code(amax, has_nan, g);
    const float sf = e4m3_to_float(s);
    const float m = (sf == 0.0f) ? 0.0f : rcp_approx_ftz(sf * rcp_approx_ftz(g));
    for (int i = 0; i < 8; ++i) {
      codes[b * 8 + i] = pack_e2m1x2(e2m1_from_float(v[2 * i] * m), e2m1_from_float(v[2 * i + 1] * m));
    }
  }
}

TEST(QuantizeSm90, ApproxReciprocalRecipeMismatchRateInformational) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t rows = 4096, k = 4096;
  for (bool edge : {false, true}) {
    const uint32_t seed = test_seed(500 + edge);
    const auto x = random_activations(rows, k, ActDType::kBF16, seed, edge);
    const float g = global_scale_from_amax(ref::amax_abs(x, ActDType::kBF16));
    DeviceBuffer<uint16_t> dx(x);
    DeviceBuffer<float> dg(std::vector<float>{g});
    DeviceBuffer<uint8_t> ours(size_t(rows * k / 2)), approx(size_t(rows * k / 2)),
        dscales(size_t(swizzled_scale_bytes(rows, k)));
    cuda::quantize(dx.get(), ActDType::kBF16, rows, k, dg.get(), ours.get(), dscales.get(), nullptr);
    quantize_approx_recipe_kernel<<<1024, 256>>>(dx.get(), rows * k / 16, g, approx.get());
    NVFP4MOE_CUDA_CHECK_LAUNCH();
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    const auto a = ours.download(), b = approx.download();
    int64_t diff_elems = 0, diff_blocks = 0;
    for (int64_t blk = 0; blk < rows * k / 16; ++blk) {
      bool any = false;
      for (int i = 0; i < 8; ++i) {
        const uint8_t p = a[size_t(blk * 8 + i)], q = b[size_t(blk * 8 + i)];
        diff_elems += ((p & 0xf) != (q & 0xf)) + ((p >> 4) != (q >> 4));
        any = any || p != q;
      }
      diff_blocks += any;
    }
    std::printf("[approx recipe] %s data (bf16 %lldx%lld, seed %u): %lld of %lld codes differ (%.3g%%), "
                "%lld of %lld blocks\n", edge ? "edge-mixed" : "random", (long long)rows, (long long)k, seed,
                (long long)diff_elems, (long long)(rows * k), 100.0 * double(diff_elems) / double(rows * k),
                (long long)diff_blocks, (long long)(rows * k / 16));
    RecordProperty(edge ? "approx_diff_edge" : "approx_diff_random", std::to_string(diff_elems));
  }
}
}  // namespace
}  // namespace nvfp4moe::test
