// GPU routing (cuda::route) against the CPU model ref::route: ids bit for bit, weights within
// 1e-6 relative (bitwise differences are counted and printed), over softmax and DeepSeek-V3
// grouped sigmoid, awkward sizes, exact ties, near ties (logits 1 ulp apart) and NaN logits,
// through both kernel families (CTA per token for small batches, warp per token for large).
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/kernels/routing_sm90.cuh"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

enum class LogitKind { kContinuous, kExactTies, kNearTies, kWide };

// logits [T, E]: continuous N(0, 2); exact ties (8 distinct values); near ties (a few bases,
// each perturbed by 0..3 ulp, so that exp/sigmoid may round distinct logits to one score);
// wide N(0, 12) (exp underflow, sigmoid saturation).
std::vector<float> random_logits(int64_t tokens, int experts, uint32_t seed, LogitKind kind) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, kind == LogitKind::kWide ? 12.0f : 2.0f);
  std::vector<float> out(size_t(tokens * experts));
  for (auto& x : out) {
    switch (kind) {
      case LogitKind::kContinuous:
      case LogitKind::kWide:
        x = normal(rng);
        break;
      case LogitKind::kExactTies:
        x = float(int(rng() % 8)) * 0.5f - 2.0f;
        break;
      case LogitKind::kNearTies: {
        const float bases[4] = {0.0f, 1.0f, -0.75f, 3.0f};
        float v = bases[rng() % 4];
        for (int s = int(rng() % 4); s > 0; --s) v = std::nextafter(v, 100.0f);
        x = v;
        break;
      }
    }
  }
  return out;
}

const char* kind_name(LogitKind k) {
  switch (k) {
    case LogitKind::kContinuous: return "continuous";
    case LogitKind::kExactTies: return "exact-ties";
    case LogitKind::kNearTies: return "near-ties";
    case LogitKind::kWide: return "wide";
  }
  return "?";
}

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Routed route_ref(const std::vector<float>& logits, const std::vector<float>& bias, int64_t tokens,
                 const RoutingConfig& cfg) {
  Routed r;
  r.ids.resize(size_t(tokens * cfg.top_k));
  r.weights.resize(size_t(tokens * cfg.top_k));
  ref::route(logits, bias, tokens, cfg, r.ids, r.weights);
  return r;
}

