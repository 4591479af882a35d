// The float32 MoE layer (include/nvfp4moe/ref/moe.h, moe_forward_unquantized): the same
// routing, SwiGLU and combine as moe_forward, with float weights and no quantization or
// rounding anywhere, for accuracy reports.
#include <algorithm>
#include <cmath>

#include "moe_checks.h"
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::ref {
namespace {

// x [rows, 2*inter] (gate | up) -> out [rows, inter] = silu(gate') * up' in float, with the
// clamp of ref/quantize.h silu_and_mul (gate' = min(gate, l), up' = clamp(up, -l, l)).
void swiglu_f32(const float* x, int64_t rows, int64_t inter, std::optional<float> limit,
                float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < inter; ++c) {
      float gate = x[r * 2 * inter + c], up = x[r * 2 * inter + inter + c];
      if (limit) {
        const float l = *limit;
        gate = (gate > l) ? l : gate;
        up = (up > l) ? l : (up < -l) ? -l : up;
      }
      out[r * inter + c] = (gate / (1.0f + std::exp(-gate))) * up;
    }
  }
}

// One float MLP: x [rows, H] -> out [rows, H] through w13 [2 inter, H] and w2 [H, inter].
void mlp_f32(const float* x, int64_t rows, int64_t h, int64_t inter, const std::vector<float>& w13,
             const std::vector<float>& w2, std::optional<float> limit, float* out) {
  std::vector<float> g1(size_t(rows * 2 * inter)), a(size_t(rows * inter));
  gemm_f32({x, size_t(rows * h)}, rows, w13, 2 * inter, h, g1);
  swiglu_f32(g1.data(), rows, inter, limit, a.data());
  gemm_f32(a, rows, w2, h, inter, {out, size_t(rows * h)});
}

}  // namespace

void moe_forward_unquantized(const MoeConfig& cfg, const MoeFloatWeights& w,
                             std::span<const float> hidden, int64_t tokens,
                             std::span<const float> router_logits, std::span<float> out) {
  validate(cfg);
  detail::check_float_weight_shapes(cfg, w);
  const int64_t h = cfg.hidden, inter = cfg.intermediate, e_count = cfg.routing.num_experts;
  const int k = cfg.routing.top_k;
  check_token_count(tokens, k);
  NVFP4MOE_CHECK(int64_t(hidden.size()) == tokens * h, "hidden: expected tokens*H = ", tokens * h,
                 " floats, got ", hidden.size());
  NVFP4MOE_CHECK(int64_t(router_logits.size()) == tokens * e_count,
                 "router_logits: expected tokens*E = ", tokens * e_count, " floats, got ",
                 router_logits.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == tokens * h, "out: expected tokens*H = ", tokens * h,
                 " floats, got ", out.size());

  std::vector<int32_t> ids(size_t(tokens * k));
  std::vector<float> weights(size_t(tokens * k));
  route(router_logits, w.e_score_correction_bias, tokens, cfg.routing, ids, weights);
  const Permutation perm = permute(ids, tokens, k, int(e_count));

  std::vector<float> rows(size_t(tokens * k * h));
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t r0 = perm.off[size_t(e)], n = perm.off[size_t(e + 1)] - r0;
    if (n == 0) continue;
    std::vector<float> x(size_t(n * h));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = perm.sorted_to_token[size_t(r0 + i)];
      std::copy(hidden.begin() + t * h, hidden.begin() + (t + 1) * h, x.begin() + i * h);
    }
    mlp_f32(x.data(), n, h, inter, w.w13[size_t(e)], w.w2[size_t(e)], cfg.swiglu_limit,
            rows.data() + r0 * h);
  }
  std::vector<float> shared;
  if (cfg.n_shared_experts > 0) {
    shared.assign(size_t(tokens * h), 0.0f);
    mlp_f32(hidden.data(), tokens, h, inter * cfg.n_shared_experts, w.shared_w13, w.shared_w2,
            cfg.swiglu_limit, shared.data());
  }
  combine(rows, weights, perm.pair_to_sorted, tokens, k, h, shared, out);
}

}  // namespace nvfp4moe::ref
