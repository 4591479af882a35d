// CPU golden model: MoE routing (router logits -> top-k expert ids and weights).
#pragma once

#include <cstdint>
#include <span>

namespace nvfp4moe {

enum class ScoringFunc : int {
  kSoftmax = 0,  // Mixtral / Qwen-MoE: softmax over experts, top-k, optional renormalize
  kSigmoid = 1,  // DeepSeek-V3: sigmoid scores, correction bias for selection, groups
};

struct RoutingConfig {
  int num_experts = 0;        // E, 1..512
  int top_k = 0;              // 1..16, <= E
  ScoringFunc scoring = ScoringFunc::kSoftmax;
  bool renormalize = true;    // divide the k weights by their sum (norm_topk_prob)
  int n_group = 1;            // sigmoid only: expert groups (E % n_group == 0)
  int topk_group = 1;         // sigmoid only: groups kept (1..n_group)
  float routed_scaling_factor = 1.0f;  // multiplies the final weights (both scorings)
};

// Throws nvfp4moe::Error naming the bad field.
void validate(const RoutingConfig& cfg);

namespace ref {

// Route T tokens. logits: [T, E] float32. correction_bias: [E] or empty (sigmoid only; used
// for selection, never in the weights). Outputs ids [T, k] int32 and weights [T, k] float32,
// each token's k choices in descending order of selection score, ties to the lower expert id.
//
// Softmax: p = softmax(logits) (max-subtracted, float); pick the k largest p;
//   w = p (renormalized: w / sum(w) when cfg.renormalize); w *= routed_scaling_factor.
// Sigmoid (DeepSeek-V3): s = 1 / (1 + exp(-logit)); c = s + bias;
//   group score = sum of the two largest c in the group (the single one if a group has 1);
//   keep the topk_group best groups (ties to the lower group index); among their experts
//   pick the k largest c; w = s of the picked experts; renormalized: w / (sum(w) + 1e-20)
//   when cfg.renormalize; w *= routed_scaling_factor.
//
// Arithmetic, all float32: softmax p_i = exp(l_i - max_l) / S with S summed over i ascending;
// sigmoid s_i = 1 / (1 + exp(-l_i)); the renormalizing sum runs over the slots j ascending
// (the picked order). Ranking: larger first, equal to the lower index, NaN below every number
// (a NaN logit never yields an out-of-range id; its token's weights may come out NaN).
// Errors: correction_bias given with softmax scoring, or with a non-finite entry; sizes.
// (The reference calls std::exp; a GPU expf may differ by an ulp, so compare weights with a
// small tolerance, ids exactly except where scores are within that tolerance.)
void route(std::span<const float> logits, std::span<const float> correction_bias, int64_t tokens,
           const RoutingConfig& cfg, std::span<int32_t> ids, std::span<float> weights);

}  // namespace ref
}  // namespace nvfp4moe
