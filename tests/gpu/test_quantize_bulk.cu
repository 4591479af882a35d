// The bulk-copy quantization kernel (kernels/quantize_bulk_sm90.cuh) against the register
// kernels it replaces for large calls (the row-step walk; one matrix the tile-slab kernel):
// the same bytes for every operation it serves, including the error flag and zero codes of a
// bad gather entry, and a CUDA graph replay. The other quantization tests check the default
// (register) kernels against the CPU golden model, so together both are checked against it.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "nvfp4moe/cuda/quantize.h"
#include "test_quantize_util.h"

namespace nvfp4moe::test {
namespace {

// Restores the default kernel choice when a test ends (also on a failed assertion).
struct BulkMode {
  explicit BulkMode(int mode) { cuda::set_quantize_bulk(mode); }
  ~BulkMode() { cuda::set_quantize_bulk(-1); }
  void set(int mode) { cuda::set_quantize_bulk(mode); }
};

// Output buffers of one call, poisoned before it: what the call wrote, byte for byte.
struct Outputs {
  DeviceBuffer<uint8_t> codes, scales;
  DeviceBuffer<uint16_t> values;  // the values output in the GEMM's K order (ValuesOrder::kGemm)
  DeviceBuffer<float> floats;  // runtime scale: amax, g, 1/g
  DeviceBuffer<uint32_t> err;
  Outputs(size_t code_bytes, size_t scale_bytes, size_t value_count)
      : codes(code_bytes), scales(scale_bytes), values(value_count), floats(3), err(1) {
    codes.fill_bytes(0xab);
    scales.fill_bytes(0xab);
    values.fill_bytes(0xab);
    floats.fill_bytes(0xab);
    err.fill_bytes(0);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }
};

// Runs `call` with the bulk kernel and with the register kernels; every output must agree.
void expect_same_bytes(const std::string& what, size_t code_bytes, size_t scale_bytes,
                       const std::function<void(Outputs&)>& call, size_t value_count = 1) {
  BulkMode mode(1);
  Outputs bulk(code_bytes, scale_bytes, value_count), reg(code_bytes, scale_bytes, value_count);
  call(bulk);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  mode.set(0);
  call(reg);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(bytes_equal(bulk.codes.download(), reg.codes.download(), what + ": codes"));
  EXPECT_TRUE(bytes_equal(bulk.scales.download(), reg.scales.download(), what + ": scales"));
  EXPECT_TRUE(bytes_equal(bulk.values.download(), reg.values.download(), what + ": values"));
  const auto fb = bulk.floats.download(), fr = reg.floats.download();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(float_bits(fb[size_t(i)]), float_bits(fr[size_t(i)])) << what << ": float " << i;
  EXPECT_EQ(bulk.err.download()[0], reg.err.download()[0]) << what << ": error flags";
}

struct BulkExpertCase {
  int32_t rows;  // off[E]; rows_out = rows + extra
  int32_t extra;
  int64_t k;
  int experts;
  const char* split;
};
// Large enough for the bulk kernel on an H100 (one resident wave of full steps): 4 chunks per
// step (2048, 7168), 2 chunks (512), rows past off[E] in the first steps.
const BulkExpertCase kExpertCases[] = {
    {4300, 40, 2048, 256, "skewed"}, {700, 0, 7168, 8, "one"}, {9000, 300, 512, 8, "random"},
    {4300, 0, 2048, 1024, "random"}};  // 1024 experts: four rounds of the expert scan

TEST(QuantizeBulkSm90, ExpertsSameBytesAsRegisterKernel) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 3000;
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const BulkExpertCase& c : kExpertCases) {
      const uint32_t seed = test_seed(++salt);
      const int32_t rows_out = c.rows + c.extra;
      const auto off = offsets_from_counts(split_rows(c.rows, c.experts, c.split, seed));
      std::vector<float> g(size_t(c.experts));
      for (size_t e = 0; e < g.size(); ++e) g[e] = 0.5f + float(e % 7) * 311.0f;
      // The input has rows_out rows; with the gather map only its first rows_in rows are read.
      const int32_t rows_in = rows_out / 2 + 3;
      std::vector<int32_t> gather(static_cast<size_t>(rows_out));
      for (int32_t i = 0; i < rows_out; ++i) gather[size_t(i)] = int32_t((int64_t(i) * 7919) % rows_in);
      gather[size_t(c.rows / 2)] = rows_in;  // out of range: flag, zero codes for that row
      const auto x = random_activations(rows_out, c.k, dt, seed);
      DeviceBuffer<uint16_t> dx(x);
      DeviceBuffer<int32_t> doff(off), dgather(gather);
      DeviceBuffer<float> dg(g);
      const int64_t scale_rows = expert_scale_rows_capacity(rows_out, c.experts);
      const size_t code_bytes = size_t(rows_out * c.k / 2), scale_bytes = size_t(scale_rows * padded_scale_cols(c.k));
      const std::string what = std::string(to_string(dt)) + " experts rows=" + std::to_string(c.rows) + " k=" +
                               std::to_string(c.k) + " E=" + std::to_string(c.experts);
      for (bool use_gather : {false, true}) {
        expect_same_bytes(what + (use_gather ? " gather" : ""), code_bytes, scale_bytes, [&](Outputs& o) {
          cuda::quantize_experts(dx.get(), dt, use_gather ? rows_in : rows_out, c.k, doff.get(), c.experts, dg.get(),
                                 use_gather ? dgather.get() : nullptr, rows_out, o.codes.get(), o.scales.get(),
                                 scale_rows, o.err.get(), nullptr);
        });
        // Values only, in the GEMM's K order (the MoE layer's prefill operand).
        expect_same_bytes(
            what + (use_gather ? " gather" : "") + " GEMM-order values", 1, 1,
            [&](Outputs& o) {
              cuda::quantize_experts(dx.get(), dt, use_gather ? rows_in : rows_out, c.k, doff.get(), c.experts,
                                     dg.get(), use_gather ? dgather.get() : nullptr, rows_out, nullptr, nullptr, 0,
                                     o.err.get(), nullptr, o.values.get(), cuda::ValuesOrder::kGemm);
            },
            size_t(rows_out * c.k));
      }
    }
  }
}