// bf16 = true: the logits are rounded to bf16 first and the GPU gets the bf16 bits.
Routed route_gpu(const std::vector<float>& logits, const std::vector<float>& bias, int64_t tokens,
                 const RoutingConfig& cfg, bool bf16 = false) {
  const size_t n = size_t(tokens * cfg.top_k);
  DeviceBuffer<int32_t> ids(n);
  DeviceBuffer<float> weights(n);
  ids.fill_bytes(0xff);
  weights.fill_bytes(0xff);
  DeviceBuffer<float> d_bias(bias);
  if (bf16) {
    std::vector<uint16_t> h(logits.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = bf16_from_float(logits[i]);
    DeviceBuffer<uint16_t> d_logits(h);
    cuda::route(d_logits.get(), cuda::LogitsDType::kBF16, bias.empty() ? nullptr : d_bias.get(), tokens,
                cfg, ids.get(), weights.get(), nullptr);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  } else {
    DeviceBuffer<float> d_logits(logits);
    cuda::route(d_logits.get(), cuda::LogitsDType::kFloat32, bias.empty() ? nullptr : d_bias.get(), tokens,
                cfg, ids.get(), weights.get(), nullptr);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  return {ids.download(), weights.download()};
}

// ids bitwise; weights within 1e-6 relative (NaN == NaN). Bitwise weight differences are
// printed (the design makes them bitwise equal; the binding bound is 1e-6).
::testing::AssertionResult routes_match(const Routed& got, const Routed& want, const std::string& what) {
  auto ids = test::bytes_equal(got.ids, want.ids, what + " ids");
  if (!ids) return ids;
  size_t bad = 0, first = 0, not_bitwise = 0;
  for (size_t i = 0; i < want.weights.size(); ++i) {
    const float g = got.weights[i], w = want.weights[i];
    if (std::memcmp(&g, &w, 4) != 0 && !(std::isnan(g) && std::isnan(w))) ++not_bitwise;
    const bool ok = (std::isnan(g) && std::isnan(w)) || std::fabs(g - w) <= 1e-6f * std::fabs(w);
    if (!ok && bad++ == 0) first = i;
  }
  if (not_bitwise) std::printf("[info] %s: %zu weights within 1e-6 but not bitwise equal\n", what.c_str(), not_bitwise);
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << " weights: " << bad << " of " << want.weights.size()
                                       << " off by > 1e-6 relative; first at " << first << " (got "
                                       << got.weights[first] << ", want " << want.weights[first] << ")";
}

RoutingConfig softmax_cfg(int e, int k, bool renorm, float scale) {
  RoutingConfig c;
  c.num_experts = e;
  c.top_k = k;
  c.scoring = ScoringFunc::kSoftmax;
  c.renormalize = renorm;
  c.routed_scaling_factor = scale;
  return c;
}

RoutingConfig sigmoid_cfg(int e, int k, int n_group, int topk_group, bool renorm, float scale) {
  RoutingConfig c;
  c.num_experts = e;
  c.top_k = k;
  c.scoring = ScoringFunc::kSigmoid;
  c.renormalize = renorm;
  c.n_group = n_group;
  c.topk_group = topk_group;
  c.routed_scaling_factor = scale;
  return c;
}

// Bias in [-0.25, 0.25], on a 1/64 grid so that equal corrected scores occur.
std::vector<float> random_bias(int e, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> b(static_cast<size_t>(e));
  for (auto& x : b) x = float(int(rng() % 33) - 16) / 64.0f;
  return b;
}

__global__ void expf_sample_kernel(uint32_t stride, uint32_t n, float* exp_out, float* sig_out) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = __uint_as_float(i * stride);
  exp_out[i] = kernels::expf_glibc(x);
  sig_out[i] = kernels::sigmoid_ref(x);
}

// The device expf equals the host's std::exp(float) (what ref::route calls) on every 257th bit
// pattern of all 2^32, and the sigmoid the model's formula.
TEST(RoutingExpf, MatchesHostExpOnSample) {
  NVFP4MOE_REQUIRE_GPU();
  const uint32_t stride = 257, n = uint32_t((uint64_t(1) << 32) / stride);
  DeviceBuffer<float> e(n), s(n);
  expf_sample_kernel<<<(n + 255) / 256, 256>>>(stride, n, e.get(), s.get());
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  const auto ge = e.download(), gs = s.download();
  size_t bad_e = 0, bad_s = 0;
  uint32_t first_e = 0, first_s = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const float x = float_from_bits(i * stride);
    const float we = std::exp(x), ws = 1.0f / (1.0f + std::exp(-x));
    const bool ok_e = std::memcmp(&we, &ge[i], 4) == 0 || (std::isnan(we) && std::isnan(ge[i]));
    const bool ok_s = std::memcmp(&ws, &gs[i], 4) == 0 || (std::isnan(ws) && std::isnan(gs[i]));
    if (!ok_e && bad_e++ == 0) first_e = i * stride;
    if (!ok_s && bad_s++ == 0) first_s = i * stride;
  }
  EXPECT_EQ(bad_e, 0u) << "expf: " << bad_e << " of " << n << " differ; first at bits 0x" << std::hex << first_e;
  EXPECT_EQ(bad_s, 0u) << "sigmoid: " << bad_s << " of " << n << " differ; first at bits 0x" << std::hex << first_s;
}

