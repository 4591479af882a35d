// GPU per-expert NVFP4 quantization (device offsets, optional row gather), the fused
// SiLU*Mul + per-expert quantization, device-side validation of offsets and gather entries,
// and CUDA graph capture. Reference: the CPU golden model (ref/quantize.h).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>  // gpu_test_util.h uses std::memcmp
#include <functional>
#include <optional>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/ref/quantize.h"
#include "test_quantize_util.h"

namespace nvfp4moe::test {
namespace {

struct ExpertCase {
  int32_t rows;   // off[E]
  int32_t extra;  // rows_out - off[E] (rows written as zero)
  int64_t k;
  int experts;
  const char* split;  // "random", "one", "skewed"
};

const ExpertCase kSmallCases[] = {
    {0, 0, 16, 1, "random"},   {0, 5, 48, 4, "random"},   {1, 0, 16, 1, "one"},
    {3, 2, 48, 4, "random"},   {19, 3, 16, 8, "one"},     {19, 0, 48, 8, "random"},
    {129, 7, 48, 3, "skewed"}, {129, 0, 16, 256, "random"}, {19, 1, 7168, 4, "random"},
    {3, 0, 7168, 256, "one"},  {19, 2, 64, 4, "random"}, {5, 0, 2048, 256, "random"},
    {3, 300, 64, 8, "skewed"},  // capacity far above off[E]: many zero code rows
    // More experts than the tables' 256 threads: two rounds of the expert scan (300, the second
    // partial) and all four (1024, the most the kernels take).
    {300, 0, 48, 300, "random"}, {19, 3, 16, 1024, "one"}, {129, 0, 64, 1024, "random"},
};
// The kernel variants (src/cuda/quantize.cu, launch_quantize, 132 SMs; every other seed takes
// the flat one-chunk kernel of the values output instead): one chunk per warp step
// (1000 x 2048, 129 x 7168, 4500 x 512: row-step walk) and, above one resident wave of 4-chunk
// steps, the row-step walk with 4 chunks per step (700 x 7168, 4300 x 2048, 5000 x 1024: one
// step per row) or 2 (9000 x 512), and the flat walk with 4 chunks (6000 x 768: 3 chunks a row).
const ExpertCase kLargeCases[] = {
    {1000, 24, 2048, 256, "skewed"}, {129, 0, 7168, 256, "random"}, {700, 0, 7168, 8, "one"},
    {4300, 40, 2048, 256, "skewed"}, {4500, 0, 512, 3, "random"},    {5000, 20, 1024, 256, "skewed"},
    {9000, 0, 512, 8, "random"},     {6000, 0, 768, 8, "one"},       {1000, 24, 2048, 1024, "skewed"},
};

std::vector<float> expert_global_scales(int experts, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.05f, 3000.0f);
  std::vector<float> g(static_cast<size_t>(experts));
  for (auto& v : g) v = u(rng);
  g[0] = 1.0f;  // exact ties hit with g = 1
  return g;
}

std::string label(const ExpertCase& c, ActDType dt, uint32_t seed, bool gather) {
  return std::string(to_string(dt)) + " rows=" + std::to_string(c.rows) + "+" + std::to_string(c.extra) +
         " k=" + std::to_string(c.k) + " E=" + std::to_string(c.experts) + " split=" + c.split +
         (gather ? " gather" : "") + " seed=" + std::to_string(seed);
}

// The optional values output: data rows (< off[E]) hold bf16(e2m1(code) * e4m3(scale)) of the
// given codes and swizzled scales (no global scale); the other rows keep the 0xabab poison.
::testing::AssertionResult values_match(const std::vector<uint16_t>& got, const std::vector<uint8_t>& codes,
                                        const std::vector<uint8_t>& scales, const std::vector<int32_t>& off,
                                        int64_t rows_out, int64_t k, const std::string& what) {
  const int experts = int(off.size()) - 1;
  const int64_t pc = padded_scale_cols(k);
  int64_t sf = 0;
  for (int e = 0; e < experts; ++e) {
    for (int64_t r = off[size_t(e)]; r < off[size_t(e) + 1]; ++r) {
      const int64_t srow = sf + (r - off[size_t(e)]);
      for (int64_t c = 0; c < k; ++c) {
        const uint8_t byte = codes[size_t((r * k + c) / 2)];
        const uint8_t code = c % 2 ? uint8_t(byte >> 4) : uint8_t(byte & 0xf);
        const float s = e4m3_to_float(scales[size_t(swizzled_scale_offset(srow, c / kBlockSize, pc))]);
        const uint16_t want = bf16_from_float(e2m1_to_float(code) * s);
        const uint16_t g = got[size_t(r * k + c)];
        if (g != want) {
          return ::testing::AssertionFailure() << what << ": values row " << r << " col " << c << ": got 0x" << std::hex
                                               << g << ", want 0x" << want;
        }
      }
    }
    sf += round_up(off[size_t(e) + 1] - off[size_t(e)], kScaleTileRows);
  }
  for (int64_t i = int64_t(off.back()) * k; i < rows_out * k; ++i) {
    if (got[size_t(i)] != 0xabab) return ::testing::AssertionFailure() << what << ": values past off[E] written at " << i;
  }
  return ::testing::AssertionSuccess();
}

// The values in the GEMM's K order (ValuesOrder::kGemm, K % 256 == 0): `quantize(values)` writes
// them; they must be `natural` (the natural-order values of the same call, [rows, k], checked
// elsewhere) rearranged, with the rows past off[E] untouched (`natural` holds the 0xab poison
// there too), and no error flag.
void expect_gemm_order_values(const std::function<void(void* values)>& quantize, const std::vector<uint16_t>& natural,
                              int64_t rows, int64_t k, size_t capacity, const DeviceBuffer<uint32_t>& err,
                              const std::string& what) {
  DeviceBuffer<uint16_t> ordered(capacity);
  ordered.fill_bytes(0xab);
  quantize(ordered.get());
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::string how = what + " values in GEMM order";
  EXPECT_EQ(err.download()[0], 0u) << how << ": error flags";
  std::vector<uint16_t> got = ordered.download();
  got.resize(natural.size());
  EXPECT_TRUE(values_equal(got, to_gemm_k_order(natural, rows, k), k, how));
}

void check_experts(const ExpertCase& c, ActDType dt, uint32_t seed, bool use_gather) {
  const int32_t rows_out = c.rows + c.extra;
  const auto off = offsets_from_counts(split_rows(c.rows, c.experts, c.split, seed));
  const auto g = expert_global_scales(c.experts, seed + 1);
  const int64_t scale_rows = expert_scale_rows_capacity(rows_out, c.experts);
  // With a gather map the input has a different row count, rows repeat, and output rows
  // past off[E] still hold valid (unused) entries.
  const int32_t rows_in = use_gather ? rows_out / 2 + 3 : rows_out;
  std::vector<int32_t> gather;
  if (use_gather) {
    std::mt19937 rng(seed + 2);
    std::uniform_int_distribution<int32_t> pick(0, rows_in - 1);
    gather.resize(size_t(rows_out));
    for (auto& v : gather) v = pick(rng);
  }
  const auto x = random_activations(rows_in, c.k, dt, seed);
  // Both sides start from the 0xab poison: scale bytes past sf_off[E] must stay untouched.
  std::vector<uint8_t> want_codes(size_t(rows_out * c.k / 2)),
      want_scales(size_t(scale_rows * padded_scale_cols(c.k)), 0xab);
  ref::quantize_experts(x, dt, rows_in, c.k, off, g, gather, rows_out, want_codes, want_scales, scale_rows);

  DeviceBuffer<uint16_t> dx(x);
  DeviceBuffer<int32_t> doff(off), dgather(gather);
  DeviceBuffer<float> dg(g);
  DeviceBuffer<uint8_t> dcodes(want_codes.size()), dscales(want_scales.size());
  DeviceBuffer<uint16_t> dvalues(std::max<size_t>(1, size_t(rows_out * c.k)));
  DeviceBuffer<uint32_t> derr(1);
  dcodes.fill_bytes(0xab);
  dscales.fill_bytes(0xab);
  dvalues.fill_bytes(0xab);
  derr.fill_bytes(0);
  // Every other seed with the values output (which takes the small-tensor kernel at any size):
  // the codes and scales must not depend on it, and both kernels stay covered.
  const bool values = seed % 2 == 0;
  cuda::quantize_experts(dx.get(), dt, rows_in, c.k, doff.get(), c.experts, dg.get(),
                         use_gather ? dgather.get() : nullptr, rows_out, dcodes.get(), dscales.get(), scale_rows,
                         derr.get(), nullptr, values ? dvalues.get() : nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::string what = label(c, dt, seed, use_gather);
  EXPECT_EQ(derr.download()[0], 0u) << what << ": error flags";
  EXPECT_TRUE(codes_equal(dcodes.download(), want_codes, c.k, what + " codes"));
  EXPECT_TRUE(scales_equal(dscales.download(), want_scales, c.k, what + " scales"));
  if (values) {
    std::vector<uint16_t> got = dvalues.download();
    got.resize(size_t(rows_out * c.k));
    EXPECT_TRUE(values_match(got, want_codes, want_scales, off, rows_out, c.k, what));
    // Values only (codes and scales null): the same values, nothing else written.
    DeviceBuffer<uint16_t> only(dvalues.size());
    only.fill_bytes(0xab);
    cuda::quantize_experts(dx.get(), dt, rows_in, c.k, doff.get(), c.experts, dg.get(),
                           use_gather ? dgather.get() : nullptr, rows_out, nullptr, nullptr, 0, derr.get(), nullptr,
                           only.get());
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(derr.download()[0], 0u) << what << ": error flags (values only)";
    std::vector<uint16_t> got_only = only.download();
    got_only.resize(got.size());
    EXPECT_TRUE(got_only == got) << what << ": values-only output differs from the values of the full call";
    // The values in the GEMM's K order, written by the large-tensor kernels (row-step, bulk)
    // at every size.
    if (c.k % 256 == 0) {
      expect_gemm_order_values(
          [&](void* values) {
            cuda::quantize_experts(dx.get(), dt, rows_in, c.k, doff.get(), c.experts, dg.get(),
                                   use_gather ? dgather.get() : nullptr, rows_out, nullptr, nullptr, 0, derr.get(),
                                   nullptr, values, cuda::ValuesOrder::kGemm);
          },
          got, rows_out, c.k, dvalues.size(), derr, what);
    }
  }
}

TEST(QuantizeExpertsSm90, MatchesReferenceSmall) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 1000;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const ExpertCase& c : kSmallCases) {
      check_experts(c, dt, test_seed(++salt), false);
      check_experts(c, dt, test_seed(++salt), true);
    }
  }
}

