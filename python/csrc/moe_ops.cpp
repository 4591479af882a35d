// The MoE layer class and op: load once (host work + cudaMalloc), then forwards that only
// check tensors and call cuda::moe_forward on torch's current stream (capturable in a graph).
#include <ATen/ATen.h>

#include <cstring>
#include <optional>

#include "moe_layer.h"
#include "nvfp4moe/model/moe_layer_loader.h"
#include "tensor_checks.h"

namespace nvfp4moe::torch_ext {

MoeLayer::MoeLayer(const std::string& path, int64_t layer, const std::string& mode, int64_t max_tokens) {
  constexpr const char* op = "nvfp4_moe.MoeLayer";
  MoeMode m;
  if (mode == "w4a4") {
    m = MoeMode::kW4A4;
  } else if (mode == "w4a16") {
    m = MoeMode::kW4A16;
  } else {
    TORCH_CHECK(false, op, ": mode: expected \"w4a4\" or \"w4a16\", got \"", mode, "\"");
  }
  TORCH_CHECK(layer >= -1, op, ": layer: expected a layer index or -1 (the first MoE layer), got ", layer);
  TORCH_CHECK(max_tokens >= 1, op, ": max_tokens: expected >= 1, got ", max_tokens);
  model::LoadedMoeLayer loaded =
      model::load_moe_layer(path, layer < 0 ? std::nullopt : std::optional<int>(static_cast<int>(layer)),
                            ActDType::kBF16, m);
  TORCH_CHECK(m == MoeMode::kW4A16 || loaded.has_activation_scales, op, ": ", path,
              ": the checkpoint has no input_scale for every expert (uncalibrated); W4A4 needs them, "
              "use mode=\"w4a16\"");
  layer_ = loaded.layer;
  device_ = c10::cuda::current_device();
  const int64_t e = loaded.cfg.routing.num_experts, h = loaded.cfg.hidden;
  TORCH_CHECK(static_cast<int64_t>(loaded.router.size()) == e * h, op, ": router weight: expected ", e * h,
              " values, got ", loaded.router.size());
  router_ = at::empty({e, h}, at::TensorOptions().dtype(at::kFloat));
  std::memcpy(router_.data_ptr<float>(), loaded.router.data(), loaded.router.size() * sizeof(float));
  weights_ = std::make_unique<cuda::MoeLayerWeights>(cuda::MoeLayerWeights::upload(loaded.cfg, loaded.weights));
  workspace_ = std::make_unique<cuda::MoeWorkspace>(loaded.cfg, max_tokens);
}

void MoeLayer::forward_out(const at::Tensor& hidden, const at::Tensor& router_logits, const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.moe_forward";
  check_cuda(hidden, op, "hidden");
  TORCH_CHECK(hidden.device().index() == device_, op, ": hidden: expected a tensor on cuda:", int(device_),
              " (where the layer was loaded), got one on ", hidden.device());
  check_dtype(hidden, at::kBFloat16, op, "hidden");
  check_dim(hidden, 2, op, "hidden");
  check_contiguous(hidden, op, "hidden");
  const int64_t tokens = hidden.size(0);
  TORCH_CHECK(hidden.size(1) == hidden_size(), op, ": hidden: expected [T, ", hidden_size(), "], got shape ",
              hidden.sizes());
  TORCH_CHECK(tokens <= max_tokens(), op, ": hidden: expected at most max_tokens = ", max_tokens(),
              " rows (the workspace's size), got ", tokens);
  check_input(router_logits, at::kFloat, hidden, op, "router_logits");
  TORCH_CHECK(router_logits.sizes() == at::IntArrayRef({tokens, num_experts()}), op,
              ": router_logits: expected shape [", tokens, ", ", num_experts(), "], got ", router_logits.sizes());
  check_output(out, {tokens, hidden_size()}, at::kBFloat16, hidden, op, "out");
  if (tokens == 0) return;
  c10::cuda::CUDAGuard guard(hidden.device());
  cuda::moe_forward(*weights_, *workspace_, hidden.data_ptr(), router_logits.data_ptr<float>(), tokens,
                    out.data_ptr(), current_stream());
}

at::Tensor MoeLayer::forward(const at::Tensor& hidden, const at::Tensor& router_logits) {
  check_dim(hidden, 2, "nvfp4_moe.moe_forward", "hidden");
  at::Tensor out = at::empty({hidden.size(0), hidden_size()}, hidden.options().dtype(at::kBFloat16));
  forward_out(hidden, router_logits, out);
  return out;
}

at::Tensor MoeLayer::error_flags() const {
  c10::cuda::CUDAGuard guard(device_);
  at::Tensor flags = at::empty({1}, at::TensorOptions().dtype(at::kInt).device(at::kCUDA, device_));
  // A stream-ordered copy: reads the word after every forward already enqueued on this stream.
  C10_CUDA_CHECK(cudaMemcpyAsync(flags.data_ptr<int32_t>(), workspace_->error_flags(), sizeof(uint32_t),
                                 cudaMemcpyDeviceToDevice, current_stream()));
  return flags;
}

at::Tensor moe_forward(const c10::intrusive_ptr<MoeLayer>& layer, const at::Tensor& hidden,
                       const at::Tensor& router_logits) {
  return layer->forward(hidden, router_logits);
}

void moe_forward_out(const c10::intrusive_ptr<MoeLayer>& layer, const at::Tensor& hidden,
                     const at::Tensor& router_logits, const at::Tensor& out) {
  layer->forward_out(hidden, router_logits, out);
}

}  // namespace nvfp4moe::torch_ext