TEST(QuantizeBulkSm90, FusedSameBytesAsRegisterKernel) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 3100;
  // 2 chunks per step: 4 per row (2048), one per row (512).
  const std::pair<int32_t, int64_t> cases[] = {{1800, 2048}, {3300, 512}};
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (std::optional<float> limit : {std::optional<float>(), std::optional<float>(7.0f)}) {
      for (const auto& [rows, inter] : cases) {
        const uint32_t seed = test_seed(++salt);
        const int experts = 256;
        const auto off = offsets_from_counts(split_rows(rows, experts, "skewed", seed));
        const std::vector<float> g(size_t(experts), 448.0f * 6.0f / 20.0f);
        const auto x = random_silu_inputs(rows, 2 * inter, dt, seed);
        DeviceBuffer<uint16_t> dx(x);
        DeviceBuffer<int32_t> doff(off);
        DeviceBuffer<float> dg(g);
        const int64_t scale_rows = expert_scale_rows_capacity(rows, experts);
        const std::string what = std::string(to_string(dt)) + " fused rows=" + std::to_string(rows) +
                                 " inter=" + std::to_string(inter) + (limit ? " limit" : "");
        expect_same_bytes(what, size_t(rows * inter / 2), size_t(scale_rows * padded_scale_cols(inter)),
                          [&](Outputs& o) {
                            cuda::silu_and_mul_quantize_experts(dx.get(), dt, rows, inter, limit, doff.get(), experts,
                                                                dg.get(), o.codes.get(), o.scales.get(), scale_rows,
                                                                o.err.get(), nullptr);
                          });
        expect_same_bytes(
            what + " GEMM-order values", 1, 1,
            [&](Outputs& o) {
              cuda::silu_and_mul_quantize_experts(dx.get(), dt, rows, inter, limit, doff.get(), experts, dg.get(),
                                                  nullptr, nullptr, 0, o.err.get(), nullptr, o.values.get(),
                                                  cuda::ValuesOrder::kGemm);
            },
            size_t(rows * inter));
      }
    }
  }
}

