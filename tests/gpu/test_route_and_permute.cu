// GPU fused routing + permutation (cuda::route_and_permute) against the CPU models ref::route and
// ref::permute: ids bit for bit, weights bit for bit (the fused kernel runs the very arithmetic of
// cuda::route), and all six permutation outputs bit for bit. Softmax and grouped sigmoid, every
// expert-slot shape (E <= 256 and E > 256), bf16 logits, the fused range and the two-launch
// fallback past it, capacity > tokens, many calls on one workspace (its ticket counter must come
// back to zero each time), CUDA graph replay, and bad arguments.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "gpu/routing_test_models.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/ref/permute.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

struct Result {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  ref::Permutation perm;
};

Result reference(const std::vector<float>& logits, const std::vector<float>& bias, int64_t tokens,
                 const RoutingConfig& cfg) {
  Result r;
  r.ids.resize(size_t(tokens * cfg.top_k));
  r.weights.resize(size_t(tokens * cfg.top_k));
  ref::route(logits, bias, tokens, cfg, r.ids, r.weights);
  r.perm = ref::permute(r.ids, tokens, cfg.top_k, cfg.num_experts);
  return r;
}

// Device buffers of one fused call, sized for `capacity` tokens and poisoned; the workspace is
// zero-filled once, as the API asks. host_bias empty: no correction bias (nullptr).
struct Fused {
  int64_t capacity;
  RoutingConfig cfg;
  DeviceBuffer<float> logits;
  DeviceBuffer<uint16_t> logits_bf16;
  DeviceBuffer<float> bias;
  DeviceBuffer<int32_t> ids, counts, off, sf_off, s2p, p2s, s2t;
  DeviceBuffer<float> weights;
  DeviceBuffer<uint8_t> ws;
  size_t ws_bytes;

  Fused(int64_t cap, const RoutingConfig& c, const std::vector<float>& host_bias)
      : capacity(cap),
        cfg(c),
        logits(size_t(std::max<int64_t>(cap, 1) * c.num_experts)),
        logits_bf16(size_t(std::max<int64_t>(cap, 1) * c.num_experts)),
        bias(host_bias),
        ids(size_t(std::max<int64_t>(cap, 1) * c.top_k)),
        counts(size_t(c.num_experts)),
        off(size_t(c.num_experts + 1)),
        sf_off(size_t(c.num_experts + 1)),
        s2p(size_t(std::max<int64_t>(cap, 1) * c.top_k)),
        p2s(size_t(std::max<int64_t>(cap, 1) * c.top_k)),
        s2t(size_t(std::max<int64_t>(cap, 1) * c.top_k)),
        weights(size_t(std::max<int64_t>(cap, 1) * c.top_k)),
        ws(cuda::route_and_permute_workspace_bytes(cap, c.top_k, c.num_experts)),
        ws_bytes(cuda::route_and_permute_workspace_bytes(cap, c.top_k, c.num_experts)) {
    ws.fill_bytes(0);
  }

  cuda::PermuteOutputs outputs() const { return test::permute_outputs_of(*this); }

