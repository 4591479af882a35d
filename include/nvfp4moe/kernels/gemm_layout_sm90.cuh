// The prepared NVFP4 weight layout the Hopper GEMM reads (written once at load by
// cuda/weights.h), and the scale re-encoding. Host and device.
//
// A weight B [N, K] (e2m1 codes, e4m3 scale per 16 along K) is padded with zeros to
// Np = roundup(N, 128) rows and Kp = roundup(K, 128) columns and cut into atoms of
// 64 rows x 64 K. Atoms are stored row-block major: atom (rb, ka) at byte
// (rb * (Kp/64) + ka) * 2304, so one 64-row block streams its whole K contiguously.
//
//   atom = [ 2048 B codes | 256 B scales ]
//
// Codes: the atom is one warpgroup's wgmma A operand for four k16 steps. Thread t (warp w =
// t/32, lane l, q = l%4, r0 = 16w + l/4) owns the 16 bytes at t*16; its 32-bit word s holds the
// 8 codes of k16 step s (columns 16s + 2q + {0,1,8,9} of rows r0 and r0+8), nibbles placed so
// that four shift-and-mask extractions give its A registers directly:
//   nibble 3-j / 7-j (lo / hi bf16 of register j):  j=0: (r0, c), (r0, c+1)
//                                                   j=1: (r0+8, c), (r0+8, c+1)
//                                                   j=2: (r0, c+8), (r0, c+9)
//                                                   j=3: (r0+8, c+8), (r0+8, c+9)   c = 16s + 2q
// Scales: the 4 lanes of a quad share rows, so the 8 bytes at p*8 (p = 8w + l/4) hold
// [S(r0,0) S(r0+8,0) S(r0,1) S(r0+8,1) S(r0,2) S(r0+8,2) S(r0,3) S(r0+8,3)], S(r, g) the
// re-encoded scale of rows r, K group g (16 columns) of the atom.
//
// Scale re-encoding (exact): a nonzero e4m3 s = 1.mmm * 2^e (e in [-9, 8], subnormals
// normalized) is stored as ((e + 10) << 3) | mmm. The kernel forms the bf16 bits
// (byte << 4) + 0x7600 = s * 2^119 with one integer multiply-add, for two scales at once.
// A zero scale is stored as 0 and its 16 codes as zero (value 0 either way). NaN and negative
// scales are rejected at preparation.
//
// Dequantization (exact): a code nibble shifted into a bf16 (sign, exponent bits 7-8,
// mantissa bit 6) is the value v * 2^-126 (subnormal for |v| = 0.5); times s * 2^119 it gives
// v * s * 2^-7 exactly (5 significant bits, within bf16's normal range). The epilogue
// multiplies the fp32 sum by 2^7 (exact) and then by alpha.
#pragma once

#include <cstdint>

#include "nvfp4moe/common/host_device.h"

namespace nvfp4moe::kernels {

inline constexpr int kAtomRows = 64;
inline constexpr int kAtomK = 64;
inline constexpr int kAtomCodeBytes = kAtomRows * kAtomK / 2;   // 2048
inline constexpr int kAtomScaleBytes = kAtomRows * kAtomK / 16;  // 256
inline constexpr int kAtomBytes = kAtomCodeBytes + kAtomScaleBytes;  // 2304
inline constexpr int kWeightRowPad = 128;  // Np multiple (one CTA covers 128 weight rows)
inline constexpr int kWeightKPad = 128;    // Kp multiple (one pipeline stage covers 128 of K)
inline constexpr uint32_t kScaleBf16Bias = 0x7600u;  // (117 + 119) << 7, see above
inline constexpr float kDequantRescale = 128.0f;     // 2^7, applied to the fp32 sums

NVFP4MOE_HD int64_t prepared_rows(int64_t n) { return (n + kWeightRowPad - 1) / kWeightRowPad * kWeightRowPad; }
NVFP4MOE_HD int64_t prepared_cols(int64_t k) { return (k + kWeightKPad - 1) / kWeightKPad * kWeightKPad; }
NVFP4MOE_HD int64_t prepared_bytes(int64_t n, int64_t k) {
  return prepared_rows(n) / kAtomRows * (prepared_cols(k) / kAtomK) * kAtomBytes;
}

// Byte offset (in the atom) and nibble (0 = low) of code (r, c), r, c in [0, 64).
NVFP4MOE_HD void atom_code_position(int r, int c, int* byte, int* high_nibble) {
  int s = c / 16, cc = c % 16;
  int upper8 = cc / 8, q = (cc % 8) / 2, odd = cc % 2;
  int w = r / 16, rr = r % 16, row_hi = rr / 8;
  int t = w * 32 + (rr % 8) * 4 + q;
  int j = row_hi + 2 * upper8;  // A register index
  int nib = odd ? 7 - j : 3 - j;
  *byte = t * 16 + s * 4 + nib / 2;
  *high_nibble = nib % 2;
}

// Byte offset (in the atom) of the scale of rows r in [0, 64), K group g in [0, 4).
NVFP4MOE_HD int atom_scale_position(int r, int g) {
  int w = r / 16, rr = r % 16;
  return kAtomCodeBytes + (w * 8 + rr % 8) * 8 + 2 * g + rr / 8;
}

// Re-encode an e4m3 scale (0 < s, not NaN) as described above; 0 (or -0) gives 0.
NVFP4MOE_HD uint8_t encode_weight_scale(uint8_t e4m3) {
  uint32_t exp = (e4m3 >> 3) & 0xf, man = e4m3 & 7;
  if (exp == 0 && man == 0) return 0;
  int e;
  uint32_t m3;
  if (exp > 0) {
    e = int(exp) - 7;
    m3 = man;
  } else {  // subnormal: man * 2^-9, normalize
    int lead = man >= 4 ? 2 : (man >= 2 ? 1 : 0);
    e = -9 + lead;
    m3 = (man << (3 - lead)) & 7;
  }
  return uint8_t(((e + 10) << 3) | m3);
}

}  // namespace nvfp4moe::kernels
