// Register-level building blocks of the NVFP4 quantization kernels: 16-byte activation loads,
// a bit-exact fast float -> e2m1 conversion, the hardware e4m3 conversion of the block scale,
// and the quantization of one 16-element block held by a pair of lanes (8 elements each).
//
// Work split inside a warp (one warp instruction = 256 consecutive elements of a row-major
// matrix, matrix_walk_quant_sm90.cuh):
//
//   lane l: elements 8l .. 8l+7 (one 16-byte load; 512 contiguous bytes per instruction)
//   lanes 2i, 2i+1: one 16-element block (block amax exchanged with one shuffle), each lane
//     4 code bytes (128 contiguous bytes per instruction);
//   lanes 8i .. 8i+7: one group of 4 scale columns of one row (K % 64 == 0): the 4 scale bytes
//     form one little-endian 4-byte word of the 128x4 swizzled layout (shuffles xor 2, 4).
//
// Every arithmetic step is the one of format/block_quant.h (the CPU golden model), so GPU and
// CPU agree bit for bit; e2m1_code_fast is a cheaper but equal form of e2m1_from_float for
// non-NaN inputs, e4m3_code_hw equals e4m3_from_float, and the block amax uses a packed max
// that gives the same value (tests check all 2^32 floats for the first two, and every kernel
// against the golden model).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/e2m1.h"
#include "nvfp4moe/format/e4m3.h"
#include "nvfp4moe/kernels/ptx/bf16x2_mul_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

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
// e2m1_magnitude_bits_of_abs takes |y| (sign bit clear, as a product |x| * m with m >= 0 is):
// it skips the one masking instruction.
NVFP4MOE_HD uint32_t e2m1_magnitude_bits_of_abs(float abs_y) {
  const float a = fminf(abs_y, 6.0f);
  const uint32_t ea = float_bits(a) >> 23;  // biased exponent of a (<= 129)
  const uint32_t e = ea < 127u ? 127u : ea;  // 127, 128 or 129
  const float magic = float_from_bits(e * 0x800002u + (0xB000000u - 254u));
  return float_bits(a + magic);
}
NVFP4MOE_HD uint32_t e2m1_magnitude_bits(float y) {
  return e2m1_magnitude_bits_of_abs(float_from_bits(float_bits(y) & 0x7fffffffu));
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
  // Lane-wise max ignoring NaN (a NaN lane yields the other input).
  __device__ __forceinline__ static uint32_t max_num(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hmax2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
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
  __device__ __forceinline__ static uint32_t max_num(uint32_t a, uint32_t b) {
    __half2 r = __hmax2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
};

// Running |x| max of 8 packed activations, NaN ignored: acc is a packed pair of magnitudes
// that starts at 0 (never NaN: a NaN lane yields the other input). Exact.
template <typename T>
__device__ __forceinline__ uint32_t abs_max8(uint32_t acc, const uint4& w) {
  using Tr = ActTraits<T>;
  constexpr uint32_t kMag = 0x7fff7fffu;
  acc = Tr::max_num(acc, w.x & kMag);
  acc = Tr::max_num(acc, w.y & kMag);
  acc = Tr::max_num(acc, w.z & kMag);
  return Tr::max_num(acc, w.w & kMag);
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

// ---- Lane-pair quantization (one 16-element block held by lanes 2i, 2i+1: 8 elements each) ----

// e4m3_from_float(y) for every non-NaN y with the sm_89+ hardware conversion (round to nearest
// even, saturating finite; tests compare it with the software form on all 2^32 floats). The
// result's high byte is the conversion of +0.0 (0x00), so no masking is needed.
__device__ __forceinline__ uint32_t e4m3_code_hw(float y) {
  uint16_t r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(y));  // y -> low byte
  return r;
}

// e4m3_to_float of a code 0..0x7e (non-negative, not NaN) by the sm_89+ conversion to fp16
// (every e4m3 value is an fp16 value: exact) and fp16 -> fp32 (exact): two instructions.
__device__ __forceinline__ float e4m3_value_hw(uint32_t code) {
  uint32_t h2;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(uint16_t(code)));  // low byte -> low half
  return __half2float(__ushort_as_half(uint16_t(h2 & 0xffffu)));
}

// reciprocal_rn(d) (= __frcp_rn) for d whose exponent field is 1..252 (d positive normal, 1/d
// normal): the sequence __frcp_rn runs on that range (MUFU.RCP, one Newton step with FMAs,
// correctly rounded; a test compares the two on every such float). Other d take the reference.
__device__ __forceinline__ bool rcp_rn_fast_range(float d) {
  return float_bits(d) - 0x00800000u < 0x7e800000u - 0x00800000u;
}
__device__ __forceinline__ float rcp_rn_fast(float d) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
  const float e = __fmaf_rn(-d, r, 1.0f);
  return __fmaf_rn(r, e, r);
}

