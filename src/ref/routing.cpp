// CPU golden model of MoE routing (include/nvfp4moe/ref/routing.h).
//
// Selection uses one total order everywhere: a larger score wins, equal scores go to the lower
// index, and NaN ranks below every number (so a NaN logit never yields an out-of-range id;
// its weights come out NaN, visible downstream). All arithmetic is float32, sums in slot order.
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/ref/routing.h"

#include <cmath>
#include <limits>
#include <vector>

#include "nvfp4moe/common/error.h"

namespace nvfp4moe {

void validate(const RoutingConfig& cfg) {
  NVFP4MOE_CHECK(cfg.num_experts >= 1 && cfg.num_experts <= 512,
                 "cfg.num_experts: expected 1..512, got ", cfg.num_experts);
  NVFP4MOE_CHECK(cfg.top_k >= 1 && cfg.top_k <= 16, "cfg.top_k: expected 1..16, got ", cfg.top_k);
  NVFP4MOE_CHECK(cfg.top_k <= cfg.num_experts,
                 "cfg.top_k: expected <= num_experts = ", cfg.num_experts, ", got ", cfg.top_k);
  NVFP4MOE_CHECK(cfg.scoring == ScoringFunc::kSoftmax || cfg.scoring == ScoringFunc::kSigmoid,
                 "cfg.scoring: expected kSoftmax (0) or kSigmoid (1), got ", int(cfg.scoring));
  NVFP4MOE_CHECK(cfg.n_group >= 1 && cfg.num_experts % cfg.n_group == 0,
                 "cfg.n_group: expected a positive divisor of num_experts = ", cfg.num_experts,
                 ", got ", cfg.n_group);
  NVFP4MOE_CHECK(cfg.topk_group >= 1 && cfg.topk_group <= cfg.n_group,
                 "cfg.topk_group: expected 1..n_group = ", cfg.n_group, ", got ", cfg.topk_group);
  if (cfg.scoring == ScoringFunc::kSigmoid) {
    int kept = cfg.topk_group * (cfg.num_experts / cfg.n_group);
    NVFP4MOE_CHECK(cfg.top_k <= kept,
                   "cfg.top_k: expected <= topk_group * num_experts / n_group = ", kept,
                   " (experts in the kept groups), got ", cfg.top_k);
  }
  NVFP4MOE_CHECK(std::isfinite(cfg.routed_scaling_factor),
                 "cfg.routed_scaling_factor: expected a finite value, got ",
                 cfg.routed_scaling_factor);
}

namespace ref {
namespace {

// True when (a, ia) ranks before (b, ib): larger first, ties to the lower index, NaN last.
inline bool ranks_before(float a, int ia, float b, int ib) {
  bool na = std::isnan(a), nb = std::isnan(b);
  if (na != nb) return nb;
  if (!na && a != b) return a > b;
  return ia < ib;
}

// The k best of score[i] for the i with allowed[i], best first, into out[0..k).
void top_k_indices(const float* score, const std::vector<char>& allowed, int n, int k,
                   int32_t* out) {
  std::vector<char> taken(size_t(n), 0);
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int i = 0; i < n; ++i) {
      if (!allowed[size_t(i)] || taken[size_t(i)]) continue;
      if (best < 0 || ranks_before(score[i], i, score[best], best)) best = i;
    }
    taken[size_t(best)] = 1;  // validate() guarantees k allowed candidates
    out[j] = best;
  }
}

void route_softmax(const float* logits, const RoutingConfig& cfg, int32_t* ids, float* w) {
  const int e_count = cfg.num_experts, k = cfg.top_k;
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < e_count; ++i) {
    if (logits[i] > mx) mx = logits[i];  // NaN skipped
  }
  std::vector<float> p(static_cast<size_t>(e_count));
  float sum = 0.0f;
  for (int i = 0; i < e_count; ++i) {
    p[size_t(i)] = std::exp(logits[i] - mx);
    sum += p[size_t(i)];
  }
  for (int i = 0; i < e_count; ++i) p[size_t(i)] = p[size_t(i)] / sum;
  std::vector<char> all(size_t(e_count), 1);
  top_k_indices(p.data(), all, e_count, k, ids);
  for (int j = 0; j < k; ++j) w[j] = p[size_t(ids[j])];
  if (cfg.renormalize) {
    float s = 0.0f;
    for (int j = 0; j < k; ++j) s += w[j];
    for (int j = 0; j < k; ++j) w[j] = w[j] / s;
  }
  for (int j = 0; j < k; ++j) w[j] = w[j] * cfg.routed_scaling_factor;
}

