// The built-in default MoE layer of the `nvfp4-moe` tool: small, deterministic, DeepSeek-V3
// style (grouped sigmoid routing with a correction bias, routed scaling, one shared expert).
// Generated from a seed by a portable PRNG (same numbers on every platform), never shipped
// as a binary blob. It can be written out as a bf16 HuggingFace checkpoint so the offline
// quantizer and the ModelOpt loader run on it too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::model {

struct BuiltinModelSpec {
  int64_t hidden = 512;
  int64_t intermediate = 256;    // per routed expert
  int num_experts = 32;
  int top_k = 8;
  int n_group = 8;
  int topk_group = 4;
  float routed_scaling_factor = 2.5f;
  int n_shared_experts = 1;
  uint64_t seed = 20261122;
};

// A float32 MoE layer (weights already rounded to bf16 values, as a bf16 checkpoint holds
// them) with its router.
struct FloatMoeLayer {
  MoeConfig cfg;                    // mode W4A4, act bf16
  ref::MoeFloatWeights weights;     // w13 [2I, H] = gate | up, w2 [H, I], bias, shared
  std::vector<float> router;        // [E, H]
};

FloatMoeLayer make_builtin_layer(const BuiltinModelSpec& spec = {});

// Write `layer` as a HuggingFace checkpoint in `dir` (created if missing): config.json
// (DeepSeek-V3 keys, one hidden layer, which is MoE) and model.safetensors with BF16
// weights named model.layers.0.mlp.{experts.e,shared_experts}.{gate,up,down}_proj.weight,
// model.layers.0.mlp.gate.weight (BF16) and .gate.e_score_correction_bias (F32).
void write_hf_checkpoint(const FloatMoeLayer& layer, const std::string& dir);

// Write a calibration file in the offline quantizer's convention (checkpoint/
// quantize_checkpoint.h: "<linear>.input", here F32 scalars holding the amax) from
// `calib_tokens` random tokens routed through the float layer: each expert's gate_proj
// entry is the amax of the hidden rows it receives, its down_proj entry the amax of its
// SwiGLU output (rounded to bf16); an expert no token reaches takes the largest of its kind.
void write_calibration(const FloatMoeLayer& layer, const std::string& path,
                       int64_t calib_tokens = 256, uint64_t seed = 7);

// Deterministic inputs: hidden states [T, H] in the activation dtype, uniform in [-2, 2)
// with a few larger outliers, as bits.
std::vector<uint16_t> random_hidden(int64_t tokens, int64_t hidden, ActDType act, uint64_t seed);

// Router logits [T, E] = hidden [T, H] x router[E, H]^T in float32 (float64 sums).
std::vector<float> router_logits(std::span<const uint16_t> hidden, ActDType act, int64_t tokens,
                                 std::span<const float> router, int num_experts, int64_t h);

}  // namespace nvfp4moe::model
