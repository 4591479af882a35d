// Runtime-scale quantization of a small tensor in ONE launch (no memset, no second kernel):
// one thread-block cluster of kSmallRuntimeCtas CTAs (co-scheduled by the hardware, so the
// cluster barrier cannot deadlock, and a plain kernel launch: capturable in a CUDA graph).
//
//   1. every warp loads its chunks of the flat tensor into registers (up to kSmallRuntimeSteps
//      16-byte loads per lane, all in flight at once; 256 warps, so a warp has at most 2
//      chunks to quantize one after the other: the arithmetic latency stays short);
//   2. amax: packed max per thread -> warp max -> stored into every CTA's table of warp
//      maxima (distributed shared memory) -> cluster.sync() -> each warp reduces its CTA's
//      table (one barrier in all);
//   3. g = global_scale_from_amax(amax) in every thread; CTA 0 stores amax, g and 1/g;
//   4. the registers are quantized and stored exactly as quantize_nvfp4_kernel does
//      (quantize_store_chunk), and the last tile's padding rows are zeroed.
// Capacity: kSmallRuntimeMaxElems elements (M = 16 rows of K = 7168 fit).
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

#include "nvfp4moe/kernels/amax_sm90.cuh"
#include "nvfp4moe/kernels/quantize_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kSmallRuntimeCtas = 8;        // portable cluster size
inline constexpr int kSmallRuntimeThreads = 1024;  // per CTA (64 registers each: the whole file)
inline constexpr int kSmallRuntimeSteps = 2;       // 256-element chunks per warp
inline constexpr int kSmallRuntimeWarps = kSmallRuntimeCtas * kSmallRuntimeThreads / 32;
inline constexpr int64_t kSmallRuntimeMaxElems = int64_t(kSmallRuntimeWarps) * kSmallRuntimeSteps * kWalkChunkElems;

// Grid: exactly one cluster (kSmallRuntimeCtas blocks). p: plain parameters with amax set;
// rows_out * k <= kSmallRuntimeMaxElems.
template <typename T>
__global__ void __cluster_dims__(kSmallRuntimeCtas, 1, 1) __launch_bounds__(kSmallRuntimeThreads, 1)
    quantize_runtime_small_kernel(QuantizeParams p) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h): hides the launch at small M
  namespace cg = cooperative_groups;
  constexpr int kWarpsPerCta = kSmallRuntimeThreads / 32;
  // Every warp's maximum, gathered in every CTA of the cluster: slot rank * 32 + warp.
  __shared__ float s_all[kSmallRuntimeCtas * kWarpsPerCta];
  cg::cluster_group cluster = cg::this_cluster();
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int gw = int(blockIdx.x) * kWarpsPerCta + warp;
  const uint32_t n = uint32_t(p.rows_out) * uint32_t(p.k);
  const T* x = static_cast<const T*>(p.x);
  uint4 w[kSmallRuntimeSteps];
#pragma unroll
  for (int i = 0; i < kSmallRuntimeSteps; ++i) {
    const uint32_t e = uint32_t(gw + kSmallRuntimeWarps * i) * kWalkChunkElems + 8 * lane;
    w[i] = e < n ? ptx::ld_stream_v4(x + e) : make_uint4(0u, 0u, 0u, 0u);
  }
  uint32_t acc = 0;
#pragma unroll
  for (int i = 0; i < kSmallRuntimeSteps; ++i) acc = abs_max8<T>(acc, w[i]);
  using Tr = ActTraits<T>;
  float m = fmaxf(Tr::lo(acc), Tr::hi(acc));
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
  // One cluster barrier: lane r of each warp stores the warp's maximum into CTA r's table
  // before it, and every warp reduces its own CTA's full table after it. (Before: a block
  // reduction, a barrier, thread 0 reading the other CTAs' maxima remotely, and a second
  // barrier so that no CTA exits while it is read; docs/results/quantize.md.) No remote
  // access follows the barrier, so a CTA may exit as soon as it is done.
  if (lane < kSmallRuntimeCtas) *cluster.map_shared_rank(&s_all[int(cluster.block_rank()) * kWarpsPerCta + warp], lane) = m;
  cluster.sync();
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kSmallRuntimeCtas * kWarpsPerCta / 32; ++j) amax = fmaxf(amax, s_all[lane + 32 * j]);
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, d));
  const float g = global_scale_from_amax(amax), g_inv = reciprocal_rn(g);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *p.amax = amax;
    if (p.g_out != nullptr) *p.g_out = g;
    if (p.g_inv_out != nullptr) *p.g_inv_out = g_inv;
  }
  const int32_t nq = int32_t(padded_scale_cols(p.k) / 4);
#pragma unroll
  for (int i = 0; i < kSmallRuntimeSteps; ++i) {
    const uint32_t chunk = uint32_t(gw + kSmallRuntimeWarps * i) * kWalkChunkElems;
    if (chunk >= n) break;  // warp-uniform: no more chunks for this warp
    const uint32_t e = chunk + 8 * lane;
    const bool in = e < n;
    const WalkPos q{int64_t(e / uint32_t(p.k)), e % uint32_t(p.k)};
    quantize_store_chunk<T>(p, q, in, in, w[i], g, g_inv, int32_t(q.row), nq, lane);
  }
  const int n_valid = p.rows_out & 127;
  if (n_valid != 0) {
    for (int32_t q = gw; q < nq; q += kSmallRuntimeWarps) zero_tile_line(p.scales, p.rows_out >> 7, q, nq, n_valid, lane);
  }
}

}  // namespace nvfp4moe::kernels
