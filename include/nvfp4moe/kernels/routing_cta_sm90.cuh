// Routing kernels for small batches (sm_90): one CTA of kRouteCtaThreads = 256 threads per
// token, bit-identical to the warp-per-token kernels of routing_sm90.cuh and so to the CPU model.
//
// Why a CTA per token: at T <= a few hundred the warp kernels run one warp per token through a
// serial chain (E / 32 experts a lane, k rounds of a 5-step shuffle max, for DeepSeek-V3 a
// 32-step scan per group); the latency of that chain is the kernel's time. Here thread i owns
// experts i and i + 256 (kSlots = 1 or 2), so every per-expert step is one step, and the
// top-k is two short parallel rounds (cta_top_k). Same arithmetic, same order where it matters:
//   - expf_glibc, sigmoid_ref, rank_key from routing_sm90.cuh (the 2^(i/32) table is copied to
//     shared memory at the start, so its load overlaps the logits load instead of following it);
//   - softmax: max by fmaxf (order-free), the sum serial in expert order on thread 0;
//   - group score c[b1] + c[b2], renormalizing sum serial in slot order (finalize_and_store).
// Rank keys are unique (the index is part of them), so every max / count below is order-free.
//
// route_sigmoid_cta / route_softmax_cta are __device__ bodies so that the fused
// route-and-permute kernel (route_permute_sm90.cuh) can run them before its permute step.
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/routing_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kRouteCtaThreads = 256;
inline constexpr int kRouteCtaWarps = kRouteCtaThreads / 32;
static_assert(kRoutingMaxExperts <= 2 * kRouteCtaThreads, "a thread owns at most 2 experts");

// Shared scratch of one CTA-per-token routing (static shared memory of the caller).
struct RouteCtaShared {
  alignas(16) float val[kRoutingMaxExperts];  // softmax: exp, then p; sigmoid: s (float4 reads)
  float corr[kRoutingMaxExperts];  // sigmoid: c = s + bias
  uint64_t gkey[kRoutingMaxExperts];  // sigmoid: group rank keys [n_group]
  uint8_t kept[kRoutingMaxExperts];   // sigmoid: group kept? [n_group]
  uint64_t cand[kRouteCtaWarps * kRoutingMaxTopK];  // cta_top_k: each warp's k best
  uint64_t best[kRoutingMaxTopK];                   // cta_top_k: the CTA's k best, best first
  unsigned long long exp_tab[32];  // kExp2Table32, loaded alongside the logits (not after them)
  float red[kRouteCtaWarps];
  float sum;
};

// The k (<= kRoutingMaxTopK) largest keys of the CTA, best first, into sh.best[0..k).
// keys[s]: this thread's candidate s (0 = none); the CTA holds >= k non-zero keys.
// Round 1: each warp its k best (k steps of two 32-bit redux.sync max: the high word, then
// the low word among the lanes at that high word). Round 2: each of the 8k candidates counts
// the candidates above it; the one with count r < k is the r-th best. Ends with a barrier.
template <int kSlots>
__device__ __forceinline__ void cta_top_k(uint64_t (&keys)[kSlots], int k, RouteCtaShared& sh) {
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  for (int j = 0; j < k; ++j) {
    uint64_t mine = keys[0];
#pragma unroll
    for (int s = 1; s < kSlots; ++s) mine = keys[s] > mine ? keys[s] : mine;
    const unsigned hi = __reduce_max_sync(0xffffffffu, unsigned(mine >> 32));
    const unsigned lo = __reduce_max_sync(0xffffffffu, unsigned(mine >> 32) == hi ? unsigned(mine) : 0u);
    const uint64_t best = (uint64_t(hi) << 32) | lo;  // 0 when the warp has no candidate left
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (keys[s] == best) keys[s] = 0;
    }
    if (lane == 0) sh.cand[warp * k + j] = best;
  }
  __syncthreads();
  const int n = kRouteCtaWarps * k;
  for (int i = tid; i < n; i += kRouteCtaThreads) {
    const uint64_t key = sh.cand[i];
    if (key == 0) continue;
    int above = 0;
    for (int q = 0; q < n; ++q) above += sh.cand[q] > key ? 1 : 0;
    if (above < k) sh.best[above] = key;
  }
  __syncthreads();
}

