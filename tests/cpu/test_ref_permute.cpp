// Golden model, permutation and combine (ref/permute.h): a tiny routing permuted by hand,
// T = 0, random routings checked for the inverse maps and the (token, slot) order inside each
// expert, combine order (j ascending, shared last) pinned by float absorption, and argument errors.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/ref/permute.h"

namespace nvfp4moe::ref {
namespace {

TEST(RefPermute, TinyRoutingByHand) {
  // T = 3, k = 2, E = 4; ids (token: slot0, slot1) = 0: (2, 0), 1: (0, 3), 2: (3, 2).
  // Expert 0: pairs 1 (t0 s1), 2 (t1 s0); expert 1: none; expert 2: pairs 0, 5; expert 3: 3, 4.
  const std::vector<int32_t> ids = {2, 0, 0, 3, 3, 2};
  Permutation p = permute(ids, 3, 2, 4);
  EXPECT_EQ(p.counts, (std::vector<int32_t>{2, 0, 2, 2}));
  EXPECT_EQ(p.off, (std::vector<int32_t>{0, 2, 2, 4, 6}));
  EXPECT_EQ(p.sf_off, (std::vector<int32_t>{0, 128, 128, 256, 384}));
  EXPECT_EQ(p.sorted_to_pair, (std::vector<int32_t>{1, 2, 0, 5, 3, 4}));
  EXPECT_EQ(p.pair_to_sorted, (std::vector<int32_t>{2, 0, 1, 4, 5, 3}));
  EXPECT_EQ(p.sorted_to_token, (std::vector<int32_t>{0, 1, 0, 2, 1, 2}));
}

TEST(RefPermute, ZeroTokensAndOneExpertWithEverything) {
  Permutation p = permute({}, 0, 4, 3);
  EXPECT_EQ(p.counts, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(p.off, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(p.sf_off, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_TRUE(p.sorted_to_pair.empty() && p.pair_to_sorted.empty() && p.sorted_to_token.empty());
  // 200 tokens, k = 1, all on expert 1: identity order, 256 scale rows for it.
  std::vector<int32_t> ids(200, 1);
  p = permute(ids, 200, 1, 3);
  EXPECT_EQ(p.off, (std::vector<int32_t>{0, 0, 200, 200}));
  EXPECT_EQ(p.sf_off, (std::vector<int32_t>{0, 0, 256, 256}));
  for (int32_t i = 0; i < 200; ++i) {
    ASSERT_EQ(p.sorted_to_pair[size_t(i)], i);
    ASSERT_EQ(p.sorted_to_token[size_t(i)], i);
  }
}

TEST(RefPermute, RandomRoutingsAreStableInverses) {
  const uint32_t seed = 31337;
  std::mt19937 rng(seed);
  for (int e_count : {1, 5, 64}) {
    for (int k : {1, 3, 8}) {
      const int64_t t = 111;
      std::uniform_int_distribution<int> pick(0, e_count - 1);
      std::vector<int32_t> ids(size_t(t * k));
      for (auto& id : ids) id = pick(rng);
      Permutation p = permute(ids, t, k, e_count);
      ASSERT_EQ(p.off.back(), t * k) << "seed " << seed;
      for (int e = 0; e < e_count; ++e) {
        ASSERT_EQ(p.off[size_t(e + 1)] - p.off[size_t(e)], p.counts[size_t(e)]);
        for (int32_t r = p.off[size_t(e)]; r < p.off[size_t(e + 1)]; ++r) {
          const int32_t pair = p.sorted_to_pair[size_t(r)];
          ASSERT_EQ(ids[size_t(pair)], e) << "seed " << seed << " row " << r;
          ASSERT_EQ(p.pair_to_sorted[size_t(pair)], r);
          ASSERT_EQ(p.sorted_to_token[size_t(r)], pair / k);
          if (r > p.off[size_t(e)]) {
            ASSERT_LT(p.sorted_to_pair[size_t(r - 1)], pair) << "not stable";
          }
        }
      }
    }
  }
}

TEST(RefPermute, PermuteRejectsBadIds) {
  auto expect_error = [](auto&& fn, const char* needle) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { permute(std::vector<int32_t>{0, 4}, 1, 2, 4); }, "ids");
  expect_error([] { permute(std::vector<int32_t>{-1, 0}, 1, 2, 4); }, "ids");
  expect_error([] { permute(std::vector<int32_t>{0, 1, 2}, 1, 2, 4); }, "ids");
  expect_error([] { permute(std::vector<int32_t>{}, -1, 2, 4); }, "tokens");
  expect_error([] { permute(std::vector<int32_t>{}, int64_t(1) << 60, 16, 8); }, "tokens");  // wraps to 0
  expect_error([] { permute(std::vector<int32_t>{}, 0, 0, 4); }, "top_k");
  expect_error([] { permute(std::vector<int32_t>{}, 0, 1, 0); }, "num_experts");
}

// rows of a tiny routing: T = 2, k = 2, H = 2; token 0 -> experts (1, 0), token 1 -> (0, 0).
TEST(RefCombine, WeightedSumOverPairToSorted) {
  const std::vector<int32_t> ids = {1, 0, 0, 0};
  Permutation p = permute(ids, 2, 2, 2);  // sorted rows: (t0 s1), (t1 s0), (t1 s1), (t0 s0)
  const std::vector<float> rows = {1, 2, 10, 20, 100, 200, 1000, 2000};
  const std::vector<float> w = {0.5f, 2.0f, 1.0f, -1.0f};
  std::vector<float> out(4);
  combine(rows, w, p.pair_to_sorted, 2, 2, 2, {}, out);
  // t0: 0.5 * row(t0 s0) + 2 * row(t0 s1) = 0.5 * (1000, 2000) + 2 * (1, 2)
  // t1: 1 * row(t1 s0) - 1 * row(t1 s1) = (10, 20) - (100, 200)
  EXPECT_EQ(out, (std::vector<float>{502.0f, 1004.0f, -90.0f, -180.0f}));
  std::vector<float> shared = {1, 1, 3, 3};
  combine(rows, w, p.pair_to_sorted, 2, 2, 2, shared, out);
  EXPECT_EQ(out, (std::vector<float>{503.0f, 1005.0f, -87.0f, -177.0f}));
}

// Float absorption pins the order: ((0 + w0 r0) + w1 r1) + shared.
TEST(RefCombine, OrderIsSlotsAscendingThenShared) {
  const std::vector<int32_t> identity = {0, 1};
  std::vector<float> out(1);
  // (1e8 + 1) - 1e8 = 0 in float; any other order would give 1.
  combine(std::vector<float>{1e8f, 1.0f}, std::vector<float>{1.0f, 1.0f}, identity, 1, 2, 1,
          std::vector<float>{-1e8f}, out);
  EXPECT_EQ(out[0], 0.0f);
  // (1 + 1e8) - 1e8 = 0 too; but (1e8 - 1e8) + 1 would be 1: slot 1 before shared.
  combine(std::vector<float>{1.0f, 1e8f}, std::vector<float>{1.0f, 1.0f}, identity, 1, 2, 1,
          std::vector<float>{-1e8f}, out);
  EXPECT_EQ(out[0], 0.0f);
  // A multiply then an add (no FMA): acc = -1 after slot 0; slot 1's 3 * float(1/3) rounds to
  // 1 exactly, so the sum is 0 (an FMA would keep the residual 2^-25).
  combine(std::vector<float>{1.0f, 1.0f / 3.0f}, std::vector<float>{-1.0f, 3.0f}, identity, 1, 2, 1,
          {}, out);
  EXPECT_EQ(out[0], 0.0f);
}

TEST(RefCombine, ZeroTokens) {
  std::vector<float> out;
  EXPECT_NO_THROW(combine({}, {}, {}, 0, 2, 16, {}, out));
}

TEST(RefCombine, BadArgumentsThrowAndWriteNothing) {
  const std::vector<int32_t> p2s = {0, 1, 2, 3};
  const std::vector<float> rows(8, 1.0f), w(4, 1.0f);
  std::vector<float> out(4, -7.0f);
  auto expect_error = [&](auto&& fn, const char* needle) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    for (float v : out) ASSERT_EQ(v, -7.0f);
  };
  expect_error([&] { combine(std::vector<float>(7), w, p2s, 2, 2, 2, {}, out); }, "rows");
  expect_error([&] { combine(rows, std::vector<float>(3), p2s, 2, 2, 2, {}, out); }, "weights");
  expect_error(
      [&] {
        combine(rows, w, std::vector<int32_t>{0, 1, 2, 4}, 2, 2, 2, {}, out);
      },
      "pair_to_sorted");
  expect_error(
      [&] {
        combine(rows, w, std::vector<int32_t>{0, -1, 2, 3}, 2, 2, 2, {}, out);
      },
      "pair_to_sorted");
  expect_error([&] { combine(rows, w, p2s, 2, 2, 2, std::vector<float>(3), out); }, "shared");
  expect_error([&] { combine(rows, w, p2s, 2, 2, 2, {}, std::span<float>(out).first(3)); }, "out");
  expect_error([&] { combine(rows, w, p2s, 2, 2, 0, {}, out); }, "hidden");
}

}  // namespace
}  // namespace nvfp4moe::ref