TEST(QuantizeExpertsSm90, MatchesReferenceLarge) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 1100;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const ExpertCase& c : kLargeCases) {
      check_experts(c, dt, test_seed(++salt), false);
      check_experts(c, dt, test_seed(++salt), true);
    }
  }
}

// Malformed device offsets of 4 experts over 19 output rows (both per-expert writers' tests).
const std::vector<std::vector<int32_t>> kBadOffsets = {
    {0, 5, 3, 10, 19},      // non-monotone
    {1, 5, 8, 10, 19},      // off[0] != 0
    {0, 5, 8, 10, 20},      // off[E] > rows_out
    {0, 5, 8, 10, -7},      // negative
    {0, 2000000000, 2000000000, 2000000000, 2000000000},  // huge
};

// One per-expert writer (quantize_experts, gather_experts_nvfp4) on each of kBadOffsets:
// `write(off, codes, scales, err)` into outputs prefilled with 0xab must raise
// kQuantErrorBadOffsets and leave every code and scale byte zero.
void expect_bad_offsets_zero_everything(
    int32_t rows_out, int64_t k, int64_t scale_rows,
    const std::function<void(const int32_t*, uint8_t*, uint8_t*, uint32_t*)>& write) {
  for (const auto& off : kBadOffsets) {
    DeviceBuffer<int32_t> doff(off);
    DeviceBuffer<uint8_t> codes(size_t(rows_out * k / 2)), scales(size_t(scale_rows * padded_scale_cols(k)));
    DeviceBuffer<uint32_t> err(1);
    codes.fill_bytes(0xab);
    scales.fill_bytes(0xab);
    err.fill_bytes(0);
    write(doff.get(), codes.get(), scales.get(), err.get());
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(err.download()[0], cuda::kQuantErrorBadOffsets) << "off[1]=" << off[1];
    EXPECT_TRUE(bytes_equal(codes.download(), std::vector<uint8_t>(codes.size(), 0), "codes zeroed"));
    EXPECT_TRUE(bytes_equal(scales.download(), std::vector<uint8_t>(scales.size(), 0), "scales zeroed"));
  }
}

