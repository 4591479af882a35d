// amax(|x|) over a bf16/fp16 tensor, NaN ignored, for the runtime global scale.
//
// Runtime-scale design (no host synchronization, capturable in a CUDA graph):
//   * small tensors (<= kSmallRuntimeMaxElems): one launch of quantize_runtime_small_kernel
//     (runtime_quant_sm90.cuh): one cluster holds the tensor in registers, reduces the amax
//     through distributed shared memory and quantizes (the input is read once);
//   * larger ones: cudaMemsetAsync(amax, 0) -> amax_abs_kernel (each block reduces its
//     grid-stride share and does one atomicMax on the float's bits, valid because |x| >= 0
//     orders like its bit pattern) -> tile::quantize_tiles_kernel (tile_quant_sm90.cuh) reading
//     *amax, where every block derives g = global_scale_from_amax(amax) and block (0, 0)
//     stores g and 1/g. The input is read
//     twice (inherent: g is needed before the first block can be quantized); amax_abs_kernel
//     walks the tensor from its end to its start, so the quantize pass, which walks from the
//     start, finds the last-read part (up to the L2 size) still in L2.
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kAmaxUnroll = 4;  // independent 16-byte loads in flight per thread

// Block-wide max of one float per thread (kThreads threads, all call); result in thread 0.
template <int kThreads>
__device__ __forceinline__ float block_max(float m, float* s_warp /*[kThreads / 32]*/) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
  if ((threadIdx.x & 31) == 0) s_warp[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, s_warp[w]);
  }
  return m;
}

// x: n16 chunks of 8 activations (16 bytes each, 16-byte aligned); *amax must be 0 before.
template <typename T>
__global__ void __launch_bounds__(kQuantThreads) amax_abs_kernel(const uint4* __restrict__ x, int64_t n16,
                                                                  float* amax) {
  __shared__ float s_warp[kQuantThreads / 32];
  uint32_t acc = 0;
  const int64_t stride = int64_t(gridDim.x) * kQuantThreads;
  for (int64_t i0 = blockIdx.x * int64_t(kQuantThreads) + threadIdx.x; i0 < n16; i0 += kAmaxUnroll * stride) {
    uint4 w[kAmaxUnroll];
#pragma unroll
    for (int u = 0; u < kAmaxUnroll; ++u) {
      const int64_t i = i0 + u * stride;
      w[u] = i < n16 ? ptx::ld_stream_v4(x + (n16 - 1 - i)) : make_uint4(0u, 0u, 0u, 0u);  // end first
    }
#pragma unroll
    for (int u = 0; u < kAmaxUnroll; ++u) acc = abs_max8<T>(acc, w[u]);
  }
  using Tr = ActTraits<T>;
  const float m = block_max<kQuantThreads>(fmaxf(Tr::lo(acc), Tr::hi(acc)), s_warp);
  if (threadIdx.x == 0 && m > 0.0f) atomicMax(reinterpret_cast<unsigned int*>(amax), __float_as_uint(m));
}

}  // namespace nvfp4moe::kernels