TEST(RoutingSoftmax, MatchesRefOverShapes) {
  NVFP4MOE_REQUIRE_GPU();
  const LogitKind kinds[4] = {LogitKind::kContinuous, LogitKind::kExactTies, LogitKind::kNearTies,
                              LogitKind::kWide};
  int combo = 0;
  for (int e : {8, 128, 256, 512}) {
    for (int k : {1, 2, 8, 16}) {
      if (k > e) continue;
      for (int64_t t : {0, 1, 3, 255, 4096}) {
        const uint32_t seed = 1000u + uint32_t(combo);
        const LogitKind kind = kinds[combo % 4];
        const bool renorm = combo % 2 == 0;
        const float scale = combo % 3 == 0 ? 2.5f : 1.0f;
        ++combo;
        const std::string what = "softmax E=" + std::to_string(e) + " k=" + std::to_string(k) +
                                 " T=" + std::to_string(t) + " " + kind_name(kind) +
                                 (renorm ? " renorm" : "") + " seed=" + std::to_string(seed);
        SCOPED_TRACE(what);
        const auto cfg = softmax_cfg(e, k, renorm, scale);
        const auto logits = random_logits(t, e, seed, kind);
        EXPECT_TRUE(routes_match(route_gpu(logits, {}, t, cfg), route_ref(logits, {}, t, cfg), what));
      }
    }
  }
}

// Every kind of tie at every E (the ref comparison above rotates the kinds).
TEST(RoutingSoftmax, TiesAndNearTiesMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  for (int e : {8, 128, 256, 512}) {
    for (LogitKind kind : {LogitKind::kExactTies, LogitKind::kNearTies}) {
      const uint32_t seed = 77u + uint32_t(e);
      const std::string what = std::string("softmax E=") + std::to_string(e) + " k=8 " + kind_name(kind) +
                               " seed=" + std::to_string(seed);
      SCOPED_TRACE(what);
      const auto cfg = softmax_cfg(e, 8, true, 1.0f);
      const auto logits = random_logits(1024, e, seed, kind);
      EXPECT_TRUE(routes_match(route_gpu(logits, {}, 1024, cfg), route_ref(logits, {}, 1024, cfg), what));
    }
  }
}

TEST(RoutingSoftmax, Bf16LogitsMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  for (int e : {128, 512}) {
    const uint32_t seed = 4242u + uint32_t(e);
    SCOPED_TRACE("seed=" + std::to_string(seed));
    auto logits = random_logits(1000, e, seed, LogitKind::kContinuous);
    for (auto& x : logits) x = bf16_to_float(bf16_from_float(x));  // what the GPU will read
    const auto cfg = softmax_cfg(e, 8, true, 1.0f);
    EXPECT_TRUE(routes_match(route_gpu(logits, {}, 1000, cfg, /*bf16=*/true), route_ref(logits, {}, 1000, cfg),
                             "bf16 softmax E=" + std::to_string(e)));
  }
}

TEST(RoutingSigmoid, DeepSeekV3MatchesRef) {
  NVFP4MOE_REQUIRE_GPU();
  const auto cfg = sigmoid_cfg(256, 8, 8, 4, true, 2.5f);
  int combo = 0;
  for (LogitKind kind : {LogitKind::kContinuous, LogitKind::kExactTies, LogitKind::kNearTies, LogitKind::kWide}) {
    for (int64_t t : {0, 1, 3, 255, 4096}) {
      const uint32_t seed = 9000u + uint32_t(combo++);
      const std::string what = std::string("deepseek T=") + std::to_string(t) + " " + kind_name(kind) +
                               " seed=" + std::to_string(seed);
      SCOPED_TRACE(what);
      const auto logits = random_logits(t, 256, seed, kind);
      const auto bias = random_bias(256, seed + 1);
      EXPECT_TRUE(routes_match(route_gpu(logits, bias, t, cfg), route_ref(logits, bias, t, cfg), what));
      EXPECT_TRUE(routes_match(route_gpu(logits, bias, t, cfg, true),
                               route_ref([&] {
                                 auto l = logits;
                                 for (auto& x : l) x = bf16_to_float(bf16_from_float(x));
                                 return l;
                               }(), bias, t, cfg),
                               what + " bf16"));
    }
  }
}