// Codes of 8 activations times m by the reference conversion (NaN products, e.g. 0 * Inf).
template <typename T>
__device__ __forceinline__ uint32_t codes8_reference(uint4 w, float m) {
  float v[8];
  unpack8<T>(w, v);
  uint32_t c = 0;
#pragma unroll
  for (int i = 7; i >= 0; --i) c = c * 16u + e2m1_from_float(v[i] * m);
  return c;
}

// The block's codes by the reference steps of block_quant.h (out of line: only blocks the fast
// path of quantize_pair8 does not cover call it, the hot loop stays small): NaN in the block
// (scale 0x7F, codes 7), a negative or NaN scale code (g not positive), a multiplier outside
// the fast reciprocal's range.
template <typename T>
__device__ __noinline__ uint32_t quantize_pair8_reference(uint4 w, bool nan_block, uint32_t s, float inv_g) {
  if (nan_block) return 0x77777777u;  // e2m1_from_float(NaN) = 7 for every element
  const float sv = e4m3_to_float(uint8_t(s));
  const float m = sv == 0.0f ? 0.0f : reciprocal_rn(sv * inv_g);  // block_multiplier
  return codes8_reference<T>(w, m);
}

// The block's scale from the packed maximum m2 of its magnitudes (NaN kept: max_nan), with
// global scale g (inv_g = reciprocal_rn(g)): the e4m3 code s, and, on the fast path, the
// multiplier m. Fast path (every block of finite data with a positive global scale): scale
// code 0..0x7e, m = 0 (zero scale) or reciprocal_rn(sv / g) by rcp_rn_fast. m >= 0 is finite,
// so x * m is never NaN (x = +-Inf only with m > 0: a zero scale needs a finite amax) and
// keeps x's sign, also for +-0: codes from |x| * m, signs from the packed input. One
// predicate guards it, so the common path has a single branch.
struct BlockScale {
  uint32_t s;      // e4m3 scale code (kE4M3NaN for a NaN block)
  float m;         // multiplier (fast path only)
  bool fast;
  bool nan_block;
};

template <typename T>
__device__ __forceinline__ BlockScale block_scale_fast(uint32_t m2, float g, float inv_g) {
  using Tr = ActTraits<T>;
  BlockScale b;
  b.nan_block = ((m2 + Tr::kNaNCarry) & 0x80008000u) != 0;
  const float amax = fmaxf(Tr::lo(m2), Tr::hi(m2));
  const uint32_t s0 = e4m3_code_hw(g * (amax * kOneSixth));  // block_scale_code
  b.s = b.nan_block ? kE4M3NaN : s0;
  const bool zero = b.s == 0u;
  const float d = e4m3_value_hw(b.s) * inv_g;
  b.fast = b.s <= 0x7eu && (zero || rcp_rn_fast_range(d));
  b.m = zero ? 0.0f : rcp_rn_fast(d);
  return b;
}

// Codes of 8 activations w (magnitudes ax..aw = w & kMag) times the fast-path multiplier m.
template <typename T>
__device__ __forceinline__ uint32_t codes8_fast(const uint4& w, uint32_t ax, uint32_t ay, uint32_t az, uint32_t aw,
                                                float m) {
  using Tr = ActTraits<T>;
  uint32_t b[8];
  b[0] = e2m1_magnitude_bits_of_abs(Tr::lo(ax) * m);
  b[1] = e2m1_magnitude_bits_of_abs(Tr::hi(ax) * m);
  b[2] = e2m1_magnitude_bits_of_abs(Tr::lo(ay) * m);
  b[3] = e2m1_magnitude_bits_of_abs(Tr::hi(ay) * m);
  b[4] = e2m1_magnitude_bits_of_abs(Tr::lo(az) * m);
  b[5] = e2m1_magnitude_bits_of_abs(Tr::hi(az) * m);
  b[6] = e2m1_magnitude_bits_of_abs(Tr::lo(aw) * m);
  b[7] = e2m1_magnitude_bits_of_abs(Tr::hi(aw) * m);
  return pack_codes8(b, sign_nibbles8(w));
}

