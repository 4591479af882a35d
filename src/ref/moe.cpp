// CPU golden model of the NVFP4 MoE layer forward (include/nvfp4moe/ref/moe.h): config and
// weight validation, and moe_forward, which chains the reference ops step by step exactly as
// the GPU layer must (route, permute, quantize, GEMM1, SiLU*Mul + quantize, GEMM2, combine).
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/ref/moe.h"

#include <algorithm>
#include <cmath>

#include "moe_checks.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/quantize.h"

namespace nvfp4moe {

void validate(const MoeConfig& cfg) {
  NVFP4MOE_CHECK(cfg.hidden > 0 && cfg.hidden % kBlockSize == 0 && cfg.hidden <= kMaxLayerWidth,
                 "cfg.hidden: expected a positive multiple of 16 up to ", kMaxLayerWidth, ", got ", cfg.hidden);
  NVFP4MOE_CHECK(cfg.intermediate > 0 && cfg.intermediate % kBlockSize == 0 && cfg.intermediate <= kMaxLayerWidth,
                 "cfg.intermediate: expected a positive multiple of 16 up to ", kMaxLayerWidth, ", got ",
                 cfg.intermediate);
  validate(cfg.routing);
  NVFP4MOE_CHECK(cfg.n_shared_experts >= 0 && int64_t(cfg.n_shared_experts) * cfg.intermediate <= kMaxLayerWidth,
                 "cfg.n_shared_experts: expected >= 0 with n_shared_experts x intermediate up to ", kMaxLayerWidth,
                 ", got ", cfg.n_shared_experts);
  if (cfg.swiglu_limit) {
    NVFP4MOE_CHECK(std::isfinite(*cfg.swiglu_limit) && *cfg.swiglu_limit > 0.0f,
                   "cfg.swiglu_limit: expected a finite value > 0 when set, got ",
                   *cfg.swiglu_limit);
  }
  NVFP4MOE_CHECK(cfg.act == ActDType::kBF16 || cfg.act == ActDType::kFP16,
                 "cfg.act: expected bf16 or fp16, got ", int(cfg.act));
  NVFP4MOE_CHECK(cfg.mode == MoeMode::kW4A4 || cfg.mode == MoeMode::kW4A16,
                 "cfg.mode: expected kW4A4 (0) or kW4A16 (1), got ", int(cfg.mode));
}

void validate(const MoeConfig& cfg, const MoeWeights& w) {
  validate(cfg);
  ref::detail::check_weight_shapes(cfg, w);
  const int64_t e_count = cfg.routing.num_experts;
  // W4A4 needs every activation scale; W4A16 ignores them but rejects malformed ones.
  const bool need = cfg.mode == MoeMode::kW4A4;
  NVFP4MOE_CHECK((!need && w.gA1.empty()) || int64_t(w.gA1.size()) == e_count,
                 "w.gA1: expected E = ", e_count, " scales", need ? "" : " or none (W4A16)",
                 ", got ", w.gA1.size());
  NVFP4MOE_CHECK((!need && w.gA2.empty()) || int64_t(w.gA2.size()) == e_count,
                 "w.gA2: expected E = ", e_count, " scales", need ? "" : " or none (W4A16)",
                 ", got ", w.gA2.size());
  for (size_t e = 0; e < w.gA1.size(); ++e) ref::detail::check_global_scale(w.gA1[e], "w.gA1", e);
  for (size_t e = 0; e < w.gA2.size(); ++e) ref::detail::check_global_scale(w.gA2[e], "w.gA2", e);
  if (w.shared) {
    ref::detail::check_global_scale(w.shared->gA1, "w.shared.gA1", 0);
    ref::detail::check_global_scale(w.shared->gA2, "w.shared.gA2", 0);
  }
}

namespace ref {
namespace {

std::vector<float> to_float(std::span<const uint16_t> x, ActDType t) {
  std::vector<float> f(x.size());
  for (size_t i = 0; i < x.size(); ++i) f[i] = act_to_float(x[i], t);
  return f;
}

std::vector<uint16_t> rounded(std::span<const float> x, ActDType t) {
  std::vector<uint16_t> r(x.size());
  round_to_act(x, t, r);
  return r;
}

// alpha of one weight: 1 / (gA * g) per half (W4A4), or 1 / g (W4A16, gA = nullopt).
HalfAlpha weight_alpha(const Nvfp4Weight& b, std::optional<float> gA) {
  if (gA) return HalfAlpha{1.0f / (*gA * b.g_lo), 1.0f / (*gA * b.g_hi)};
  return HalfAlpha{1.0f / b.g_lo, 1.0f / b.g_hi};
}

// The shared-expert MLP on all T tokens: per-tensor quantize (W4A4), single GEMMs. Fills the
// trace's shared_* tensors; returns the rounded output as float [T, H].
std::vector<float> shared_expert_forward(const MoeConfig& cfg, const SharedExpertWeights& s,
                                         std::span<const uint16_t> hidden, int64_t tokens,
                                         MoeTrace& tr) {
  const int64_t h = cfg.hidden, is = cfg.intermediate * cfg.n_shared_experts;
  const ActDType act = cfg.act;
  const bool w4a4 = cfg.mode == MoeMode::kW4A4;
  std::vector<float> g1(size_t(tokens * 2 * is)), g2(size_t(tokens * h));
  if (w4a4) {
    std::vector<uint8_t> codes(size_t(tokens * h / 2)),
        scales(size_t(swizzled_scale_bytes(tokens, h)));
    quantize(hidden, act, tokens, h, s.gA1, codes, scales);
    gemm_w4a4(Nvfp4View{codes, scales, tokens, h}, s.w13.view(), weight_alpha(s.w13, s.gA1), g1);
  } else {
    gemm_w4a16(hidden, act, tokens, s.w13.view(), weight_alpha(s.w13, std::nullopt), g1);
  }
  tr.shared_gemm1 = rounded(g1, act);
  tr.shared_act.assign(size_t(tokens * is), 0);
  silu_and_mul(tr.shared_gemm1, act, tokens, is, cfg.swiglu_limit, tr.shared_act);
  if (w4a4) {
    std::vector<uint8_t> codes(size_t(tokens * is / 2)),
        scales(size_t(swizzled_scale_bytes(tokens, is)));
    quantize(tr.shared_act, act, tokens, is, s.gA2, codes, scales);
    gemm_w4a4(Nvfp4View{codes, scales, tokens, is}, s.w2.view(), weight_alpha(s.w2, s.gA2), g2);
  } else {
    gemm_w4a16(tr.shared_act, act, tokens, s.w2.view(), weight_alpha(s.w2, std::nullopt), g2);
  }
  tr.shared_out = rounded(g2, act);
  return to_float(tr.shared_out, act);
}

}  // namespace

void moe_forward(const MoeConfig& cfg, const MoeWeights& w, std::span<const uint16_t> hidden,
                 int64_t tokens, std::span<const float> router_logits, std::span<uint16_t> out,
                 MoeTrace* trace) {
  validate(cfg, w);
  const int64_t h = cfg.hidden, inter = cfg.intermediate, e_count = cfg.routing.num_experts;
  const int k = cfg.routing.top_k;
  check_token_count(tokens, k);
  NVFP4MOE_CHECK(int64_t(hidden.size()) == tokens * h, "hidden: expected tokens*H = ", tokens * h,
                 " elements, got ", hidden.size());
  NVFP4MOE_CHECK(int64_t(router_logits.size()) == tokens * e_count,
                 "router_logits: expected tokens*E = ", tokens * e_count, " floats, got ",
                 router_logits.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == tokens * h, "out: expected tokens*H = ", tokens * h,
                 " elements, got ", out.size());
  const ActDType act = cfg.act;
  const bool w4a4 = cfg.mode == MoeMode::kW4A4;

  MoeTrace local;
  MoeTrace& tr = trace ? *trace : local;
  tr = MoeTrace{};

  // 1-2. Routing and permutation.
  tr.ids.assign(size_t(tokens * k), 0);
  tr.weights.assign(size_t(tokens * k), 0.0f);
  route(router_logits, w.e_score_correction_bias, tokens, cfg.routing, tr.ids, tr.weights);
  tr.perm = permute(tr.ids, tokens, k, int(e_count));
  const int64_t m = tokens * k;
  tr.scale_rows = expert_scale_rows_capacity(m, e_count);
  const std::span<const int32_t> off = tr.perm.off;

  std::vector<Nvfp4View> v13, v2;
  std::vector<HalfAlpha> alpha1, alpha2;
  for (int64_t e = 0; e < e_count; ++e) {
    v13.push_back(w.w13[size_t(e)].view());
    v2.push_back(w.w2[size_t(e)].view());
    alpha1.push_back(weight_alpha(w.w13[size_t(e)],
                                  w4a4 ? std::optional<float>(w.gA1[size_t(e)]) : std::nullopt));
    alpha2.push_back(weight_alpha(w.w2[size_t(e)],
                                  w4a4 ? std::optional<float>(w.gA2[size_t(e)]) : std::nullopt));
  }

  // 3-4. GEMM1 on the expert-sorted rows of hidden.
  tr.gemm1_f32.assign(size_t(m * 2 * inter), 0.0f);
  if (w4a4) {
    tr.a1_codes.assign(size_t(m * h / 2), 0);
    tr.a1_scales.assign(size_t(tr.scale_rows * padded_scale_cols(h)), 0);
    quantize_experts(hidden, act, tokens, h, off, w.gA1, tr.perm.sorted_to_token, m, tr.a1_codes,
                     tr.a1_scales, tr.scale_rows);
    grouped_gemm_w4a4(tr.a1_codes, tr.a1_scales, tr.scale_rows, h, off, v13, alpha1, tr.gemm1_f32);
  } else {
    std::vector<uint16_t> gathered(size_t(m * h));
    for (int64_t i = 0; i < m; ++i) {
      const uint16_t* src = hidden.data() + int64_t(tr.perm.sorted_to_token[size_t(i)]) * h;
      std::copy(src, src + h, gathered.begin() + i * h);
    }
    grouped_gemm_w4a16(gathered, act, h, off, v13, alpha1, tr.gemm1_f32);
  }
  tr.gemm1 = rounded(tr.gemm1_f32, act);

  // 5-6. SiLU*Mul (+ quantization) and GEMM2. The fused quantizer rounds the product to act
  // first, so tr.act is exactly what it quantized.
  tr.act.assign(size_t(m * inter), 0);
  silu_and_mul(tr.gemm1, act, m, inter, cfg.swiglu_limit, tr.act);
  tr.gemm2_f32.assign(size_t(m * h), 0.0f);
  if (w4a4) {
    tr.a2_codes.assign(size_t(m * inter / 2), 0);
    tr.a2_scales.assign(size_t(tr.scale_rows * padded_scale_cols(inter)), 0);
    silu_and_mul_quantize_experts(tr.gemm1, act, m, inter, cfg.swiglu_limit, off, w.gA2,
                                  tr.a2_codes, tr.a2_scales, tr.scale_rows);
    grouped_gemm_w4a4(tr.a2_codes, tr.a2_scales, tr.scale_rows, inter, off, v2, alpha2,
                      tr.gemm2_f32);
  } else {
    grouped_gemm_w4a16(tr.act, act, inter, off, v2, alpha2, tr.gemm2_f32);
  }
  tr.gemm2 = rounded(tr.gemm2_f32, act);

  // 7. Shared expert(s), then the weighted combine in float32 and the final rounding.
  std::vector<float> shared;
  if (cfg.n_shared_experts > 0) shared = shared_expert_forward(cfg, *w.shared, hidden, tokens, tr);
  tr.combined.assign(size_t(tokens * h), 0.0f);
  combine(to_float(tr.gemm2, act), tr.weights, tr.perm.pair_to_sorted, tokens, k, h, shared,
          tr.combined);
  round_to_act(tr.combined, act, out);
}

}  // namespace ref
}  // namespace nvfp4moe