TEST(RoutingSigmoid, OtherGroupConfigsMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  struct Case { int e, k, n_group, topk_group; bool renorm, bias; float scale; };
  const Case cases[] = {
      {128, 4, 4, 2, false, false, 1.0f},   // no bias, no renormalization
      {512, 16, 16, 4, true, true, 1.5f},   // 32-expert groups, k = 16
      {8, 2, 8, 3, true, true, 1.0f},       // groups of one expert
      {64, 6, 1, 1, true, true, 1.0f},      // plain sigmoid top-k (one group)
      {256, 8, 8, 8, true, true, 2.5f},     // every group kept
      {96, 5, 3, 1, true, true, 1.0f},      // E not a power of two, one group kept
      {16, 16, 4, 4, true, false, 1.0f},    // k = E
  };
  int combo = 0;
  for (const Case& c : cases) {
    for (LogitKind kind : {LogitKind::kContinuous, LogitKind::kExactTies, LogitKind::kNearTies}) {
      const uint32_t seed = 500u + uint32_t(combo++);
      const std::string what = "sigmoid E=" + std::to_string(c.e) + " k=" + std::to_string(c.k) +
                               " groups=" + std::to_string(c.n_group) + "/" + std::to_string(c.topk_group) +
                               " " + kind_name(kind) + " seed=" + std::to_string(seed);
      SCOPED_TRACE(what);
      const auto cfg = sigmoid_cfg(c.e, c.k, c.n_group, c.topk_group, c.renorm, c.scale);
      const auto logits = random_logits(777, c.e, seed, kind);
      const auto bias = c.bias ? random_bias(c.e, seed + 7) : std::vector<float>{};
      EXPECT_TRUE(routes_match(route_gpu(logits, bias, 777, cfg), route_ref(logits, bias, 777, cfg), what));
    }
  }
}

// Batch sizes above cuda::kRouteCtaMaxTokens take the warp-per-token kernels, the others the
// CTA-per-token ones: both against the model on the configurations above.
TEST(RoutingSigmoid, BothKernelFamiliesMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  struct Case { int e, k, n_group, topk_group; bool bias; };
  const Case cases[] = {{256, 8, 8, 4, true}, {512, 16, 16, 4, true}, {8, 2, 8, 3, true}, {96, 5, 3, 1, true},
                        {128, 4, 4, 2, false}};
  const int64_t small = 9, large = cuda::kRouteCtaMaxTokens + 37;
  int combo = 0;
  for (const Case& c : cases) {
    const auto cfg = sigmoid_cfg(c.e, c.k, c.n_group, c.topk_group, true, 2.5f);
    EXPECT_TRUE(cuda::uses_cta_routing(small, cfg));
    EXPECT_FALSE(cuda::uses_cta_routing(large, cfg));
    for (int64_t t : {small, large}) {
      for (LogitKind kind : {LogitKind::kContinuous, LogitKind::kExactTies, LogitKind::kNearTies}) {
        const uint32_t seed = 2600u + uint32_t(combo++);
        const std::string what = "sigmoid E=" + std::to_string(c.e) + " groups=" + std::to_string(c.n_group) + "/" +
                                 std::to_string(c.topk_group) + " T=" + std::to_string(t) + " " + kind_name(kind) +
                                 " seed=" + std::to_string(seed);
        SCOPED_TRACE(what);
        const auto logits = random_logits(t, c.e, seed, kind);
        const auto bias = c.bias ? random_bias(c.e, seed + 3) : std::vector<float>{};
        EXPECT_TRUE(routes_match(route_gpu(logits, bias, t, cfg), route_ref(logits, bias, t, cfg), what));
      }
    }
  }
}

