// amax(|x|) over a bf16/fp16 tensor, NaN ignored, for the runtime global scale.
//
// Runtime-scale design (no host synchronization, capturable in a CUDA graph): three stream-
// ordered operations, cudaMemsetAsync(amax, 0) -> amax_abs_kernel (each block reduces its
// grid-stride share and does one atomicMax on the float's bits, valid because |x| >= 0
// orders like its bit pattern) -> quantize_nvfp4_kernel reading *amax, where every block
// derives g = global_scale_from_amax(amax) and block (0,0) stores g and 1/g.
// The second pass re-reads the input (from L2 when it fits).
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"

namespace nvfp4moe::kernels {

// x: n16 chunks of 8 activations (16 bytes each, 16-byte aligned); *amax must be 0 before.
template <typename T>
__global__ void __launch_bounds__(kQuantThreads) amax_abs_kernel(const uint4* __restrict__ x, int64_t n16,
                                                                  float* amax) {
  __shared__ float s_warp[kQuantThreads / 32];
  constexpr int kUnroll = 4;  // independent 16-byte loads in flight per thread
  float m = 0.0f;
  const int64_t stride = int64_t(gridDim.x) * kQuantThreads;
  for (int64_t i0 = blockIdx.x * int64_t(kQuantThreads) + threadIdx.x; i0 < n16; i0 += kUnroll * stride) {
    uint4 w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = i0 + u * stride;
      w[u] = i < n16 ? load_16b_stream(x + i) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float v[8];
      unpack8<T>(w[u], v);
#pragma unroll
      for (int k = 0; k < 8; ++k) m = fmaxf(m, fabsf(v[k]));  // fmaxf skips NaN
    }
  }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
  if ((threadIdx.x & 31) == 0) s_warp[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kQuantThreads / 32; ++w) m = fmaxf(m, s_warp[w]);
    if (m > 0.0f) atomicMax(reinterpret_cast<unsigned int*>(amax), __float_as_uint(m));
  }
}

// Writes g = global_scale_from_amax(*amax) and 1/g (used when there is nothing to quantize).
__global__ void global_scale_from_amax_kernel(const float* amax, float* g_out, float* g_inv_out) {
  const float g = global_scale_from_amax(*amax);
  if (g_out != nullptr) *g_out = g;
  if (g_inv_out != nullptr) *g_inv_out = reciprocal_rn(g);
}

}  // namespace nvfp4moe::kernels
