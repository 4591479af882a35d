// Runtime-scale quantization of a small tensor in ONE launch (no memset, no second kernel):
// one thread-block cluster of kSmallRuntimeCtas CTAs (co-scheduled by the hardware, so the
// cluster barrier cannot deadlock, and a plain kernel launch: capturable in a CUDA graph).
//
//   1. every warp loads its chunks of the flat tensor into registers (up to kSmallRuntimeSteps
//      16-byte loads per lane, all in flight at once; 256 warps, so a warp has at most 2
//      chunks to quantize one after the other: the arithmetic latency stays short);
//   2. amax: packed max per thread -> block max in shared memory -> cluster.sync() -> each
//      CTA reads the kSmallRuntimeCtas partial maxima through distributed shared memory;
//   3. g = global_scale_from_amax(amax); CTA 0 stores amax, g and 1/g;
//   4. the registers are quantized and stored exactly as quantize_nvfp4_kernel does
//      (quantize_store_chunk), and the last tile's padding rows are zeroed.
// Capacity: kSmallRuntimeMaxElems elements (M = 16 rows of K = 7168 fit).
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

#include "nvfp4moe/kernels/amax_sm90.cuh"
#include "nvfp4moe/kernels/quantize_sm90.cuh"
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
  namespace cg = cooperative_groups;
  __shared__ float s_warp[kSmallRuntimeThreads / 32];
  __shared__ float s_cta_amax;
  __shared__ float s_scale[2];  // g, 1/g
  cg::cluster_group cluster = cg::this_cluster();
  const int lane = int(threadIdx.x) & 31;
  const int gw = int(blockIdx.x) * (kSmallRuntimeThreads / 32) + (int(threadIdx.x) >> 5);
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
  const float m = block_max<kSmallRuntimeThreads>(fmaxf(Tr::lo(acc), Tr::hi(acc)), s_warp);
  if (threadIdx.x == 0) s_cta_amax = m;
  cluster.sync();
  if (threadIdx.x == 0) {
    float amax = 0.0f;
    for (int r = 0; r < kSmallRuntimeCtas; ++r) amax = fmaxf(amax, *cluster.map_shared_rank(&s_cta_amax, r));
    const float g = global_scale_from_amax(amax);
    s_scale[0] = g;
    s_scale[1] = reciprocal_rn(g);
    if (blockIdx.x == 0) {
      *p.amax = amax;
      if (p.g_out != nullptr) *p.g_out = g;
      if (p.g_inv_out != nullptr) *p.g_inv_out = s_scale[1];
    }
  }
  cluster.sync();  // remote reads done before any CTA exits; s_scale visible in the CTA
  const float g = s_scale[0], g_inv = s_scale[1];
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
