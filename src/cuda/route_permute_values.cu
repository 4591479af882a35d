// Launcher of the one-launch MoE front end for the smallest batches
// (include/nvfp4moe/kernels/route_permute_values_sm90.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/pdl_launch.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/kernels/route_permute_values_sm90.cuh"
#include "route_permute_args.h"
#include "routing_checks.h"

namespace nvfp4moe::cuda {
namespace {

namespace k = ::nvfp4moe::kernels;

// Clusters of `tokens` CTAs (one routes each token), with PDL when enabled.
template <typename InT, typename T, int kSlots>
void launch(const InT* logits, const float* bias, int tokens, unsigned ctas, const k::RoutePermuteArgs& a,
            const k::TinyValuesArgs& v, cudaStream_t stream) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(ctas);
  cfg.blockDim = dim3(k::kRouteCtaThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(tokens);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 2 : 1;
  NVFP4MOE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, k::route_permute_values_sm90<InT, T, kSlots>, logits, bias, tokens, a, v));
}

template <typename InT, typename T>
void dispatch_slots(const InT* logits, const float* bias, int tokens, unsigned ctas, const k::RoutePermuteArgs& a,
                    const k::TinyValuesArgs& v, cudaStream_t stream) {
  if (a.num_experts <= k::kRouteCtaThreads) launch<InT, T, 1>(logits, bias, tokens, ctas, a, v, stream);
  else launch<InT, T, 2>(logits, bias, tokens, ctas, a, v, stream);
}

template <typename InT>
void dispatch_x(const InT* logits, const float* bias, int tokens, unsigned ctas, ActDType x_dtype,
                const k::RoutePermuteArgs& a, const k::TinyValuesArgs& v, cudaStream_t stream) {
  if (x_dtype == ActDType::kBF16) dispatch_slots<InT, __nv_bfloat16>(logits, bias, tokens, ctas, a, v, stream);
  else dispatch_slots<InT, __half>(logits, bias, tokens, ctas, a, v, stream);
}

int sm_count() {
  int dev = 0, n = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

}  // namespace

bool uses_route_permute_values(int64_t tokens, int top_k, int64_t hidden) {
  return tokens >= 1 && tokens <= k::kTinyTokens && tokens * top_k <= k::kTinyPairs && hidden > 0 &&
         hidden % 16 == 0 && hidden <= k::kTinyMaxHidden;
}

void route_permute_values(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
                          const RoutingConfig& cfg, int32_t* ids, float* weights, const PermuteOutputs& out,
                          const void* x, ActDType x_dtype, int64_t hidden, const float* g, void* values,
                          cudaStream_t stream) {
  check_route_args(logits, logits_dtype, correction_bias, tokens, cfg, ids, weights);
  NVFP4MOE_CHECK(tokens >= 1 && tokens <= k::kTinyTokens && tokens * cfg.top_k <= k::kTinyPairs,
                 "tokens: expected 1..", k::kTinyTokens, " with tokens * top_k <= ", k::kTinyPairs,
                 ", got tokens = ", tokens, ", top_k = ", cfg.top_k);
  NVFP4MOE_CHECK(hidden > 0 && hidden % 16 == 0 && hidden <= k::kTinyMaxHidden,
                 "hidden: expected a positive multiple of 16 up to 2^24, got ", hidden);
  check_permute_args(ids, tokens, cfg.top_k, cfg.num_experts, tokens, out, nullptr, 0);
  NVFP4MOE_CHECK(x_dtype == ActDType::kBF16 || x_dtype == ActDType::kFP16, "x_dtype: expected bf16 or fp16, got ",
                 int(x_dtype));
  NVFP4MOE_CHECK(x != nullptr && is_aligned(x, 16), "x: expected a 16-byte aligned device pointer, got ", x);
  NVFP4MOE_CHECK(values != nullptr && is_aligned(values, 16), "values: expected a 16-byte aligned device pointer, got ",
                 values);
  NVFP4MOE_CHECK(g != nullptr && is_aligned(g, 4), "g: expected a 4-byte aligned device pointer, got ", g);

  const k::RoutePermuteArgs a = route_permute_args(cfg, ids, weights, out, /*counter: no ticket*/ nullptr);
  k::TinyValuesArgs v{x, int32_t(hidden), g, static_cast<uint16_t*>(values)};

  // One 256-element chunk per warp (the latency of one load and one block's arithmetic),
  // in whole clusters of `tokens` CTAs; at most two CTAs per SM.
  const int t = int(tokens);
  const int64_t chunks = (tokens * cfg.top_k * hidden + k::kTinyChunkElems - 1) / k::kTinyChunkElems;
  const int64_t warps_per_cta = k::kRouteCtaThreads / 32;
  int64_t clusters = ((chunks + warps_per_cta - 1) / warps_per_cta + t - 1) / t;
  clusters = std::clamp<int64_t>(clusters, 1, std::max<int64_t>(1, 2 * int64_t(sm_count()) / t));
  const unsigned ctas = unsigned(clusters * t);
  if (logits_dtype == LogitsDType::kFloat32) {
    dispatch_x(static_cast<const float*>(logits), correction_bias, t, ctas, x_dtype, a, v, stream);
  } else {
    dispatch_x(static_cast<const __nv_bfloat16*>(logits), correction_bias, t, ctas, x_dtype, a, v, stream);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace nvfp4moe::cuda