// Malformed device offsets / gather entries: flags set, nothing out of bounds, outputs zero
// (offsets) or the bad row quantized as zeros (gather).
TEST(QuantizeExpertsSm90, BadDeviceOffsetsSetErrorFlagSmall) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t k = 48;
  const int32_t rows_out = 19;
  const int experts = 4;
  const int64_t scale_rows = expert_scale_rows_capacity(rows_out, experts);
  const auto x = random_activations(rows_out, k, ActDType::kBF16, test_seed(1200), false);
  DeviceBuffer<uint16_t> dx(x);
  DeviceBuffer<float> dg(std::vector<float>(experts, 1.0f));
  expect_bad_offsets_zero_everything(rows_out, k, scale_rows,
                                     [&](const int32_t* off, uint8_t* codes, uint8_t* scales, uint32_t* err) {
                                       cuda::quantize_experts(dx.get(), ActDType::kBF16, rows_out, k, off, experts,
                                                              dg.get(), nullptr, rows_out, codes, scales, scale_rows,
                                                              err, nullptr);
                                     });
  // A gather entry out of range: flag, that row's codes and scales are zero, others correct.
  const std::vector<int32_t> off = {0, 5, 8, 10, 19};
  std::vector<int32_t> gather(static_cast<size_t>(rows_out));
  for (int32_t i = 0; i < rows_out; ++i) gather[size_t(i)] = (i * 7) % rows_out;
  gather[6] = rows_out;  // out of range
  // The reference sees the bad entry as a pointer to an appended all-zero input row.
  std::vector<int32_t> gather_ok = gather;
  std::vector<uint16_t> x_ext = x;
  x_ext.resize(x.size() + size_t(k), 0);
  gather_ok[6] = rows_out;
  const std::vector<float> g(experts, 1.0f);
  std::vector<uint8_t> want_codes(size_t(rows_out * k / 2)), want_scales(size_t(scale_rows * padded_scale_cols(k)), 0xab);
  ref::quantize_experts(x_ext, ActDType::kBF16, rows_out + 1, k, off, g, gather_ok, rows_out, want_codes,
                        want_scales, scale_rows);
  DeviceBuffer<int32_t> doff(off), dgather(gather);
  DeviceBuffer<uint8_t> dcodes(want_codes.size()), dscales(want_scales.size());
  DeviceBuffer<uint32_t> derr(1);
  dscales.fill_bytes(0xab);  // bytes past sf_off[E] stay as they were
  derr.fill_bytes(0);
  cuda::quantize_experts(dx.get(), ActDType::kBF16, rows_out, k, doff.get(), experts, dg.get(), dgather.get(),
                         rows_out, dcodes.get(), dscales.get(), scale_rows, derr.get(), nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(derr.download()[0], cuda::kQuantErrorBadGather);
  EXPECT_TRUE(codes_equal(dcodes.download(), want_codes, k, "bad gather codes"));
  EXPECT_TRUE(scales_equal(dscales.download(), want_scales, k, "bad gather scales"));
}

