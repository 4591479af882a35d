// The MoE front end of the smallest batches (sm_90) in one launch: routing, permutation and the
// per-expert quantization of the gathered hidden rows to their bf16 values (the operand of the
// grouped decode GEMM), for T <= kTinyTokens tokens with M = T * k <= 32 (token, slot) pairs.
// It replaces route_permute_sm90 followed by the values-only quantize_experts: one kernel
// boundary and the quantizer's expert tables (a read and two scans of all E offsets) fewer.
//
// Grid: Q thread-block clusters of T CTAs (kRouteCtaThreads threads); within each cluster CTA
// rank r routes token r into its shared memory (route_*_cta, the arithmetic of cuda::route), so
// every cluster holds all T tokens' ids after one cluster barrier. Every CTA then permutes the
// M pairs itself (warp 0, one pair a lane: rank among the same expert by __match_any_sync, rows
// below by counting smaller expert ids), which is the layout of permute_sm90 (rows of expert e
// at [off[e], off[e+1]), stable by pair). Redundant by design: no grid-wide synchronization,
// and each cluster's result is the same (same code, same inputs). Cluster 0 alone writes ids,
// weights and the six permutation outputs.
//
// Then the CTA triggers its dependents (after block 0's outputs are fenced: the next kernel, a
// grouped decode GEMM with prefetch_before_wait, reads off before its wait to prefetch) and
// quantizes its share of the M x h values: one 256-element chunk per warp step (lane = 8
// elements, lane pairs = one 16-element block), as the flat one-chunk quantizer does, with the
// expert's g[e] and reciprocal_rn(g[e]). Values only: no codes, scales or scale padding.
// Bit-identical to route_and_permute + quantize_experts(values only) (tests).
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"
#include "nvfp4moe/kernels/route_permute_args_sm90.cuh"
#include "nvfp4moe/kernels/routing_cta_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kTinyTokens = 4;   // cluster size T <= 4 (portable: <= 8)
inline constexpr int kTinyPairs = 32;   // M = T * k: one pair per lane of warp 0
inline constexpr int kTinyChunkElems = 256;
inline constexpr int64_t kTinyMaxHidden = int64_t(1) << 24;  // M * h elements indexed in 32 bits

struct TinyValuesArgs {
  const void* x;        // hidden [T, h], bf16 or fp16
  int32_t h;            // multiple of 16
  const float* g;       // [E] encode global scales
  uint16_t* values;     // [M, h] bf16, rows in expert-sorted order
};

namespace tiny {

__device__ __forceinline__ void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
// Arrival that publishes nothing (no memory fence): only "this CTA is done reading".
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
__device__ __forceinline__ uint32_t cluster_id_x() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%clusterid.x;\n" : "=r"(r));
  return r;
}
// Reads the int at `local` (a shared address of this CTA's layout) in CTA `rank` of the cluster.
__device__ __forceinline__ int ld_cluster_shared(const int* local, uint32_t rank) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(local));
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(a), "r"(rank));
  int v;
  asm volatile("ld.shared::cluster.u32 %0, [%1];\n" : "=r"(v) : "r"(remote) : "memory");
  return v;
}

}  // namespace tiny

