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
// Thread t of a warpgroup (warp w = t/32, lane l, g = l/4, q = l%4) owns rows r0 = 16w + g and
// r8 = r0 + 8 and the 16 columns of scale group q (columns 16q..16q+15) of the atom: one
// scale per row for all four k16 steps, and 16 contiguous activation columns per token.
//
// K order inside an atom (both kernels and the activation loads agree on it): k16 step
// s of the MMA takes, from thread q's group, the columns 16q + 4s + {0,1,2,3}; as the MMA's
// logical k (0..15 in the step: kk = 2q + b + 8h) it is column 16q + 4s + 2h + b. The sum over
// K is the same sum in another order. The decode kernel loads activations in natural order (a
// lane reads its 16 columns with two 16-byte loads); the wgmma kernel's B tile in shared memory
// is in logical order: logical pair p (= columns 2p, 2p+1 of the 64) holds actual pair
// 8 (p % 4) + p / 4 (kact_pair_of_logical_pair).
//
// Codes (2048 B): thread t's 16 bytes at t*16; 32-bit word s holds the 8 codes of step s, the
// four mma A registers j = 0..3 (j = row_hi + 2h: rows r0 / r8, columns +{0,1} / +{2,3}),
// low / high bf16 = even / odd column. Each code's four bits (m, e0, e1, sign) sit at word bits
// code_bit(j, .) (+16 for the high half), chosen so that the A registers come out as
//   j=0: w & Q                 j=1: (w << 3) & Q        j=2: (w << 6) & Q
//   j=3: (((w >> 7) & 0x00D800D8) * 0x821) & Q          Q = 0x81C081C0
// (9 integer operations for 8 codes; the multiply adds three non-overlapping shifted copies,
// so no carries). Each result has the sign at bit 15 and exponent/mantissa at bits 8-6.
//
// Scales (256 B): thread t's 2 bytes at 2048 + 2t: [S(r0, q), S(r8, q)], S(r, g) the re-encoded
// scale of row r, group g.
//
// Scale re-encoding (exact): a nonzero e4m3 s = 1.mmm * 2^e (e in [-9, 8], subnormals
// normalized) is stored as ((e + 10) << 3) | mmm. The kernel forms the bf16 bits
// (byte << 4) + 0x7600 = s * 2^119 with one integer multiply-add.
// A zero scale is stored as 0 and its 16 codes as zero (value 0 either way). NaN and negative
// scales are rejected at preparation.
//
// Dequantization (exact): a code's bits placed in a bf16 (sign bit 15, exponent bits 8-7,
// mantissa bit 6) are the value v * 2^-126 (subnormal for |v| = 0.5); times s * 2^119 it gives
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

// Word bit of code bit b (0..3 = m, e0, e1, sign) for A register j (low bf16; +16 for the high
// one): j=0 {6, 7, 8, 15}, j=1 {3, 4, 5, 12}, j=2 {0, 1, 2, 9}, j=3 {13, 14, 10, 11}.
NVFP4MOE_HD constexpr int code_bit(int j, int b) {
  return j == 3 ? (b == 0 ? 13 : b == 1 ? 14 : b == 2 ? 10 : 11) : (b == 3 ? 15 - 3 * j : 6 + b - 3 * j);
}
inline constexpr uint32_t kCodeMaskQ = 0x81C081C0u;   // sign + exponent/mantissa bits of 2 bf16
inline constexpr uint32_t kCodeMaskJ3 = 0x00D800D8u;  // register 3's bits after >> 7
inline constexpr uint32_t kCodeMulJ3 = 0x821u;        // 1 + 2^5 + 2^11

// Position of code (r, c) of an atom, r, c in [0, 64): byte offset of its 32-bit word and the
// word bits of its (m, e0, e1, sign).
struct AtomCodePos {
  int word_byte;
  int bits[4];
};
NVFP4MOE_HD AtomCodePos atom_code_position(int r, int c) {
  const int w = r / 16, rr = r % 16, q = c / 16, s = (c % 16) / 4, i = c % 4;
  const int t = w * 32 + (rr % 8) * 4 + q;
  const int j = rr / 8 + 2 * (i / 2), hi = (i % 2) * 16;
  AtomCodePos pos{t * 16 + s * 4, {}};
  for (int b = 0; b < 4; ++b) pos.bits[b] = code_bit(j, b) + hi;
  return pos;
}

// Byte offset (in the atom) of the scale of row r in [0, 64), K group g in [0, 4).
NVFP4MOE_HD int atom_scale_position(int r, int g) {
  const int w = r / 16, rr = r % 16;
  return kAtomCodeBytes + 2 * (w * 32 + (rr % 8) * 4 + g) + rr / 8;
}

// The wgmma kernel's B tile: logical pair p in [0, 32) of a 64-column block holds activation
// columns 2a, 2a+1 with a = kact_pair_of_logical_pair(p) (the K order above).
NVFP4MOE_HD int kact_pair_of_logical_pair(int p) { return 8 * (p % 4) + p / 4; }

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
