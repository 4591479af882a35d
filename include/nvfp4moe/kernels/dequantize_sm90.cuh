// NVFP4 -> float32 / bf16 dequantization of one [rows, K] matrix with swizzled scales, for
// tests and debugging: out[r, c] = e2m1(code) * e4m3(scale) / g (dequantize_element, the
// golden model's expression; bf16 output rounds that float to nearest even).
// Each thread decodes 8 elements (4 code bytes) per step, grid-stride over rows * K/8.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"

namespace nvfp4moe::kernels {

// OutT: float or __nv_bfloat16. codes 4-byte aligned, out 16-byte aligned.
template <typename OutT>
__global__ void __launch_bounds__(kQuantThreads) dequantize_nvfp4_kernel(const uint8_t* __restrict__ codes,
                                                                          const uint8_t* __restrict__ scales,
                                                                          int32_t rows, int32_t k, const float* g_ptr,
                                                                          OutT* __restrict__ out) {
  const float g = *g_ptr;
  const int64_t pieces_per_row = k / 8;
  const int64_t padded_cols = padded_scale_cols(k);
  const int64_t n = int64_t(rows) * pieces_per_row;
  for (int64_t i = blockIdx.x * int64_t(kQuantThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kQuantThreads) {
    const int64_t r = i / pieces_per_row, piece = i % pieces_per_row;
    const uint32_t word = *reinterpret_cast<const uint32_t*>(codes + r * (k / 2) + 4 * piece);
    const uint8_t s = scales[swizzled_scale_offset(r, piece / 2, padded_cols)];
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = dequantize_element(uint8_t((word >> (4 * e)) & 0xfu), s, g);
    OutT* o = out + r * k + 8 * piece;
    if constexpr (sizeof(OutT) == 4) {
      reinterpret_cast<float4*>(o)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(o)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
      uint32_t w[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) w[e] = uint32_t(bf16_from_float(v[2 * e])) | (uint32_t(bf16_from_float(v[2 * e + 1])) << 16);
      *reinterpret_cast<uint4*>(o) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

}  // namespace nvfp4moe::kernels
