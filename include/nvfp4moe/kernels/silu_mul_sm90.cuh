// SwiGLU activation on Hopper: x [rows, 2I] (gate = columns [0, I), up = [I, 2I)) ->
// out [rows, I] = round_to_dtype(silu(gate') * up'), with the optional clamp
//   gate' = min(gate, limit), up' = clamp(up, -limit, limit)   (comparisons: NaN stays NaN)
// and silu(v) = v / (1 + exp(-v)) in float. silu_mul_pack8 is shared by the plain kernel
// below and the fused SiLU + per-expert quantization (quantize_sm90.cuh), so the fused and
// unfused GPU paths give the same bits. Every step is an explicit _rn intrinsic so that no
// FMA contraction can differ between the two kernels; expf is CUDA's (within 2 ulp), which
// can differ from the host's std::exp in the last bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"

namespace nvfp4moe::kernels {

// silu(gate') * up' of one element, in float (before rounding to the activation dtype).
__device__ __forceinline__ float silu_mul_value(float gate, float up, bool has_limit, float limit) {
  if (has_limit) {
    gate = (gate > limit) ? limit : gate;
    up = (up > limit) ? limit : (up < -limit) ? -limit : up;
  }
  const float silu = __fdiv_rn(gate, __fadd_rn(1.0f, expf(-gate)));
  return __fmul_rn(silu, up);
}

// 8 gate and 8 up activations (16 bytes each) -> 8 products rounded to T, packed.
template <typename T>
__device__ __forceinline__ uint4 silu_mul_pack8(const uint4& gate, const uint4& up, bool has_limit, float limit) {
  float gv[8], uv[8], r[8];
  unpack8<T>(gate, gv);
  unpack8<T>(up, uv);
#pragma unroll
  for (int i = 0; i < 8; ++i) r[i] = silu_mul_value(gv[i], uv[i], has_limit, limit);
  using Tr = ActTraits<T>;
  return make_uint4(Tr::pack(r[0], r[1]), Tr::pack(r[2], r[3]), Tr::pack(r[4], r[5]), Tr::pack(r[6], r[7]));
}

// Plain silu_and_mul: block-stride over rows, each thread 8 columns per step (I % 8 == 0,
// x and out 16-byte aligned).
template <typename T>
__global__ void __launch_bounds__(kQuantThreads) silu_and_mul_kernel(const T* __restrict__ x, T* __restrict__ out,
                                                                      int32_t rows, int32_t inter,
                                                                      int32_t has_limit, float limit) {
  const int32_t pieces = inter / 8;
  for (int32_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* gate_row = x + int64_t(r) * 2 * inter;
    T* out_row = out + int64_t(r) * inter;
    for (int32_t c = threadIdx.x; c < pieces; c += kQuantThreads) {
      const uint4 gw = load_16b_stream(gate_row + 8 * c);
      const uint4 uw = load_16b_stream(gate_row + inter + 8 * c);
      *reinterpret_cast<uint4*>(out_row + 8 * c) = silu_mul_pack8<T>(gw, uw, has_limit != 0, limit);
    }
  }
}

}  // namespace nvfp4moe::kernels
