// Loading one MoE layer of a ModelOpt NVFP4 checkpoint: see moe_layer_loader.h.
#include "nvfp4moe/model/moe_layer_loader.h"

#include <algorithm>
#include <cstring>

#include "nvfp4moe/checkpoint/checkpoint.h"
#include "nvfp4moe/checkpoint/model_config.h"
#include "nvfp4moe/checkpoint/modelopt.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe::model {
namespace {

using checkpoint::Checkpoint;
using checkpoint::DType;
using checkpoint::MoeNaming;
using checkpoint::Nvfp4Linear;
using checkpoint::Proj;

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A tensor of BF16/F16/F32 as float32, with its expected shape checked (a transposed router
// weight has the right element count but would route by scrambled logits).
std::vector<float> read_float_tensor(const Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& shape) {
  const auto& info = ckpt.info(name);
  NVFP4MOE_CHECK(info.shape == shape, name, ": expected shape ", shape_text(shape), ", got ", shape_text(info.shape));
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  auto bytes = ckpt.bytes(name);
  std::vector<float> out(static_cast<size_t>(numel));
  for (int64_t i = 0; i < numel; ++i) {
    switch (info.dtype) {
      case DType::kF32: std::memcpy(&out[size_t(i)], bytes.data() + 4 * i, 4); break;
      case DType::kBF16:
      case DType::kF16: {
        uint16_t b;
        std::memcpy(&b, bytes.data() + 2 * i, 2);
        out[size_t(i)] = info.dtype == DType::kBF16 ? bf16_to_float(b) : fp16_to_float(b);
        break;
      }
      default:
        throw Error(name + ": expected dtype BF16, F16 or F32, got " + checkpoint::to_string(info.dtype));
    }
  }
  return out;
}

// Stack linears [n_i, k] (same k) into one Nvfp4Weight, codes and scales (swizzled) in order.
Nvfp4Weight stack_linears(const std::vector<Nvfp4Linear>& parts) {
  Nvfp4Weight w;
  w.k = parts.front().k;
  for (const auto& p : parts) {
    NVFP4MOE_CHECK(p.k == w.k, p.linear, ": in_features ", p.k, " differs from ", parts.front().linear, "'s ", w.k);
    w.rows += p.n;
  }
  w.codes.reserve(size_t(w.rows * w.k / 2));
  std::vector<uint8_t> row_major;
  row_major.reserve(size_t(w.rows * w.k / 16));
  for (const auto& p : parts) {
    w.codes.insert(w.codes.end(), p.weight.begin(), p.weight.end());
    row_major.insert(row_major.end(), p.weight_scale.begin(), p.weight_scale.end());
  }
  w.scales.resize(size_t(swizzled_scale_bytes(w.rows, w.k)));
  checkpoint::swizzle_scales(row_major, w.rows, w.k, w.scales);
  return w;
}

struct MlpTensors {
  Nvfp4Weight w13, w2;
  std::optional<float> gA1, gA2;  // encode scales when the checkpoint has input_scale
};

// gate/up/down of one MLP (routed expert or shared) -> fused W13 and W2.
MlpTensors read_mlp(const Checkpoint& ckpt, const std::string& gate, const std::string& up,
                    const std::string& down) {
  Nvfp4Linear g = checkpoint::read_nvfp4_linear(ckpt, gate);
  Nvfp4Linear u = checkpoint::read_nvfp4_linear(ckpt, up);
  Nvfp4Linear d = checkpoint::read_nvfp4_linear(ckpt, down);
  NVFP4MOE_CHECK(g.n == u.n, up, ": out_features ", u.n, " differs from ", gate, "'s ", g.n);
  NVFP4MOE_CHECK(d.k == g.n, down, ": in_features ", d.k, " expected equal to ", gate, "'s out_features ", g.n);
  MlpTensors m;
  m.w13 = stack_linears({g, u});
  m.w13.g_lo = 1.0f / g.weight_scale_2;
  m.w13.g_hi = 1.0f / u.weight_scale_2;
  m.w2 = stack_linears({d});
  m.w2.g_lo = m.w2.g_hi = 1.0f / d.weight_scale_2;
  // One quantized input feeds gate and up: the larger decode scale (larger amax) wins.
  if (g.input_scale || u.input_scale) {
    float s = std::max(g.input_scale.value_or(0.0f), u.input_scale.value_or(0.0f));
    m.gA1 = 1.0f / s;
  }
  if (d.input_scale) m.gA2 = 1.0f / *d.input_scale;
  return m;
}

}  // namespace

LoadedMoeLayer load_moe_layer(const std::string& path, std::optional<int> layer, ActDType act,
                              MoeMode mode) {
  checkpoint::MoeModelConfig mc = checkpoint::load_model_config(path);
  Checkpoint ckpt = Checkpoint::open(path);
  MoeNaming naming;

  LoadedMoeLayer out;
  if (layer) {
    NVFP4MOE_CHECK(ckpt.contains(naming.expert_tensor(*layer, 0, Proj::kGate, checkpoint::QuantField::kWeight)),
                   "layer: ", *layer, " has no routed experts in ", path, " (no ",
                   naming.expert_tensor(*layer, 0, Proj::kGate, checkpoint::QuantField::kWeight), ")");
    out.layer = *layer;
  } else {
    int limit = mc.num_hidden_layers > 0 ? mc.num_hidden_layers : 100000;
    int found = -1;
    for (int l = 0; l < limit && found < 0; ++l) {
      if (ckpt.contains(naming.expert_tensor(l, 0, Proj::kGate, checkpoint::QuantField::kWeight))) found = l;
      if (mc.num_hidden_layers == 0 && l > 4096) break;
    }
    NVFP4MOE_CHECK(found >= 0, "checkpoint ", path, ": no MoE layer with expert tensors (",
                   naming.expert_linear(0, 0, Proj::kGate), ".weight, ...) found");
    out.layer = found;
  }
  const int L = out.layer;

  MoeConfig& cfg = out.cfg;
  cfg.hidden = mc.hidden_size;
  cfg.intermediate = mc.moe_intermediate_size;
  cfg.routing = mc.routing;
  cfg.swiglu_limit = mc.swiglu_limit;
  cfg.act = act;
  cfg.mode = mode;
  NVFP4MOE_CHECK(!mc.shared_expert_gated, "config: gated shared experts (Qwen2-MoE shared_expert_gate) are not supported");
  // The config and the tensors must agree on the shared expert: a declared one whose tensors are
  // missing (or named otherwise) would silently drop it, undeclared tensors would be ignored.
  const std::string shared_gate = naming.shared_tensor(L, Proj::kGate, checkpoint::QuantField::kWeight);
  const bool has_shared = mc.shared_intermediate_size > 0;
  NVFP4MOE_CHECK(has_shared == ckpt.contains(shared_gate), "checkpoint ", path, ": config.json declares ",
                 has_shared ? "a shared expert" : "no shared expert", " but tensor '", shared_gate, "' is ",
                 has_shared ? "missing" : "present");
  cfg.n_shared_experts = has_shared ? int(mc.shared_intermediate_size / mc.moe_intermediate_size) : 0;
  NVFP4MOE_CHECK(!has_shared || mc.shared_intermediate_size % mc.moe_intermediate_size == 0,
                 "config: shared expert width ", mc.shared_intermediate_size,
                 " is not a multiple of moe_intermediate_size ", mc.moe_intermediate_size);
  validate(cfg);

  const int num_experts = cfg.routing.num_experts;
  bool all_scales = true;
  MoeWeights& w = out.weights;
  for (int e = 0; e < num_experts; ++e) {
    MlpTensors m = read_mlp(ckpt, naming.expert_linear(L, e, Proj::kGate), naming.expert_linear(L, e, Proj::kUp),
                            naming.expert_linear(L, e, Proj::kDown));
    NVFP4MOE_CHECK(m.w13.rows == 2 * cfg.intermediate && m.w13.k == cfg.hidden,
                   naming.expert_linear(L, e, Proj::kGate), ": expected [", cfg.intermediate, ", ", cfg.hidden,
                   "] per config.json, got [", m.w13.rows / 2, ", ", m.w13.k, "]");
    all_scales = all_scales && m.gA1 && m.gA2;
    w.gA1.push_back(m.gA1.value_or(1.0f));
    w.gA2.push_back(m.gA2.value_or(1.0f));
    w.w13.push_back(std::move(m.w13));
    w.w2.push_back(std::move(m.w2));
  }
  if (has_shared) {
    MlpTensors m = read_mlp(ckpt, naming.shared_linear(L, Proj::kGate), naming.shared_linear(L, Proj::kUp),
                            naming.shared_linear(L, Proj::kDown));
    all_scales = all_scales && m.gA1 && m.gA2;
    SharedExpertWeights s;
    s.gA1 = m.gA1.value_or(1.0f);
    s.gA2 = m.gA2.value_or(1.0f);
    s.w13 = std::move(m.w13);
    s.w2 = std::move(m.w2);
    w.shared = std::move(s);
  }
  if (!all_scales) {
    w.gA1.clear();
    w.gA2.clear();
  }
  out.has_activation_scales = all_scales;
  if (ckpt.contains(naming.router_correction_bias(L))) {
    w.e_score_correction_bias = read_float_tensor(ckpt, naming.router_correction_bias(L), {num_experts});
  }
  out.router = read_float_tensor(ckpt, naming.router_weight(L), {num_experts, cfg.hidden});
  if (all_scales || mode == MoeMode::kW4A16) validate(cfg, w);
  return out;
}

}  // namespace nvfp4moe::model
