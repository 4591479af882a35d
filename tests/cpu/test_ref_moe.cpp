// Golden model, the MoE layer (ref/moe.h): accuracy of W4A4 / W4A16 against the float32 layer
// on random data, every traced stage against an independent recomputation, the routed path
// against the shared-expert path on the same weights (bit for bit), T = 0 and 1, all tokens on
// one expert, mostly empty experts, shared experts on and off, repeated runs, weight
// quantization by hand, the calibration policy, and argument errors that leave out untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/moe.h"
#include "nvfp4moe/ref/quantize.h"

namespace nvfp4moe::ref {
namespace {

MoeConfig make_cfg(int e, int k, int64_t h, int64_t inter, int n_shared = 0,
                   ActDType act = ActDType::kBF16, MoeMode mode = MoeMode::kW4A4) {
  MoeConfig c;
  c.hidden = h;
  c.intermediate = inter;
  c.routing.num_experts = e;
  c.routing.top_k = k;
  c.n_shared_experts = n_shared;
  c.act = act;
  c.mode = mode;
  return c;
}

MoeConfig deepseek_cfg(int n_shared) {
  MoeConfig c = make_cfg(16, 4, 96, 48, n_shared);
  c.routing.scoring = ScoringFunc::kSigmoid;
  c.routing.n_group = 4;
  c.routing.topk_group = 2;
  c.routing.routed_scaling_factor = 2.5f;
  return c;
}

std::vector<float> normal(size_t n, float sd, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

MoeFloatWeights random_float_weights(const MoeConfig& c, std::mt19937& rng) {
  const int64_t h = c.hidden, i = c.intermediate, is = i * c.n_shared_experts;
  MoeFloatWeights w;
  for (int e = 0; e < c.routing.num_experts; ++e) {
    w.w13.push_back(normal(size_t(2 * i * h), 1.0f / std::sqrt(float(h)), rng));
    w.w2.push_back(normal(size_t(h * i), 1.0f / std::sqrt(float(i)), rng));
  }
  if (c.routing.scoring == ScoringFunc::kSigmoid)
    w.e_score_correction_bias = normal(size_t(c.routing.num_experts), 0.05f, rng);
  if (is > 0) {
    w.shared_w13 = normal(size_t(2 * is * h), 1.0f / std::sqrt(float(h)), rng);
    w.shared_w2 = normal(size_t(h * is), 1.0f / std::sqrt(float(is)), rng);
  }
  return w;
}

std::vector<uint16_t> to_act(const std::vector<float>& x, ActDType t) {
  std::vector<uint16_t> b(x.size());
  for (size_t i = 0; i < x.size(); ++i) b[i] = act_from_float(x[i], t);
  return b;
}

std::vector<float> from_act(const std::vector<uint16_t>& x, ActDType t) {
  std::vector<float> f(x.size());
  for (size_t i = 0; i < x.size(); ++i) f[i] = act_to_float(x[i], t);
  return f;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

// A quantized layer calibrated on its own batch, with the float weights and the batch.
struct Layer {
  MoeConfig cfg;
  MoeFloatWeights fw;
  MoeWeights qw;
  std::vector<uint16_t> hidden;
  std::vector<float> logits;
  int64_t tokens = 0;
};

Layer make_layer(const MoeConfig& cfg, int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  Layer l;
  l.cfg = cfg;
  l.tokens = tokens;
  l.fw = random_float_weights(cfg, rng);
  l.qw = quantize_weights(cfg, l.fw);
  l.hidden = to_act(normal(size_t(tokens * cfg.hidden), 1.0f, rng), cfg.act);
  l.logits = normal(size_t(tokens * cfg.routing.num_experts), 1.0f, rng);
  if (tokens > 0)
    apply_activation_scales(calibrate_activation_scales(cfg, l.qw, l.hidden, tokens, l.logits),
                            l.qw);
  return l;
}

std::vector<uint16_t> forward(const Layer& l, MoeTrace* tr = nullptr,
                              std::optional<MoeMode> mode = std::nullopt) {
  MoeConfig c = l.cfg;
  if (mode) c.mode = *mode;
  std::vector<uint16_t> out(size_t(l.tokens * c.hidden), 0xDEAD);
  moe_forward(c, l.qw, l.hidden, l.tokens, l.logits, out, tr);
  return out;
}

std::vector<float> forward_float(const Layer& l, const MoeFloatWeights& w) {
  std::vector<float> out(size_t(l.tokens * l.cfg.hidden));
  moe_forward_unquantized(l.cfg, w, from_act(l.hidden, l.cfg.act), l.tokens, l.logits, out);
  return out;
}

::testing::AssertionResult same_u16(const std::vector<uint16_t>& got,
                                    const std::vector<uint16_t>& want, int64_t cols) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " mismatches; first at (" << first / cols << ", " << first % cols << "): got 0x"
         << std::hex << got[size_t(first)] << ", want 0x" << want[size_t(first)];
}

// Relative errors (Frobenius) against the float32 layer on random data (normal hidden,
// N(0, 1/K) weights). One NVFP4 operand of Gaussian data carries a relative error of about
// 0.094 (16-element blocks, amax -> 6); errors of independent operands add in quadrature:
//   W4A16: gate, up (0.094 each) -> intermediate ~0.13, GEMM2 weight -> ~0.16 (measured 0.16-0.17)
//   W4A4:  every operand twice as noisy (~0.133) -> ~0.23 (measured 0.23-0.24)
//   against the dequantized weights only activations are quantized: W4A4 ~0.16, W4A16 only
//   rounds intermediates to bf16/fp16 (measured <= 0.004).
// Bounds leave room for other seeds: 0.30, 0.22, 0.21 and 0.01.
TEST(RefMoe, AccuracyAgainstTheFloatLayer) {
  MoeConfig limit_cfg = make_cfg(8, 2, 64, 32, 0);
  limit_cfg.swiglu_limit = 1.5f;
  const std::vector<MoeConfig> cfgs = {make_cfg(8, 2, 128, 64, 0), make_cfg(8, 2, 128, 64, 1),
                                       deepseek_cfg(2), make_cfg(6, 3, 64, 32, 0, ActDType::kFP16),
                                       limit_cfg};
  uint32_t seed = 100;
  for (const MoeConfig& c : cfgs) {
    Layer l = make_layer(c, 48, ++seed);
    const std::vector<float> ref_orig = forward_float(l, l.fw);
    const std::vector<float> ref_deq = forward_float(l, dequantize_weights(c, l.qw));
    const std::vector<float> w4a4 = from_act(forward(l), c.act);
    const std::vector<float> w4a16 = from_act(forward(l, nullptr, MoeMode::kW4A16), c.act);
    const double e44 = rel_err(w4a4, ref_orig), e416 = rel_err(w4a16, ref_orig);
    const double d44 = rel_err(w4a4, ref_deq), d416 = rel_err(w4a16, ref_deq);
    std::printf(
        "  E=%d k=%d H=%ld I=%ld shared=%d %s: W4A4 %.4f (deq %.4f), W4A16 %.4f (deq %.4f)\n",
        c.routing.num_experts, c.routing.top_k, long(c.hidden), long(c.intermediate),
        c.n_shared_experts, to_string(c.act), e44, d44, e416, d416);
    EXPECT_LT(e44, 0.30) << "seed " << seed;
    EXPECT_LT(e416, 0.22) << "seed " << seed;
    EXPECT_LT(d44, 0.21) << "seed " << seed;
    EXPECT_LT(d416, 0.01) << "seed " << seed;
    EXPECT_GT(e44, 0.0) << "quantization cannot be lossless on random data";
  }
}

// One activation scale per GEMM input (share_activation_scales): every gA1 the smallest of the
// calibrated ones, every gA2 likewise, the shared expert's untouched; the layer still runs close
// to the float layer (the engines' trade: a little resolution for experts of smaller range).
TEST(RefMoe, SharedActivationScalesTakeTheSmallestAndStayAccurate) {
  const MoeConfig c = make_cfg(8, 2, 128, 64, 1);
  Layer l = make_layer(c, 48, 777);
  const std::vector<float> g1 = l.qw.gA1, g2 = l.qw.gA2;
  ASSERT_NE(*std::min_element(g1.begin(), g1.end()), *std::max_element(g1.begin(), g1.end()))
      << "calibration should give the experts different scales";
  const float shared1 = l.qw.shared->gA1, shared2 = l.qw.shared->gA2;
  share_activation_scales(l.qw);
  for (size_t e = 0; e < g1.size(); ++e) {
    EXPECT_EQ(l.qw.gA1[e], *std::min_element(g1.begin(), g1.end())) << "expert " << e;
    EXPECT_EQ(l.qw.gA2[e], *std::min_element(g2.begin(), g2.end())) << "expert " << e;
  }
  EXPECT_EQ(l.qw.shared->gA1, shared1);
  EXPECT_EQ(l.qw.shared->gA2, shared2);
  const double err = rel_err(from_act(forward(l), c.act), forward_float(l, l.fw));
  std::printf("  one activation scale: W4A4 rel err %.4f\n", err);
  EXPECT_LT(err, 0.30);
  MoeWeights none = l.qw;
  none.gA1.clear();
  EXPECT_THROW(share_activation_scales(none), Error);
}

// Every traced stage against a recomputation from the previous stage by other means.
TEST(RefMoe, TraceStagesAreConsistent) {
  for (int n_shared : {0, 1}) {
    Layer l = make_layer(deepseek_cfg(n_shared), 19, 7 + uint32_t(n_shared));
    const MoeConfig& c = l.cfg;
    const int64_t h = c.hidden, inter = c.intermediate, e_count = c.routing.num_experts,
                  k = c.routing.top_k;
    MoeTrace tr;
    const std::vector<uint16_t> out = forward(l, &tr);
    const int64_t m = l.tokens * k;

    // Routing and permutation as the standalone functions give them.
    std::vector<int32_t> ids(static_cast<size_t>(m));
    std::vector<float> w(static_cast<size_t>(m));
    route(l.logits, l.qw.e_score_correction_bias, l.tokens, c.routing, ids, w);
    EXPECT_EQ(tr.ids, ids);
    EXPECT_EQ(tr.weights, w);
    EXPECT_EQ(tr.perm.sorted_to_pair, permute(ids, l.tokens, int(k), int(e_count)).sorted_to_pair);
    ASSERT_EQ(tr.scale_rows, expert_scale_rows_capacity(m, e_count));

    // A1: sorted row i is the token's hidden row quantized alone with its expert's gA1.
    const int64_t pc = padded_scale_cols(h);
    for (int64_t e = 0; e < e_count; ++e) {
      for (int64_t i = tr.perm.off[size_t(e)]; i < tr.perm.off[size_t(e + 1)]; ++i) {
        const int64_t t = tr.perm.sorted_to_token[size_t(i)];
        std::vector<uint8_t> codes(size_t(h / 2)), scales(size_t(swizzled_scale_bytes(1, h)));
        quantize(std::span<const uint16_t>(l.hidden).subspan(size_t(t * h), size_t(h)), c.act, 1, h,
                 l.qw.gA1[size_t(e)], codes, scales);
        ASSERT_TRUE(std::equal(codes.begin(), codes.end(), tr.a1_codes.begin() + i * h / 2))
            << "row " << i;
        for (int64_t col = 0; col < h / 16; ++col) {
          const int64_t r = tr.perm.sf_off[size_t(e)] + (i - tr.perm.off[size_t(e)]);
          ASSERT_EQ(tr.a1_scales[size_t(swizzled_scale_offset(r, col, pc))],
                    scales[size_t(swizzled_scale_offset(0, col, pc))])
              << "row " << i << " scale col " << col;
        }
      }
    }

    // GEMM1: dequantized A1 x dequantized W13 in float64 (divisions by the global scales done
    // first, so only a relative 1e-5 agreement is expected).
    std::vector<float> a1(size_t(m * h));
    dequantize_experts(tr.a1_codes, tr.a1_scales, m, h, tr.perm.off, l.qw.gA1, tr.scale_rows, a1);
    int64_t checked = 0;
    for (int64_t e = 0; e < e_count; ++e) {
      if (tr.perm.counts[size_t(e)] == 0) continue;
      const std::vector<float> w13 = dequantize_weight(l.qw.w13[size_t(e)]);
      for (int64_t i = tr.perm.off[size_t(e)]; i < tr.perm.off[size_t(e + 1)]; ++i) {
        for (int64_t n = 0; n < 2 * inter; ++n) {
          double acc = 0.0, mag = 0.0;
          for (int64_t x = 0; x < h; ++x) {
            acc += double(a1[size_t(i * h + x)]) * w13[size_t(n * h + x)];
            mag += std::fabs(double(a1[size_t(i * h + x)]) * w13[size_t(n * h + x)]);
          }
          ASSERT_NEAR(tr.gemm1_f32[size_t(i * 2 * inter + n)], acc, 1e-5 * mag + 1e-30)
              << "row " << i << " n " << n;
          ++checked;
        }
      }
    }
    EXPECT_EQ(checked, m * 2 * inter);

    // Rounding, SiLU*Mul, A2 quantization, GEMM2 rounding, combine, final rounding.
    std::vector<uint16_t> g1(tr.gemm1_f32.size());
    round_to_act(tr.gemm1_f32, c.act, g1);
    EXPECT_TRUE(same_u16(tr.gemm1, g1, 2 * inter));
    std::vector<uint16_t> act(size_t(m * inter));
    silu_and_mul(tr.gemm1, c.act, m, inter, c.swiglu_limit, act);
    EXPECT_TRUE(same_u16(tr.act, act, inter));
    std::vector<uint8_t> a2c(size_t(m * inter / 2)),
        a2s(size_t(tr.scale_rows * padded_scale_cols(inter)));
    quantize_experts(act, c.act, m, inter, tr.perm.off, l.qw.gA2, {}, m, a2c, a2s, tr.scale_rows);
    EXPECT_EQ(tr.a2_codes, a2c);
    EXPECT_EQ(tr.a2_scales, a2s);
    std::vector<uint16_t> g2(tr.gemm2_f32.size());
    round_to_act(tr.gemm2_f32, c.act, g2);
    EXPECT_TRUE(same_u16(tr.gemm2, g2, h));
    std::vector<float> combined(size_t(l.tokens * h));
    std::vector<float> shared = from_act(tr.shared_out, c.act);
    EXPECT_EQ(shared.size(), n_shared ? size_t(l.tokens * h) : size_t(0));
    combine(from_act(tr.gemm2, c.act), tr.weights, tr.perm.pair_to_sorted, l.tokens, int(k), h,
            shared, combined);
    EXPECT_EQ(std::memcmp(combined.data(), tr.combined.data(), combined.size() * sizeof(float)), 0);
    std::vector<uint16_t> out_again(combined.size());
    round_to_act(combined, c.act, out_again);
    EXPECT_TRUE(same_u16(out, out_again, h));
  }
}

// The routed path (gathered per-expert quantization, grouped GEMMs) and the shared path
// (per-tensor quantization, single GEMMs) must agree bit for bit on the same MLP: one expert,
// k = 1, softmax renormalized (weight exactly 1), and the shared expert a copy of it.
TEST(RefMoe, RoutedPathEqualsSharedPathOnTheSameMlp) {
  for (MoeMode mode : {MoeMode::kW4A4, MoeMode::kW4A16}) {
    Layer l = make_layer(make_cfg(1, 1, 64, 32, 1, ActDType::kBF16, mode), 23, 55);
    l.qw.shared = SharedExpertWeights{l.qw.w13[0], l.qw.w2[0], l.qw.gA1[0], l.qw.gA2[0]};
    MoeTrace tr;
    forward(l, &tr);
    ASSERT_EQ(tr.weights, std::vector<float>(23, 1.0f));
    EXPECT_TRUE(same_u16(tr.gemm1, tr.shared_gemm1, 64)) << to_string(mode);
    EXPECT_TRUE(same_u16(tr.act, tr.shared_act, 32)) << to_string(mode);
    EXPECT_TRUE(same_u16(tr.gemm2, tr.shared_out, 64)) << to_string(mode);
  }
}

TEST(RefMoe, ZeroAndOneToken) {
  for (int n_shared : {0, 1}) {
    Layer l = make_layer(make_cfg(4, 2, 32, 16, n_shared), 1, 3);
    MoeTrace tr;
    std::vector<uint16_t> out = forward(l, &tr);
    const std::vector<float> ref = forward_float(l, l.fw);
    EXPECT_LT(rel_err(from_act(out, l.cfg.act), ref), 0.35);
    EXPECT_EQ(tr.perm.off.back(), 2);

    Layer empty = l;
    empty.tokens = 0;
    empty.hidden.clear();
    empty.logits.clear();
    MoeTrace tr0;
    EXPECT_TRUE(forward(empty, &tr0).empty());
    EXPECT_TRUE(tr0.ids.empty() && tr0.gemm1.empty() && tr0.gemm2.empty() && tr0.combined.empty());
    EXPECT_EQ(tr0.perm.off, std::vector<int32_t>(5, 0));
    std::vector<float> out_f;
    EXPECT_NO_THROW(moe_forward_unquantized(l.cfg, l.fw, {}, 0, {}, out_f));
  }
}

TEST(RefMoe, AllTokensOnOneExpertAndMostExpertsEmpty) {
  for (int k : {1, 2}) {
    Layer l = make_layer(make_cfg(8, k, 64, 32, 0), 33, 21);
    for (int64_t t = 0; t < l.tokens; ++t) l.logits[size_t(t * 8 + 5)] = 30.0f;  // expert 5 first
    MoeTrace tr;
    std::vector<float> got = from_act(forward(l, &tr), l.cfg.act);
    EXPECT_EQ(tr.perm.counts[5], 33);
    for (int64_t t = 0; t < l.tokens; ++t) EXPECT_EQ(tr.ids[size_t(t * k)], 5);
    // One expert's weight errors are not averaged over experts: a looser bound than above.
    EXPECT_LT(rel_err(got, forward_float(l, l.fw)), 0.35);
  }
  // 32 experts, 3 tokens, k = 2: at most 6 experts see a row.
  Layer sparse = make_layer(make_cfg(32, 2, 64, 32, 0), 3, 22);
  MoeTrace tr;
  std::vector<float> got = from_act(forward(sparse, &tr), sparse.cfg.act);
  int empty = 0;
  for (int32_t cnt : tr.perm.counts) empty += cnt == 0;
  EXPECT_GE(empty, 26);
  EXPECT_LT(rel_err(got, forward_float(sparse, sparse.fw)), 0.35);
}

TEST(RefMoe, SharedExpertsAddTheirOutputLast) {
  Layer with = make_layer(make_cfg(8, 2, 64, 32, 2), 17, 44);
  Layer without = with;
  without.cfg.n_shared_experts = 0;
  without.qw.shared.reset();
  MoeTrace tw, tn;
  forward(with, &tw);
  forward(without, &tn);
  // The routed part is identical; the shared output is added after the routed sum.
  EXPECT_TRUE(same_u16(tw.gemm2, tn.gemm2, 64));
  ASSERT_EQ(tw.shared_out.size(), size_t(17 * 64));
  EXPECT_TRUE(tn.shared_out.empty());
  for (size_t i = 0; i < tw.combined.size(); ++i) {
    ASSERT_EQ(tw.combined[i], tn.combined[i] + act_to_float(tw.shared_out[i], with.cfg.act)) << i;
  }
}

TEST(RefMoe, RepeatedRunsAreBitIdentical) {
  Layer l = make_layer(deepseek_cfg(1), 40, 9);
  MoeTrace a, b;
  std::vector<uint16_t> o1 = forward(l, &a), o2 = forward(l, &b);
  EXPECT_TRUE(same_u16(o1, o2, l.cfg.hidden));
  EXPECT_EQ(std::memcmp(a.gemm1_f32.data(), b.gemm1_f32.data(), a.gemm1_f32.size() * sizeof(float)),
            0);
  EXPECT_EQ(std::memcmp(a.gemm2_f32.data(), b.gemm2_f32.data(), a.gemm2_f32.size() * sizeof(float)),
            0);
}

TEST(RefMoe, W4A16TraceHasNoQuantizedActivations) {
  Layer l = make_layer(make_cfg(4, 2, 32, 16, 1, ActDType::kFP16, MoeMode::kW4A16), 5, 12);
  l.qw.gA1.clear();  // W4A16 does not need activation scales
  l.qw.gA2.clear();
  MoeTrace tr;
  forward(l, &tr);
  EXPECT_TRUE(tr.a1_codes.empty() && tr.a2_codes.empty() && tr.a1_scales.empty());
  EXPECT_EQ(tr.gemm1.size(), size_t(10 * 32));
}

TEST(RefMoe, QuantizeWeightByHand) {
  // Row 0 all 1.0, row 1 all 2.0. One scale: amax 2 -> g = 2688 / 2 = 1344; row 0's block
  // scale e4m3(1344 * (1 * r6)) = 224, codes 1 * 1 / (224 / 1344) = 6 -> code 7.
  std::vector<float> w(32, 1.0f);
  std::fill(w.begin() + 16, w.end(), 2.0f);
  Nvfp4Weight one = quantize_weight(w, 2, 16, false);
  EXPECT_EQ(one.g_lo, 1344.0f);
  EXPECT_EQ(one.g_hi, 1344.0f);
  EXPECT_EQ(one.scales[0], e4m3_from_float(224.0f));
  EXPECT_EQ(one.codes[0], 0x77);
  EXPECT_EQ(dequantize_weight(one), w);
  // Split halves: g_lo from row 0 (amax 1: 2688), g_hi from row 1 (1344); both rows use scale 448.
  Nvfp4Weight split = quantize_weight(w, 2, 16, true);
  EXPECT_EQ(split.g_lo, 2688.0f);
  EXPECT_EQ(split.g_hi, 1344.0f);
  EXPECT_EQ(split.scales[swizzled_scale_offset(0, 0, 4)], 0x7E);
  EXPECT_EQ(split.scales[swizzled_scale_offset(1, 0, 4)], 0x7E);
  EXPECT_EQ(dequantize_weight(split), w);
  // All zero: g = 1, zero codes and scales.
  Nvfp4Weight zero = quantize_weight(std::vector<float>(64, 0.0f), 2, 32, true);
  EXPECT_EQ(zero.g_lo, 1.0f);
  EXPECT_EQ(zero.g_hi, 1.0f);
  for (uint8_t b : zero.codes) EXPECT_EQ(b, 0);
  for (uint8_t b : zero.scales) EXPECT_EQ(b, 0);
  // Random round trip: NVFP4 relative error of normal data is about 0.09.
  std::mt19937 rng(1);
  std::vector<float> r = normal(130 * 64, 0.02f, rng);
  EXPECT_LT(rel_err(dequantize_weight(quantize_weight(r, 130, 64, true)), r), 0.11);
  EXPECT_THROW(quantize_weight(r, 130, 64 - 16, false), Error);
  EXPECT_THROW(quantize_weight(std::vector<float>(3 * 16), 3, 16, true), Error);
  EXPECT_THROW(quantize_weight(std::vector<float>(2 * 24), 2, 24, false), Error);
}

TEST(RefMoe, CalibrationPolicy) {
  Layer l = make_layer(make_cfg(16, 2, 32, 16, 1), 5, 77);  // 10 picks over 16 experts
  const ActivationScales s = calibrate_activation_scales(l.cfg, l.qw, l.hidden, l.tokens, l.logits);
  std::vector<int32_t> ids(10);
  std::vector<float> w(10);
  route(l.logits, {}, 5, l.cfg.routing, ids, w);
  float all = 0.0f;
  for (uint16_t v : l.hidden) all = abs_max_ignore_nan(all, bf16_to_float(v));
  float min_seen_g2 = INFINITY;
  int unseen = 0;
  for (int e = 0; e < 16; ++e) {
    float amax = 0.0f;
    bool seen = false;
    for (int p = 0; p < 10; ++p) {
      if (ids[size_t(p)] != e) continue;
      seen = true;
      for (int64_t x = 0; x < 32; ++x)
        amax = abs_max_ignore_nan(amax, bf16_to_float(l.hidden[size_t(p / 2 * 32 + x)]));
    }
    EXPECT_EQ(s.gA1[size_t(e)], global_scale_from_amax(seen ? amax : all)) << "expert " << e;
    if (seen) min_seen_g2 = std::min(min_seen_g2, s.gA2[size_t(e)]);
    unseen += !seen;
  }
  ASSERT_GT(unseen, 0);
  for (int e = 0; e < 16; ++e) {
    bool seen = std::find(ids.begin(), ids.end(), e) != ids.end();
    if (!seen) {
      EXPECT_EQ(s.gA2[size_t(e)], min_seen_g2)
          << "unseen expert " << e << " takes the largest amax";
    }
  }
  EXPECT_EQ(s.shared_gA1, global_scale_from_amax(all));
  EXPECT_TRUE(std::isfinite(s.shared_gA2) && s.shared_gA2 > 0.0f);
  EXPECT_THROW(calibrate_activation_scales(l.cfg, l.qw, {}, 0, {}), Error);
}

// Bad inputs throw nvfp4moe::Error naming the field, and out keeps its contents.
TEST(RefMoe, BadInputsThrowAndLeaveOutUntouched) {
  const Layer good = make_layer(make_cfg(4, 2, 32, 16, 1), 3, 5);
  std::vector<uint16_t> out(3 * 32, 0xBEEF);
  auto expect_error = [&](const MoeConfig& c, const MoeWeights& w, std::span<const uint16_t> hidden,
                          std::span<const float> logits, std::span<uint16_t> o,
                          const char* needle) {
    try {
      moe_forward(c, w, hidden, 3, logits, o);
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    for (uint16_t v : out)
      ASSERT_EQ(v, 0xBEEF) << "out written before the error (" << needle << ")";
  };
  const MoeConfig& c = good.cfg;
  const MoeWeights& w = good.qw;
  expect_error(c, w, std::span<const uint16_t>(good.hidden).first(95), good.logits, out, "hidden");
  expect_error(c, w, good.hidden, std::span<const float>(good.logits).first(11), out,
               "router_logits");
  expect_error(c, w, good.hidden, good.logits, std::span<uint16_t>(out).first(90), "out");
  {
    MoeConfig bad = c;
    bad.hidden = 40;
    expect_error(bad, w, good.hidden, good.logits, out, "cfg.hidden");
    bad = c;
    bad.intermediate = 0;
    expect_error(bad, w, good.hidden, good.logits, out, "cfg.intermediate");
    bad = c;
    bad.swiglu_limit = -1.0f;
    expect_error(bad, w, good.hidden, good.logits, out, "cfg.swiglu_limit");
    bad = c;
    bad.routing.top_k = 5;
    expect_error(bad, w, good.hidden, good.logits, out, "cfg.top_k");
    bad = c;
    bad.n_shared_experts = 0;  // weights still carry a shared expert
    expect_error(bad, w, good.hidden, good.logits, out, "w.shared");
    bad = c;
    bad.n_shared_experts = 2;  // shared weights have Is = I, not 2I
    expect_error(bad, w, good.hidden, good.logits, out, "w.shared.w13");
  }
  {
    MoeWeights bad = w;
    bad.gA1.pop_back();
    expect_error(c, bad, good.hidden, good.logits, out, "w.gA1");
    bad = w;
    bad.gA2[1] = 0.0f;
    expect_error(c, bad, good.hidden, good.logits, out, "w.gA2");
    bad = w;
    bad.gA1[2] = 1e37f;  // above 2^118 the quantizer's multiplier overflows (zeros would encode +6)
    expect_error(c, bad, good.hidden, good.logits, out, "w.gA1");
    bad = w;
    bad.w2[2].g_hi = bad.w2[2].g_lo * 2.0f;
    expect_error(c, bad, good.hidden, good.logits, out, "w.w2");
    bad = w;
    bad.w13[3].codes.pop_back();
    expect_error(c, bad, good.hidden, good.logits, out, "w.w13");
    bad = w;
    bad.w13[0].g_lo = INFINITY;
    expect_error(c, bad, good.hidden, good.logits, out, "w.w13");
    bad = w;
    bad.w2.pop_back();
    expect_error(c, bad, good.hidden, good.logits, out, "w.w2");
    bad = w;
    bad.e_score_correction_bias.assign(4, 0.0f);  // softmax scoring takes no bias
    expect_error(c, bad, good.hidden, good.logits, out, "e_score_correction_bias");
    bad = w;
    bad.shared->gA1 = std::nanf("");
    expect_error(c, bad, good.hidden, good.logits, out, "w.shared.gA1");
  }
  // The float layer checks its weights too.
  MoeFloatWeights fw = good.fw;
  fw.w2[1].pop_back();
  std::vector<float> out_f(3 * 32);
  EXPECT_THROW(moe_forward_unquantized(c, fw, std::vector<float>(3 * 32), 3, good.logits, out_f),
               Error);
  // The good call works (the checks above are not vacuous).
  EXPECT_NO_THROW(moe_forward(c, w, good.hidden, 3, good.logits, out));
}

}  // namespace
}  // namespace nvfp4moe::ref
