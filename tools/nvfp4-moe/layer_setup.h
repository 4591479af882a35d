// What `run` needs of a layer: the quantized weights with activation scales, the float32
// weights it is compared against, and the backends that can run it.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::tool {

struct LayerSetup {
  MoeConfig cfg;
  MoeWeights weights;                 // NVFP4, activation scales set (W4A4)
  std::vector<float> router;          // [E, H]
  ref::MoeFloatWeights float_weights; // what the accuracy is measured against
  std::string float_reference;        // which float weights those are, in words
  std::string description;
  std::vector<std::string> notes;
};

ActDType parse_dtype(const std::string& s);
MoeMode parse_mode(const std::string& s);

// checkpoint empty: the built-in layer (model/builtin_model.h), quantized in memory with
// activation scales calibrated on 256 tokens. Otherwise load layer `layer` of the ModelOpt
// checkpoint; when it has no input_scale tensors, calibrate the same way (a note says so).
LayerSetup setup_layer(const std::string& checkpoint, std::optional<int> layer, ActDType act, MoeMode mode);

enum class Backend { kCpu, kGpu };
const char* to_string(Backend b);

// The GPU when a Hopper GPU is present, the activations are bf16 and `force_cpu` is false;
// `why` names the GPU or explains a CPU choice.
Backend choose_backend(bool force_cpu, ActDType act, std::string* why);

// GPU vs CPU golden model of the same quantized math. The GPU sums GEMMs in fp32 in its own
// order, so a bf16 intermediate can differ by one ulp and flip one FP4 code downstream: the
// outputs agree to rel L2 <= 1e-3, not bit for bit (tests/gpu/test_moe.cu checks each stage).
struct VerifyResult {
  bool passed = false;
  double rel_l2 = 0;        // ||got - want|| / ||want||
  double max_norm_err = 0;  // max |got - want| / max |want|
  double tolerance = 1e-3;  // on rel_l2
  int64_t mismatches = 0;   // elements whose bits differ
};
VerifyResult compare_outputs(std::span<const uint16_t> got, std::span<const uint16_t> want, ActDType act);

}  // namespace nvfp4moe::tool
