// The built-in default MoE layer: see include/nvfp4moe/model/builtin_model.h.
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/model/builtin_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nvfp4moe/checkpoint/safetensors.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe::model {
namespace {

// splitmix64: a tiny portable generator, so the layer is the same on every platform
// (std:: distributions are not specified bit for bit).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi), 24 random bits.
  float uniform(float lo, float hi) {
    float u = float(next() >> 40) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * u;
  }

 private:
  uint64_t state_;
};

// A [rows, cols] weight uniform in +-sqrt(3 / cols) (variance 1/cols), rounded to bf16 values.
std::vector<float> random_weight(SplitMix64& rng, int64_t rows, int64_t cols) {
  float a = std::sqrt(3.0f / float(cols));
  std::vector<float> w(size_t(rows * cols));
  for (float& v : w) v = bf16_to_float(bf16_from_float(rng.uniform(-a, a)));
  return w;
}

std::vector<std::byte> to_bf16_bytes(std::span<const float> v) {
  std::vector<std::byte> out(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b = bf16_from_float(v[i]);
    std::memcpy(out.data() + 2 * i, &b, 2);
  }
  return out;
}

std::vector<std::byte> to_f32_bytes(std::span<const float> v) {
  std::vector<std::byte> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

float silu(float v) { return v / (1.0f + std::exp(-v)); }

// y [rows] = W [rows, cols] x x [cols], float64 sums.
void matvec(std::span<const float> w, int64_t rows, int64_t cols, const float* x, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    const float* wr = w.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) s += double(wr[c]) * double(x[c]);
    y[r] = float(s);
  }
}

}  // namespace

FloatMoeLayer make_builtin_layer(const BuiltinModelSpec& spec) {
  NVFP4MOE_CHECK(spec.hidden > 0 && spec.hidden % 16 == 0, "spec.hidden: positive multiple of 16 expected, got ", spec.hidden);
  NVFP4MOE_CHECK(spec.intermediate > 0 && spec.intermediate % 16 == 0,
                 "spec.intermediate: positive multiple of 16 expected, got ", spec.intermediate);
  FloatMoeLayer layer;
  MoeConfig& cfg = layer.cfg;
  cfg.hidden = spec.hidden;
  cfg.intermediate = spec.intermediate;
  cfg.routing.num_experts = spec.num_experts;
  cfg.routing.top_k = spec.top_k;
  cfg.routing.scoring = ScoringFunc::kSigmoid;
  cfg.routing.renormalize = true;
  cfg.routing.n_group = spec.n_group;
  cfg.routing.topk_group = spec.topk_group;
  cfg.routing.routed_scaling_factor = spec.routed_scaling_factor;
  cfg.n_shared_experts = spec.n_shared_experts;
  cfg.act = ActDType::kBF16;
  cfg.mode = MoeMode::kW4A4;
  validate(cfg);

  SplitMix64 rng(spec.seed);
  const int64_t h = spec.hidden, i = spec.intermediate;
  auto& w = layer.weights;
  for (int e = 0; e < spec.num_experts; ++e) {
    w.w13.push_back(random_weight(rng, 2 * i, h));
    w.w2.push_back(random_weight(rng, h, i));
  }
  // Selection bias of a trained DeepSeek router: small, per expert.
  for (int e = 0; e < spec.num_experts; ++e) {
    w.e_score_correction_bias.push_back(bf16_to_float(bf16_from_float(rng.uniform(-0.05f, 0.05f))));
  }
  if (spec.n_shared_experts > 0) {
    const int64_t is = spec.n_shared_experts * i;
    w.shared_w13 = random_weight(rng, 2 * is, h);
    w.shared_w2 = random_weight(rng, h, is);
  }
  layer.router = random_weight(rng, spec.num_experts, h);
  return layer;
}

std::vector<uint16_t> random_hidden(int64_t tokens, int64_t hidden, ActDType act, uint64_t seed) {
  check_token_count(tokens, 1);
  NVFP4MOE_CHECK(hidden > 0 && hidden <= kMaxLayerWidth, "hidden: expected 1..", kMaxLayerWidth, ", got ", hidden);
  SplitMix64 rng(seed ^ 0x5eedull);
  std::vector<uint16_t> x(size_t(tokens * hidden));
  for (auto& v : x) {
    float f = rng.uniform(-2.0f, 2.0f);
    if ((rng.next() & 255) == 0) f *= 8.0f;  // rare outliers, as real activations have
    v = act_from_float(f, act);
  }
  return x;
}

