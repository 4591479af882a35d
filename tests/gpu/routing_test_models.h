// Routing configurations and inputs shared by the fused routing GPU tests
// (test_route_and_permute.cu, test_route_permute_values.cu): the two target models and shapes
// at the kernels' edges (E > 256: two experts a thread; k = 16; uneven groups; tiny E).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe::test {

inline RoutingConfig make_routing_cfg(int e, int k, ScoringFunc scoring, int n_group, int topk_group, float scale) {
  RoutingConfig c;
  c.num_experts = e;
  c.top_k = k;
  c.scoring = scoring;
  c.renormalize = true;
  c.n_group = n_group;
  c.topk_group = topk_group;
  c.routed_scaling_factor = scale;
  return c;
}

struct RoutingModel {
  const char* name;
  RoutingConfig cfg;
  bool bias;  // sigmoid scoring with a correction bias
};

inline std::vector<RoutingModel> routing_models() {
  return {{"deepseek-v3", make_routing_cfg(256, 8, ScoringFunc::kSigmoid, 8, 4, 2.5f), true},
          {"qwen3", make_routing_cfg(128, 8, ScoringFunc::kSoftmax, 1, 1, 1.0f), false},
          {"softmax-E512-k16", make_routing_cfg(512, 16, ScoringFunc::kSoftmax, 1, 1, 1.0f), false},
          {"sigmoid-E512-g16", make_routing_cfg(512, 16, ScoringFunc::kSigmoid, 16, 4, 1.5f), true},
          {"sigmoid-E96-g3", make_routing_cfg(96, 5, ScoringFunc::kSigmoid, 3, 1, 1.0f), true},
          {"softmax-E8-k2", make_routing_cfg(8, 2, ScoringFunc::kSoftmax, 1, 1, 1.0f), false},
          {"softmax-E4-k1", make_routing_cfg(4, 1, ScoringFunc::kSoftmax, 1, 1, 1.0f), false}};
}

// Logits N(0, 2); token t lies on a coarse grid (exact ties between experts) when
// (t + seed) % 4 == 3, so every fourth token of a batch, and token 0 of a quarter of the seeds.
inline std::vector<float> random_routing_logits(int64_t tokens, int e, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> out(size_t(tokens * e));
  for (int64_t t = 0; t < tokens; ++t) {
    const bool ties = (t + int64_t(seed)) % 4 == 3;
    for (int i = 0; i < e; ++i) out[size_t(t * e + i)] = ties ? float(int(rng() % 8)) * 0.5f - 2.0f : normal(rng);
  }
  return out;
}

// Correction bias on a 1/64 grid in [-0.25, 0.25].
inline std::vector<float> random_routing_bias(int e, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> b(static_cast<size_t>(e));
  for (auto& x : b) x = float(int(rng() % 33) - 16) / 64.0f;
  return b;
}

// The six permutation outputs of a test's device buffers (members counts, off, sf_off, s2p,
// p2s, s2t).
template <typename Buffers>
cuda::PermuteOutputs permute_outputs_of(const Buffers& b) {
  cuda::PermuteOutputs o;
  o.counts = b.counts.get();
  o.off = b.off.get();
  o.sf_off = b.sf_off.get();
  o.sorted_to_pair = b.s2p.get();
  o.pair_to_sorted = b.p2s.get();
  o.sorted_to_token = b.s2t.get();
  return o;
}

}  // namespace nvfp4moe::test
