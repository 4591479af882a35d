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

// The GPU when one is present and `force_cpu` is false; `why` explains a CPU choice.
Backend choose_backend(bool force_cpu, std::string* why);

void run_forward(Backend b, const LayerSetup& s, std::span<const uint16_t> hidden, int64_t tokens,
                 std::span<const float> logits, std::span<uint16_t> out);

struct VerifyResult {
  bool passed = false;
  double max_rel_err = 0;  // max |got - want| / max(|want|, 1e-2 * rms(want))
  double tolerance = 1e-3;
  int64_t mismatches = 0;  // elements whose bits differ
};
VerifyResult compare_outputs(std::span<const uint16_t> got, std::span<const uint16_t> want, ActDType act);

}  // namespace nvfp4moe::tool
