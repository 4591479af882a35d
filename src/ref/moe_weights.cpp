// MoE layer weights in the golden model (include/nvfp4moe/ref/moe.h): shape checks, NVFP4
// quantization and dequantization of weights, and the static activation-scale calibration.
#include <algorithm>
#include <cmath>

#include "moe_checks.h"
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/moe.h"
#include "nvfp4moe/ref/quantize.h"
#include "parallel_for.h"

namespace nvfp4moe::ref {
namespace detail {

// An activation (encode) global scale: the quantizers need g <= kMaxGlobalScale (above it the
// block multiplier overflows and zeros encode as +6; format/block_quant.h).
void check_global_scale(float g, const char* name, size_t index) {
  NVFP4MOE_CHECK(is_usable_global_scale(g), name, " (index ", index, "): expected a global scale in (0, ",
                 kMaxGlobalScale, "], got ", g);
}

void check_nvfp4_weight(const Nvfp4Weight& w, int64_t rows, int64_t k, bool single_scale,
                        const char* name, size_t index) {
  NVFP4MOE_CHECK(w.rows == rows && w.k == k, name, "[", index, "]: expected a [", rows, ", ", k,
                 "] weight, got [", w.rows, ", ", w.k, "]");
  NVFP4MOE_CHECK(int64_t(w.codes.size()) == rows * k / 2, name, "[", index, "].codes: expected ",
                 rows * k / 2, " bytes, got ", w.codes.size());
  NVFP4MOE_CHECK(int64_t(w.scales.size()) == swizzled_scale_bytes(rows, k), name, "[", index,
                 "].scales: expected swizzled_scale_bytes = ", swizzled_scale_bytes(rows, k),
                 " bytes, got ", w.scales.size());
  NVFP4MOE_CHECK(std::isfinite(w.g_lo) && w.g_lo > 0.0f && std::isfinite(w.g_hi) && w.g_hi > 0.0f,
                 name, "[", index, "]: expected finite global scales > 0, got g_lo = ", w.g_lo,
                 ", g_hi = ", w.g_hi);
  NVFP4MOE_CHECK(!single_scale || w.g_lo == w.g_hi, name, "[", index,
                 "]: expected one global scale (g_lo == g_hi), got g_lo = ", w.g_lo,
                 ", g_hi = ", w.g_hi);
}

void check_correction_bias(const MoeConfig& cfg, const std::vector<float>& bias) {
  if (bias.empty()) return;
  const int64_t e_count = cfg.routing.num_experts;
  NVFP4MOE_CHECK(
      cfg.routing.scoring == ScoringFunc::kSigmoid,
      "e_score_correction_bias: only sigmoid scoring uses it; expected empty for softmax");
  NVFP4MOE_CHECK(int64_t(bias.size()) == e_count, "e_score_correction_bias: expected E = ", e_count,
                 " values, got ", bias.size());
  for (size_t e = 0; e < bias.size(); ++e) {
    NVFP4MOE_CHECK(std::isfinite(bias[e]), "e_score_correction_bias: expected finite values, got ",
                   bias[e], " at expert ", e);
  }
}

void check_weight_shapes(const MoeConfig& cfg, const MoeWeights& w) {
  const int64_t e_count = cfg.routing.num_experts, h = cfg.hidden, inter = cfg.intermediate;
  NVFP4MOE_CHECK(int64_t(w.w13.size()) == e_count, "w.w13: expected E = ", e_count,
                 " weights, got ", w.w13.size());
  NVFP4MOE_CHECK(int64_t(w.w2.size()) == e_count, "w.w2: expected E = ", e_count, " weights, got ",
                 w.w2.size());
  for (size_t e = 0; e < size_t(e_count); ++e) {
    check_nvfp4_weight(w.w13[e], 2 * inter, h, false, "w.w13", e);
    check_nvfp4_weight(w.w2[e], h, inter, true, "w.w2", e);
  }
  check_correction_bias(cfg, w.e_score_correction_bias);
  NVFP4MOE_CHECK(w.shared.has_value() == (cfg.n_shared_experts > 0),
                 "w.shared: expected shared-expert weights iff cfg.n_shared_experts > 0 (it is ",
                 cfg.n_shared_experts, "), got ", w.shared ? "some" : "none");
  if (w.shared) {
    const int64_t is = inter * cfg.n_shared_experts;
    check_nvfp4_weight(w.shared->w13, 2 * is, h, false, "w.shared.w13", 0);
    check_nvfp4_weight(w.shared->w2, h, is, true, "w.shared.w2", 0);
  }
}

void check_float_weight_shapes(const MoeConfig& cfg, const MoeFloatWeights& w) {
  const int64_t e_count = cfg.routing.num_experts, h = cfg.hidden, inter = cfg.intermediate;
  const int64_t is = inter * cfg.n_shared_experts;
  NVFP4MOE_CHECK(int64_t(w.w13.size()) == e_count, "w.w13: expected E = ", e_count,
                 " weights, got ", w.w13.size());
  NVFP4MOE_CHECK(int64_t(w.w2.size()) == e_count, "w.w2: expected E = ", e_count, " weights, got ",
                 w.w2.size());
  for (size_t e = 0; e < size_t(e_count); ++e) {
    NVFP4MOE_CHECK(int64_t(w.w13[e].size()) == 2 * inter * h, "w.w13[", e,
                   "]: expected 2I*H = ", 2 * inter * h, " floats, got ", w.w13[e].size());
    NVFP4MOE_CHECK(int64_t(w.w2[e].size()) == h * inter, "w.w2[", e,
                   "]: expected H*I = ", h * inter, " floats, got ", w.w2[e].size());
  }
  check_correction_bias(cfg, w.e_score_correction_bias);
  NVFP4MOE_CHECK(int64_t(w.shared_w13.size()) == 2 * is * h,
                 "w.shared_w13: expected 2*Is*H = ", 2 * is * h,
                 " floats (Is = n_shared_experts * I), got ", w.shared_w13.size());
  NVFP4MOE_CHECK(int64_t(w.shared_w2.size()) == h * is, "w.shared_w2: expected H*Is = ", h * is,
                 " floats (Is = n_shared_experts * I), got ", w.shared_w2.size());
}

}  // namespace detail

Nvfp4Weight quantize_weight(std::span<const float> w, int64_t rows, int64_t k, bool split_halves) {
  NVFP4MOE_CHECK(rows > 0, "rows: expected > 0, got ", rows);
  NVFP4MOE_CHECK(k > 0 && k % kBlockSize == 0, "k: expected a positive multiple of 16, got ", k);
  NVFP4MOE_CHECK(int64_t(w.size()) == rows * k, "w: expected rows*k = ", rows * k, " floats, got ",
                 w.size());
  NVFP4MOE_CHECK(!split_halves || rows % 2 == 0,
                 "rows: expected an even count with split_halves, got ", rows);
  const int64_t half = split_halves ? rows / 2 : rows;
  float amax_lo = 0.0f, amax_hi = 0.0f;
  for (int64_t i = 0; i < rows * k; ++i) {
    float& a = (i < half * k) ? amax_lo : amax_hi;
    a = abs_max_ignore_nan(a, w[size_t(i)]);
  }
  Nvfp4Weight q;
  q.rows = rows;
  q.k = k;
  q.g_lo = global_scale_from_amax(amax_lo);
  q.g_hi = split_halves ? global_scale_from_amax(amax_hi) : q.g_lo;
  q.codes.assign(size_t(rows * k / 2), 0);
  q.scales.assign(size_t(swizzled_scale_bytes(rows, k)), 0);
  const int64_t pc = padded_scale_cols(k);
  detail::parallel_for(rows, std::max<int64_t>(1, 16384 / k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float g = r < rows / 2 ? q.g_lo : q.g_hi;
      for (int64_t j = 0; j < k / kBlockSize; ++j) {
        quantize_block16(w.data() + r * k + j * kBlockSize, g, q.codes.data() + r * k / 2 + j * 8,
                         q.scales.data() + swizzled_scale_offset(r, j, pc));
      }
    }
  });
  return q;
}