// Grid: clusters of `tokens` CTAs (launch attribute), any number of clusters.
template <typename InT, typename T, int kSlots>
__global__ void __launch_bounds__(kRouteCtaThreads)
    route_permute_values_sm90(const InT* __restrict__ logits, const float* __restrict__ correction_bias, int tokens,
                              RoutePermuteArgs a, TinyValuesArgs v) {
  ptx::grid_dependency_wait();  // dependents are let go below, once the offsets are written
  __shared__ RouteCtaShared sh;
  __shared__ int s_ids[kRoutingMaxTopK];
  __shared__ float s_w[kRoutingMaxTopK];
  __shared__ int s_expert[kTinyPairs];      // expert of pair p
  __shared__ int s_leader[kTinyPairs];      // pair p is its expert's first
  __shared__ int s_row_token[kTinyPairs];   // token of sorted row r
  __shared__ int s_row_expert[kTinyPairs];  // expert of sorted row r
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int k = a.top_k, m = tokens * k;
  const uint32_t rank = tiny::cluster_rank();
  const bool writer = tiny::cluster_id_x() == 0;  // cluster 0 writes the routing and permutation

  // 1. Token `rank` of the cluster: ids / weights into shared memory.
  const InT* row = logits + int64_t(rank) * a.num_experts;
  if (a.sigmoid) {
    route_sigmoid_cta<InT, kSlots>(row, correction_bias, 0, a.num_experts, k, a.n_group, a.topk_group, a.renormalize,
                                   a.scale, s_ids, s_w, sh);
  } else {
    route_softmax_cta<InT, kSlots>(row, 0, a.num_experts, k, a.renormalize, a.scale, s_ids, s_w, sh);
  }
  __syncthreads();
  tiny::cluster_arrive();  // s_ids of every CTA visible in the cluster after the wait
  tiny::cluster_wait();
  if (writer && tid < k) {  // after the barrier: its release fence need not wait for these
    a.ids[int(rank) * k + tid] = s_ids[tid];
    a.weights[int(rank) * k + tid] = s_w[tid];
  }

  // 2. Permutation, warp 0: pair p = lane.
  if (warp == 0) {
    const int e = lane < m ? tiny::ld_cluster_shared(&s_ids[lane % k], uint32_t(lane / k)) : -1;
    const unsigned group = __match_any_sync(0xffffffffu, e);
    const int before = __popc(group & ((1u << lane) - 1u));
    int below = 0;  // pairs with a smaller expert id
#pragma unroll 8
    for (int q = 0; q < kTinyPairs; ++q) {
      const int eq = __shfl_sync(0xffffffffu, e, q);
      below += (eq >= 0 && eq < e) ? 1 : 0;
    }
    s_expert[lane] = e;
    s_leader[lane] = e >= 0 && before == 0;
    if (e >= 0) {
      const int r = below + before;
      s_row_token[r] = lane / k;
      s_row_expert[r] = e;
      if (writer && rank == 0) {
        a.sorted_to_pair[r] = lane;
        a.pair_to_sorted[lane] = r;
        a.sorted_to_token[r] = lane / k;
      }
    }
  }
  // This CTA's remote reads are done (their values are used above); the matching wait is
  // the last instruction, so no CTA exits while another may still read its shared memory.
  tiny::cluster_arrive_relaxed();
  __syncthreads();
  if (writer && rank == 0) {  // counts, off, sf_off of every expert (counts <= 32: one scale tile each)
    for (int ex = tid; ex < a.num_experts; ex += kRouteCtaThreads) {
      int cnt = 0, below = 0, tiles_below = 0;
      for (int q = 0; q < m; ++q) {
        const int eq = s_expert[q];
        cnt += eq == ex;
        below += eq < ex;
        tiles_below += (eq < ex) & s_leader[q];
      }
      a.counts[ex] = cnt;
      a.off[ex] = below;
      a.sf_off[ex] = 128 * tiles_below;
    }
    if (tid == 0) {
      int tiles = 0;
      for (int q = 0; q < m; ++q) tiles += s_leader[q];
      a.off[a.num_experts] = m;
      a.sf_off[a.num_experts] = 128 * tiles;
    }
    __threadfence();  // the next kernel may read off before its wait (a prefetch hint only)
  }
  __syncthreads();
  ptx::launch_dependents();

  // 3. Values of the sorted rows: row r = hidden[s_row_token[r]] quantized with g[s_row_expert[r]].
  const uint32_t n = uint32_t(m) * uint32_t(v.h);
  const uint32_t warps = gridDim.x * (kRouteCtaThreads / 32);
  const T* x = static_cast<const T*>(v.x);
  for (uint32_t chunk = blockIdx.x * (kRouteCtaThreads / 32) + warp; chunk * kTinyChunkElems < n; chunk += warps) {
    const uint32_t el = chunk * kTinyChunkElems + 8 * lane;
    const bool in = el < n;
    const uint32_t r = in ? el / uint32_t(v.h) : 0, col = in ? el % uint32_t(v.h) : 0;
    uint4 w = make_uint4(0u, 0u, 0u, 0u);
    float g = 1.0f;
    if (in) {
      w = ptx::ld_stream_v4(x + int64_t(s_row_token[r]) * v.h + col);
      g = __ldg(v.g + s_row_expert[r]);
    }
    uint32_t s;
    const uint32_t codes = quantize_pair8<T>(w, g, reciprocal_rn(g), &s);
    if (in) *reinterpret_cast<uint4*>(v.values + int64_t(r) * v.h + col) = block_values_bf16x8(codes, s);
  }
  tiny::cluster_wait();
}

}  // namespace nvfp4moe::kernels
