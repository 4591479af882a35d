// The warp-specialized GEMM's balanced token tiles (kernels/gemm_balanced_tiles.h) on the host:
// every row in exactly one tile, each tile 1..max_rows rows, the tile count that of fixed tiles
// (the grouped scheduler's prefix counts them that way), sizes within one row of each other, and
// an MMA width that covers each tile.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "nvfp4moe/kernels/gemm_balanced_tiles.h"

namespace nk = nvfp4moe::kernels;

TEST(GemmBalancedTiles, CoverEveryRowOnceWithinTheTileSize) {
  for (int max_rows : {64, 128, 160}) {
    for (int rows = 1; rows <= 5000; ++rows) {
      const int q = (rows + max_rows - 1) / max_rows;
      int next = 0, lo = max_rows, hi = 0;
      for (int t = 0; t < q; ++t) {
        const nk::TileRows tr = nk::balanced_tile_rows(rows, max_rows, t);
        ASSERT_EQ(tr.first, next) << "rows " << rows << " max " << max_rows << " tile " << t;
        ASSERT_GE(tr.count, 1) << "rows " << rows << " max " << max_rows << " tile " << t;
        ASSERT_LE(tr.count, max_rows) << "rows " << rows << " max " << max_rows << " tile " << t;
        for (int step : {16, 32}) {
          const int w = nk::ws_width_index(tr.count, step);
          ASSERT_LE(tr.count, nk::ws_width(w)) << "rows " << rows << " tile " << t;
          ASSERT_EQ(nk::ws_width(w) % step, 0) << "rows " << rows << " step " << step;
          ASSERT_TRUE(nk::ws_width(w) - tr.count < step || nk::ws_width(w) == 32)
              << "not the narrowest width, rows " << rows << " step " << step;
          ASSERT_LT(w, nk::kWsWidths);
        }
        next += tr.count;
        lo = std::min(lo, tr.count);
        hi = std::max(hi, tr.count);
      }
      ASSERT_EQ(next, rows) << "max " << max_rows;
      ASSERT_LE(hi - lo, 1) << "rows " << rows << " max " << max_rows;
    }
  }
}

TEST(GemmBalancedTiles, NoThinRemainder) {
  // The case that motivated them (DeepSeek-V3 T = 4096: experts of 128 +- 11 rows).
  EXPECT_EQ(nk::balanced_tile_rows(140, 160, 0).count, 140);
  EXPECT_EQ(nk::balanced_tile_rows(140, 128, 0).count, 70);
  EXPECT_EQ(nk::balanced_tile_rows(140, 128, 1).first, 70);
  EXPECT_EQ(nk::balanced_tile_rows(161, 160, 0).count, 81);
  EXPECT_EQ(nk::balanced_tile_rows(161, 160, 1).count, 80);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(140, 16)), 144);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(140, 32)), 160);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(81, 16)), 96);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(81, 32)), 96);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(33, 16)), 48);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(1, 16)), 32);  // never 16 (C7512, gemm_balanced_tiles.h)
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(1, 32)), 32);
  EXPECT_EQ(nk::ws_width(nk::ws_width_index(160, 16)), 160);
}
