// Register-level building blocks of the NVFP4 quantization kernels: 16-byte activation loads,
// a bit-exact fast float -> e2m1 conversion, and the quantization of one 16-element block held
// by two neighbouring lanes (8 elements each).
//
// Work split inside a warp (one "chunk" = 4 scale rows x one scale-column group of 4 blocks):
//
//   lane:   0 1 | 2 3 | 4 5 | 6 7 || 8 ... 15 || 16 ... 23 || 24 ... 31
//   block:  j0  | j1  | j2  | j3  ||  row b=1  ||  row b=2  ||  row b=3
//   each lane: 8 elements (one 16-byte load), 4 bytes of codes; the lane pair (xor 1) shares
//   the block amax; the 8-lane group (xor 2, 4) assembles one 4-byte swizzled scale word.
//
// Every arithmetic step is the one of format/block_quant.h (the CPU golden model), so GPU and
// CPU agree bit for bit; e2m1_code_fast is a cheaper but equal form of e2m1_from_float for
// non-NaN inputs (tests check all 2^32 floats).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "nvfp4moe/format/block_quant.h"

namespace nvfp4moe::kernels {

// float -> e2m1 code, equal to e2m1_from_float(y) for every non-NaN y (NaN gives 7 | sign,
// callers route NaN-producing blocks to e2m1_from_float). Why it works: a = min(|y|, 6) has
// ulp-of-grid 0.5 below 2, 1 in [2, 4), 2 in [4, 6]; adding 2^22, 2^23 or 2^24 (whose float
// ulp is that grid step) rounds a to the grid with ties to even in one IEEE add, and the low
// mantissa bits of the sum count grid steps; code = steps + 2 * (binade above 1).
NVFP4MOE_HD uint32_t e2m1_code_fast(float y) {
  const uint32_t u = float_bits(y);
  const float a = fminf(float_from_bits(u & 0x7fffffffu), 6.0f);
  const uint32_t ea = float_bits(a) >> 23;              // biased exponent of a (<= 129)
  const uint32_t e = ea < 127u ? 127u : ea;             // 127, 128 or 129
  const float magic = float_from_bits((e + 22u) << 23);  // 2^22, 2^23, 2^24
  const uint32_t steps = float_bits(a + magic) & 7u;     // at most 4
  return (steps + 2u * (e - 127u)) | ((u >> 28) & 8u);
}

#if defined(__CUDACC__)

// The activation dtypes: bf16 and fp16 with their 16-bit NaN test constants.
template <typename T>
struct ActTraits;
template <>
struct ActTraits<__nv_bfloat16> {
  // A 16-bit lane h (sign cleared) is NaN iff h > 0x7f80 iff h + 0x7f carries into bit 15.
  static constexpr uint32_t kNaNCarry = 0x007f007fu;
  __device__ __forceinline__ static float lo(uint32_t w) { return __uint_as_float(w << 16); }
  __device__ __forceinline__ static float hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
  __device__ __forceinline__ static uint32_t pack(float a, float b) {  // RNE, NaN -> 0x7FFF
    __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};
template <>
struct ActTraits<__half> {
  static constexpr uint32_t kNaNCarry = 0x03ff03ffu;  // NaN iff h > 0x7c00
  __device__ __forceinline__ static float lo(uint32_t w) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
  }
  __device__ __forceinline__ static float hi(uint32_t w) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
  }
  __device__ __forceinline__ static uint32_t pack(float a, float b) {
    __half2 v = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

// 16-byte read-only load that does not allocate in L1 (each input byte is read once).
__device__ __forceinline__ uint4 load_16b_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// 8 packed activations -> 8 floats (exact).
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& w, float (&v)[8]) {
  using Tr = ActTraits<T>;
  v[0] = Tr::lo(w.x); v[1] = Tr::hi(w.x);
  v[2] = Tr::lo(w.y); v[3] = Tr::hi(w.y);
  v[4] = Tr::lo(w.z); v[5] = Tr::hi(w.z);
  v[6] = Tr::lo(w.w); v[7] = Tr::hi(w.w);
}

// True when any of the 8 packed activations is NaN (integer carry test, no conversions).
template <typename T>
__device__ __forceinline__ bool any_nan8(const uint4& w) {
  constexpr uint32_t kMag = 0x7fff7fffu, kC = ActTraits<T>::kNaNCarry;
  uint32_t c = ((w.x & kMag) + kC) | ((w.y & kMag) + kC) | ((w.z & kMag) + kC) | ((w.w & kMag) + kC);
  return (c & 0x80008000u) != 0;
}

// block_multiplier(s, g) with reciprocal_rn(g) computed once by the caller: the same two
// correctly rounded steps, m = (s == 0) ? 0 : 1 / (float(s) * (1 / g)).
__device__ __forceinline__ float block_multiplier_inv_g(uint8_t scale_code, float inv_g) {
  const float s = e4m3_to_float(scale_code);
  if (s == 0.0f) return 0.0f;
  return reciprocal_rn(s * inv_g);
}

// Quantizes this lane's 8 elements as half of a 16-element block whose other half is held by
// lane ^ 1. All 32 lanes must call it together. Returns the 8 codes packed in a word
// (element 2i in the low nibble of byte i); *scale_code receives the block's e4m3 scale.
__device__ __forceinline__ uint32_t quantize_half_block(const float (&v)[8], bool has_nan, float g,
                                                        float inv_g, uint8_t* scale_code) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i]));  // == abs_max_ignore_nan
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  has_nan = __shfl_xor_sync(0xffffffffu, int(has_nan), 1) | int(has_nan);
  const uint8_t s = block_scale_code(amax, has_nan, g);
  const float m = block_multiplier_inv_g(s, inv_g);
  *scale_code = s;
  // x * m is never NaN when the block holds no NaN, m is finite and not (m == 0 with an Inf
  // in the block): then the fast conversion applies; otherwise use the reference one.
  const bool fast = !has_nan && is_finite_f32(m) && (m != 0.0f || is_finite_f32(amax));
  uint32_t word = 0;
  if (fast) {
#pragma unroll
    for (int i = 0; i < 8; ++i) word |= e2m1_code_fast(v[i] * m) << (4 * i);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) word |= uint32_t(e2m1_from_float(v[i] * m)) << (4 * i);
  }
  return word;
}

// Assembles the 4 scale bytes of an 8-lane group (lanes 8b + 2c hold block c's scale) into
// one little-endian word, valid in lane 8b. All 32 lanes must call it together.
__device__ __forceinline__ uint32_t scale_word_of_group(uint8_t scale_code, int lane) {
  uint32_t w = (lane & 1) ? 0u : uint32_t(scale_code) << (8 * ((lane >> 1) & 3));
  w |= __shfl_xor_sync(0xffffffffu, w, 2);
  w |= __shfl_xor_sync(0xffffffffu, w, 4);
  return w;
}

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
