// Argument checks shared by the routing / permute launchers and the fused route_and_permute
// (src/cuda/{routing,permute,route_and_permute}.cu). Each throws nvfp4moe::Error naming the bad
// argument; the rules are those documented in nvfp4moe/cuda/routing.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nvfp4moe/cuda/routing.h"

namespace nvfp4moe::cuda {

void check_route_args(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
                      const RoutingConfig& cfg, const int32_t* ids, const float* weights);

void check_permute_args(const int32_t* ids, int64_t tokens, int top_k, int num_experts, int64_t capacity_tokens,
                        const PermuteOutputs& out, const void* workspace, size_t workspace_bytes);

}  // namespace nvfp4moe::cuda