std::vector<float> dequantize_weight(const Nvfp4Weight& w) {
  NVFP4MOE_CHECK(w.rows > 0 && w.k > 0 && w.k % kBlockSize == 0,
                 "w: expected rows > 0 and k a positive multiple of 16, got [", w.rows, ", ", w.k,
                 "]");
  detail::check_nvfp4_weight(w, w.rows, w.k, false, "w", 0);
  std::vector<float> out(size_t(w.rows * w.k));
  const int64_t pc = padded_scale_cols(w.k);
  detail::parallel_for(w.rows, std::max<int64_t>(1, 16384 / w.k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float g = r < w.rows / 2 ? w.g_lo : w.g_hi;
      for (int64_t c = 0; c < w.k; ++c) {
        const uint8_t s = w.scales[size_t(swizzled_scale_offset(r, c / kBlockSize, pc))];
        out[size_t(r * w.k + c)] =
            dequantize_element(e2m1_code_at(w.codes.data() + r * w.k / 2, c), s, g);
      }
    }
  });
  return out;
}

MoeWeights quantize_weights(const MoeConfig& cfg, const MoeFloatWeights& w) {
  validate(cfg);
  detail::check_float_weight_shapes(cfg, w);
  const int64_t h = cfg.hidden, inter = cfg.intermediate, is = inter * cfg.n_shared_experts;
  MoeWeights q;
  for (size_t e = 0; e < w.w13.size(); ++e) {
    q.w13.push_back(quantize_weight(w.w13[e], 2 * inter, h, true));
    q.w2.push_back(quantize_weight(w.w2[e], h, inter, false));
  }
  q.e_score_correction_bias = w.e_score_correction_bias;
  if (cfg.n_shared_experts > 0) {
    q.shared = SharedExpertWeights{quantize_weight(w.shared_w13, 2 * is, h, true),
                                   quantize_weight(w.shared_w2, h, is, false), 1.0f, 1.0f};
  }
  return q;
}