// gather_experts_nvfp4 (the MoE layer's quantize-once path): the tokens quantized once
// (cuda::quantize with g), then copied into expert order, must be the bytes quantize_experts
// writes with g for every expert and the same gather map: codes (rows past off[E] zero),
// scales (padding rows zero; bytes past sf_off[E] keep the 0xab both start from), error flags.
// The gather map repeats each input row about three times, as top_k slots repeat a token;
// bad_entry >= 0 puts the entry bad_value (out of range: past rows_in or negative) at that data
// row (that row zero, kQuantErrorBadGather), and a row past off[E] always gets an out-of-range
// entry too (never read: no flag).
void check_gather_experts(const ExpertCase& c, uint32_t seed, int32_t bad_entry, int32_t bad_value) {
  const int64_t rows_out = int64_t(c.rows) + c.extra;
  const auto off = offsets_from_counts(split_rows(c.rows, c.experts, c.split, seed));
  const int64_t rows_in = std::max<int64_t>(1, (rows_out + 2) / 3);
  std::mt19937 rng(seed + 7);
  std::vector<int32_t> gather(size_t(std::max<int64_t>(1, rows_out)));
  for (auto& r : gather) r = int32_t(rng() % uint32_t(rows_in));
  if (bad_entry >= 0 && bad_entry < c.rows) gather[size_t(bad_entry)] = bad_value;
  if (c.extra > 0) gather[size_t(c.rows)] = int32_t(rows_in + 9);
  const float g = expert_global_scales(2, seed + 1)[1];
  const int64_t scale_rows = expert_scale_rows_capacity(rows_out, c.experts);
  const size_t code_bytes = size_t(std::max<int64_t>(1, rows_out * c.k / 2));
  const size_t scale_bytes = size_t(scale_rows * padded_scale_cols(c.k));
  const std::string what = label(c, ActDType::kBF16, seed, true) + " bad_entry=" + std::to_string(bad_entry) +
                           " value " + std::to_string(bad_value);

  DeviceBuffer<uint16_t> dx(random_activations(rows_in, c.k, ActDType::kBF16, seed));
  DeviceBuffer<int32_t> doff(off), dgather(gather);
  DeviceBuffer<float> dg(std::vector<float>(size_t(c.experts), g));
  DeviceBuffer<uint8_t> want_codes(code_bytes), want_scales(scale_bytes), codes(code_bytes), scales(scale_bytes);
  DeviceBuffer<uint8_t> token_codes(size_t(rows_in * c.k / 2)), token_scales(size_t(swizzled_scale_bytes(rows_in, c.k)));
  DeviceBuffer<uint32_t> want_err(1), err(1);
  for (auto* b : {&want_codes, &want_scales, &codes, &scales}) b->fill_bytes(0xab);
  want_err.fill_bytes(0);
  err.fill_bytes(0);
  cuda::quantize_experts(dx.get(), ActDType::kBF16, rows_in, c.k, doff.get(), c.experts, dg.get(), dgather.get(),
                         rows_out, want_codes.get(), want_scales.get(), scale_rows, want_err.get(), nullptr);
  cuda::quantize(dx.get(), ActDType::kBF16, rows_in, c.k, dg.get(), token_codes.get(), token_scales.get(), nullptr);
  cuda::gather_experts_nvfp4(token_codes.get(), token_scales.get(), rows_in, c.k, doff.get(), c.experts,
                             dgather.get(), rows_out, codes.get(), scales.get(), scale_rows, err.get(), nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  const uint32_t flags = want_err.download()[0];
  EXPECT_EQ(flags, bad_entry >= 0 && bad_entry < c.rows ? cuda::kQuantErrorBadGather : 0u) << what;
  EXPECT_EQ(err.download()[0], flags) << what << ": error flags";
  EXPECT_TRUE(bytes_equal(codes.download(), want_codes.download(), what + " codes"));
  EXPECT_TRUE(bytes_equal(scales.download(), want_scales.download(), what + " scales"));
}

TEST(GatherExpertsNvfp4Sm90, EqualsQuantizeExpertsWithOneScaleSmall) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 1300;
  for (const ExpertCase& c : kSmallCases) {
    check_gather_experts(c, test_seed(++salt), -1, 0);
    check_gather_experts(c, test_seed(++salt), c.rows / 2, c.rows + c.extra);  // past rows_in
    check_gather_experts(c, test_seed(++salt), c.rows - 1, -5);               // negative
  }
}

