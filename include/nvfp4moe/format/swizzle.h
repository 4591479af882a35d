// The 128x4 swizzled layout of block scales (cuBLASLt's 1-D block-scaling layout, read by
// the CUTLASS block-scaled GEMMs), and the per-expert scale offsets.
//
// A matrix with R rows and C = K/16 scale columns is stored padded to R' = roundup(R, 128)
// rows and C' = roundup(C, 4) columns (padding bytes zero), in 512-byte tiles of
// 128 rows x 4 columns, tiles row-major over (R'/128, C'/4):
//
//   tile   = (r / 128) * (C' / 4) + (c / 4)
//   offset = tile * 512 + (r % 32) * 16 + ((r % 128) / 32) * 4 + (c % 4)
//
// Inside a tile, the 16 bytes at (r % 32) hold rows r%32, r%32+32, +64, +96, 4 columns each.
#pragma once

#include "nvfp4moe/common/host_device.h"

namespace nvfp4moe {

inline constexpr int kBlockSize = 16;         // elements per e4m3 scale
inline constexpr int kScaleTileRows = 128;    // rows of one swizzle tile
inline constexpr int kScaleTileCols = 4;      // scale columns of one swizzle tile
inline constexpr int kScaleTileBytes = 512;

NVFP4MOE_HD int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Scale columns of a K-wide matrix, before and after padding.
NVFP4MOE_HD int64_t scale_cols(int64_t k) { return k / kBlockSize; }
NVFP4MOE_HD int64_t padded_scale_cols(int64_t k) { return round_up(k / kBlockSize, kScaleTileCols); }
NVFP4MOE_HD int64_t padded_scale_rows(int64_t rows) { return round_up(rows, kScaleTileRows); }

// Bytes of the swizzled scale buffer of a [rows, k] matrix.
NVFP4MOE_HD int64_t swizzled_scale_bytes(int64_t rows, int64_t k) {
  return padded_scale_rows(rows) * padded_scale_cols(k);
}

// Byte offset of scale (r, c) in a swizzled buffer whose padded column count is padded_cols.
NVFP4MOE_HD int64_t swizzled_scale_offset(int64_t r, int64_t c, int64_t padded_cols) {
  int64_t tile = (r / 128) * (padded_cols / 4) + (c / 4);
  return tile * 512 + (r % 32) * 16 + ((r % 128) / 32) * 4 + (c % 4);
}

// Inverse of swizzled_scale_offset: (row, col) of a byte offset in the padded buffer.
NVFP4MOE_HD void swizzled_scale_coord(int64_t offset, int64_t padded_cols, int64_t* r, int64_t* c) {
  int64_t tile = offset / 512, in_tile = offset % 512;
  int64_t tiles_per_row = padded_cols / 4;
  int64_t tile_r = tile / tiles_per_row, tile_c = tile % tiles_per_row;
  *r = tile_r * 128 + ((in_tile % 16) / 4) * 32 + in_tile / 16;
  *c = tile_c * 4 + in_tile % 4;
}

// Scale rows the per-expert buffer needs at most for M rows over E experts: each expert's
// block is padded to a multiple of 128 rows, so at most M + 127 * E, rounded up to 128.
NVFP4MOE_HD int64_t expert_scale_rows_capacity(int64_t m, int64_t num_experts) {
  return round_up(m + 127 * num_experts, 128);
}

// sf_off from off: sf_off[0] = 0, sf_off[e+1] = sf_off[e] + roundup(off[e+1] - off[e], 128).
// (Host helper for the CPU model and tests; the GPU computes the same on the device.)
inline void expert_scale_offsets(const int32_t* off, int num_experts, int32_t* sf_off) {
  sf_off[0] = 0;
  for (int e = 0; e < num_experts; ++e) {
    sf_off[e + 1] = sf_off[e] + int32_t(round_up(off[e + 1] - off[e], 128));
  }
}

}  // namespace nvfp4moe