std::vector<float> router_logits(std::span<const uint16_t> hidden, ActDType act, int64_t tokens,
                                 std::span<const float> router, int num_experts, int64_t h) {
  check_token_count(tokens, 1);
  NVFP4MOE_CHECK(h > 0 && h <= kMaxLayerWidth, "h: expected 1..", kMaxLayerWidth, ", got ", h);
  NVFP4MOE_CHECK(num_experts >= 1, "num_experts: expected >= 1, got ", num_experts);
  NVFP4MOE_CHECK(int64_t(hidden.size()) == tokens * h, "hidden: expected ", tokens * h, " elements, got ", hidden.size());
  NVFP4MOE_CHECK(int64_t(router.size()) == int64_t(num_experts) * h, "router: expected [", num_experts, ", ", h, "]");
  std::vector<float> logits(size_t(tokens * num_experts));
  std::vector<float> x(static_cast<size_t>(h));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < h; ++c) x[size_t(c)] = act_to_float(hidden[size_t(t * h + c)], act);
    matvec(router, num_experts, h, x.data(), logits.data() + t * num_experts);
  }
  return logits;
}

void write_hf_checkpoint(const FloatMoeLayer& layer, const std::string& dir) {
  namespace fs = std::filesystem;
  const MoeConfig& cfg = layer.cfg;
  const int64_t h = cfg.hidden, i = cfg.intermediate;
  const int num_experts = cfg.routing.num_experts;
  const int64_t is = cfg.n_shared_experts * i;
  fs::create_directories(dir);

  nlohmann::ordered_json config = {
      {"architectures", {"DeepseekV3ForCausalLM"}},
      {"model_type", "deepseek_v3"},
      {"hidden_size", h},
      {"moe_intermediate_size", i},
      {"n_routed_experts", num_experts},
      {"num_experts_per_tok", cfg.routing.top_k},
      {"n_group", cfg.routing.n_group},
      {"topk_group", cfg.routing.topk_group},
      {"topk_method", "noaux_tc"},
      {"scoring_func", "sigmoid"},
      {"norm_topk_prob", cfg.routing.renormalize},
      {"routed_scaling_factor", cfg.routing.routed_scaling_factor},
      {"n_shared_experts", cfg.n_shared_experts},
      {"num_hidden_layers", 1},
      {"first_k_dense_replace", 0},
      {"moe_layer_freq", 1},
      {"hidden_act", "silu"},
      {"torch_dtype", "bfloat16"},
  };
  std::ofstream(fs::path(dir) / "config.json") << config.dump(2) << "\n";

  using checkpoint::DType;
  checkpoint::SafetensorsWriter writer;
  const std::string p = "model.layers.0.mlp.";
  auto add_bf16 = [&](const std::string& name, std::span<const float> v, int64_t rows, int64_t cols) {
    writer.add(name, DType::kBF16, {rows, cols}, to_bf16_bytes(v));
  };
  for (int e = 0; e < num_experts; ++e) {
    const auto& w13 = layer.weights.w13[size_t(e)];
    std::string ep = p + "experts." + std::to_string(e) + ".";
    add_bf16(ep + "gate_proj.weight", std::span(w13).first(size_t(i * h)), i, h);
    add_bf16(ep + "up_proj.weight", std::span(w13).subspan(size_t(i * h)), i, h);
    add_bf16(ep + "down_proj.weight", layer.weights.w2[size_t(e)], h, i);
  }
  if (is > 0) {
    add_bf16(p + "shared_experts.gate_proj.weight", std::span(layer.weights.shared_w13).first(size_t(is * h)), is, h);
    add_bf16(p + "shared_experts.up_proj.weight", std::span(layer.weights.shared_w13).subspan(size_t(is * h)), is, h);
    add_bf16(p + "shared_experts.down_proj.weight", layer.weights.shared_w2, h, is);
  }
  add_bf16(p + "gate.weight", layer.router, num_experts, h);
  writer.add(p + "gate.e_score_correction_bias", DType::kF32, {num_experts},
             to_f32_bytes(layer.weights.e_score_correction_bias));
  writer.set_metadata("format", "pt");
  writer.set_metadata("producer", "nvfp4-moe generate");
  writer.write((fs::path(dir) / "model.safetensors").string());
}