TEST(GatherExpertsNvfp4Sm90, EqualsQuantizeExpertsWithOneScaleLarge) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 1400;
  for (const ExpertCase& c : kLargeCases) check_gather_experts(c, test_seed(++salt), c.rows - 1, 1 << 30);
}

// Malformed offsets: every code and scale byte zero and kQuantErrorBadOffsets, as quantize_experts.
TEST(GatherExpertsNvfp4Sm90, BadDeviceOffsetsZeroEverythingSmall) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t k = 48, rows_in = 7;
  const int32_t rows_out = 19;
  const int experts = 4;
  const int64_t scale_rows = expert_scale_rows_capacity(rows_out, experts);
  DeviceBuffer<uint16_t> dx(random_activations(rows_in, k, ActDType::kBF16, test_seed(1500)));
  DeviceBuffer<float> dg(std::vector<float>(experts, 1.0f));
  DeviceBuffer<uint8_t> token_codes(size_t(rows_in * k / 2)), token_scales(size_t(swizzled_scale_bytes(rows_in, k)));
  cuda::quantize(dx.get(), ActDType::kBF16, rows_in, k, dg.get(), token_codes.get(), token_scales.get(), nullptr);
  std::vector<int32_t> gather(static_cast<size_t>(rows_out));
  for (int32_t i = 0; i < rows_out; ++i) gather[size_t(i)] = i % int32_t(rows_in);
  DeviceBuffer<int32_t> dgather(gather);
  expect_bad_offsets_zero_everything(rows_out, k, scale_rows,
                                     [&](const int32_t* off, uint8_t* codes, uint8_t* scales, uint32_t* err) {
                                       cuda::gather_experts_nvfp4(token_codes.get(), token_scales.get(), rows_in, k,
                                                                  off, experts, dgather.get(), rows_out, codes, scales,
                                                                  scale_rows, err, nullptr);
                                     });
}

