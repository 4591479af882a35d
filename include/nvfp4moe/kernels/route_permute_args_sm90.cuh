// Arguments of the fused routing + permutation kernels (route_permute_sm90.cuh,
// route_permute_values_sm90.cuh): the routing configuration and every output pointer.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

struct RoutePermuteArgs {
  int num_experts, top_k, n_group, topk_group;
  bool sigmoid, renormalize;
  float scale;
  int32_t* ids;
  float* weights;
  unsigned* counter;  // route_permute_sm90's ticket (route_permute_values_sm90: unused)
  int32_t *counts, *off, *sf_off, *sorted_to_pair, *pair_to_sorted, *sorted_to_token;
};

}  // namespace nvfp4moe::kernels
