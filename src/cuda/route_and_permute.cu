// Launcher of the fused routing + permutation (include/nvfp4moe/kernels/route_permute_sm90.cuh),
// with the two-launch fallback (route, then permute) for batches it does not cover.
#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/pdl_launch.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/route_permute_sm90.cuh"
#include "route_permute_args.h"
#include "routing_checks.h"

namespace nvfp4moe::cuda {
namespace {

constexpr size_t kCounterBytes = 16;  // the ticket counter, then permute's workspace (16-aligned)

template <typename InT, int kSlots>
void launch_fused(const InT* logits, const float* bias, int64_t tokens, const kernels::RoutePermuteArgs& a,
                  cudaStream_t stream) {
  launch_pdl(kernels::route_permute_sm90<InT, kSlots>, dim3(unsigned(tokens)), dim3(kernels::kRouteCtaThreads), 0,
             stream, logits, bias, int(tokens), a);
}

template <typename InT>
void dispatch_fused(const InT* logits, const float* bias, int64_t tokens, const kernels::RoutePermuteArgs& a,
                    cudaStream_t stream) {
  if (a.num_experts <= kernels::kRouteCtaThreads) launch_fused<InT, 1>(logits, bias, tokens, a, stream);
  else launch_fused<InT, 2>(logits, bias, tokens, a, stream);
}

}  // namespace

bool uses_fused_route_and_permute(int64_t tokens, int top_k) {
  return tokens >= 1 && tokens * top_k <= kernels::kPermuteSingleCtaMaxPairs;
}

size_t route_and_permute_workspace_bytes(int64_t capacity_tokens, int top_k, int num_experts) {
  return kCounterBytes + size_t(round_up(int64_t(permute_workspace_bytes(capacity_tokens, top_k, num_experts)), 16));
}

void route_and_permute(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
                       const RoutingConfig& cfg, int64_t capacity_tokens, int32_t* ids, float* weights,
                       const PermuteOutputs& out, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  check_route_args(logits, logits_dtype, correction_bias, tokens, cfg, ids, weights);
  const size_t need = route_and_permute_workspace_bytes(capacity_tokens, cfg.top_k, cfg.num_experts);
  NVFP4MOE_CHECK(workspace_bytes >= need, "workspace_bytes: expected >= route_and_permute_workspace_bytes(",
                 capacity_tokens, ", ", cfg.top_k, ", ", cfg.num_experts, ") = ", need, ", got ", workspace_bytes);
  NVFP4MOE_CHECK(workspace != nullptr, "workspace: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(workspace, 16), "workspace: expected a 16-byte aligned pointer");
  void* permute_ws = static_cast<char*>(workspace) + kCounterBytes;
  const size_t permute_ws_bytes = workspace_bytes - kCounterBytes;
  check_permute_args(ids, tokens, cfg.top_k, cfg.num_experts, capacity_tokens, out, permute_ws, permute_ws_bytes);

  if (!uses_fused_route_and_permute(tokens, cfg.top_k)) {
    route(logits, logits_dtype, correction_bias, tokens, cfg, ids, weights, stream);
    permute(ids, tokens, cfg.top_k, cfg.num_experts, capacity_tokens, out, permute_ws, permute_ws_bytes, stream);
    return;
  }
  const kernels::RoutePermuteArgs a = route_permute_args(cfg, ids, weights, out, static_cast<unsigned*>(workspace));
  if (logits_dtype == LogitsDType::kFloat32) {
    dispatch_fused(static_cast<const float*>(logits), correction_bias, tokens, a, stream);
  } else {
    dispatch_fused(static_cast<const __nv_bfloat16*>(logits), correction_bias, tokens, a, stream);
  }
}

}  // namespace nvfp4moe::cuda