MoeFloatWeights dequantize_weights(const MoeConfig& cfg, const MoeWeights& w) {
  validate(cfg);
  detail::check_weight_shapes(cfg, w);
  MoeFloatWeights f;
  for (size_t e = 0; e < w.w13.size(); ++e) {
    f.w13.push_back(dequantize_weight(w.w13[e]));
    f.w2.push_back(dequantize_weight(w.w2[e]));
  }
  f.e_score_correction_bias = w.e_score_correction_bias;
  if (w.shared) {
    f.shared_w13 = dequantize_weight(w.shared->w13);
    f.shared_w2 = dequantize_weight(w.shared->w2);
  }
  return f;
}

namespace {

// amax over rows [r0, r1) of x [*, cols] (act bits), NaN ignored.
float rows_amax(std::span<const uint16_t> x, int64_t cols, int64_t r0, int64_t r1, ActDType act) {
  float a = 0.0f;
  for (int64_t i = r0 * cols; i < r1 * cols; ++i)
    a = abs_max_ignore_nan(a, act_to_float(x[size_t(i)], act));
  return a;
}

// silu_and_mul(round(x [rows, K] @ W13^T / g)): the W4A16 intermediate of one weight.
std::vector<uint16_t> w4a16_intermediate(const MoeConfig& cfg, const Nvfp4Weight& w13,
                                         std::span<const uint16_t> x, int64_t rows) {
  const int64_t inter = w13.rows / 2;
  std::vector<float> g1(size_t(rows * w13.rows));
  gemm_w4a16(x, cfg.act, rows, w13.view(), HalfAlpha{1.0f / w13.g_lo, 1.0f / w13.g_hi}, g1);
  std::vector<uint16_t> g1r(g1.size()), out(size_t(rows * inter));
  round_to_act(g1, cfg.act, g1r);
  silu_and_mul(g1r, cfg.act, rows, inter, cfg.swiglu_limit, out);
  return out;
}

}  // namespace