  void upload(const std::vector<float>& host_logits) {
    NVFP4MOE_CUDA_CHECK(cudaMemcpy(logits.get(), host_logits.data(), host_logits.size() * 4, cudaMemcpyHostToDevice));
    std::vector<uint16_t> h(host_logits.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = bf16_from_float(host_logits[i]);
    NVFP4MOE_CUDA_CHECK(cudaMemcpy(logits_bf16.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    for (auto* b : {&ids, &counts, &off, &sf_off, &s2p, &p2s, &s2t}) b->fill_bytes(0xff);
    weights.fill_bytes(0xff);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());  // the memsets ran on the legacy stream
  }

  void launch(int64_t tokens, bool bf16, cudaStream_t stream) {
    cuda::route_and_permute(bf16 ? static_cast<const void*>(logits_bf16.get()) : logits.get(),
                            bf16 ? cuda::LogitsDType::kBF16 : cuda::LogitsDType::kFloat32,
                            bias.get(), tokens, cfg, capacity, ids.get(), weights.get(), outputs(),
                            ws.get(), ws_bytes, stream);
  }

  Result download(int64_t tokens) const {
    const size_t m = size_t(tokens * cfg.top_k);
    auto first_m = [m](std::vector<int32_t> v) {
      v.resize(m);
      return v;
    };
    Result r;
    r.ids = first_m(ids.download());
    r.weights = weights.download();
    r.weights.resize(m);
    r.perm.counts = counts.download();
    r.perm.off = off.download();
    r.perm.sf_off = sf_off.download();
    r.perm.sorted_to_pair = first_m(s2p.download());
    r.perm.pair_to_sorted = first_m(p2s.download());
    r.perm.sorted_to_token = first_m(s2t.download());
    return r;
  }

  std::vector<uint8_t> counter_bytes() const {
    const auto all = ws.download();
    return std::vector<uint8_t>(all.begin(), all.begin() + 16);
  }
};

::testing::AssertionResult results_equal(const Result& got, const Result& want, const std::string& what) {
  struct Field {
    const std::vector<int32_t>* got;
    const std::vector<int32_t>* want;
    const char* name;
  };
  const Field fields[] = {{&got.ids, &want.ids, "ids"},
                          {&got.perm.counts, &want.perm.counts, "counts"},
                          {&got.perm.off, &want.perm.off, "off"},
                          {&got.perm.sf_off, &want.perm.sf_off, "sf_off"},
                          {&got.perm.sorted_to_pair, &want.perm.sorted_to_pair, "sorted_to_pair"},
                          {&got.perm.pair_to_sorted, &want.perm.pair_to_sorted, "pair_to_sorted"},
                          {&got.perm.sorted_to_token, &want.perm.sorted_to_token, "sorted_to_token"}};
  for (const Field& f : fields) {
    auto r = test::bytes_equal(*f.got, *f.want, what + " " + f.name);
    if (!r) return r;
  }
  return test::bytes_equal(got.weights, want.weights, what + " weights");
}

using Model = test::RoutingModel;
std::vector<Model> models() { return test::routing_models(); }

void check(const Model& model, int64_t tokens, int64_t capacity, bool bf16, uint32_t seed) {
  const std::string what = std::string(model.name) + " T=" + std::to_string(tokens) + " cap=" +
                           std::to_string(capacity) + (bf16 ? " bf16" : "") + " seed=" + std::to_string(seed) +
                           (cuda::uses_fused_route_and_permute(tokens, model.cfg.top_k) ? " fused" : " two-launch");
  SCOPED_TRACE(what);
  auto logits = test::random_routing_logits(tokens, model.cfg.num_experts, seed);
  const auto bias = model.bias ? test::random_routing_bias(model.cfg.num_experts, seed + 1) : std::vector<float>{};
  Fused f(capacity, model.cfg, bias);
  f.upload(logits);
  f.launch(tokens, bf16, nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  if (bf16) {
    for (auto& x : logits) x = bf16_to_float(bf16_from_float(x));  // what the GPU read
  }
  EXPECT_TRUE(results_equal(f.download(tokens), reference(logits, bias, tokens, model.cfg), what));
  EXPECT_TRUE(test::bytes_equal(f.counter_bytes(), std::vector<uint8_t>(16, 0), what + " counter after the call"));
}

TEST(RouteAndPermute, MatchesRefOverShapes) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 7000;
  for (const Model& model : models()) {
    for (int64_t t : {0, 1, 2, 3, 16, 64, 127}) check(model, t, t, false, seed++);
  }
}

// The largest fused batch (M = 2048) and the first past it (route + permute, multi-CTA).
TEST(RouteAndPermute, FusedBoundaryMatchesRef) {
  NVFP4MOE_REQUIRE_GPU();
  const Model ds = models()[0];
  EXPECT_TRUE(cuda::uses_fused_route_and_permute(256, 8));
  EXPECT_FALSE(cuda::uses_fused_route_and_permute(257, 8));
  EXPECT_FALSE(cuda::uses_fused_route_and_permute(0, 8));
  check(ds, 256, 256, false, 11);
  check(ds, 257, 257, false, 12);
  check(models()[1], 256, 300, false, 13);
  check(models()[1], 1200, 1200, false, 14);
}

TEST(RouteAndPermute, Bf16LogitsAndCapacityMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 8000;
  for (const Model& model : models()) {
    check(model, 5, 4096, true, seed++);
    check(model, 33, 64, false, seed++);
  }
}

// One workspace, many calls of changing batch sizes: the counter must be zero after each, and
// each result equal to the reference (a stale counter would skip or misplace the permute).
TEST(RouteAndPermute, RepeatedCallsOnOneWorkspace) {
  NVFP4MOE_REQUIRE_GPU();
  const Model model = models()[0];
  const int64_t cap = 300;
  const auto bias = test::random_routing_bias(256, 41);
  Fused f(cap, model.cfg, bias);
  uint32_t seed = 9100;
  for (int64_t t : {1, 200, 7, 256, 1, 0, 64, 300, 2}) {
    const std::string what = "T=" + std::to_string(t) + " seed=" + std::to_string(seed);
    SCOPED_TRACE(what);
    const auto logits = test::random_routing_logits(t, 256, seed++);
    f.upload(logits);
    f.launch(t, false, nullptr);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(results_equal(f.download(t), reference(logits, bias, t, model.cfg), what));
    EXPECT_TRUE(test::bytes_equal(f.counter_bytes(), std::vector<uint8_t>(16, 0), what + " counter"));
  }
}

// Captured once, replayed: each replay must find the counter zero and redo the same work.
TEST(RouteAndPermute, GraphReplayMatchesRef) {
  NVFP4MOE_REQUIRE_GPU();
  const Model model = models()[1];
  const int64_t t = 4;
  Fused f(t, model.cfg, {});
  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  f.launch(t, false, stream);
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (uint32_t seed : {61u, 62u, 63u}) {
    SCOPED_TRACE("seed=" + std::to_string(seed));
    const auto logits = test::random_routing_logits(t, 128, seed);
    f.upload(logits);
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(results_equal(f.download(t), reference(logits, {}, t, model.cfg), "replay"));
  }
  NVFP4MOE_CUDA_CHECK(cudaGraphExecDestroy(exec));
  NVFP4MOE_CUDA_CHECK(cudaGraphDestroy(graph));
  NVFP4MOE_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(RouteAndPermuteBadArgs, ThrowsBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  const Model model = models()[0];
  const auto bias = test::random_routing_bias(256, 3);
  Fused f(16, model.cfg, bias);
  f.upload(test::random_routing_logits(16, 256, 5));
  const auto out = f.outputs();
  auto call = [&](int64_t tokens, const RoutingConfig& cfg, void* ws, size_t ws_bytes, int64_t cap = 16) {
    cuda::route_and_permute(f.logits.get(), cuda::LogitsDType::kFloat32, f.bias.get(), tokens, cfg, cap,
                            f.ids.get(), f.weights.get(), out, ws, ws_bytes, nullptr);
  };
  EXPECT_NO_THROW(call(16, model.cfg, f.ws.get(), f.ws_bytes));
  EXPECT_THROW(call(16, model.cfg, f.ws.get(), 15), Error);                          // workspace too small
  EXPECT_THROW(call(16, model.cfg, nullptr, f.ws_bytes), Error);                      // no workspace
  EXPECT_THROW(call(16, model.cfg, f.ws.get() + 4, f.ws_bytes - 4), Error);          // misaligned
  EXPECT_THROW(call(17, model.cfg, f.ws.get(), f.ws_bytes), Error);                   // tokens > capacity
  EXPECT_THROW(call(-1, model.cfg, f.ws.get(), f.ws_bytes), Error);                   // tokens < 0
  RoutingConfig bad = model.cfg;
  bad.top_k = 17;
  EXPECT_THROW(call(4, bad, f.ws.get(), f.ws_bytes), Error);
  cuda::PermuteOutputs no_off = out;
  no_off.off = nullptr;
  EXPECT_THROW(cuda::route_and_permute(f.logits.get(), cuda::LogitsDType::kFloat32, f.bias.get(), 4, model.cfg, 16,
                                       f.ids.get(), f.weights.get(), no_off, f.ws.get(), f.ws_bytes, nullptr),
               Error);
  EXPECT_THROW(cuda::route_and_permute(f.logits.get(), cuda::LogitsDType::kFloat32, f.bias.get(), 4, model.cfg, 16,
                                       nullptr, f.weights.get(), out, f.ws.get(), f.ws_bytes, nullptr),
               Error);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(test::bytes_equal(f.counter_bytes(), std::vector<uint8_t>(16, 0), "counter"));
}

}  // namespace
}  // namespace nvfp4moe