// Quantizes the 8 activations w of this lane (T packed, element 2i in the low half of word i)
// as one half of the 16-element block it shares with lane ^ 1: the block amax is exchanged
// with one shuffle, both lanes derive the same scale and multiplier, each packs its 8 codes
// (element 2i in the low nibble of byte i) into the returned word. *scale_code receives the
// block's e4m3 byte. All 32 lanes must call it (lanes without data pass zeros). Every value
// equals block_quant.h's: the block amax is exact (NaN blocks get scale 0x7F, codes 7), the
// scale and multiplier are the same correctly rounded steps (block_scale_fast).
template <typename T>
__device__ __forceinline__ uint32_t quantize_pair8(const uint4& w, float g, float inv_g, uint32_t* scale_code) {
  using Tr = ActTraits<T>;
  constexpr uint32_t kMag = 0x7fff7fffu;
  const uint32_t ax = w.x & kMag, ay = w.y & kMag, az = w.z & kMag, aw = w.w & kMag;
  uint32_t m2 = Tr::max_nan(Tr::max_nan(ax, ay), Tr::max_nan(az, aw));
  m2 = Tr::max_nan(m2, __shfl_xor_sync(0xffffffffu, m2, 1)) & kMag;
  const BlockScale b = block_scale_fast<T>(m2, g, inv_g);
  *scale_code = b.s;
  if (b.fast) return codes8_fast<T>(w, ax, ay, az, aw, b.m);
  return quantize_pair8_reference<T>(w, b.nan_block, b.s, inv_g);
}

// Quantizes one whole 16-element block held by this lane (w0: elements 0..7, w1: 8..15): the
// same values as quantize_pair8 gives the two lanes of a pair, with the block's scale work
// done once for 16 elements instead of in both lanes, and no shuffle. Returns the 8 code
// bytes (element 2i in the low nibble of byte i) as two words.
template <typename T>
__device__ __forceinline__ uint2 quantize_block16(const uint4& w0, const uint4& w1, float g, float inv_g,
                                                  uint32_t* scale_code) {
  using Tr = ActTraits<T>;
  constexpr uint32_t kMag = 0x7fff7fffu;
  const uint32_t ax = w0.x & kMag, ay = w0.y & kMag, az = w0.z & kMag, aw = w0.w & kMag;
  const uint32_t bx = w1.x & kMag, by = w1.y & kMag, bz = w1.z & kMag, bw = w1.w & kMag;
  const uint32_t m0 = Tr::max_nan(Tr::max_nan(ax, ay), Tr::max_nan(az, aw));
  const uint32_t m1 = Tr::max_nan(Tr::max_nan(bx, by), Tr::max_nan(bz, bw));
  const BlockScale b = block_scale_fast<T>(Tr::max_nan(m0, m1) & kMag, g, inv_g);
  *scale_code = b.s;
  if (b.fast) return make_uint2(codes8_fast<T>(w0, ax, ay, az, aw, b.m), codes8_fast<T>(w1, bx, by, bz, bw, b.m));
  return make_uint2(quantize_pair8_reference<T>(w0, b.nan_block, b.s, inv_g),
                    quantize_pair8_reference<T>(w1, b.nan_block, b.s, inv_g));
}

// The 8 values of a lane's quantized elements as bf16 (element i: nibble i of codes), each
// e2m1(code) * e4m3(scale_code) without the global scale, by the definition: fp32 decode,
// multiply, round. The product has at most 6 significant bits and lies in [2^-10, 2688]
// (or is zero or NaN), so it is exact in bf16.
__device__ __forceinline__ uint4 block_values_bf16x8_reference(uint32_t codes, uint32_t scale_code) {
  const float s = e4m3_to_float(uint8_t(scale_code));
  uint32_t v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const __nv_bfloat16 lo = __float2bfloat16_rn(e2m1_to_float(uint8_t((codes >> (8 * j)) & 0xfu)) * s);
    const __nv_bfloat16 hi = __float2bfloat16_rn(e2m1_to_float(uint8_t((codes >> (8 * j + 4)) & 0xfu)) * s);
    v[j] = uint32_t(__bfloat16_as_ushort(lo)) | (uint32_t(__bfloat16_as_ushort(hi)) << 16);
  }
  return make_uint4(v[0], v[1], v[2], v[3]);
}

