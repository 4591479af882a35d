// Private to src/ref: the shape and scale checks shared by the MoE golden-model files
// (moe.cpp, moe_weights.cpp, moe_unquantized.cpp). Each throws nvfp4moe::Error naming the field.
#pragma once

#include <cstdint>

#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::ref::detail {

// g (an encode global scale, element `index` of `name`) is finite and > 0.
void check_global_scale(float g, const char* name, size_t index);

// One NVFP4 weight: rows x k as expected, code/scale sizes, finite positive g_lo/g_hi, and
// g_lo == g_hi when single_scale.
void check_nvfp4_weight(const Nvfp4Weight& w, int64_t rows, int64_t k, bool single_scale,
                        const char* name, size_t index);

// Routed and shared NVFP4 weights and the correction bias against cfg (not gA1/gA2).
// cfg must already be valid.
void check_weight_shapes(const MoeConfig& cfg, const MoeWeights& w);

// Float32 weights against cfg. cfg must already be valid.
void check_float_weight_shapes(const MoeConfig& cfg, const MoeFloatWeights& w);

// The correction bias: empty, or E finite values with sigmoid scoring.
void check_correction_bias(const MoeConfig& cfg, const std::vector<float>& bias);

}  // namespace nvfp4moe::ref::detail
