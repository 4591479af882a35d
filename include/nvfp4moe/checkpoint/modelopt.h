// ModelOpt NVFP4 checkpoints: tensor names, on-disk layouts, and the scale (un)swizzle
// between the checkpoint's row-major scales and the project's 128x4 swizzled layout.
//
// Names for MoE layer L (prefix "{layers_prefix}.{L}.{mlp}", default "model.layers.L.mlp"):
//   routed expert e:  {prefix}.experts.{e}.{gate,up,down}_proj.{weight,weight_scale,weight_scale_2,input_scale}
//   shared experts:   {prefix}.shared_experts.{gate,up,down}_proj.{...}   ("shared_expert" in Qwen2-MoE)
//   router:           {prefix}.gate.weight              [E, H] (kept in bf16)
//                     {prefix}.gate.e_score_correction_bias   [E] (DeepSeek-V3)
//
// One NVFP4 linear W [N, K] (N = out_features, K = in_features, K % 16 == 0):
//   weight          U8       [N, K/2]   packed e2m1, element 2i in the low nibble
//   weight_scale    F8_E4M3  [N, K/16]  block scales, ROW-MAJOR (not swizzled)
//   weight_scale_2  F32      [] or [1]  1/gB, the decode form of the weight's global scale
//   input_scale     F32      [] or [1]  1/gA, the activation's decode global scale
//                                       (absent when the checkpoint was not calibrated;
//                                       the runtime then computes gA from the activations)
// gate_proj and up_proj are separate tensors, each with its own weight_scale_2.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "nvfp4moe/checkpoint/checkpoint.h"

namespace nvfp4moe::checkpoint {

enum class Proj : int { kGate, kUp, kDown };
enum class QuantField : int { kWeight, kWeightScale, kWeightScale2, kInputScale };

const char* to_string(Proj p);         // "gate_proj", "up_proj", "down_proj"
const char* to_string(QuantField f);   // "weight", "weight_scale", "weight_scale_2", "input_scale"

// "<linear>.<field>", e.g. tensor_name("model.layers.3.mlp.experts.0.up_proj", kWeightScale).
std::string tensor_name(const std::string& linear, QuantField f);

// Where the MoE blocks live and what their children are called; the defaults are
// DeepSeek-V3 / Qwen3-MoE as exported by ModelOpt.
struct MoeNaming {
  std::string layers_prefix = "model.layers";
  std::string mlp = "mlp";
  std::string experts = "experts";
  std::string shared_experts = "shared_experts";
  std::string router = "gate";

  std::string moe_prefix(int layer) const;                          // model.layers.3.mlp
  std::string expert_linear(int layer, int expert, Proj p) const;   // ....experts.7.up_proj
  std::string expert_tensor(int layer, int expert, Proj p, QuantField f) const;
  std::string shared_linear(int layer, Proj p) const;               // ....shared_experts.up_proj
  std::string shared_tensor(int layer, Proj p, QuantField f) const;
  std::string router_weight(int layer) const;                       // ....gate.weight
  std::string router_correction_bias(int layer) const;              // ....gate.e_score_correction_bias
};

// One NVFP4 linear of a checkpoint, validated and viewed in place (spans into the mapped
// shards, valid while the Checkpoint lives; not necessarily aligned).
struct Nvfp4Linear {
  std::string linear;                        // the name prefix
  std::int64_t n = 0, k = 0;                 // W is [n, k]
  std::span<const std::uint8_t> weight;        // [n, k/2]
  std::span<const std::uint8_t> weight_scale;  // [n, k/16] row-major e4m3
  float weight_scale_2 = 1.0f;               // 1/gB, finite and > 0
  std::optional<float> input_scale;          // 1/gA, finite and > 0, when present
};

// Reads and checks `<linear>.weight`, `.weight_scale`, `.weight_scale_2` and the optional
// `.input_scale`: dtypes, shapes ([N, K/2] and [N, K/16] with the same N, K % 16 == 0),
// scalars finite and positive. Throws Error naming the tensor.
Nvfp4Linear read_nvfp4_linear(const Checkpoint& ckpt, const std::string& linear);

// Row-major [rows, k/16] e4m3 scales -> the swizzled layout of format/swizzle.h
// (swizzled_scale_bytes(rows, k) bytes, padding bytes written as zero).
void swizzle_scales(std::span<const std::uint8_t> row_major, std::int64_t rows, std::int64_t k,
                    std::span<std::uint8_t> swizzled);
// The inverse: reads only the rows x k/16 real entries (padding is ignored).
void unswizzle_scales(std::span<const std::uint8_t> swizzled, std::int64_t rows, std::int64_t k,
                      std::span<std::uint8_t> row_major);

}  // namespace nvfp4moe::checkpoint