// SiLU*Mul: GPU vs CPU within 1 ulp of the dtype (rate reported); fused == unfused GPU bit
// for bit; fused == CPU quantize_experts of the GPU's own product bit for bit; fused vs the
// CPU fused model: mismatch rate reported (differences only where the products differ).
void check_silu(int32_t rows, int64_t inter, int experts, const char* split, ActDType dt, std::optional<float> limit,
                uint32_t seed, bool print) {
  const auto off = offsets_from_counts(split_rows(rows, experts, split, seed));
  const auto g = expert_global_scales(experts, seed + 1);
  const int64_t scale_rows = expert_scale_rows_capacity(rows, experts);
  const auto x = random_silu_inputs(rows, 2 * inter, dt, seed);
  const size_t code_bytes = size_t(rows * inter / 2), scale_bytes = size_t(scale_rows * padded_scale_cols(inter));
  const std::string what = std::string(to_string(dt)) + " rows=" + std::to_string(rows) + " inter=" +
                           std::to_string(inter) + " E=" + std::to_string(experts) + " limit=" +
                           (limit ? std::to_string(*limit) : "none") + " seed=" + std::to_string(seed);

  DeviceBuffer<uint16_t> dx(x), dact(size_t(rows * inter));
  DeviceBuffer<int32_t> doff(off);
  DeviceBuffer<float> dg(g);
  DeviceBuffer<uint8_t> fused_codes(code_bytes), fused_scales(scale_bytes), codes(code_bytes), scales(scale_bytes);
  DeviceBuffer<uint16_t> values(std::max<size_t>(1, size_t(rows * inter)));
  DeviceBuffer<uint32_t> derr(1);
  fused_codes.fill_bytes(0xab);
  fused_scales.fill_bytes(0xab);
  scales.fill_bytes(0xab);  // scale bytes past sf_off[E] are not written: same start for both
  values.fill_bytes(0xab);
  derr.fill_bytes(0);
  // Every other seed with the values output (which takes the small-tensor kernel at any size):
  // both kernels stay covered at the large sizes.
  const bool with_values = seed % 2 == 0;
  cuda::silu_and_mul_quantize_experts(dx.get(), dt, rows, inter, limit, doff.get(), experts, dg.get(),
                                      fused_codes.get(), fused_scales.get(), scale_rows, derr.get(), nullptr,
                                      with_values ? values.get() : nullptr);
  cuda::silu_and_mul(dx.get(), dt, rows, inter, limit, dact.get(), nullptr);
  cuda::quantize_experts(dact.get(), dt, rows, inter, doff.get(), experts, dg.get(), nullptr, rows, codes.get(),
                         scales.get(), scale_rows, derr.get(), nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(derr.download()[0], 0u) << what;
  const auto fc = fused_codes.download(), fs = fused_scales.download();
  EXPECT_TRUE(codes_equal(fc, codes.download(), inter, what + " fused vs unfused codes"));
  EXPECT_TRUE(scales_equal(fs, scales.download(), inter, what + " fused vs unfused scales"));
  if (with_values) {
    std::vector<uint16_t> got = values.download();
    got.resize(size_t(rows * inter));
    EXPECT_TRUE(values_match(got, fc, fs, off, rows, inter, what + " fused values"));
    // Values only (codes and scales null): the same values, nothing else written.
    DeviceBuffer<uint16_t> only(values.size());
    only.fill_bytes(0xab);
    cuda::silu_and_mul_quantize_experts(dx.get(), dt, rows, inter, limit, doff.get(), experts, dg.get(), nullptr,
                                        nullptr, 0, derr.get(), nullptr, only.get());
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(derr.download()[0], 0u) << what << ": error flags (values only)";
    std::vector<uint16_t> got_only = only.download();
    got_only.resize(got.size());
    EXPECT_TRUE(got_only == got) << what << ": values-only output differs from the values of the full call";
    if (inter % 256 == 0) {  // in the GEMM's K order (row-step kernel)
      expect_gemm_order_values(
          [&](void* out) {
            cuda::silu_and_mul_quantize_experts(dx.get(), dt, rows, inter, limit, doff.get(), experts, dg.get(),
                                                nullptr, nullptr, 0, derr.get(), nullptr, out,
                                                cuda::ValuesOrder::kGemm);
          },
          got, rows, inter, values.size(), derr, what + " fused");
    }
  }

  // Products: GPU vs CPU.
  const auto act = dact.download();
  if (inter % 64 == 0) {  // silu_and_mul into the GEMM's K order: the same products rearranged
    DeviceBuffer<uint16_t> ordered(dact.size());
    cuda::silu_and_mul(dx.get(), dt, rows, inter, limit, ordered.get(), nullptr, cuda::ValuesOrder::kGemm);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(values_equal(ordered.download(), to_gemm_k_order(act, rows, inter), inter,
                             what + " silu_and_mul in GEMM order"));
  }
  std::vector<uint16_t> want_act(act.size());
  ref::silu_and_mul(x, dt, rows, inter, limit, want_act);
  int64_t act_diff = 0, act_far = 0;
  for (size_t i = 0; i < act.size(); ++i) {
    if (act[i] == want_act[i]) continue;
    ++act_diff;
    const int d = int(act[i]) - int(want_act[i]);
    const bool same_sign = (act[i] >> 15) == (want_act[i] >> 15);
    act_far += !(same_sign && (d == 1 || d == -1));
  }
  EXPECT_EQ(act_far, 0) << what << ": products differing from the CPU model by more than 1 ulp";

  // Fused codes against the CPU model fed with the GPU's own products: exact.
  std::vector<uint8_t> want_codes(code_bytes), want_scales(scale_bytes, 0xab);
  ref::quantize_experts(act, dt, rows, inter, off, g, {}, rows, want_codes, want_scales, scale_rows);
  EXPECT_TRUE(codes_equal(fc, want_codes, inter, what + " fused vs CPU quantize of GPU products"));
  EXPECT_TRUE(scales_equal(fs, want_scales, inter, what + " fused vs CPU quantize of GPU products"));

  // Fused against the CPU fused model: report the rate (tolerance: < 1% of codes).
  std::vector<uint8_t> cpu_codes(code_bytes), cpu_scales(scale_bytes, 0xab);
  ref::silu_and_mul_quantize_experts(x, dt, rows, inter, limit, off, g, cpu_codes, cpu_scales, scale_rows);
  int64_t code_diff = 0, scale_diff = 0;
  for (size_t i = 0; i < code_bytes; ++i) {
    code_diff += ((fc[i] & 0xf) != (cpu_codes[i] & 0xf)) + ((fc[i] >> 4) != (cpu_codes[i] >> 4));
  }
  for (size_t i = 0; i < scale_bytes; ++i) scale_diff += fs[i] != cpu_scales[i];
  const double n = double(rows * inter);
  if (print) {
    std::printf("[silu vs CPU] %s: products %lld/%lld differ by 1 ulp (%.3g%%); fused codes %lld (%.3g%%), "
                "scales %lld differ\n", what.c_str(), (long long)act_diff, (long long)act.size(),
                n ? 100.0 * double(act_diff) / n : 0.0, (long long)code_diff, n ? 100.0 * double(code_diff) / n : 0.0,
                (long long)scale_diff);
  }
  EXPECT_LE(double(code_diff), 0.01 * n) << what;
}

TEST(QuantizeSiluSm90, FusedEqualsUnfusedSmall) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 1300;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
      check_silu(0, 16, 2, "random", dt, limit, test_seed(++salt), false);
      check_silu(1, 16, 1, "one", dt, limit, test_seed(++salt), false);
      check_silu(19, 48, 8, "random", dt, limit, test_seed(++salt), false);
      check_silu(129, 16, 256, "skewed", dt, limit, test_seed(++salt), false);
      check_silu(129, 64, 600, "random", dt, limit, test_seed(++salt), false);  // three rounds of the expert scan
      check_silu(3, 7168, 4, "one", dt, limit, test_seed(++salt), false);
    }
  }
}

