// torch.classes.nvfp4_moe.MoeLayer: the library's GPU MoE layer (nvfp4moe/cuda/moe.h) loaded
// from a ModelOpt NVFP4 checkpoint directory, with its workspace for up to max_tokens tokens.
// The weights and workspace live in cudaMalloc'd memory owned by the object (outside torch's
// caching allocator), on the CUDA device that was current at construction.
#pragma once

#include <ATen/ATen.h>
#include <torch/custom_class.h>

#include <memory>
#include <string>
#include <tuple>

#include "nvfp4moe/cuda/moe.h"

namespace nvfp4moe::torch_ext {

class MoeLayer : public torch::CustomClassHolder {
 public:
  // path: checkpoint directory (config.json + safetensors shards); layer: the MoE layer index,
  // or -1 for the first MoE layer; mode: "w4a4" or "w4a16"; max_tokens >= 1.
  MoeLayer(const std::string& path, int64_t layer, const std::string& mode, int64_t max_tokens);

  // hidden [T, H] bf16, router_logits [T, E] float32 -> out [T, H] bf16, T <= max_tokens.
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& router_logits);
  void forward_out(const at::Tensor& hidden, const at::Tensor& router_logits, const at::Tensor& out);

  at::Tensor router_weight() const { return router_; }  // [E, H] float32 on the CPU
  at::Tensor error_flags() const;                          // int32 [1] copy of the device word
  int64_t layer_index() const { return layer_; }
  int64_t hidden_size() const { return weights_->config().hidden; }
  int64_t intermediate_size() const { return weights_->config().intermediate; }
  int64_t num_experts() const { return weights_->config().routing.num_experts; }
  int64_t top_k() const { return weights_->config().routing.top_k; }
  int64_t max_tokens() const { return workspace_->max_tokens(); }
  std::string mode() const { return to_string(weights_->config().mode); }
  int64_t device_index() const { return device_; }

  // torch.compile support (the custom-class protocol of torch.compile/export): the metadata a
  // fake layer (nvfp4_moe/_fake.py, FakeMoeLayer.__obj_unflatten__) needs to give moe_forward's
  // output shape and check its inputs; torch.compile guards on these values. No tensors: the
  // weights stay opaque, and the compiled graph calls the real layer.
  using Flat = std::tuple<std::tuple<std::string, int64_t>, std::tuple<std::string, int64_t>,
                          std::tuple<std::string, int64_t>, std::tuple<std::string, int64_t>,
                          std::tuple<std::string, int64_t>, std::tuple<std::string, int64_t>,
                          std::tuple<std::string, int64_t>, std::tuple<std::string, std::string>>;
  Flat obj_flatten() const {
    // Names carry a cfg_ prefix: torch.compile reads them back as attributes of the fake class,
    // where the plain names are its methods.
    return {{"cfg_layer_index", layer_index()}, {"cfg_hidden", hidden_size()},
            {"cfg_intermediate", intermediate_size()}, {"cfg_num_experts", num_experts()},
            {"cfg_top_k", top_k()}, {"cfg_max_tokens", max_tokens()},
            {"cfg_device_index", device_index()}, {"cfg_mode", mode()}};
  }

 private:
  int64_t layer_ = 0;
  c10::DeviceIndex device_ = 0;
  at::Tensor router_;
  std::unique_ptr<cuda::MoeLayerWeights> weights_;
  std::unique_ptr<cuda::MoeWorkspace> workspace_;
};

// The op form of MoeLayer.forward (schema nvfp4_moe::moe_forward).
at::Tensor moe_forward(const c10::intrusive_ptr<MoeLayer>& layer, const at::Tensor& hidden,
                       const at::Tensor& router_logits);
void moe_forward_out(const c10::intrusive_ptr<MoeLayer>& layer, const at::Tensor& hidden,
                     const at::Tensor& router_logits, const at::Tensor& out);

}  // namespace nvfp4moe::torch_ext
