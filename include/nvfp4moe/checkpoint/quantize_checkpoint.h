// Offline quantizer: a bf16 (or fp16/fp32) HuggingFace MoE checkpoint -> a ModelOpt-style
// NVFP4 checkpoint (names and layouts in modelopt.h).
//
// What is quantized: for every MoE prefix P (e.g. "model.layers.3.mlp"), each
//   P.experts.<e>.{gate,up,down}_proj.weight         (always)
//   P.<shared_experts>.{gate,up,down}_proj.weight    (when quantize_shared_experts)
// Each weight W [N, K] (K % 16 == 0) gets its own global scale (gate and up separately):
//   g = global_scale_from_amax(amax(|W|))            (NaN ignored; g = 1 for an all-zero W)
//   codes, scales: quantize_block16 on every 16-element block of every row with g
// and is written as <linear>.weight (U8 [N, K/2]), .weight_scale (F8_E4M3 [N, K/16],
// row-major), .weight_scale_2 (F32 scalar shape [], = 1/g rounded to float).
// Every other tensor (router, attention, norms, embeddings, dense MLPs, biases) is copied
// through byte for byte with its dtype and shape.
//
// MoE prefixes: options.moe_prefixes, or when empty every P that has at least one tensor
// named P.experts.<integer>.{gate,up,down}_proj.weight.
//
// Calibration (options.calibration_path, optional): a safetensors file whose tensors are
// sample activations named after the linear they feed:
//   <linear>.input     any shape (a scalar works: it is then the amax itself), BF16/F16/F32
// e.g. "model.layers.3.mlp.experts.7.down_proj.input" = the [T_e, I] SwiGLU outputs routed
// to expert 7. gate_proj and up_proj read the same activations, so either one's entry serves
// both (a linear's own entry wins). For each calibrated linear:
//   input_scale = 1 / global_scale_from_amax(amax(|activations|))  (~ amax / 2688; 1 for an
//                 all-zero entry), F32 scalar shape [].
// A linear without an entry gets no input_scale tensor: the runtime then computes the
// activation global scale from the activations themselves (the runtime-global-scale path).
// A calibration tensor that names no quantized linear is an error (a typo would otherwise
// silently leave the model uncalibrated).
//
// Output: `output_dir` (created if missing) receives one file per input shard, with the
// shard's file name; model.safetensors.index.json (weight_map) when there is more than one
// shard; and hf_quant_config.json {"producer": {"name": "nvfp4moe"}, "quantization":
// {"quant_algo": "NVFP4", "group_size": 16, "kv_cache_quant_algo": null,
// "exclude_modules": [modules of 2-D ".weight" tensors copied unquantized, sorted]}}.
// Each file is written atomically; the output directory must differ from every input's.
//
// Every check (names, dtypes, shapes, K % 16, calibration entries) runs over all inputs
// before the first output byte is written.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace nvfp4moe::checkpoint {

struct QuantizeCheckpointOptions {
  std::vector<std::string> moe_prefixes;       // empty: auto-detect
  bool quantize_shared_experts = true;
  std::string shared_experts_name = "shared_experts";  // "shared_expert" for Qwen2-MoE
  std::string calibration_path;                // empty: no calibration
  // Called with (tensors done, tensors total) after each output tensor group (a quantized
  // linear counts as one), and once with (0, total) before any work.
  std::function<void(std::int64_t done, std::int64_t total)> progress;
};

struct QuantizeCheckpointReport {
  std::vector<std::string> moe_prefixes;       // the prefixes used (detected or given)
  std::int64_t quantized_linears = 0;
  std::int64_t calibrated_linears = 0;         // of those, how many got an input_scale
  std::int64_t copied_tensors = 0;
  std::vector<std::string> output_files;       // shard paths written
};

// `inputs`: safetensors shard files, or a single checkpoint directory (its shards as listed
// by list_safetensors_shards). Throws nvfp4moe::Error naming the tensor/file on bad input.
QuantizeCheckpointReport quantize_checkpoint(const std::vector<std::string>& inputs,
                                             const std::string& output_dir,
                                             const QuantizeCheckpointOptions& options = {});

}  // namespace nvfp4moe::checkpoint