void write_calibration(const FloatMoeLayer& layer, const std::string& path, int64_t calib_tokens,
                       uint64_t seed) {
  using checkpoint::DType;
  const MoeConfig& cfg = layer.cfg;
  const int64_t h = cfg.hidden, i = cfg.intermediate;
  const int num_experts = cfg.routing.num_experts;
  const int64_t is = cfg.n_shared_experts * i;
  const std::string p = "model.layers.0.mlp.";
  NVFP4MOE_CHECK(calib_tokens > 0, "calib_tokens: expected > 0, got ", calib_tokens);
  // Calibration amaxes (scalars: the quantizer's convention takes a scalar as the amax):
  // hidden rows each expert sees, and its SwiGLU output, computed in float32.
  std::vector<uint16_t> hidden = random_hidden(calib_tokens, h, cfg.act, seed);
  std::vector<float> logits = router_logits(hidden, cfg.act, calib_tokens, layer.router, num_experts, h);
  std::vector<int32_t> ids(size_t(calib_tokens * cfg.routing.top_k));
  std::vector<float> wts(ids.size());
  ref::route(logits, layer.weights.e_score_correction_bias, calib_tokens, cfg.routing, ids, wts);
  std::vector<float> amax_in(size_t(num_experts), 0.0f), amax_act(size_t(num_experts), 0.0f);
  float shared_in = 0.0f, shared_act = 0.0f;
  std::vector<float> x(static_cast<size_t>(h)), gu(static_cast<size_t>(2 * std::max(i, is)));
  for (int64_t t = 0; t < calib_tokens; ++t) {
    float row_amax = 0.0f;
    for (int64_t c = 0; c < h; ++c) {
      x[size_t(c)] = act_to_float(hidden[size_t(t * h + c)], cfg.act);
      row_amax = std::max(row_amax, std::fabs(x[size_t(c)]));
    }
    auto swiglu_amax = [&](std::span<const float> w13, int64_t width) {
      matvec(w13, 2 * width, h, x.data(), gu.data());
      float m = 0.0f;
      for (int64_t c = 0; c < width; ++c) {
        float a = bf16_to_float(bf16_from_float(silu(gu[size_t(c)]) * gu[size_t(width + c)]));
        m = std::max(m, std::fabs(a));
      }
      return m;
    };
    for (int j = 0; j < cfg.routing.top_k; ++j) {
      int e = ids[size_t(t * cfg.routing.top_k + j)];
      amax_in[size_t(e)] = std::max(amax_in[size_t(e)], row_amax);
      amax_act[size_t(e)] = std::max(amax_act[size_t(e)], swiglu_amax(layer.weights.w13[size_t(e)], i));
    }
    if (is > 0) {
      shared_in = std::max(shared_in, row_amax);
      shared_act = std::max(shared_act, swiglu_amax(layer.weights.shared_w13, is));
    }
  }
  // An expert no calibration token reached takes the largest amax of its kind.
  float max_in = *std::max_element(amax_in.begin(), amax_in.end());
  float max_act = *std::max_element(amax_act.begin(), amax_act.end());
  checkpoint::SafetensorsWriter calib;
  auto add_scalar = [&](const std::string& name, float v) {
    calib.add(name, DType::kF32, {}, to_f32_bytes(std::span<const float>(&v, 1)));
  };
  for (int e = 0; e < num_experts; ++e) {
    std::string ep = p + "experts." + std::to_string(e) + ".";
    add_scalar(ep + "gate_proj.input", amax_in[size_t(e)] > 0 ? amax_in[size_t(e)] : max_in);
    add_scalar(ep + "down_proj.input", amax_act[size_t(e)] > 0 ? amax_act[size_t(e)] : max_act);
  }
  if (is > 0) {
    add_scalar(p + "shared_experts.gate_proj.input", shared_in);
    add_scalar(p + "shared_experts.down_proj.input", shared_act);
  }
  calib.write(path);
}

}  // namespace nvfp4moe::model
