// The grouped GEMM's token-tile steps (cuda/gemm_token_tiles.h), host only: the default tiles at
// the model shapes' row counts, and NVFP4MOE_GEMM_GROUPED_TOK's spelling, whose mistakes throw
// an error naming the variable and quoting the value.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/gemm_token_tiles.h"

namespace {

namespace c = nvfp4moe::cuda;

TEST(GemmTokenTiles, DefaultStepsAtTheModelShapes) {
  const std::vector<c::GroupedTokStep> steps = c::default_grouped_tok_steps();
  struct Row { int64_t rows; int experts, tok; };
  // DeepSeek-V3 (E = 256, top-8) at T = 1, 64, 128, 256, 1024, 2048; Qwen3 (E = 128) at T = 64, 128.
  for (const Row& r : {Row{8, 256, 8}, Row{512, 256, 8}, Row{1024, 256, 8}, Row{1025, 256, 64}, Row{2048, 256, 64},
                       Row{8192, 256, 64}, Row{8193, 256, 128}, Row{16384, 256, 128}, Row{512, 128, 8},
                       Row{1024, 128, 64}, Row{1, 1, 8}, Row{33, 1, 128}}) {
    EXPECT_EQ(c::grouped_tok_tile(r.rows, r.experts, steps), r.tok) << r.rows << " rows, " << r.experts << " experts";
  }
}

TEST(GemmTokenTiles, ParsesTheSpelling) {
  const std::vector<c::GroupedTokStep> old = c::parse_grouped_tok_steps("4:8,12:16,16:32,32:64");
  ASSERT_EQ(old.size(), 4u);
  EXPECT_EQ(old[1].max_avg, 12);
  EXPECT_EQ(old[1].tok, 16);
  EXPECT_EQ(c::grouped_tok_tile(2048, 256, old), 16);  // 8 rows per expert
  EXPECT_EQ(c::grouped_tok_tile(4096, 256, old), 32);  // 16
  EXPECT_EQ(c::grouped_tok_tile(4097, 256, old), 64);  // 17
  const std::vector<c::GroupedTokStep> one = c::parse_grouped_tok_steps("2:8,");  // a trailing comma
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(c::grouped_tok_tile(512, 256, one), 8);
  EXPECT_EQ(c::grouped_tok_tile(513, 256, one), 128);
}

TEST(GemmTokenTiles, BadSpellingsNameTheVariable) {
  for (const char* bad : {"", "x", "4:9", "4:8;", "0:8", "4:8,32", "4:8,3:16", "4:8,4:16", ":8", "4:", "-1:8"}) {
    try {
      c::parse_grouped_tok_steps(bad);
      ADD_FAILURE() << "took \"" << bad << "\"";
    } catch (const nvfp4moe::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("NVFP4MOE_GEMM_GROUPED_TOK"), std::string::npos) << what;
      EXPECT_NE(what.find("\"" + std::string(bad) + "\""), std::string::npos) << what;
    }
  }
}

}  // namespace
