// Launcher of the routing kernels (include/nvfp4moe/kernels/routing_sm90.cuh).
#include "nvfp4moe/cuda/routing.h"

#include <cuda_bf16.h>

#include <cstdint>
#include <limits>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/kernels/routing_cta_sm90.cuh"
#include "nvfp4moe/kernels/routing_sm90.cuh"
#include "routing_checks.h"

namespace nvfp4moe::cuda {
namespace {

constexpr int64_t kRouteCtaMaxGrid = 65536;  // more tokens: each CTA loops

}  // namespace

bool uses_cta_routing(int64_t tokens, const RoutingConfig& cfg) {
  const bool wide_groups = cfg.scoring == ScoringFunc::kSigmoid && cfg.topk_group < cfg.n_group &&
                           cfg.topk_group > 32;
  return tokens <= kRouteCtaMaxTokens || wide_groups;
}

namespace {

template <typename InT, int kSlots>
void launch_route(const InT* logits, const float* bias, int64_t tokens, const RoutingConfig& cfg,
                  int32_t* ids, float* weights, cudaStream_t stream) {
  const unsigned blocks =
      unsigned((tokens + kernels::kRoutingWarpsPerBlock - 1) / kernels::kRoutingWarpsPerBlock);
  if (cfg.scoring == ScoringFunc::kSoftmax) {
    kernels::route_softmax_sm90<InT, kSlots><<<blocks, kernels::kRoutingThreads, 0, stream>>>(
        logits, tokens, cfg.num_experts, cfg.top_k, cfg.renormalize, cfg.routed_scaling_factor, ids,
        weights);
  } else {
    kernels::route_sigmoid_sm90<InT, kSlots><<<blocks, kernels::kRoutingThreads, 0, stream>>>(
        logits, bias, tokens, cfg.num_experts, cfg.top_k, cfg.n_group, cfg.topk_group, cfg.renormalize,
        cfg.routed_scaling_factor, ids, weights);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

// CTA-per-token kernels (routing_cta_sm90.cuh); kSlots experts a thread.
template <typename InT, int kSlots>
void launch_route_cta(const InT* logits, const float* bias, int64_t tokens, const RoutingConfig& cfg,
                      int32_t* ids, float* weights, cudaStream_t stream) {
  const unsigned blocks = unsigned(tokens < kRouteCtaMaxGrid ? tokens : kRouteCtaMaxGrid);
  if (cfg.scoring == ScoringFunc::kSoftmax) {
    kernels::route_softmax_cta_sm90<InT, kSlots><<<blocks, kernels::kRouteCtaThreads, 0, stream>>>(
        logits, tokens, cfg.num_experts, cfg.top_k, cfg.renormalize, cfg.routed_scaling_factor, ids, weights);
  } else {
    kernels::route_sigmoid_cta_sm90<InT, kSlots><<<blocks, kernels::kRouteCtaThreads, 0, stream>>>(
        logits, bias, cfg.num_experts, cfg.top_k, cfg.n_group, cfg.topk_group, cfg.renormalize,
        cfg.routed_scaling_factor, tokens, ids, weights);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

// Experts a lane holds: ceil(E / 32) rounded up to a power of two. Small batches (and group
// selections wider than a warp, which the warp kernel cannot record) take the CTA kernels.
template <typename InT>
void dispatch_slots(const InT* logits, const float* bias, int64_t tokens, const RoutingConfig& cfg,
                    int32_t* ids, float* weights, cudaStream_t stream) {
  if (uses_cta_routing(tokens, cfg)) {
    if (cfg.num_experts <= kernels::kRouteCtaThreads) launch_route_cta<InT, 1>(logits, bias, tokens, cfg, ids, weights, stream);
    else launch_route_cta<InT, 2>(logits, bias, tokens, cfg, ids, weights, stream);
    return;
  }
  const int per_lane = (cfg.num_experts + 31) / 32;
  if (per_lane <= 1) launch_route<InT, 1>(logits, bias, tokens, cfg, ids, weights, stream);
  else if (per_lane <= 2) launch_route<InT, 2>(logits, bias, tokens, cfg, ids, weights, stream);
  else if (per_lane <= 4) launch_route<InT, 4>(logits, bias, tokens, cfg, ids, weights, stream);
  else if (per_lane <= 8) launch_route<InT, 8>(logits, bias, tokens, cfg, ids, weights, stream);
  else launch_route<InT, 16>(logits, bias, tokens, cfg, ids, weights, stream);
}

}  // namespace

void check_route_args(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
                      const RoutingConfig& cfg, const int32_t* ids, const float* weights) {
  validate(cfg);
  static_assert(kernels::kRoutingMaxExperts == 512 && kernels::kRoutingMaxTopK == 16,
                "validate(RoutingConfig) admits E <= 512, k <= 16");
  NVFP4MOE_CHECK(logits_dtype == LogitsDType::kFloat32 || logits_dtype == LogitsDType::kBF16,
                 "logits_dtype: expected kFloat32 or kBF16, got ", int(logits_dtype));
  const int64_t max_tokens =
      int64_t(std::numeric_limits<unsigned>::max() / 2) * kernels::kRoutingWarpsPerBlock;
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= max_tokens, "tokens: expected 0..", max_tokens, ", got ",
                 tokens);
  NVFP4MOE_CHECK(correction_bias == nullptr || cfg.scoring == ScoringFunc::kSigmoid,
                 "correction_bias: only sigmoid scoring uses it; pass nullptr for softmax");
  NVFP4MOE_CHECK(correction_bias == nullptr || is_aligned(correction_bias, 4),
                 "correction_bias: expected a 4-byte aligned pointer");
  if (tokens == 0) return;  // nothing is read or written
  const size_t elem = logits_dtype == LogitsDType::kFloat32 ? 4 : 2;
  NVFP4MOE_CHECK(logits != nullptr, "logits: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(logits, elem), "logits: expected a ", elem, "-byte aligned pointer");
  NVFP4MOE_CHECK(ids != nullptr, "ids: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(ids, 4), "ids: expected a 4-byte aligned pointer");
  NVFP4MOE_CHECK(weights != nullptr, "weights: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(weights, 4), "weights: expected a 4-byte aligned pointer");
}

void route(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
           const RoutingConfig& cfg, int32_t* ids, float* weights, cudaStream_t stream) {
  check_route_args(logits, logits_dtype, correction_bias, tokens, cfg, ids, weights);
  if (tokens == 0) return;
  if (logits_dtype == LogitsDType::kFloat32) {
    dispatch_slots(static_cast<const float*>(logits), correction_bias, tokens, cfg, ids, weights, stream);
  } else {
    dispatch_slots(static_cast<const __nv_bfloat16*>(logits), correction_bias, tokens, cfg, ids, weights,
                   stream);
  }
}

}  // namespace nvfp4moe::cuda
