// Synthetic NVFP4 weights written straight into the GEMM's prepared layout, for benchmarks
// of full-size layers (cuda/moe.h MoeLayerWeights::synthetic).
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"

namespace nvfp4moe::kernels {

// splitmix64 of a counter: independent random words per byte index, no state.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Synthetic prepared weights for benchmarks: every atom's code bytes random, its scale bytes
// the re-encoding of a random e4m3 scale in [2^-3, 2^3) (valid, never zero or NaN). Only for
// weights whose rows and K are multiples of the prepared padding (no padded atoms).
__global__ void fill_synthetic_prepared_kernel(uint8_t* data, int64_t bytes, uint64_t seed) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x * 8;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8; i < bytes; i += stride) {
    uint64_t r = mix64(seed ^ uint64_t(i));
    for (int b = 0; b < 8 && i + b < bytes; ++b) {
      int64_t in_atom = (i + b) % kAtomBytes;
      uint8_t byte = uint8_t(r >> (8 * b));
      if (in_atom >= kAtomCodeBytes) byte = encode_weight_scale(uint8_t(0x20 + (byte % 48)));  // e4m3 2^-3..2^3
      data[i + b] = byte;
    }
  }
}

}  // namespace nvfp4moe::kernels
