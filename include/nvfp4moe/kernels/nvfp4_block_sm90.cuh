// Register-level building blocks of the NVFP4 quantization kernels: 16-byte activation loads,
// a bit-exact fast float -> e2m1 conversion, and the quantization of one 16-element block held
// by one lane (two 16-byte words).
//
// Work split inside a warp (one "chunk" = 4 scale rows x 2 scale-column groups of 4 blocks):
//
//   lane = 16 h + 4 b + c:  h = column group of the pair, b = row (a + 32 b), c = block in group
//   each lane: 16 elements (two 16-byte loads), 8 bytes of codes, one scale byte; the 4 lanes
//   c = 0..3 assemble one little-endian 4-byte swizzled scale word (shuffles xor 1, 2), and the
//   4 words of rows a, a+32, a+64, a+96 are 16 contiguous bytes of a 512-byte scale tile.
//
// Every arithmetic step is the one of format/block_quant.h (the CPU golden model), so GPU and
// CPU agree bit for bit; e2m1_code_fast is a cheaper but equal form of e2m1_from_float for
// non-NaN inputs, and the block amax uses a packed max that gives the same value (tests check
// all 2^32 floats for the former, and every kernel against the golden model).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "nvfp4moe/format/block_quant.h"

namespace nvfp4moe::kernels {

// float -> e2m1 code, equal to e2m1_from_float(y) for every non-NaN y (NaN gives 7 | sign,
// callers route NaN-producing blocks to e2m1_from_float). Why it works: a = min(|y|, 6) lies on
// a grid of step 0.5 below 2, 1 in [2, 4) and 2 in [4, 6]; adding M = 2^22, 2^23 + 2 or
// 2^24 + 8 (whose float ulp is that step, and whose mantissa already counts the code offset
// 0, 2, 4 in steps, an even count) rounds a to the grid with ties to even in one IEEE add, and
// the low 3 mantissa bits of the sum are the magnitude code. M's bits are one multiply-add of
// the binade e = max(exponent(a), 127): e * (2^23 + 2) + 22 * 2^23 - 254.
// e2m1_magnitude_bits returns the sum's bits: the magnitude code in bits 0..2, mantissa bits
// 3..22 zero (the sum is M plus at most 7 steps), exponent 149..151 above, sign 0; so codes
// can be packed by multiply-adds without masking each one (tests check all 2^32 floats).
NVFP4MOE_HD uint32_t e2m1_magnitude_bits(float y) {
  const float a = fminf(float_from_bits(float_bits(y) & 0x7fffffffu), 6.0f);
  const uint32_t ea = float_bits(a) >> 23;  // biased exponent of a (<= 129)
  const uint32_t e = ea < 127u ? 127u : ea;  // 127, 128 or 129
  const float magic = float_from_bits(e * 0x800002u + (0xB000000u - 254u));
  return float_bits(a + magic);
}
NVFP4MOE_HD uint32_t e2m1_code_fast(float y) {
  return (e2m1_magnitude_bits(y) & 7u) | ((float_bits(y) >> 28) & 8u);
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
  // Lane-wise max of two packed pairs (magnitudes), NaN propagating.
  __device__ __forceinline__ static uint32_t max_nan(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hmax2_nan(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
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
  __device__ __forceinline__ static uint32_t max_nan(uint32_t a, uint32_t b) {
    __half2 r = __hmax2_nan(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
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

// block_multiplier(s, g) with reciprocal_rn(g) computed once by the caller: the same two
// correctly rounded steps, m = (s == 0) ? 0 : 1 / (float(s) * (1 / g)).
__device__ __forceinline__ float block_multiplier_inv_g(uint8_t scale_code, float inv_g) {
  const float s = e4m3_to_float(scale_code);
  if (s == 0.0f) return 0.0f;
  return reciprocal_rn(s * inv_g);
}

// Byte permute (PTX prmt, default mode): selector nibble n picks byte (sel & 7) of {b:a} for
// result byte n, and with bit 3 set replicates that byte's sign bit instead.
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}

// Sign nibble bits of 8 packed 16-bit activations (words x, y, z, w = elements 0..7, element
// 2i in the low half): bit 4i + 3 = sign of element i. Six byte ops for eight elements.
__device__ __forceinline__ uint32_t sign_nibbles8(const uint4& w) {
  const uint32_t s03 = prmt(w.x, w.y, 0xFDB9u);  // bytes 0xFF / 0x00: signs of elements 0..3
  const uint32_t s47 = prmt(w.z, w.w, 0xFDB9u);  // elements 4..7
  const uint32_t even = prmt(s03, s47, 0x6420u);  // elements 0, 2, 4, 6 (one byte each)
  const uint32_t odd = prmt(s03, s47, 0x7531u);   // elements 1, 3, 5, 7
  return (even & 0x08080808u) | (odd & 0x80808080u);
}

// Codes of 8 products from their e2m1_magnitude_bits b[0..7] and the 8 inputs' sign nibbles:
// b0 + 16 b1 + 256 b2 + 4096 b3 leaves the 4 magnitude codes in the low 16 bits (the
// exponent bits land at bit 23 and above), one prmt joins the two halves.
__device__ __forceinline__ uint32_t pack_codes8(const uint32_t (&b)[8], uint32_t signs) {
  const uint32_t lo = b[0] + 16u * b[1] + 256u * b[2] + 4096u * b[3];
  const uint32_t hi = b[4] + 16u * b[5] + 256u * b[6] + 4096u * b[7];
  return prmt(lo, hi, 0x5410u) | signs;
}

// 16-byte read-only load through L1 (the two halves of a lane's block share 32-byte sectors).
__device__ __forceinline__ uint4 load_16b(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// amax(|x|) of a 16-element block given as two packed words, and whether it holds a NaN: one
// NaN-propagating packed max tree over the magnitudes. Without NaN the result is the exact
// amax (the same value abs_max_ignore_nan gives); with a NaN the amax is not used.
template <typename T>
__device__ __forceinline__ float block_amax16(const uint4& w0, const uint4& w1, bool* has_nan) {
  using Tr = ActTraits<T>;
  constexpr uint32_t kMag = 0x7fff7fffu;
  const uint32_t m01 = Tr::max_nan(w0.x & kMag, w0.y & kMag), m23 = Tr::max_nan(w0.z & kMag, w0.w & kMag);
  const uint32_t m45 = Tr::max_nan(w1.x & kMag, w1.y & kMag), m67 = Tr::max_nan(w1.z & kMag, w1.w & kMag);
  const uint32_t m = Tr::max_nan(Tr::max_nan(m01, m23), Tr::max_nan(m45, m67));
  *has_nan = ((((m & kMag) + Tr::kNaNCarry) & 0x80008000u) != 0);
  return fmaxf(Tr::lo(m), Tr::hi(m));
}

// Quantizes this lane's 16-element block (w0: elements 0..7, w1: 8..15) with global scale g
// (inv_g = reciprocal_rn(g)). Returns the 8 code bytes (element 2i in the low nibble of byte i)
// as two words; *scale_code receives the block's e4m3 scale. No shuffles: lanes independent.
template <typename T>
__device__ __forceinline__ uint2 quantize_block16_lane(const uint4& w0, const uint4& w1, float g, float inv_g,
                                                       uint8_t* scale_code) {
  bool has_nan;
  const float amax = block_amax16<T>(w0, w1, &has_nan);
  const uint8_t s = block_scale_code(amax, has_nan, g);
  const float m = block_multiplier_inv_g(s, inv_g);
  *scale_code = s;
  float v[16];
  unpack8<T>(w0, *reinterpret_cast<float(*)[8]>(&v[0]));
  unpack8<T>(w1, *reinterpret_cast<float(*)[8]>(&v[8]));
  // x * m is never NaN when the block holds no NaN, m is finite and not (m == 0 with an Inf
  // in the block): then the fast conversion applies; otherwise use the reference one. In the
  // fast case m >= 0, so every product has its input's sign (also when it is +-0): the sign
  // bits come straight from the packed inputs.
  const bool fast = !has_nan && is_finite_f32(m) && (m != 0.0f || is_finite_f32(amax));
  uint32_t lo = 0, hi = 0;
  if (fast) {
    uint32_t b[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) b[i] = e2m1_magnitude_bits(v[i] * m);
    lo = pack_codes8(b, sign_nibbles8(w0));
#pragma unroll
    for (int i = 0; i < 8; ++i) b[i] = e2m1_magnitude_bits(v[8 + i] * m);
    hi = pack_codes8(b, sign_nibbles8(w1));
  } else {
#pragma unroll
    for (int i = 7; i >= 0; --i) {
      lo = lo * 16u + e2m1_from_float(v[i] * m);
      hi = hi * 16u + e2m1_from_float(v[8 + i] * m);
    }
  }
  return make_uint2(lo, hi);
}

// Assembles the scale bytes of lanes 4k .. 4k+3 (blocks c = 0..3 of one group) into one
// little-endian word, valid in all four lanes. All 32 lanes must call it together.
__device__ __forceinline__ uint32_t scale_word_of_group(uint8_t scale_code, int lane) {
  uint32_t w = uint32_t(scale_code) << (8 * (lane & 3));
  w |= __shfl_xor_sync(0xffffffffu, w, 1);
  w |= __shfl_xor_sync(0xffffffffu, w, 2);
  return w;
}

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
