// Format core, scale layout (format/swizzle.h): the 128x4 swizzle is a bijection onto the
// padded buffer, its inverse round-trips, hand-computed offsets, the padding helpers, and the
// per-expert scale offsets sf_off with their capacity bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe {
namespace {

TEST(FormatSwizzle, HandComputedOffsets) {
  // C' = 4: one tile per 128 rows.
  EXPECT_EQ(swizzled_scale_offset(0, 0, 4), 0);
  EXPECT_EQ(swizzled_scale_offset(0, 1, 4), 1);
  EXPECT_EQ(swizzled_scale_offset(0, 3, 4), 3);
  EXPECT_EQ(swizzled_scale_offset(1, 0, 4), 16);  // next row: next 16-byte group
  EXPECT_EQ(swizzled_scale_offset(31, 0, 4), 496);
  EXPECT_EQ(swizzled_scale_offset(32, 0, 4), 4);  // row 32 shares row 0's group, bytes 4..7
  EXPECT_EQ(swizzled_scale_offset(64, 2, 4), 10);
  EXPECT_EQ(swizzled_scale_offset(96, 3, 4), 15);
  EXPECT_EQ(swizzled_scale_offset(127, 3, 4), 31 * 16 + 3 * 4 + 3);  // 511: last byte of tile 0
  EXPECT_EQ(swizzled_scale_offset(128, 0, 4), 512);                  // second row of tiles
  // C' = 8: two tiles per 128 rows, tiles row-major.
  EXPECT_EQ(swizzled_scale_offset(0, 4, 8), 512);
  EXPECT_EQ(swizzled_scale_offset(128, 0, 8), 1024);
  EXPECT_EQ(swizzled_scale_offset(129, 5, 8), 3 * 512 + 16 + 1);
  EXPECT_EQ(swizzled_scale_offset(200, 6, 8),
            3 * 512 + (200 % 32) * 16 + ((200 % 128) / 32) * 4 + 2);
}

TEST(FormatSwizzle, PaddingHelpers) {
  EXPECT_EQ(scale_cols(16), 1);
  EXPECT_EQ(scale_cols(7168), 448);
  EXPECT_EQ(padded_scale_cols(16), 4);
  EXPECT_EQ(padded_scale_cols(64), 4);
  EXPECT_EQ(padded_scale_cols(80), 8);
  EXPECT_EQ(padded_scale_cols(7168), 448);
  EXPECT_EQ(padded_scale_rows(0), 0);
  EXPECT_EQ(padded_scale_rows(1), 128);
  EXPECT_EQ(padded_scale_rows(128), 128);
  EXPECT_EQ(padded_scale_rows(129), 256);
  EXPECT_EQ(swizzled_scale_bytes(19, 112), 128 * 8);  // 7 scale columns -> 8
  EXPECT_EQ(swizzled_scale_bytes(0, 64), 0);
  EXPECT_EQ(round_up(0, 128), 0);
  EXPECT_EQ(round_up(300, 128), 384);
}

// Inside a tile the 16 bytes of group r % 32 hold rows r, r+32, r+64, r+96, four columns each.
TEST(FormatSwizzle, GroupOfSixteenHoldsFourRowsApart) {
  for (int64_t r = 0; r < 32; ++r) {
    for (int64_t j = 0; j < 4; ++j) {
      for (int64_t c = 0; c < 4; ++c) {
        EXPECT_EQ(swizzled_scale_offset(r + 32 * j, c, 4), r * 16 + j * 4 + c);
      }
    }
  }
}

// For awkward (rows, k): every (r, c) of the padded matrix maps into [0, R' * C'), no two to
// the same byte, and swizzled_scale_coord inverts the map.
TEST(FormatSwizzle, IsABijectionOntoThePaddedBufferAndInverts) {
  const int64_t shapes[][2] = {{1, 16},   {3, 80},     {19, 112}, {128, 64},  {129, 144},
                               {257, 48}, {300, 1024}, {1, 7168}, {513, 2048}};
  for (const auto& shape : shapes) {
    const int64_t rows = shape[0], k = shape[1];
    const int64_t padded_rows = padded_scale_rows(rows), padded_cols = padded_scale_cols(k);
    const int64_t bytes = swizzled_scale_bytes(rows, k);
    ASSERT_EQ(bytes, padded_rows * padded_cols);
    std::vector<uint8_t> seen(size_t(bytes), 0);
    int64_t collisions = 0, out_of_range = 0, bad_inverse = 0;
    for (int64_t r = 0; r < padded_rows; ++r) {
      for (int64_t c = 0; c < padded_cols; ++c) {
        const int64_t off = swizzled_scale_offset(r, c, padded_cols);
        if (off < 0 || off >= bytes) {
          ++out_of_range;
          continue;
        }
        if (seen[size_t(off)]++) ++collisions;
        int64_t r2 = -1, c2 = -1;
        swizzled_scale_coord(off, padded_cols, &r2, &c2);
        if (r2 != r || c2 != c) ++bad_inverse;
      }
    }
    EXPECT_EQ(out_of_range, 0) << "rows " << rows << " k " << k;
    EXPECT_EQ(collisions, 0) << "rows " << rows << " k " << k;
    EXPECT_EQ(bad_inverse, 0) << "rows " << rows << " k " << k;
  }
}

TEST(FormatSwizzle, ExpertScaleOffsetsHandExample) {
  // Counts 5, 0, 128, 256, 1: each expert padded to whole 128-row tiles, empty ones to none.
  const int32_t off[] = {0, 5, 5, 133, 389, 390};
  int32_t sf_off[6] = {-1, -1, -1, -1, -1, -1};
  expert_scale_offsets(off, 5, sf_off);
  const int32_t expected[] = {0, 128, 128, 256, 512, 640};
  for (int e = 0; e <= 5; ++e) EXPECT_EQ(sf_off[e], expected[e]) << "e = " << e;
  EXPECT_EQ(expert_scale_rows_capacity(390, 5), 1152);  // roundup(390 + 5 * 127 = 1025, 128)
  EXPECT_GE(expert_scale_rows_capacity(390, 5), sf_off[5]);
}

// The capacity M + 127 * E (rounded to 128) bounds sf_off[E] for every split of M rows.
TEST(FormatSwizzle, CapacityBoundsEveryRandomSplit) {
  const uint32_t seed = 20261122;
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    const int num_experts = 1 + int(rng() % 256);
    const int32_t rows = int32_t(rng() % 5000);
    std::vector<int32_t> off(size_t(num_experts) + 1, 0);
    for (int e = 1; e < num_experts; ++e) off[size_t(e)] = int32_t(rng() % uint32_t(rows + 1));
    off[size_t(num_experts)] = rows;
    std::sort(off.begin(), off.end());
    std::vector<int32_t> sf_off(size_t(num_experts) + 1);
    expert_scale_offsets(off.data(), num_experts, sf_off.data());
    for (int e = 0; e < num_experts; ++e) {
      ASSERT_EQ(sf_off[size_t(e)] % 128, 0);
      ASSERT_GE(sf_off[size_t(e) + 1] - sf_off[size_t(e)], off[size_t(e) + 1] - off[size_t(e)]);
    }
    EXPECT_LE(sf_off[size_t(num_experts)], expert_scale_rows_capacity(rows, num_experts))
        << "seed " << seed << " trial " << trial;
  }
}

}  // namespace
}  // namespace nvfp4moe