TEST(RoutingSoftmax, BothKernelFamiliesMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  int combo = 0;
  for (int e : {8, 100, 128, 256, 300, 512}) {
    for (int64_t t : {int64_t(6), cuda::kRouteCtaMaxTokens, cuda::kRouteCtaMaxTokens + 1}) {
      for (LogitKind kind : {LogitKind::kContinuous, LogitKind::kNearTies, LogitKind::kWide}) {
        const uint32_t seed = 2700u + uint32_t(combo++);
        const int k = e >= 16 ? 16 : 4;
        const std::string what = "softmax E=" + std::to_string(e) + " T=" + std::to_string(t) + " " +
                                 kind_name(kind) + " seed=" + std::to_string(seed);
        SCOPED_TRACE(what);
        const auto cfg = softmax_cfg(e, k, true, 1.0f);
        const auto logits = random_logits(t, e, seed, kind);
        EXPECT_TRUE(routes_match(route_gpu(logits, {}, t, cfg), route_ref(logits, {}, t, cfg), what));
        EXPECT_TRUE(routes_match(route_gpu(logits, {}, t, cfg, true), route_ref([&] {
                                   auto l = logits;
                                   for (auto& x : l) x = bf16_to_float(bf16_from_float(x));
                                   return l;
                                 }(), {}, t, cfg), what + " bf16"));
      }
    }
  }
}

// More than 32 groups kept (but not all): only the CTA kernels record such a selection, so
// route() takes them at every batch size.
TEST(RoutingSigmoid, WideGroupSelectionMatchesRef) {
  NVFP4MOE_REQUIRE_GPU();
  struct Case { int e, k, n_group, topk_group; };
  const Case cases[] = {{128, 8, 64, 40}, {512, 16, 512, 300}, {512, 16, 256, 33}};
  int combo = 0;
  for (const Case& c : cases) {
    const auto cfg = sigmoid_cfg(c.e, c.k, c.n_group, c.topk_group, true, 1.0f);
    for (int64_t t : {int64_t(3), cuda::kRouteCtaMaxTokens + 100}) {
      EXPECT_TRUE(cuda::uses_cta_routing(t, cfg));
      for (LogitKind kind : {LogitKind::kContinuous, LogitKind::kExactTies}) {
        const uint32_t seed = 2800u + uint32_t(combo++);
        const std::string what = "sigmoid E=" + std::to_string(c.e) + " groups=" + std::to_string(c.n_group) + "/" +
                                 std::to_string(c.topk_group) + " T=" + std::to_string(t) + " " + kind_name(kind) +
                                 " seed=" + std::to_string(seed);
        SCOPED_TRACE(what);
        const auto logits = random_logits(t, c.e, seed, kind);
        const auto bias = random_bias(c.e, seed + 5);
        EXPECT_TRUE(routes_match(route_gpu(logits, bias, t, cfg), route_ref(logits, bias, t, cfg), what));
      }
    }
  }
}

// NaN logits rank last (never an out-of-range id); softmax rows with a NaN get NaN weights.
TEST(Routing, NaNLogitsMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  const uint32_t seed = 31337;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  for (int64_t t : {int64_t(200), cuda::kRouteCtaMaxTokens + 200}) {  // CTA and warp kernels
    SCOPED_TRACE("T=" + std::to_string(t));
    auto logits = random_logits(t, 64, seed, LogitKind::kContinuous);
    std::mt19937 rng(seed);
    for (int i = 0; i < 300; ++i) logits[rng() % logits.size()] = std::nanf("");
    for (int j = 0; j < 64; ++j) logits[size_t(5 * 64 + j)] = std::nanf("");  // a token of NaNs only
    const auto sm = softmax_cfg(64, 8, true, 1.0f);
    EXPECT_TRUE(routes_match(route_gpu(logits, {}, t, sm), route_ref(logits, {}, t, sm), "softmax NaN"));
    const auto sg = sigmoid_cfg(64, 8, 8, 4, true, 2.5f);
    const auto bias = random_bias(64, seed);
    EXPECT_TRUE(routes_match(route_gpu(logits, bias, t, sg), route_ref(logits, bias, t, sg), "sigmoid NaN"));
  }
}

TEST(Routing, RepeatedRunsBitwiseIdentical) {
  NVFP4MOE_REQUIRE_GPU();
  const auto cfg = sigmoid_cfg(256, 8, 8, 4, true, 2.5f);
  const auto logits = random_logits(4096, 256, 99, LogitKind::kExactTies);
  const auto bias = random_bias(256, 100);
  const Routed first = route_gpu(logits, bias, 4096, cfg);
  for (int rep = 0; rep < 3; ++rep) {
    const Routed again = route_gpu(logits, bias, 4096, cfg);
    EXPECT_TRUE(test::bytes_equal(again.ids, first.ids, "ids run " + std::to_string(rep)));
    EXPECT_TRUE(test::bytes_equal(again.weights, first.weights, "weights run " + std::to_string(rep)));
  }
}