// The same 8 values (the W4A4 GEMM's activation operand, gemm_act_dequant_sm90.cuh, and the
// quantizers' optional value output) by bit placement, about 19 instructions per 8 elements
// instead of eight decodes, multiplies and roundings: e2m1 magnitudes are bf16 numbers whose two
// bytes come from two 8-entry byte tables (one prmt each for 4 elements), the code's sign is
// or-ed into the high byte (a sign-replicating prmt), and one bf16x2 multiply by the scale
// gives both products of a pair, exact and so equal to the reference's rounding, zeros' signs
// included. A NaN scale (0x7F, 0xFF) takes the reference, whose NaN bits the multiply need not
// give. A test compares the two on every (byte, scale) pair.
__device__ __forceinline__ uint4 block_values_bf16x8(uint32_t codes, uint32_t scale_code) {
  if ((scale_code & 0x7fu) == 0x7fu) return block_values_bf16x8_reference(codes, scale_code);
  // bf16 of the magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6: 0000 3F00 3F80 3FC0 4000 4040 4080 40C0.
  constexpr uint32_t kLo03 = 0xC0800000u, kLo47 = 0xC0804000u;  // low bytes of magnitudes 0-3, 4-7
  constexpr uint32_t kHi03 = 0x3F3F3F00u, kHi47 = 0x40404040u;  // high bytes
  const __nv_bfloat16 sb = __float2bfloat16_rn(e4m3_value_hw(scale_code));  // exact
  const uint32_t s2 = uint32_t(__bfloat16_as_ushort(sb)) * 0x10001u;
  const uint32_t mag = codes & 0x77777777u, mag_hi = mag >> 16;  // selector nibbles: 3-bit indices
  const uint32_t shifted = codes << 4;  // sign of element 2i at bit 7 of byte i (element 2i+1: of codes)
  // Byte k of lo/hi: element k (of 0-3, then 4-7); of sign: 0xFF where element k is negative.
  const uint32_t sign03 = prmt(shifted, codes, 0xD9C8u), sign47 = prmt(shifted, codes, 0xFBEAu);
  const uint32_t lo03 = prmt(kLo03, kLo47, mag), lo47 = prmt(kLo03, kLo47, mag_hi);
  const uint32_t hi03 = prmt(kHi03, kHi47, mag) | (sign03 & 0x80808080u);
  const uint32_t hi47 = prmt(kHi03, kHi47, mag_hi) | (sign47 & 0x80808080u);
  return make_uint4(ptx::bf16x2_mul(prmt(lo03, hi03, 0x5140u), s2), ptx::bf16x2_mul(prmt(lo03, hi03, 0x7362u), s2),
                    ptx::bf16x2_mul(prmt(lo47, hi47, 0x5140u), s2), ptx::bf16x2_mul(prmt(lo47, hi47, 0x7362u), s2));
}

// Assembles the scale bytes of lane pairs 4k .. 4k+3 (blocks 0..3 of one scale-column group,
// lanes 8k .. 8k+7) into one little-endian word, valid in all eight lanes. All lanes call it.
__device__ __forceinline__ uint32_t scale_word_of_pairs(uint32_t scale_code, int lane) {
  uint32_t w = scale_code << (8 * ((lane >> 1) & 3));
  w |= __shfl_xor_sync(0xffffffffu, w, 2);
  w |= __shfl_xor_sync(0xffffffffu, w, 4);
  return w;
}

// Assembles the scale bytes of lanes 4k .. 4k+3 (blocks 0..3 of one scale-column group, one
// block per lane) into one little-endian word, valid in all four lanes. All lanes call it.
__device__ __forceinline__ uint32_t scale_word_of_group(uint32_t scale_code, int lane) {
  uint32_t w = scale_code << (8 * (lane & 3));
  w |= __shfl_xor_sync(0xffffffffu, w, 1);
  w |= __shfl_xor_sync(0xffffffffu, w, 2);
  return w;
}

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
