// The export list of the nvfp4_moe torch library: schemas and the kernels behind them, nothing
// else (checks and launches live in *_ops.cpp). Fake (meta) implementations for torch.compile
// are registered in Python (nvfp4_moe/_fake.py).
//
// Conventions: NVFP4 codes are torch.float4_e2m1fn_x2 [R, K/2]; block scales are
// torch.float8_e4m3fn [roundup(R, 128), roundup(K/16, 4)] in the 128x4 swizzled byte order;
// global scales are float32 device tensors in the encode form g = 448 * 6 / amax. Each *_out op
// writes into caller buffers of the functional op's output shapes and returns nothing.
#include <torch/library.h>

#include "moe_layer.h"
#include "ops.h"

using namespace nvfp4moe::torch_ext;  // NOLINT: the export list names every op

TORCH_LIBRARY(nvfp4_moe, m) {
  // quantization
  m.def("quantize(Tensor x, Tensor global_scale) -> (Tensor codes, Tensor scales)");
  m.def("quantize_out(Tensor x, Tensor global_scale, *, Tensor(a!) codes, Tensor(b!) scales) -> ()");
  m.def("quantize_runtime_scale(Tensor x) -> (Tensor codes, Tensor scales, Tensor global_scale, "
        "Tensor global_scale_inv)");
  m.def("quantize_runtime_scale_out(Tensor x, *, Tensor(a!) codes, Tensor(b!) scales, "
        "Tensor(c!) global_scale, Tensor(d!) global_scale_inv) -> ()");
  m.def("quantize_experts(Tensor x, Tensor expert_offsets, Tensor global_scales, Tensor? gather=None) "
        "-> (Tensor codes, Tensor scales, Tensor error_flags)");
  m.def("quantize_experts_out(Tensor x, Tensor expert_offsets, Tensor global_scales, Tensor? gather, *, "
        "Tensor(a!) codes, Tensor(b!) scales, Tensor(c!) error_flags) -> ()");
  m.def("silu_and_mul(Tensor x, float? limit=None) -> Tensor");
  m.def("silu_and_mul_out(Tensor x, float? limit, *, Tensor(a!) out) -> ()");
  m.def("silu_and_mul_quantize_experts(Tensor x, Tensor expert_offsets, Tensor global_scales, "
        "float? limit=None) -> (Tensor codes, Tensor scales, Tensor error_flags)");
  m.def("silu_and_mul_quantize_experts_out(Tensor x, Tensor expert_offsets, Tensor global_scales, "
        "float? limit, *, Tensor(a!) codes, Tensor(b!) scales, Tensor(c!) error_flags) -> ()");
  m.def("dequantize(Tensor codes, Tensor scales, Tensor global_scale, ScalarType? out_dtype=None) -> Tensor");
  m.def("dequantize_out(Tensor codes, Tensor scales, Tensor global_scale, *, Tensor(a!) out) -> ()");

  // GEMM
  m.def("prepare_weights(Tensor codes, Tensor scales) -> Tensor");
  m.def("gemm_w4a16(Tensor a, Tensor weight, int n, Tensor alpha, ScalarType? out_dtype=None) -> Tensor");
  m.def("gemm_w4a16_out(Tensor a, Tensor weight, int n, Tensor alpha, *, Tensor(a!) out) -> ()");
  m.def("gemm_w4a4(Tensor a_codes, Tensor a_scales, Tensor weight, int n, Tensor alpha, "
        "ScalarType? out_dtype=None) -> Tensor");
  m.def("gemm_w4a4_out(Tensor a_codes, Tensor a_scales, Tensor weight, int n, Tensor alpha, *, "
        "Tensor(a!) out) -> ()");
  m.def("grouped_gemm_w4a16(Tensor a, Tensor expert_offsets, Tensor weight, int n, Tensor alpha, "
        "ScalarType? out_dtype=None) -> Tensor");
  m.def("grouped_gemm_w4a16_out(Tensor a, Tensor expert_offsets, Tensor weight, int n, Tensor alpha, *, "
        "Tensor(a!) out) -> ()");
  m.def("grouped_gemm_w4a4(Tensor a_codes, Tensor a_scales, Tensor expert_offsets, Tensor weight, int n, "
        "Tensor alpha, ScalarType? out_dtype=None) -> Tensor");
  m.def("grouped_gemm_w4a4_out(Tensor a_codes, Tensor a_scales, Tensor expert_offsets, Tensor weight, "
        "int n, Tensor alpha, *, Tensor(a!) out) -> ()");

  // routing, permutation, combine
  m.def("route(Tensor logits, Tensor? correction_bias, int top_k, str scoring=\"softmax\", "
        "bool renormalize=True, int n_group=1, int topk_group=1, float routed_scaling_factor=1.0) "
        "-> (Tensor ids, Tensor weights)");
  m.def("route_out(Tensor logits, Tensor? correction_bias, int top_k, str scoring, bool renormalize, "
        "int n_group, int topk_group, float routed_scaling_factor, *, Tensor(a!) ids, Tensor(b!) weights) -> ()");
  m.def("permute(Tensor ids, int num_experts) -> (Tensor counts, Tensor expert_offsets, "
        "Tensor scale_offsets, Tensor sorted_to_pair, Tensor pair_to_sorted, Tensor sorted_to_token)");
  m.def("permute_out(Tensor ids, int num_experts, *, Tensor(a!) counts, Tensor(b!) expert_offsets, "
        "Tensor(c!) scale_offsets, Tensor(d!) sorted_to_pair, Tensor(e!) pair_to_sorted, "
        "Tensor(f!) sorted_to_token) -> ()");
  m.def("combine(Tensor rows, Tensor weights, Tensor pair_to_sorted, Tensor? shared=None, "
        "ScalarType? out_dtype=None) -> Tensor");
  m.def("combine_out(Tensor rows, Tensor weights, Tensor pair_to_sorted, Tensor? shared, *, "
        "Tensor(a!) out) -> ()");

  // the MoE layer (cuda/moe.h)
  m.class_<MoeLayer>("MoeLayer")
      .def(torch::init<std::string, int64_t, std::string, int64_t>())
      .def("forward", &MoeLayer::forward)
      .def("forward_out", &MoeLayer::forward_out)
      .def("router_weight", &MoeLayer::router_weight)
      .def("error_flags", &MoeLayer::error_flags)
      .def("layer_index", &MoeLayer::layer_index)
      .def("hidden_size", &MoeLayer::hidden_size)
      .def("intermediate_size", &MoeLayer::intermediate_size)
      .def("num_experts", &MoeLayer::num_experts)
      .def("top_k", &MoeLayer::top_k)
      .def("max_tokens", &MoeLayer::max_tokens)
      .def("mode", &MoeLayer::mode)
      .def("device_index", &MoeLayer::device_index)
      .def("__obj_flatten__", &MoeLayer::obj_flatten);
  m.def("moe_forward(__torch__.torch.classes.nvfp4_moe.MoeLayer layer, Tensor hidden, Tensor router_logits) "
        "-> Tensor");
  m.def("moe_forward_out(__torch__.torch.classes.nvfp4_moe.MoeLayer layer, Tensor hidden, "
        "Tensor router_logits, *, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(nvfp4_moe, CUDA, m) {
  m.impl("quantize", &quantize);
  m.impl("quantize_out", &quantize_out);
  m.impl("quantize_runtime_scale", &quantize_runtime_scale);
  m.impl("quantize_runtime_scale_out", &quantize_runtime_scale_out);
  m.impl("quantize_experts", &quantize_experts);
  m.impl("quantize_experts_out", &quantize_experts_out);
  m.impl("silu_and_mul", &silu_and_mul);
  m.impl("silu_and_mul_out", &silu_and_mul_out);
  m.impl("silu_and_mul_quantize_experts", &silu_and_mul_quantize_experts);
  m.impl("silu_and_mul_quantize_experts_out", &silu_and_mul_quantize_experts_out);
  m.impl("dequantize", &dequantize);
  m.impl("dequantize_out", &dequantize_out);
  m.impl("gemm_w4a16", &gemm_w4a16);
  m.impl("gemm_w4a16_out", &gemm_w4a16_out);
  m.impl("gemm_w4a4", &gemm_w4a4);
  m.impl("gemm_w4a4_out", &gemm_w4a4_out);
  m.impl("grouped_gemm_w4a16", &grouped_gemm_w4a16);
  m.impl("grouped_gemm_w4a16_out", &grouped_gemm_w4a16_out);
  m.impl("grouped_gemm_w4a4", &grouped_gemm_w4a4);
  m.impl("grouped_gemm_w4a4_out", &grouped_gemm_w4a4_out);
  m.impl("route", &route);
  m.impl("route_out", &route_out);
  m.impl("permute", &permute);
  m.impl("permute_out", &permute_out);
  m.impl("combine", &combine);
  m.impl("combine_out", &combine_out);
  m.impl("moe_forward", &moe_forward);
  m.impl("moe_forward_out", &moe_forward_out);
}

// Weight preparation is host work at load time: one kernel for CPU and CUDA inputs (the result
// lands on the input's device).
TORCH_LIBRARY_IMPL(nvfp4_moe, CompositeExplicitAutograd, m) {
  m.impl("prepare_weights", &prepare_weights);
}