TEST(RoutingBadArgs, ThrowsBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  DeviceBuffer<float> logits(64 * 512), bias(512), weights(64 * 16);
  DeviceBuffer<int32_t> ids(64 * 16);
  ids.fill_bytes(0x5a);
  auto call = [&](const RoutingConfig& cfg, const void* l = nullptr, const float* b = nullptr, int64_t t = 4,
                  int32_t* i = nullptr, float* w = nullptr,
                  cuda::LogitsDType dt = cuda::LogitsDType::kFloat32) {
    cuda::route(l ? l : logits.get(), dt, b, t, cfg, i ? i : ids.get(), w ? w : weights.get(), nullptr);
  };
  const auto ok = softmax_cfg(128, 8, true, 1.0f);
  EXPECT_NO_THROW(call(ok));
  EXPECT_THROW(call(softmax_cfg(0, 1, true, 1.0f)), Error);
  EXPECT_THROW(call(softmax_cfg(513, 8, true, 1.0f)), Error);
  EXPECT_THROW(call(softmax_cfg(128, 0, true, 1.0f)), Error);
  EXPECT_THROW(call(softmax_cfg(128, 17, true, 1.0f)), Error);
  EXPECT_THROW(call(softmax_cfg(4, 8, true, 1.0f)), Error);                         // k > E
  EXPECT_THROW(call(softmax_cfg(128, 8, true, std::nanf(""))), Error);             // scale
  EXPECT_THROW(call(sigmoid_cfg(256, 8, 7, 4, true, 1.0f)), Error);                 // n_group !| E
  EXPECT_THROW(call(sigmoid_cfg(256, 8, 8, 9, true, 1.0f)), Error);                 // topk_group > n_group
  EXPECT_THROW(call(sigmoid_cfg(256, 40, 8, 1, true, 1.0f)), Error);                // k > kept experts
  EXPECT_THROW(call(ok, nullptr, bias.get()), Error);                               // bias with softmax
  EXPECT_THROW(call(ok, nullptr, nullptr, -1), Error);                              // tokens < 0
  EXPECT_THROW(call(ok, reinterpret_cast<const char*>(logits.get()) + 2), Error);  // misaligned logits
  EXPECT_THROW(call(ok, nullptr, nullptr, 4, ids.get() + 0, reinterpret_cast<float*>(
                                                                 reinterpret_cast<char*>(weights.get()) + 1)),
               Error);                                                              // misaligned weights
  EXPECT_THROW(call(ok, nullptr, nullptr, 4, nullptr, nullptr, static_cast<cuda::LogitsDType>(7)), Error);
  EXPECT_THROW(cuda::route(nullptr, cuda::LogitsDType::kFloat32, nullptr, 4, ok, ids.get(), weights.get(), nullptr),
               Error);
  EXPECT_THROW(cuda::route(logits.get(), cuda::LogitsDType::kFloat32, nullptr, 4, ok, nullptr, weights.get(), nullptr),
               Error);
  EXPECT_THROW(cuda::route(logits.get(), cuda::LogitsDType::kFloat32, nullptr, 4, ok, ids.get(), nullptr, nullptr),
               Error);
  // tokens = 0 launches nothing and accepts null buffers.
  EXPECT_NO_THROW(cuda::route(nullptr, cuda::LogitsDType::kFloat32, nullptr, 0, ok, nullptr, nullptr, nullptr));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  // A throwing call wrote nothing: the ids of the first call came from a valid launch; a
  // failed call between two reads leaves them unchanged.
  const auto before = ids.download();
  EXPECT_THROW(call(softmax_cfg(128, 17, true, 1.0f)), Error);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(test::bytes_equal(ids.download(), before, "ids after a rejected call"));
}

}  // namespace
}  // namespace nvfp4moe
