// Golden model, routing (ref/routing.h): hand-computed softmax and DeepSeek-V3 sigmoid cases
// (ties to the lower index, a correction bias that changes the selection but not the weights,
// group selection overriding the single best expert, group ties), NaN logits keeping ids in
// range, random configurations against an independent sort-based reference, and
// validate(RoutingConfig) errors naming each field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe::ref {
namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

RoutingConfig softmax_cfg(int e, int k, bool renorm = true, float scale = 1.0f) {
  RoutingConfig c;
  c.num_experts = e;
  c.top_k = k;
  c.scoring = ScoringFunc::kSoftmax;
  c.renormalize = renorm;
  c.routed_scaling_factor = scale;
  return c;
}

RoutingConfig sigmoid_cfg(int e, int k, int n_group, int topk_group, bool renorm = true,
                          float scale = 1.0f) {
  RoutingConfig c = softmax_cfg(e, k, renorm, scale);
  c.scoring = ScoringFunc::kSigmoid;
  c.n_group = n_group;
  c.topk_group = topk_group;
  return c;
}

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

Routed run(const std::vector<float>& logits, const std::vector<float>& bias, int64_t t,
           const RoutingConfig& c) {
  Routed r{std::vector<int32_t>(size_t(t * c.top_k), -7),
           std::vector<float>(size_t(t * c.top_k), -7.0f)};
  route(logits, bias, t, c, r.ids, r.w);
  return r;
}

TEST(RefRouting, SoftmaxTiesGoToTheLowerExpert) {
  // Experts 1 and 3 tie for first: ids [1, 3]; renormalized weights p/(2p) = 0.5 exactly, x 2.5.
  Routed r = run({1.0f, 3.0f, 2.0f, 3.0f}, {}, 1, softmax_cfg(4, 2, true, 2.5f));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(r.w, (std::vector<float>{1.25f, 1.25f}));
  // All equal: p = 1/4 exactly, the first k experts win, no renormalization.
  r = run({0.0f, 0.0f, 0.0f, 0.0f}, {}, 1, softmax_cfg(4, 3, false));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(r.w, (std::vector<float>{0.25f, 0.25f, 0.25f}));
}

TEST(RefRouting, SoftmaxHandComputedWeights) {
  // logits [0, ln 3 ~ 1.0986, -1]: p ~ [0.2302, 0.6905, 0.0847]; top-2 = [1, 0].
  const float l[3] = {0.0f, std::log(3.0f), -1.0f};
  const double e0 = 1.0, e1 = 3.0, e2 = std::exp(-1.0), s = e0 + e1 + e2;
  Routed r = run({l[0], l[1], l[2]}, {}, 1, softmax_cfg(3, 2, false));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 0}));
  EXPECT_NEAR(r.w[0], e1 / s, 1e-6);
  EXPECT_NEAR(r.w[1], e0 / s, 1e-6);
  // Renormalized: 3/4 and 1/4 (within float rounding of the two divisions).
  r = run({l[0], l[1], l[2]}, {}, 1, softmax_cfg(3, 2, true));
  EXPECT_NEAR(r.w[0], 0.75f, 1e-6);
  EXPECT_NEAR(r.w[1], 0.25f, 1e-6);
  // Two tokens are routed independently; the max subtraction makes huge logits safe.
  r = run({1000.0f, 1001.0f, 0.0f, -5.0f, 7.0f, 6.0f}, {}, 2, softmax_cfg(3, 1, false));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 1}));
  EXPECT_NEAR(r.w[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

// DeepSeek-V3: 8 experts in 4 groups of 2, keep 2 groups, pick 2. Expert 0 has the best
// score but its group (0) sums only s(3) + s(-3) = 1.0; groups 2 (s(2)+s(.5) = 1.50) and
// 1 (2 s(1) = 1.46) win. Among experts 2..5 the best are 4 (s(2)), then 2 and 3 tie -> 2.
TEST(RefRouting, SigmoidGroupSelectionOverridesTheBestSingleExpert) {
  const std::vector<float> l = {3.0f, -3.0f, 1.0f, 1.0f, 2.0f, 0.5f, -1.0f, -1.0f};
  Routed r = run(l, {}, 1, sigmoid_cfg(8, 2, 4, 2, false, 1.0f));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{4, 2}));
  EXPECT_EQ(r.w[0], sigmoid(2.0f));
  EXPECT_EQ(r.w[1], sigmoid(1.0f));
  // Renormalized w / (sum + 1e-20) and scaled by 2.5, in that order.
  r = run(l, {}, 1, sigmoid_cfg(8, 2, 4, 2, true, 2.5f));
  const float sum = (sigmoid(2.0f) + sigmoid(1.0f)) + 1e-20f;
  EXPECT_EQ(r.w[0], (sigmoid(2.0f) / sum) * 2.5f);
  EXPECT_EQ(r.w[1], (sigmoid(1.0f) / sum) * 2.5f);
  // With one group every expert competes: 0 (s(3)) then 4 (s(2)).
  r = run(l, {}, 1, sigmoid_cfg(8, 2, 1, 1, false));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 4}));
}

