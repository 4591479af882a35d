#include "layer_setup.h"

#include <cuda_runtime.h>

#include <cmath>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/model/builtin_model.h"
#include "nvfp4moe/model/moe_layer_loader.h"

namespace nvfp4moe::tool {
namespace {

constexpr int64_t kCalibrationTokens = 256;
constexpr uint64_t kCalibrationSeed = 7;

void calibrate(LayerSetup& s) {
  std::vector<uint16_t> hidden = model::random_hidden(kCalibrationTokens, s.cfg.hidden, s.cfg.act, kCalibrationSeed);
  std::vector<float> logits =
      model::router_logits(hidden, s.cfg.act, kCalibrationTokens, s.router, s.cfg.routing.num_experts, s.cfg.hidden);
  ref::ActivationScales scales =
      ref::calibrate_activation_scales(s.cfg, s.weights, hidden, kCalibrationTokens, logits);
  ref::apply_activation_scales(scales, s.weights);
}

}  // namespace

ActDType parse_dtype(const std::string& s) {
  if (s == "bf16") return ActDType::kBF16;
  if (s == "fp16") return ActDType::kFP16;
  throw Error("--dtype: expected bf16 or fp16, got '" + s + "'");
}

MoeMode parse_mode(const std::string& s) {
  if (s == "w4a4") return MoeMode::kW4A4;
  if (s == "w4a16") return MoeMode::kW4A16;
  throw Error("--mode: expected w4a4 or w4a16, got '" + s + "'");
}

LayerSetup setup_layer(const std::string& checkpoint, std::optional<int> layer, ActDType act, MoeMode mode) {
  LayerSetup s;
  if (checkpoint.empty()) {
    model::FloatMoeLayer fl = model::make_builtin_layer();
    fl.cfg.act = act;
    fl.cfg.mode = mode;
    s.cfg = fl.cfg;
    s.weights = ref::quantize_weights(s.cfg, fl.weights);
    s.router = std::move(fl.router);
    s.float_weights = std::move(fl.weights);
    s.float_reference = "the unquantized (bf16-weight) layer in float32";
    s.description = "built-in DeepSeek-style layer (deterministic, generated)";
    calibrate(s);
    s.notes.push_back("activation scales calibrated on " + std::to_string(kCalibrationTokens) + " random tokens");
  } else {
    model::LoadedMoeLayer l = model::load_moe_layer(checkpoint, layer, act, mode);
    s.cfg = l.cfg;
    s.weights = std::move(l.weights);
    s.router = std::move(l.router);
    s.description = checkpoint + " layer " + std::to_string(l.layer);
    if (!l.has_activation_scales && mode == MoeMode::kW4A4) {
      calibrate(s);
      s.notes.push_back("checkpoint has no input_scale: activation scales calibrated on " +
                        std::to_string(kCalibrationTokens) + " random tokens");
    }
    s.float_weights = ref::dequantize_weights(s.cfg, s.weights);
    s.float_reference = "the float32 layer on the dequantized weights (activation quantization error only)";
  }
  validate(s.cfg, s.weights);
  return s;
}

const char* to_string(Backend b) { return b == Backend::kGpu ? "GPU" : "CPU golden model"; }

Backend choose_backend(bool force_cpu, ActDType act, std::string* why) {
  if (force_cpu) {
    *why = "--cpu given";
    return Backend::kCpu;
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    *why = "no GPU present";
    return Backend::kCpu;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess || p.major != 9) {
    cudaGetLastError();
    *why = "the GPU is not a Hopper (sm_90) GPU";
    return Backend::kCpu;
  }
  if (act != ActDType::kBF16) {
    *why = "the GPU layer takes bf16 activations; fp16 runs on the CPU model";
    return Backend::kCpu;
  }
  *why = p.name;
  return Backend::kGpu;
}

VerifyResult compare_outputs(std::span<const uint16_t> got, std::span<const uint16_t> want, ActDType act) {
  VerifyResult r;
  double num = 0, den = 0, max_err = 0, max_ref = 0;
  bool nan_mismatch = false;
  for (size_t i = 0; i < got.size(); ++i) {
    double g = act_to_float(got[i], act), w = act_to_float(want[i], act);
    if (got[i] != want[i]) ++r.mismatches;
    if (!std::isfinite(g) || !std::isfinite(w)) {
      nan_mismatch = nan_mismatch || got[i] != want[i];
      continue;
    }
    num += (g - w) * (g - w);
    den += w * w;
    max_err = std::max(max_err, std::fabs(g - w));
    max_ref = std::max(max_ref, std::fabs(w));
  }
  r.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  r.max_norm_err = max_ref > 0 ? max_err / max_ref : max_err;
  r.passed = !nan_mismatch && r.rel_l2 <= r.tolerance;
  return r;
}

}  // namespace nvfp4moe::tool
