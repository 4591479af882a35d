// GPU one-launch front end of the smallest MoE batches (cuda::route_permute_values) against the
// CPU models: ids and weights bit for bit (ref::route), the six permutation outputs bit for bit
// (ref::permute), and the values [T * k, hidden] bit for bit: bf16(e2m1(code) * e4m3(scale)) of
// ref::quantize_experts(hidden, gather = sorted_to_token) with per-expert global scales.
// Softmax and grouped sigmoid, E <= 256 and E > 256 (two experts a thread), T = 1..4 (clusters
// of T CTAs), hidden widths inside one chunk and across many, bf16 and fp16 hidden with edge
// values, float and bf16 logits, repeated calls, CUDA graph replay, and bad arguments.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp

#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "gpu/routing_test_models.h"
#include "gpu/test_quantize_util.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/permute.h"
#include "nvfp4moe/ref/quantize.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

using Model = test::RoutingModel;
std::vector<Model> models() { return test::routing_models(); }

std::vector<float> random_vector(int n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// values [M, h] as the values-only quantizer writes them, from the CPU model's codes and scales.
std::vector<uint16_t> reference_values(const std::vector<uint16_t>& x, ActDType dt, int64_t tokens, int64_t h,
                                       const ref::Permutation& perm, const std::vector<float>& g) {
  const int64_t m = int64_t(perm.sorted_to_token.size());
  const int experts = int(g.size());
  const int64_t scale_rows = expert_scale_rows_capacity(m, experts);
  const int64_t pc = padded_scale_cols(h);
  std::vector<uint8_t> codes(size_t(m * h / 2)), scales(size_t(scale_rows * pc));
  ref::quantize_experts(x, dt, tokens, h, perm.off, g, perm.sorted_to_token, m, codes, scales, scale_rows);
  std::vector<uint16_t> values(size_t(m * h));
  for (int e = 0; e < experts; ++e) {
    for (int64_t r = perm.off[size_t(e)]; r < perm.off[size_t(e) + 1]; ++r) {
      const int64_t srow = perm.sf_off[size_t(e)] + (r - perm.off[size_t(e)]);
      for (int64_t c = 0; c < h; ++c) {
        const uint8_t byte = codes[size_t((r * h + c) / 2)];
        const uint8_t code = c % 2 ? uint8_t(byte >> 4) : uint8_t(byte & 0xf);
        const float s = e4m3_to_float(scales[size_t(swizzled_scale_offset(srow, c / kBlockSize, pc))]);
        values[size_t(r * h + c)] = bf16_from_float(e2m1_to_float(code) * s);
      }
    }
  }
  return values;
}

// Device buffers of one call (poisoned before each launch).
struct Buffers {
  RoutingConfig cfg;
  int64_t tokens, h;
  DeviceBuffer<float> logits, bias, g;
  DeviceBuffer<uint16_t> logits_bf16, x, values;
  DeviceBuffer<int32_t> ids, counts, off, sf_off, s2p, p2s, s2t;
  DeviceBuffer<float> weights;

  Buffers(const RoutingConfig& c, int64_t t, int64_t hidden, const std::vector<float>& host_bias)
      : cfg(c),
        tokens(t),
        h(hidden),
        logits(size_t(t * c.num_experts)),
        bias(host_bias),
        g(size_t(c.num_experts)),
        logits_bf16(size_t(t * c.num_experts)),
        x(size_t(t * hidden)),
        values(size_t(t * c.top_k * hidden)),
        ids(size_t(t * c.top_k)),
        counts(size_t(c.num_experts)),
        off(size_t(c.num_experts + 1)),
        sf_off(size_t(c.num_experts + 1)),
        s2p(size_t(t * c.top_k)),
        p2s(size_t(t * c.top_k)),
        s2t(size_t(t * c.top_k)),
        weights(size_t(t * c.top_k)) {}

  cuda::PermuteOutputs outputs() const { return test::permute_outputs_of(*this); }

  void poison() {
    for (auto* b : {&ids, &counts, &off, &sf_off, &s2p, &p2s, &s2t}) b->fill_bytes(0xff);
    weights.fill_bytes(0xff);
    values.fill_bytes(0xab);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }

  void launch(bool bf16_logits, ActDType dt, cudaStream_t stream) {
    cuda::route_permute_values(bf16_logits ? static_cast<const void*>(logits_bf16.get()) : logits.get(),
                               bf16_logits ? cuda::LogitsDType::kBF16 : cuda::LogitsDType::kFloat32, bias.get(),
                               tokens, cfg, ids.get(), weights.get(), outputs(), x.get(), dt, h, g.get(),
                               values.get(), stream);
  }
};

struct Expected {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  ref::Permutation perm;
  std::vector<uint16_t> values;
};

::testing::AssertionResult matches(const Buffers& b, const Expected& want, const std::string& what) {
  const struct {
    std::vector<int32_t> got;
    const std::vector<int32_t>* want;
    const char* name;
  } fields[] = {{b.ids.download(), &want.ids, "ids"},
                {b.counts.download(), &want.perm.counts, "counts"},
                {b.off.download(), &want.perm.off, "off"},
                {b.sf_off.download(), &want.perm.sf_off, "sf_off"},
                {b.s2p.download(), &want.perm.sorted_to_pair, "sorted_to_pair"},
                {b.p2s.download(), &want.perm.pair_to_sorted, "pair_to_sorted"},
                {b.s2t.download(), &want.perm.sorted_to_token, "sorted_to_token"}};
  for (const auto& f : fields) {
    auto r = test::bytes_equal(f.got, *f.want, what + " " + f.name);
    if (!r) return r;
  }
  auto r = test::bytes_equal(b.weights.download(), want.weights, what + " weights");
  if (!r) return r;
  const std::vector<uint16_t> got = b.values.download();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want.values[i]) {
      return ::testing::AssertionFailure() << what << ": values row " << i / size_t(b.h) << " col "
                                           << i % size_t(b.h) << ": got 0x" << std::hex << got[i] << ", want 0x"
                                           << want.values[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// Uploads fresh inputs into b and returns what the CPU models give for them.
Expected prepare(Buffers& b, const Model& model, ActDType dt, bool bf16_logits, uint32_t seed) {
  const RoutingConfig& c = model.cfg;
  auto logits = test::random_routing_logits(b.tokens, c.num_experts, seed);
  const auto x = test::random_activations(b.tokens, b.h, dt, seed + 1);
  auto g = random_vector(c.num_experts, 0.05f, 3000.0f, seed + 2);
  g[0] = 1.0f;  // exact e2m1 ties with g = 1
  NVFP4MOE_CUDA_CHECK(cudaMemcpy(b.logits.get(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
  std::vector<uint16_t> lb(logits.size());
  for (size_t i = 0; i < lb.size(); ++i) lb[i] = bf16_from_float(logits[i]);
  b.logits_bf16.upload(lb);
  b.x.upload(x);
  b.g.upload(g);
  if (bf16_logits) {
    for (auto& v : logits) v = bf16_to_float(bf16_from_float(v));  // what the GPU reads
  }
  const std::vector<float> bias = model.bias ? b.bias.download() : std::vector<float>{};
  Expected want;
  want.ids.resize(size_t(b.tokens * c.top_k));
  want.weights.resize(want.ids.size());
  ref::route(logits, bias, b.tokens, c, want.ids, want.weights);
  want.perm = ref::permute(want.ids, b.tokens, c.top_k, c.num_experts);
  want.values = reference_values(x, dt, b.tokens, b.h, want.perm, g);
  b.poison();
  return want;
}

void check(const Model& model, int64_t tokens, int64_t h, ActDType dt, bool bf16_logits, uint32_t seed) {
  const std::string what = std::string(model.name) + " T=" + std::to_string(tokens) + " h=" + std::to_string(h) +
                           " " + to_string(dt) + (bf16_logits ? " bf16-logits" : "") + " seed=" +
                           std::to_string(seed);
  SCOPED_TRACE(what);
  const auto bias = model.bias ? test::random_routing_bias(model.cfg.num_experts, seed + 3) : std::vector<float>{};
  Buffers b(model.cfg, tokens, h, bias);
  const Expected want = prepare(b, model, dt, bf16_logits, seed);
  b.launch(bf16_logits, dt, nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(matches(b, want, what));
}

TEST(RoutePermuteValues, MatchesRefOverShapes) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 12000;
  for (const Model& model : models()) {
    for (int64_t t = 1; t <= 4; ++t) {
      if (!cuda::uses_route_permute_values(t, model.cfg.top_k, 16)) continue;
      for (int64_t h : {16, 48, 2048, 7168}) check(model, t, h, ActDType::kBF16, false, seed++);
    }
  }
}

TEST(RoutePermuteValues, Fp16HiddenAndBf16LogitsMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 13000;
  for (const Model& model : models()) {
    check(model, 1, 7168, ActDType::kFP16, true, seed++);
    check(model, 2, 272, ActDType::kFP16, false, seed++);
    check(model, 1, 2048, ActDType::kBF16, true, seed++);
  }
}

TEST(RoutePermuteValues, Range) {
  EXPECT_TRUE(cuda::uses_route_permute_values(1, 8, 7168));
  EXPECT_TRUE(cuda::uses_route_permute_values(4, 8, 2048));
  EXPECT_FALSE(cuda::uses_route_permute_values(5, 4, 2048));   // more than 4 tokens
  EXPECT_FALSE(cuda::uses_route_permute_values(3, 16, 2048));  // more than 32 pairs
  EXPECT_TRUE(cuda::uses_route_permute_values(2, 16, 2048));
  EXPECT_FALSE(cuda::uses_route_permute_values(0, 8, 2048));
  EXPECT_FALSE(cuda::uses_route_permute_values(1, 8, 2040));             // hidden % 16
  EXPECT_FALSE(cuda::uses_route_permute_values(1, 8, (1 << 24) + 16));  // hidden > 2^24
}

// Repeated calls on the same buffers with new inputs, then a CUDA graph captured once and
// replayed over new inputs: each result equal to the CPU models.
TEST(RoutePermuteValues, RepeatedCallsAndGraphReplay) {
  NVFP4MOE_REQUIRE_GPU();
  const Model model = models()[0];
  const auto bias = test::random_routing_bias(256, 77);
  Buffers b(model.cfg, 3, 7168, bias);
  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  uint32_t seed = 14000;
  for (int i = 0; i < 3; ++i, ++seed) {
    const Expected want = prepare(b, model, ActDType::kBF16, false, seed);
    b.launch(false, ActDType::kBF16, stream);
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(matches(b, want, "eager seed=" + std::to_string(seed)));
  }
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  b.launch(false, ActDType::kBF16, stream);
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i, ++seed) {
    const Expected want = prepare(b, model, ActDType::kBF16, false, seed);
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(matches(b, want, "graph seed=" + std::to_string(seed)));
  }
  NVFP4MOE_CUDA_CHECK(cudaGraphExecDestroy(exec));
  NVFP4MOE_CUDA_CHECK(cudaGraphDestroy(graph));
  NVFP4MOE_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(RoutePermuteValues, BadArgumentsThrowBeforeLaunch) {
  // Validation happens on the host before any CUDA call: no GPU needed.
  alignas(16) static uint8_t buf[4096];
  auto* i32 = reinterpret_cast<int32_t*>(buf);
  auto* f32 = reinterpret_cast<float*>(buf);
  cuda::PermuteOutputs o;
  o.counts = o.off = o.sf_off = o.sorted_to_pair = o.pair_to_sorted = o.sorted_to_token = i32;
  const RoutingConfig c = models()[1].cfg;  // E = 128, k = 8
  const auto f = cuda::LogitsDType::kFloat32;
  const auto bf = ActDType::kBF16;
  auto call = [&](int64_t t, const void* x, int64_t h, const float* g, void* values, ActDType dt = ActDType::kBF16) {
    cuda::route_permute_values(buf, f, nullptr, t, c, i32, f32, o, x, dt, h, g, values, nullptr);
  };
  EXPECT_THROW(call(5, buf, 2048, f32, buf), Error);        // tokens > 4
  EXPECT_THROW(call(0, buf, 2048, f32, buf), Error);        // tokens == 0
  EXPECT_THROW(call(1, buf, 2040, f32, buf), Error);        // hidden % 16
  EXPECT_THROW(call(1, buf + 8, 2048, f32, buf), Error);    // x misaligned
  EXPECT_THROW(call(1, buf, 2048, f32, buf + 4), Error);    // values misaligned
  EXPECT_THROW(call(1, buf, 2048, nullptr, buf), Error);    // g null
  EXPECT_THROW(call(1, nullptr, 2048, f32, buf), Error);    // x null
  EXPECT_THROW(call(1, buf, 2048, f32, buf, ActDType(5)), Error);  // dtype
  o.off = nullptr;
  EXPECT_THROW(call(1, buf, 2048, f32, buf), Error);        // off null
  o.off = i32;
  try {
    call(1, buf, 2040, f32, buf, bf);
    ADD_FAILURE() << "hidden % 16 != 0 did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden:"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nvfp4moe
