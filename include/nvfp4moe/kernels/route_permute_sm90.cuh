// Fused routing + permutation for small batches (sm_90): one launch instead of two, and the ids
// never make a round trip through the host-visible stream order.
//
//   CTA b (kRouteCtaThreads = kPermuteThreads = 256 threads) routes tokens b, b + gridDim.x, ...
//   exactly as route_{softmax,sigmoid}_cta_sm90 (routing_cta_sm90.cuh); then it takes a ticket
//   from a device counter; the CTA that draws the last ticket (all ids are written) runs the
//   single-CTA permutation (permute_sm90.cuh) over all M = T * k pairs.
//
// Memory order: the routing stores, __threadfence, barrier, atomicInc (the ticket); the last
// CTA fences again and reads the ids through L2 (checked_expert uses ld.global.cg).
// The counter: atomicInc(counter, gridDim.x - 1) wraps to 0 on the last ticket, so every launch
// leaves it zero for the next (and for a graph replay). A ticket >= gridDim.x means the counter
// was not zero on entry (workspace never zeroed): the kernel traps rather than skip the permute.
// The result depends on no ticket order: whichever CTA is last permutes the same ids.
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/permute_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/route_permute_args_sm90.cuh"
#include "nvfp4moe/kernels/routing_cta_sm90.cuh"

namespace nvfp4moe::kernels {

static_assert(kRouteCtaThreads == kPermuteThreads, "one CTA shape routes and permutes");


template <typename InT, int kSlots>
__global__ void __launch_bounds__(kRouteCtaThreads)
    route_permute_sm90(const InT* __restrict__ logits, const float* __restrict__ correction_bias, int tokens,
                       RoutePermuteArgs a) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  __shared__ RouteCtaShared sh;
  __shared__ bool s_last;
  for (int t = int(blockIdx.x); t < tokens; t += int(gridDim.x)) {
    if (a.sigmoid) {
      route_sigmoid_cta<InT, kSlots>(logits, correction_bias, t, a.num_experts, a.top_k, a.n_group, a.topk_group,
                                     a.renormalize, a.scale, a.ids, a.weights, sh);
    } else {
      route_softmax_cta<InT, kSlots>(logits, t, a.num_experts, a.top_k, a.renormalize, a.scale, a.ids,
                                     a.weights, sh);
    }
    __syncthreads();  // warp 0 has read sh before the next token rewrites it
  }
  __threadfence();  // this CTA's ids / weights are visible device-wide before its ticket
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned ticket = atomicInc(a.counter, gridDim.x - 1);
    if (ticket >= gridDim.x) __trap();  // the counter was not zero: workspace not zero-filled
    s_last = ticket == gridDim.x - 1;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // every other CTA's ids are visible to this one
  permute_single_cta(a.ids, tokens * a.top_k, a.top_k, a.num_experts, a.counts, a.off, a.sf_off,
                     a.sorted_to_pair, a.pair_to_sorted, a.sorted_to_token);
}

}  // namespace nvfp4moe::kernels
