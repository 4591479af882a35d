// Balanced token tiles of the warp-specialized GEMM (host and device; tested on the host in
// tests/cpu/test_gemm_balanced_tiles.cpp): r rows (an expert's, or a single GEMM's M) in
// q = ceil(r / max_rows) tiles, the first r % q of them floor(r / q) + 1 rows, the others
// floor(r / q). Same tile count as fixed tiles of max_rows rows, but no thin remainder: at
// max_rows 160, 140 rows are one tile (not 128 + 12). 32-bit arithmetic only (the producer
// thread that evaluates it runs on 40 registers).
#pragma once

#include "nvfp4moe/common/host_device.h"

namespace nvfp4moe::kernels {

struct TileRows {
  int first;  // first row of the tile, relative to the expert's (or the GEMM's) first row
  int count;  // rows in the tile, 1..max_rows for rows >= 1
};

NVFP4MOE_HD TileRows balanced_tile_rows(int rows, int max_rows, int tile) {
  const int q = (rows + max_rows - 1) / max_rows;
  const int base = rows / q, extra = rows - base * q;
  return TileRows{tile * base + (tile < extra ? tile : extra), base + (tile < extra ? 1 : 0)};
}

// The warp-specialized kernel's MMA token widths (32, 64, 96, 128, 160) and the narrowest one
// covering a tile of `rows` rows (its activation box has that many rows).
inline constexpr int kWsWidths = 5;
NVFP4MOE_HD constexpr int ws_width(int i) { return i < 3 ? 32 * (i + 1) : (i == 3 ? 128 : 160); }
NVFP4MOE_HD int ws_width_index(int rows) {
  return rows <= 32 ? 0 : rows <= 64 ? 1 : rows <= 96 ? 2 : rows <= 128 ? 3 : 4;
}

}  // namespace nvfp4moe::kernels