// Warp 0 stores the token's ids / weights from sh.best and the chosen scores in score[].
__device__ __forceinline__ void cta_store(const float* score, int k, bool renormalize, float eps, bool add_eps,
                                          float scale, int32_t* ids_row, float* weights_row,
                                          const RouteCtaShared& sh) {
  const int lane = int(threadIdx.x) % 32;
  const int id = lane < k ? rank_key_index(sh.best[lane]) : -1;
  const float w = lane < k ? score[id] : 0.0f;
  finalize_and_store(id, w, k, lane, renormalize, eps, add_eps, scale, ids_row, weights_row);
}

// Softmax top-k of token t (see route_softmax_sm90 for the semantics).
template <typename InT, int kSlots>
__device__ __forceinline__ void route_softmax_cta(const InT* __restrict__ logits, int64_t t, int num_experts,
                                                  int top_k, bool renormalize, float scale,
                                                  int32_t* __restrict__ ids, float* __restrict__ weights,
                                                  RouteCtaShared& sh) {
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const InT* row = logits + t * num_experts;
  if (tid < 32) sh.exp_tab[tid] = __ldg(&kExp2Table32[tid]);  // published by the barrier below
  float l[kSlots];
  float mx = -__int_as_float(0x7f800000);
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int e = tid + kRouteCtaThreads * s;
    l[s] = e < num_experts ? logit_to_float(row[e]) : 0.0f;
    if (e < num_experts) mx = fmaxf(mx, l[s]);  // fmaxf skips NaN, as the model's max does
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) sh.red[warp] = mx;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < kRouteCtaWarps; ++w) mx = fmaxf(mx, sh.red[w]);

  float ex[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int e = tid + kRouteCtaThreads * s;
    ex[s] = expf_glibc(__fsub_rn(l[s], mx), sh.exp_tab);
    if (e < num_experts) sh.val[e] = ex[s];
  }
  __syncthreads();
  if (tid == 0) {  // the model's sum: serial, expert order
    float sum = 0.0f;
    const float4* v4 = reinterpret_cast<const float4*>(sh.val);
    int e = 0;
    for (; e + 4 <= num_experts; e += 4) {
      const float4 v = v4[e / 4];
      sum = __fadd_rn(__fadd_rn(__fadd_rn(__fadd_rn(sum, v.x), v.y), v.z), v.w);
    }
    for (; e < num_experts; ++e) sum = __fadd_rn(sum, sh.val[e]);
    sh.sum = sum;
  }
  __syncthreads();  // thread 0 has read every exp value before p overwrites them
  const float sum = sh.sum;
  uint64_t keys[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int e = tid + kRouteCtaThreads * s;
    const float p = __fdiv_rn(ex[s], sum);
    keys[s] = e < num_experts ? rank_key(p, e) : 0ull;
    if (e < num_experts) sh.val[e] = p;
  }
  cta_top_k(keys, top_k, sh);  // its barriers also publish sh.val
  if (warp == 0) {
    cta_store(sh.val, top_k, renormalize, 0.0f, false, scale, ids + t * top_k, weights + t * top_k, sh);
  }
}