// One matrix: the bulk kernel against the tile-slab kernel, with g from memory and with the
// runtime scale (amax pass first; block 0 publishes g and 1/g). 700 rows: a padded last tile.
TEST(QuantizeBulkSm90, OneMatrixSameBytesAsTileKernel) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t salt = 3200;
  const std::pair<int32_t, int64_t> shapes[] = {{700, 7168}, {4400, 2048}};
  for (ActDType dt : {ActDType::kBF16, ActDType::kFP16}) {
    for (const auto& [rows, k] : shapes) {
      const uint32_t seed = test_seed(++salt);
      const auto x = random_activations(rows, k, dt, seed, /*edge=*/true);
      DeviceBuffer<uint16_t> dx(x);
      DeviceBuffer<float> dg(std::vector<float>{0.3712f});
      const size_t code_bytes = size_t(rows * k / 2), scale_bytes = size_t(swizzled_scale_bytes(rows, k));
      const std::string what = std::string(to_string(dt)) + " rows=" + std::to_string(rows) + " k=" + std::to_string(k);
      expect_same_bytes(what + " quantize", code_bytes, scale_bytes, [&](Outputs& o) {
        cuda::quantize(dx.get(), dt, rows, k, dg.get(), o.codes.get(), o.scales.get(), nullptr);
      });
      expect_same_bytes(what + " runtime scale", code_bytes, scale_bytes, [&](Outputs& o) {
        cuda::quantize_runtime_scale(dx.get(), dt, rows, k, o.codes.get(), o.scales.get(), o.floats.get(),
                                     o.floats.get() + 1, o.floats.get() + 2, nullptr);
      });
    }
  }
}

// Captured in a graph with the bulk kernel (the per-expert and fused calls on one stream):
// two replays give the eager bytes.
TEST(QuantizeBulkSm90, GraphReplayEqualsEager) {
  NVFP4MOE_REQUIRE_GPU();
  BulkMode mode(1);
  const int32_t rows = 4300, experts = 256;
  const int64_t k = 2048, inter = 2048;
  const uint32_t seed = test_seed(3300);
  const auto x = random_activations(rows, k, ActDType::kBF16, seed);
  const auto xs = random_silu_inputs(rows, 2 * inter, ActDType::kBF16, seed + 1);
  const auto off = offsets_from_counts(split_rows(rows, experts, "skewed", seed));
  const std::vector<float> g(size_t(experts), 2.0f);
  const int64_t scale_rows = expert_scale_rows_capacity(rows, experts);
  DeviceBuffer<uint16_t> dx(x), dxs(xs);
  DeviceBuffer<int32_t> doff(off);
  DeviceBuffer<float> dg(g);
  const size_t code_bytes = size_t(rows * k / 2), scale_bytes = size_t(scale_rows * padded_scale_cols(k));
  Outputs a(code_bytes, scale_bytes, 1), b(code_bytes, scale_bytes, 1);
  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto enqueue = [&] {
    cuda::quantize_experts(dx.get(), ActDType::kBF16, rows, k, doff.get(), experts, dg.get(), nullptr, rows,
                           a.codes.get(), a.scales.get(), scale_rows, a.err.get(), stream);
    cuda::silu_and_mul_quantize_experts(dxs.get(), ActDType::kBF16, rows, inter, 7.0f, doff.get(), experts, dg.get(),
                                        b.codes.get(), b.scales.get(), scale_rows, b.err.get(), stream);
  };
  auto snapshot = [&] {
    return std::vector<std::vector<uint8_t>>{a.codes.download(), a.scales.download(), b.codes.download(),
                                             b.scales.download()};
  };
  auto poison = [&] {  // finished before the non-blocking stream runs (see QuantizeGraphSm90)
    for (auto* buf : {&a.codes, &a.scales, &b.codes, &b.scales}) buf->fill_bytes(0xab);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  };
  expect_graph_replays_equal_eager(stream, poison, enqueue, snapshot);
  EXPECT_EQ(a.err.download()[0], 0u);
  EXPECT_EQ(b.err.download()[0], 0u);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace nvfp4moe::test
