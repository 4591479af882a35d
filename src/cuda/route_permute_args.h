// The fused routing kernels' arguments from the API's routing config and permutation outputs
// (src/cuda/route_and_permute.cu, src/cuda/route_permute_values.cu).
#pragma once

#include <cstdint>

#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/kernels/route_permute_args_sm90.cuh"

namespace nvfp4moe::cuda {

inline kernels::RoutePermuteArgs route_permute_args(const RoutingConfig& cfg, int32_t* ids, float* weights,
                                                    const PermuteOutputs& out, unsigned* counter) {
  kernels::RoutePermuteArgs a{};
  a.num_experts = cfg.num_experts;
  a.top_k = cfg.top_k;
  a.n_group = cfg.n_group;
  a.topk_group = cfg.topk_group;
  a.sigmoid = cfg.scoring == ScoringFunc::kSigmoid;
  a.renormalize = cfg.renormalize;
  a.scale = cfg.routed_scaling_factor;
  a.ids = ids;
  a.weights = weights;
  a.counter = counter;
  a.counts = out.counts;
  a.off = out.off;
  a.sf_off = out.sf_off;
  a.sorted_to_pair = out.sorted_to_pair;
  a.pair_to_sorted = out.pair_to_sorted;
  a.sorted_to_token = out.sorted_to_token;
  return a;
}

}  // namespace nvfp4moe::cuda