// Grouped sigmoid top-k of token t (see route_sigmoid_sm90 for the semantics).
template <typename InT, int kSlots>
__device__ __forceinline__ void route_sigmoid_cta(const InT* __restrict__ logits,
                                                  const float* __restrict__ correction_bias, int64_t t,
                                                  int num_experts, int top_k, int n_group, int topk_group,
                                                  bool renormalize, float scale, int32_t* __restrict__ ids,
                                                  float* __restrict__ weights, RouteCtaShared& sh) {
  const int tid = int(threadIdx.x), warp = tid / 32;
  const InT* row = logits + t * num_experts;
  float l[kSlots], b[kSlots], c[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {  // both loads issued before any math
    const int e = tid + kRouteCtaThreads * s;
    const bool in = e < num_experts;
    l[s] = in ? logit_to_float(row[e]) : 0.0f;
    b[s] = in && correction_bias ? correction_bias[e] : 0.0f;
  }
  if (tid < 32) sh.exp_tab[tid] = __ldg(&kExp2Table32[tid]);
  __syncthreads();
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int e = tid + kRouteCtaThreads * s;
    const float sg = sigmoid_ref(l[s], sh.exp_tab);
    c[s] = correction_bias ? __fadd_rn(sg, b[s]) : sg;
    if (e < num_experts) {
      sh.val[e] = sg;
      sh.corr[e] = c[s];
    }
  }
  const int group_size = num_experts / n_group;
  const bool all_groups = topk_group == n_group;  // every group kept: the group step is moot
  if (!all_groups) {
    __syncthreads();
    // Group top-2 of c: P threads (a power of two dividing 32, so a group's threads are an
    // aligned lane segment) per group, each scanning experts r, r + P, ... of the group, then
    // a butterfly merge of (best, second) pairs inside the segment.
    int P = 32;
    while (P > 1 && P * n_group > kRouteCtaThreads) P >>= 1;
    const int groups_per_pass = kRouteCtaThreads / P;
    for (int g0 = 0; g0 < n_group; g0 += groups_per_pass) {  // uniform trip count
      const int g = g0 + tid / P, r = tid % P;
      uint64_t b1 = 0, b2 = 0;
      if (g < n_group) {
        const int base = g * group_size;
        for (int x = r; x < group_size; x += P) {
          const uint64_t key = rank_key(sh.corr[base + x], base + x);
          if (key > b1) {
            b2 = b1;
            b1 = key;
          } else if (key > b2) {
            b2 = key;
          }
        }
      }
      for (int o = P / 2; o > 0; o >>= 1) {
        const uint64_t o1 = __shfl_xor_sync(0xffffffffu, b1, o);
        const uint64_t o2 = __shfl_xor_sync(0xffffffffu, b2, o);
        const uint64_t lo_of_firsts = b1 < o1 ? b1 : o1;
        const uint64_t hi_of_seconds = b2 > o2 ? b2 : o2;
        b1 = b1 > o1 ? b1 : o1;
        b2 = lo_of_firsts > hi_of_seconds ? lo_of_firsts : hi_of_seconds;
      }
      if (g < n_group && r == 0) {
        const float score = group_size >= 2
                                ? __fadd_rn(sh.corr[rank_key_index(b1)], sh.corr[rank_key_index(b2)])
                                : sh.corr[rank_key_index(b1)];
        sh.gkey[g] = rank_key(score, g);
      }
    }
    __syncthreads();
    // Kept groups: a group is kept when fewer than topk_group groups rank above it.
    for (int g = tid; g < n_group; g += kRouteCtaThreads) {
      const uint64_t key = sh.gkey[g];
      int above = 0;
      for (int q = 0; q < n_group; ++q) above += sh.gkey[q] > key ? 1 : 0;
      sh.kept[g] = above < topk_group ? 1 : 0;
    }
    __syncthreads();
  }
  uint64_t keys[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int e = tid + kRouteCtaThreads * s;
    const bool allowed = e < num_experts && (all_groups || sh.kept[e / group_size]);
    keys[s] = allowed ? rank_key(c[s], e) : 0ull;
  }
  cta_top_k(keys, top_k, sh);  // its barriers also publish sh.val
  if (warp == 0) {
    cta_store(sh.val, top_k, renormalize, 1e-20f, true, scale, ids + t * top_k, weights + t * top_k, sh);
  }
}

// One CTA (kRouteCtaThreads) per token: CTA b routes tokens b, b + gridDim.x, ...
template <typename InT, int kSlots>
__global__ void __launch_bounds__(kRouteCtaThreads)
    route_softmax_cta_sm90(const InT* __restrict__ logits, int64_t tokens, int num_experts, int top_k,
                           bool renormalize, float scale, int32_t* __restrict__ ids,
                           float* __restrict__ weights) {
  __shared__ RouteCtaShared sh;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    route_softmax_cta<InT, kSlots>(logits, t, num_experts, top_k, renormalize, scale, ids, weights, sh);
    __syncthreads();  // warp 0 has read sh before the next token rewrites it
  }
}

template <typename InT, int kSlots>
__global__ void __launch_bounds__(kRouteCtaThreads)
    route_sigmoid_cta_sm90(const InT* __restrict__ logits, const float* __restrict__ correction_bias,
                           int num_experts, int top_k, int n_group, int topk_group, bool renormalize,
                           float scale, int64_t tokens, int32_t* __restrict__ ids,
                           float* __restrict__ weights) {
  __shared__ RouteCtaShared sh;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    route_sigmoid_cta<InT, kSlots>(logits, correction_bias, t, num_experts, top_k, n_group, topk_group,
                                   renormalize, scale, ids, weights, sh);
    __syncthreads();  // warp 0 has read sh before the next token rewrites it
  }
}

}  // namespace nvfp4moe::kernels