TEST(QuantizeSiluSm90, FusedEqualsUnfusedLarge) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 1400;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
      check_silu(1024, 2048, 256, "skewed", dt, limit, test_seed(++salt), true);
      check_silu(1800, 2048, 256, "skewed", dt, limit, test_seed(++salt), true);  // 2 chunks per warp step
      check_silu(2200, 768, 256, "skewed", dt, limit, test_seed(++salt), true);   // 3 chunks: one row per step
      check_silu(3300, 512, 8, "random", dt, limit, test_seed(++salt), true);     // 2 chunks: one row per step
      check_silu(9000, 256, 8, "random", dt, limit, test_seed(++salt), true);     // 1 chunk a row (GEMM-order
                                                                                  // values: 1-chunk steps)
    }
  }
}

// Graph capture of the whole quantization family; two replays give the eager bytes.
TEST(QuantizeGraphSm90, ReplayEqualsEagerSmall) {
  NVFP4MOE_REQUIRE_GPU();
  const int32_t rows = 129, experts = 8;
  const int64_t k = 48, inter = 48;
  const uint32_t seed = test_seed(1500);
  const auto x = random_activations(rows, k, ActDType::kBF16, seed);
  const auto xs = random_silu_inputs(rows, 2 * inter, ActDType::kBF16, seed + 1);
  // Runtime scale of a tensor above the single-launch limit: memset + amax + quantize.
  const int64_t kb = 1024;
  const auto xb = random_activations(rows, kb, ActDType::kBF16, seed + 2);
  const auto off = offsets_from_counts(split_rows(rows, experts, "random", seed));
  const auto g = expert_global_scales(experts, seed);
  const int64_t scale_rows = expert_scale_rows_capacity(rows, experts);
  DeviceBuffer<uint16_t> dx(x), dxs(xs), dxb(xb), dact(size_t(rows * inter));
  DeviceBuffer<int32_t> doff(off);
  DeviceBuffer<float> dg(g), dfloats(6);
  DeviceBuffer<uint32_t> derr(1);
  const size_t plain_scales = size_t(swizzled_scale_bytes(rows, k)), ex_scales = size_t(scale_rows * padded_scale_cols(k));
  DeviceBuffer<uint8_t> c1(size_t(rows * k / 2)), s1(plain_scales), c2(size_t(rows * k / 2)), s2(ex_scales),
      c3(size_t(rows * inter / 2)), s3(ex_scales), c4(size_t(rows * kb / 2)), s4(size_t(swizzled_scale_bytes(rows, kb)));
  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto enqueue = [&] {
    cuda::quantize_runtime_scale(dx.get(), ActDType::kBF16, rows, k, c1.get(), s1.get(), dfloats.get(),
                                 dfloats.get() + 1, dfloats.get() + 2, stream);
    cuda::quantize_runtime_scale(dxb.get(), ActDType::kBF16, rows, kb, c4.get(), s4.get(), dfloats.get() + 3,
                                 dfloats.get() + 4, dfloats.get() + 5, stream);
    cuda::quantize_experts(dx.get(), ActDType::kBF16, rows, k, doff.get(), experts, dg.get(), nullptr, rows, c2.get(),
                           s2.get(), scale_rows, derr.get(), stream);
    cuda::silu_and_mul(dxs.get(), ActDType::kBF16, rows, inter, 7.0f, dact.get(), stream);
    cuda::silu_and_mul_quantize_experts(dxs.get(), ActDType::kBF16, rows, inter, 7.0f, doff.get(), experts, dg.get(),
                                        c3.get(), s3.get(), scale_rows, derr.get(), stream);
  };
  auto snapshot = [&] {
    std::vector<std::vector<uint8_t>> v = {c1.download(), s1.download(), c2.download(), s2.download(), c3.download(),
                                           s3.download(), c4.download(), s4.download()};
    const auto f = dfloats.download();
    const auto a = dact.download();
    const auto e = derr.download();  // last: the error word, zero after every run
    v.emplace_back(reinterpret_cast<const uint8_t*>(f.data()), reinterpret_cast<const uint8_t*>(f.data() + f.size()));
    v.emplace_back(reinterpret_cast<const uint8_t*>(a.data()), reinterpret_cast<const uint8_t*>(a.data() + a.size()));
    v.emplace_back(reinterpret_cast<const uint8_t*>(e.data()), reinterpret_cast<const uint8_t*>(e.data() + e.size()));
    return v;
  };
  // fill_bytes is a cudaMemset on the legacy default stream, which a cudaStreamNonBlocking
  // stream does not wait for: finish the poison before enqueueing, or it can land on top of
  // the results (seen: the poison overwriting g and 1/g after the quantize kernel wrote them).
  auto poison = [&] {
    for (auto* b : {&c1, &s1, &c2, &s2, &c3, &s3, &c4, &s4}) b->fill_bytes(0xab);
    dfloats.fill_bytes(0xab);
    dact.fill_bytes(0xab);
    derr.fill_bytes(0);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  };
  const auto eager = expect_graph_replays_equal_eager(stream, poison, enqueue, snapshot);
  EXPECT_TRUE(bytes_equal(eager.back(), std::vector<uint8_t>(eager.back().size(), 0), "error flags"));
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace nvfp4moe::test