void route_sigmoid(const float* logits, const float* bias, const RoutingConfig& cfg, int32_t* ids,
                   float* w) {
  const int e_count = cfg.num_experts, k = cfg.top_k;
  const int group_size = e_count / cfg.n_group;
  std::vector<float> s(static_cast<size_t>(e_count)), c(static_cast<size_t>(e_count));
  for (int i = 0; i < e_count; ++i) {
    s[size_t(i)] = 1.0f / (1.0f + std::exp(-logits[i]));
    c[size_t(i)] = bias ? s[size_t(i)] + bias[i] : s[size_t(i)];
  }
  // Group score: sum of the group's two best corrected scores (the single one for size 1).
  std::vector<float> group_score(size_t(cfg.n_group));
  std::vector<char> in_group(size_t(group_size), 1);
  for (int g = 0; g < cfg.n_group; ++g) {
    const float* cg = c.data() + g * group_size;
    int32_t best2[2];
    int take = group_size >= 2 ? 2 : 1;
    top_k_indices(cg, in_group, group_size, take, best2);
    group_score[size_t(g)] = take == 2 ? cg[best2[0]] + cg[best2[1]] : cg[best2[0]];
  }
  std::vector<int32_t> kept(size_t(cfg.topk_group));
  std::vector<char> all_groups(size_t(cfg.n_group), 1);
  top_k_indices(group_score.data(), all_groups, cfg.n_group, cfg.topk_group, kept.data());
  std::vector<char> allowed(size_t(e_count), 0);
  for (int32_t g : kept) {
    for (int i = 0; i < group_size; ++i) allowed[size_t(g * group_size + i)] = 1;
  }
  top_k_indices(c.data(), allowed, e_count, k, ids);
  for (int j = 0; j < k; ++j) w[j] = s[size_t(ids[j])];
  if (cfg.renormalize) {
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum += w[j];
    sum = sum + 1e-20f;
    for (int j = 0; j < k; ++j) w[j] = w[j] / sum;
  }
  for (int j = 0; j < k; ++j) w[j] = w[j] * cfg.routed_scaling_factor;
}

}  // namespace

void route(std::span<const float> logits, std::span<const float> correction_bias, int64_t tokens,
           const RoutingConfig& cfg, std::span<int32_t> ids, std::span<float> weights) {
  validate(cfg);
  const int64_t e_count = cfg.num_experts, k = cfg.top_k;
  check_token_count(tokens, cfg.top_k);
  NVFP4MOE_CHECK(int64_t(logits.size()) == tokens * e_count,
                 "logits: expected tokens*E = ", tokens * e_count, " floats, got ", logits.size());
  if (!correction_bias.empty()) {
    NVFP4MOE_CHECK(cfg.scoring == ScoringFunc::kSigmoid,
                   "correction_bias: only sigmoid scoring uses it; pass it empty for softmax");
    NVFP4MOE_CHECK(int64_t(correction_bias.size()) == e_count,
                   "correction_bias: expected E = ", e_count, " floats, got ",
                   correction_bias.size());
    for (int64_t i = 0; i < e_count; ++i) {
      NVFP4MOE_CHECK(std::isfinite(correction_bias[size_t(i)]),
                     "correction_bias: expected finite values, got ", correction_bias[size_t(i)],
                     " at expert ", i);
    }
  }
  NVFP4MOE_CHECK(int64_t(ids.size()) == tokens * k, "ids: expected tokens*k = ", tokens * k,
                 " entries, got ", ids.size());
  NVFP4MOE_CHECK(int64_t(weights.size()) == tokens * k, "weights: expected tokens*k = ", tokens * k,
                 " floats, got ", weights.size());
  const float* bias = correction_bias.empty() ? nullptr : correction_bias.data();
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = logits.data() + t * e_count;
    if (cfg.scoring == ScoringFunc::kSoftmax) {
      route_softmax(row, cfg, ids.data() + t * k, weights.data() + t * k);
    } else {
      route_sigmoid(row, bias, cfg, ids.data() + t * k, weights.data() + t * k);
    }
  }
}

}  // namespace ref
}  // namespace nvfp4moe
