// Loading one MoE layer of a ModelOpt NVFP4 checkpoint (config.json + safetensors shards)
// into the golden model's weights (the GPU layer uploads the same struct).
//
// Per routed expert e of layer L: gate_proj and up_proj [I, H] become the fused W13 [2I, H]
// (gate rows first) with g_lo = 1 / gate.weight_scale_2 and g_hi = 1 / up.weight_scale_2;
// down_proj [H, I] becomes W2 with g = 1 / weight_scale_2. Scales are swizzled at load.
//
// Activation scales (input_scale, the decode form 1/gA), policy:
//   - GEMM1 reads one quantized copy of the hidden rows for both gate and up, so it needs one
//     gA1[e]: when gate and up disagree, the larger input_scale (the larger calibrated amax)
//     is used, so no value saturates that either calibration saw.
//   - Each expert keeps its own scale (the kernels take a per-expert gA); engines that need
//     one scale for all experts take the max, which this loader does not do.
//   - If any routed expert (or the shared expert) lacks input_scale, has_activation_scales
//     is false and gA1/gA2 stay empty: the caller calibrates (ref::calibrate_activation_scales)
//     or runs W4A16, which needs no activation scale.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::model {

struct LoadedMoeLayer {
  int layer = 0;
  MoeConfig cfg;
  MoeWeights weights;
  std::vector<float> router;  // [E, H] float32 (from BF16/F16/F32)
  bool has_activation_scales = false;
};

// `path`: a checkpoint directory (config.json next to the shards). `layer`: the MoE layer to
// load; default the first MoE layer that has expert tensors. Throws nvfp4moe::Error naming the
// tensor or key that is missing or malformed.
LoadedMoeLayer load_moe_layer(const std::string& path, std::optional<int> layer, ActDType act,
                              MoeMode mode);

}  // namespace nvfp4moe::model