// The correction bias picks expert 1 over expert 0, yet the weights are the unbiased sigmoids.
TEST(RefRouting, SigmoidBiasChangesSelectionNotWeights) {
  const std::vector<float> l = {1.0f, 0.9f, 0.0f, -2.0f};
  Routed plain = run(l, {}, 1, sigmoid_cfg(4, 2, 1, 1, false));
  EXPECT_EQ(plain.ids, (std::vector<int32_t>{0, 1}));
  Routed biased = run(l, {0.0f, 0.5f, 0.0f, 0.0f}, 1, sigmoid_cfg(4, 2, 1, 1, false));
  EXPECT_EQ(biased.ids, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(biased.w[0], sigmoid(0.9f));
  EXPECT_EQ(biased.w[1], sigmoid(1.0f));
  // A large bias on expert 3 brings it in although its sigmoid is the smallest.
  Routed b3 = run(l, {0.0f, 0.0f, 0.0f, 1.0f}, 1, sigmoid_cfg(4, 2, 1, 1, false));
  EXPECT_EQ(b3.ids, (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(b3.w[0], sigmoid(-2.0f));
  // The bias also enters the group scores: groups {0,1} and {2,3}, keep 1 group.
  Routed g = run(l, {0.0f, 0.0f, 0.8f, 0.8f}, 1, sigmoid_cfg(4, 1, 2, 1, false));
  EXPECT_EQ(g.ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(g.w[0], sigmoid(0.0f));
}

TEST(RefRouting, SigmoidGroupTiesGoToTheLowerGroup) {
  // Groups {0,1}, {2,3}, {4,5} with equal scores in groups 1 and 2, group 0 lowest; keep 1.
  const std::vector<float> l = {-1.0f, -1.0f, 0.5f, 0.25f, 0.25f, 0.5f};
  Routed r = run(l, {}, 1, sigmoid_cfg(6, 2, 3, 1, false));
  EXPECT_EQ(r.ids, (std::vector<int32_t>{2, 3}));
  // Group size 1: the group score is the single expert's score.
  Routed single = run({0.1f, 0.3f, 0.2f}, {}, 1, sigmoid_cfg(3, 2, 3, 2, false));
  EXPECT_EQ(single.ids, (std::vector<int32_t>{1, 2}));
}

// NaN logits never produce an out-of-range id; the NaN is visible in the weights (softmax) or
// the NaN expert is simply ranked last (sigmoid).
TEST(RefRouting, NanLogitsKeepIdsInRange) {
  const float nan = std::nanf("");
  Routed s = run({0.5f, nan, 1.0f, -1.0f}, {}, 1, softmax_cfg(4, 2));
  for (int32_t id : s.ids) EXPECT_TRUE(id >= 0 && id < 4);
  EXPECT_TRUE(std::isnan(s.w[0]));
  Routed g = run({0.5f, nan, 1.0f, -1.0f}, {}, 1, sigmoid_cfg(4, 3, 1, 1, false));
  EXPECT_EQ(g.ids, (std::vector<int32_t>{2, 0, 3}));
  Routed all_nan = run({nan, nan, nan, nan}, {}, 1, sigmoid_cfg(4, 2, 2, 1, false));
  EXPECT_EQ(all_nan.ids, (std::vector<int32_t>{0, 1}));
}

TEST(RefRouting, ZeroTokens) {
  std::vector<int32_t> ids;
  std::vector<float> w;
  EXPECT_NO_THROW(route({}, {}, 0, softmax_cfg(8, 2), ids, w));
}

// Independent reference: stable sort of (score, index) descending, groups by explicit sums.
Routed sort_reference(const std::vector<float>& l, const std::vector<float>& bias, int64_t t,
                      const RoutingConfig& c) {
  const int e = c.num_experts, k = c.top_k;
  Routed r{std::vector<int32_t>(size_t(t * k)), std::vector<float>(size_t(t * k))};
  for (int64_t tok = 0; tok < t; ++tok) {
    std::vector<float> score(static_cast<size_t>(e)), weight(static_cast<size_t>(e));
    std::vector<int> cand(static_cast<size_t>(e));
    std::iota(cand.begin(), cand.end(), 0);
    if (c.scoring == ScoringFunc::kSoftmax) {
      float mx = *std::max_element(l.begin() + tok * e, l.begin() + (tok + 1) * e);
      float sum = 0.0f;
      for (int i = 0; i < e; ++i)
        sum += (weight[size_t(i)] = std::exp(l[size_t(tok * e + i)] - mx));
      for (int i = 0; i < e; ++i) score[size_t(i)] = weight[size_t(i)] = weight[size_t(i)] / sum;
    } else {
      for (int i = 0; i < e; ++i) {
        weight[size_t(i)] = sigmoid(l[size_t(tok * e + i)]);
        score[size_t(i)] = weight[size_t(i)] + (bias.empty() ? 0.0f : bias[size_t(i)]);
      }
      const int gs = e / c.n_group;
      std::vector<std::pair<float, int>> groups;
      for (int g = 0; g < c.n_group; ++g) {
        std::vector<float> mem(score.begin() + g * gs, score.begin() + (g + 1) * gs);
        std::sort(mem.begin(), mem.end(), std::greater<float>());
        groups.push_back({gs >= 2 ? mem[0] + mem[1] : mem[0], g});
      }
      std::stable_sort(groups.begin(), groups.end(),
                       [](auto a, auto b) { return a.first > b.first; });
      cand.clear();
      for (int g = 0; g < c.topk_group; ++g) {
        for (int i = 0; i < gs; ++i) cand.push_back(groups[size_t(g)].second * gs + i);
      }
      std::sort(cand.begin(), cand.end());
    }
    std::stable_sort(cand.begin(), cand.end(),
                     [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum += weight[size_t(cand[size_t(j)])];
    if (c.scoring == ScoringFunc::kSigmoid) sum = sum + 1e-20f;
    for (int j = 0; j < k; ++j) {
      float w = weight[size_t(cand[size_t(j)])];
      if (c.renormalize) w = w / sum;
      r.ids[size_t(tok * k + j)] = cand[size_t(j)];
      r.w[size_t(tok * k + j)] = w * c.routed_scaling_factor;
    }
  }
  return r;
}

TEST(RefRouting, RandomConfigsMatchSortReference) {
  const uint32_t seed = 2024;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const std::vector<RoutingConfig> cfgs = {softmax_cfg(8, 2),
                                           softmax_cfg(60, 4, false),
                                           softmax_cfg(128, 8, true, 1.5f),
                                           softmax_cfg(1, 1),
                                           sigmoid_cfg(256, 8, 8, 4, true, 2.5f),
                                           sigmoid_cfg(64, 6, 8, 3, true, 1.0f),
                                           sigmoid_cfg(16, 4, 4, 1, false, 1.0f),
                                           sigmoid_cfg(512, 16, 16, 4, true, 1.0f)};
  for (const RoutingConfig& c : cfgs) {
    const int64_t t = 37;
    std::vector<float> l(size_t(t * c.num_experts)), bias;
    for (auto& v : l) v = nd(rng);
    if (c.scoring == ScoringFunc::kSigmoid) {
      for (int i = 0; i < c.num_experts; ++i) bias.push_back(0.1f * nd(rng));
    }
    Routed got = run(l, bias, t, c), want = sort_reference(l, bias, t, c);
    EXPECT_EQ(got.ids, want.ids) << "seed " << seed << " E " << c.num_experts << " k " << c.top_k;
    EXPECT_EQ(got.w, want.w) << "seed " << seed << " E " << c.num_experts << " k " << c.top_k;
    // Ids of one token are distinct.
    for (int64_t tok = 0; tok < t; ++tok) {
      std::vector<int32_t> row(got.ids.begin() + tok * c.top_k,
                               got.ids.begin() + (tok + 1) * c.top_k);
      std::sort(row.begin(), row.end());
      EXPECT_EQ(std::adjacent_find(row.begin(), row.end()), row.end());
    }
  }
}

// Each bad field is named in the message.
TEST(RefRouting, ValidateNamesTheBadField) {
  auto expect_field = [](RoutingConfig c, const char* field) {
    try {
      validate(c);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  EXPECT_NO_THROW(validate(softmax_cfg(512, 16)));
  EXPECT_NO_THROW(validate(sigmoid_cfg(256, 8, 8, 4)));
  expect_field(softmax_cfg(0, 1), "cfg.num_experts");
  expect_field(softmax_cfg(513, 1), "cfg.num_experts");
  expect_field(softmax_cfg(8, 0), "cfg.top_k");
  expect_field(softmax_cfg(32, 17), "cfg.top_k");
  expect_field(softmax_cfg(4, 5), "cfg.top_k");
  expect_field(sigmoid_cfg(10, 2, 3, 1), "cfg.n_group");
  expect_field(sigmoid_cfg(8, 2, 0, 1), "cfg.n_group");
  expect_field(sigmoid_cfg(8, 2, 4, 0), "cfg.topk_group");
  expect_field(sigmoid_cfg(8, 2, 4, 5), "cfg.topk_group");
  expect_field(sigmoid_cfg(8, 3, 4, 1), "cfg.top_k");  // only 2 experts in 1 kept group
  expect_field(softmax_cfg(8, 2, true, INFINITY), "cfg.routed_scaling_factor");
  expect_field(softmax_cfg(8, 2, true, std::nanf("")), "cfg.routed_scaling_factor");
  RoutingConfig bad_scoring = softmax_cfg(8, 2);
  bad_scoring.scoring = ScoringFunc(3);
  expect_field(bad_scoring, "cfg.scoring");
}

TEST(RefRouting, BadArgumentsThrowAndWriteNothing) {
  std::vector<int32_t> ids(4, -7);
  std::vector<float> w(4, -7.0f), l(16, 0.0f);
  auto expect_error = [&](auto&& fn, const char* needle) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    for (int32_t v : ids) ASSERT_EQ(v, -7);
    for (float v : w) ASSERT_EQ(v, -7.0f);
  };
  expect_error(
      [&] { route(std::span<const float>(l).first(15), {}, 2, softmax_cfg(8, 2), ids, w); },
      "logits");
  expect_error([&] { route(l, std::vector<float>(8, 0.0f), 2, softmax_cfg(8, 2), ids, w); },
               "correction_bias");
  expect_error([&] { route(l, std::vector<float>(7, 0.0f), 2, sigmoid_cfg(8, 2, 1, 1), ids, w); },
               "correction_bias");
  std::vector<float> nan_bias(8, 0.0f);
  nan_bias[3] = std::nanf("");
  expect_error([&] { route(l, nan_bias, 2, sigmoid_cfg(8, 2, 1, 1), ids, w); }, "correction_bias");
  expect_error([&] { route(l, {}, 2, softmax_cfg(8, 2), std::span<int32_t>(ids).first(3), w); },
               "ids");
  expect_error([&] { route(l, {}, 2, softmax_cfg(8, 2), ids, std::span<float>(w).first(3)); },
               "weights");
  expect_error([&] { route(l, {}, -1, softmax_cfg(8, 2), ids, w); }, "tokens");
  // tokens * E and tokens * k wrap int64 to 0, which empty spans would match: an error, not a
  // read past the spans.
  expect_error([&] { route({}, {}, int64_t(1) << 60, softmax_cfg(16, 16), {}, {}); }, "tokens");
  expect_error([&] { route(l, {}, 2, softmax_cfg(8, 0), ids, w); }, "cfg.top_k");
}

}  // namespace
}  // namespace nvfp4moe::ref