ActivationScales calibrate_activation_scales(const MoeConfig& cfg, const MoeWeights& w,
                                             std::span<const uint16_t> hidden, int64_t tokens,
                                             std::span<const float> router_logits) {
  validate(cfg);
  detail::check_weight_shapes(cfg, w);
  const int64_t h = cfg.hidden, inter = cfg.intermediate, e_count = cfg.routing.num_experts;
  const int k = cfg.routing.top_k;
  NVFP4MOE_CHECK(tokens >= 1, "tokens: calibration needs at least one token, got ", tokens);
  check_token_count(tokens, k);
  NVFP4MOE_CHECK(int64_t(hidden.size()) == tokens * h, "hidden: expected tokens*H = ", tokens * h,
                 " elements, got ", hidden.size());
  NVFP4MOE_CHECK(int64_t(router_logits.size()) == tokens * e_count,
                 "router_logits: expected tokens*E = ", tokens * e_count, " floats, got ",
                 router_logits.size());

  std::vector<int32_t> ids(size_t(tokens * k));
  std::vector<float> weights(size_t(tokens * k));
  route(router_logits, w.e_score_correction_bias, tokens, cfg.routing, ids, weights);
  const Permutation perm = permute(ids, tokens, k, int(e_count));
  const float all_amax1 = rows_amax(hidden, h, 0, tokens, cfg.act);

  std::vector<float> amax1(size_t(e_count), 0.0f), amax2(size_t(e_count), 0.0f);
  float all_amax2 = 0.0f;
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t r0 = perm.off[size_t(e)], rows = perm.off[size_t(e + 1)] - r0;
    if (rows == 0) continue;
    std::vector<uint16_t> x(size_t(rows * h));
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t t = perm.sorted_to_token[size_t(r0 + i)];
      std::copy(hidden.begin() + t * h, hidden.begin() + (t + 1) * h, x.begin() + i * h);
    }
    amax1[size_t(e)] = rows_amax(x, h, 0, rows, cfg.act);
    amax2[size_t(e)] =
        rows_amax(w4a16_intermediate(cfg, w.w13[size_t(e)], x, rows), inter, 0, rows, cfg.act);
    all_amax2 = std::max(all_amax2, amax2[size_t(e)]);
  }

  ActivationScales s;
  for (int64_t e = 0; e < e_count; ++e) {
    const bool seen = perm.counts[size_t(e)] > 0;
    s.gA1.push_back(global_scale_from_amax(seen ? amax1[size_t(e)] : all_amax1));
    s.gA2.push_back(global_scale_from_amax(seen ? amax2[size_t(e)] : all_amax2));
  }
  if (w.shared) {
    s.shared_gA1 = global_scale_from_amax(all_amax1);
    const int64_t is = inter * cfg.n_shared_experts;
    s.shared_gA2 = global_scale_from_amax(
        rows_amax(w4a16_intermediate(cfg, w.shared->w13, hidden, tokens), is, 0, tokens, cfg.act));
  }
  return s;
}

void apply_activation_scales(const ActivationScales& s, MoeWeights& w) {
  NVFP4MOE_CHECK(s.gA1.size() == w.w13.size() && s.gA2.size() == w.w13.size(),
                 "s: expected E = ", w.w13.size(), " scales in gA1 and gA2, got ", s.gA1.size(),
                 " and ", s.gA2.size());
  for (size_t e = 0; e < s.gA1.size(); ++e) {
    detail::check_global_scale(s.gA1[e], "s.gA1", e);
    detail::check_global_scale(s.gA2[e], "s.gA2", e);
  }
  detail::check_global_scale(s.shared_gA1, "s.shared_gA1", 0);
  detail::check_global_scale(s.shared_gA2, "s.shared_gA2", 0);
  w.gA1 = s.gA1;
  w.gA2 = s.gA2;
  if (w.shared) {
    w.shared->gA1 = s.shared_gA1;
    w.shared->gA2 = s.shared_gA2;
  }
}

void share_activation_scales(MoeWeights& w) {
  NVFP4MOE_CHECK(!w.gA1.empty() && w.gA1.size() == w.w13.size() && w.gA2.size() == w.w13.size(),
                 "w: expected one activation scale per routed expert in gA1 and gA2 (", w.w13.size(), "), got ",
                 w.gA1.size(), " and ", w.gA2.size());
  const float g1 = *std::min_element(w.gA1.begin(), w.gA1.end());
  const float g2 = *std::min_element(w.gA2.begin(), w.gA2.end());
  std::fill(w.gA1.begin(), w.gA1.end(), g1);
  std::fill(w.gA2.begin(), w.gA2.end(), g2);
}

}  // namespace nvfp4moe::ref
