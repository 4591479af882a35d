// HuggingFace config.json (MoE keys) and ModelOpt quantization configs.
//
// Keys read (first spelling found wins; two spellings that disagree are an error):
//   hidden_size                                   required, > 0
//   n_routed_experts | num_experts | num_local_experts   required (DeepSeek | Qwen | Mixtral)
//   moe_intermediate_size                         required, > 0; configs that name their
//                                                 experts num_local_experts (Mixtral, gpt-oss)
//                                                 use intermediate_size instead
//   num_experts_per_tok                           required (top_k)
//   scoring_func        "softmax" | "sigmoid"     default: "sigmoid" for model_type
//                                                 deepseek_v3 (HF's class hard-codes it),
//                                                 else "softmax"
//   norm_topk_prob      bool                      default: true for deepseek_v3, mixtral and
//                                                 gpt_oss (they always renormalize), else false
//                                                 (HF's Qwen2/Qwen3-MoE default)
//   n_group, topk_group int                       default 1 (no grouping). With softmax
//                                                 scoring, groups are only accepted with
//                                                 topk_method "greedy" (then ignored):
//                                                 DeepSeek-V2's group_limited_greedy is not
//                                                 supported
//   topk_method         string                    default "" (recorded; see above)
//   routed_scaling_factor float                   default 1.0, finite and > 0
//   n_shared_experts    int                       default 0; DeepSeek's shared MLP is one
//                                                 MLP of width n_shared_experts *
//                                                 moe_intermediate_size
//   shared_expert_intermediate_size int           Qwen2-MoE: one gated shared expert of this
//                                                 width (n_shared_experts = 1, gated = true)
//   swiglu_limit        float                     optional (> 0): clamp of the SwiGLU inputs
//   hidden_act          string                    default "silu"; "silu" or "swish" (the experts' SwiGLU)
//   num_hidden_layers, first_k_dense_replace (0), moe_layer_freq (1),
//   decoder_sparse_step (1), mlp_only_layers ([]) decide which layers are MoE.
// A key whose value is null counts as absent. Numbers for integer keys must be integers.
// When the top level has no hidden_size but a "text_config" object (multimodal wrappers),
// the MoE keys are read from text_config.
//
// Quantization: config.json's "quantization_config" {quant_method, quant_algo, group_size,
// exclude_modules (alias "ignore"), kv_cache_quant_algo}, or hf_quant_config.json's
// "quantization" object with the same fields. quant_algo "NVFP4" requires group_size 16
// (the default when absent).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe::checkpoint {

struct QuantizationConfig {
  std::string quant_method;                      // "modelopt", ... ("" when absent)
  std::string quant_algo;                        // "NVFP4", "FP8", ... ("" when absent)
  int group_size = 16;
  std::vector<std::string> exclude_modules;      // module names or globs ('*' = any run)
  std::optional<std::string> kv_cache_quant_algo;

  bool is_nvfp4() const { return quant_algo == "NVFP4"; }
  // True when `module` (e.g. "model.layers.3.self_attn.q_proj") matches an exclude pattern.
  bool excludes(std::string_view module) const;
};

struct MoeModelConfig {
  std::string model_type;                 // "" when absent
  std::int64_t hidden_size = 0;           // H
  std::int64_t moe_intermediate_size = 0; // I of one routed expert
  RoutingConfig routing;                  // experts, top_k, scoring, groups, scaling
  std::string topk_method;
  int n_shared_experts = 0;
  std::int64_t shared_intermediate_size = 0;  // width of the (fused) shared MLP; 0 if none
  bool shared_expert_gated = false;           // Qwen2-MoE: sigmoid(shared_expert_gate) scales it
  std::optional<float> swiglu_limit;
  std::string hidden_act = "silu";
  int num_hidden_layers = 0;              // 0 when absent
  int first_k_dense_replace = 0;
  int moe_layer_freq = 1;
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  std::optional<QuantizationConfig> quantization;

  // DeepSeek: layer >= first_k_dense_replace and layer % moe_layer_freq == 0; Qwen: layer
  // not in mlp_only_layers and (layer + 1) % decoder_sparse_step == 0; both checks apply
  // (their defaults make the other family's test pass). False outside [0, num_hidden_layers)
  // when num_hidden_layers is known.
  bool is_moe_layer(int layer) const;
};

// Parse config.json text. `label` names the source in error messages.
MoeModelConfig parse_model_config(std::string_view json_text, const std::string& label = "config.json");
// Parse hf_quant_config.json text (its "quantization" object).
QuantizationConfig parse_hf_quant_config(std::string_view json_text,
                                         const std::string& label = "hf_quant_config.json");
// Read `path` (a config.json file, or a directory holding one). When config.json has no
// quantization_config and hf_quant_config.json sits next to it, that file supplies it.
MoeModelConfig load_model_config(const std::string& path);

}  // namespace nvfp4moe::checkpoint
