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

// The warp-specialized kernel's MMA token widths, ws_width(i) = 16 (i + 1) up to 160, and the
// narrowest one covering a tile of `rows` rows (1..160), in steps of `step` tokens and at least
// 32 (16 or 32: widths 32, 48, ..., 160 or 32, 64, ..., 160; its activation box has that many
// rows). Why steps of 16: a tile's MMA time grows with its width, its dequantization does not,
// and expert sizes are spread (DeepSeek-V3 T = 4096: 128 +- 11 rows), so a 110-row tile runs at
// width 128 with steps of 32 (14% idle columns), at 112 with 16. Not 16 itself: with it ptxas
// serializes the token-tile-160 kernel's wgmma (C7512).
inline constexpr int kWsWidths = 10;
NVFP4MOE_HD constexpr int ws_width(int i) { return 16 * (i + 1); }
NVFP4MOE_HD int ws_width_index(int rows, int step) {
  const int width = (rows + step - 1) / step * step;
  return width > 32 ? width / 16 - 1 : 1;
}

}  // namespace nvfp4moe::kernels
