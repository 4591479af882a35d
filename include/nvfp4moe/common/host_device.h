// Host/device qualifiers so the format core compiles in .cpp (g++) and .cu (nvcc) files alike.
#pragma once

#if defined(__CUDACC__)
#define NVFP4MOE_HD __host__ __device__ __forceinline__
#else
#define NVFP4MOE_HD inline
#endif

#include <cstdint>
#include <cstring>

namespace nvfp4moe {

// Reinterpret a float's bits; memcpy is what both compilers fold into a register move.
NVFP4MOE_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

NVFP4MOE_HD float float_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
#endif
}

}  // namespace nvfp4moe
