// The op implementations of the torch extension, one function per schema of
// register_ops.cpp. Functional ops allocate their outputs on the input's device; the *_out
// variants write into caller-provided buffers of exactly the functional op's shapes and
// dtypes (no resizing, so they can run inside a captured CUDA graph). All enqueue on torch's
// current CUDA stream and never synchronize.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace nvfp4moe::torch_ext {

// ---- quantization (quantize_ops.cpp) ----
std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& x, const at::Tensor& global_scale);
void quantize_out(const at::Tensor& x, const at::Tensor& global_scale, const at::Tensor& codes,
                  const at::Tensor& scales);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_runtime_scale(const at::Tensor& x);
void quantize_runtime_scale_out(const at::Tensor& x, const at::Tensor& codes,
                                const at::Tensor& scales, const at::Tensor& global_scale,
                                const at::Tensor& global_scale_inv);

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_experts(
    const at::Tensor& x, const at::Tensor& expert_offsets, const at::Tensor& global_scales,
    const std::optional<at::Tensor>& gather);
void quantize_experts_out(const at::Tensor& x, const at::Tensor& expert_offsets,
                          const at::Tensor& global_scales, const std::optional<at::Tensor>& gather,
                          const at::Tensor& codes, const at::Tensor& scales,
                          const at::Tensor& error_flags);

at::Tensor silu_and_mul(const at::Tensor& x, std::optional<double> limit);
void silu_and_mul_out(const at::Tensor& x, std::optional<double> limit, const at::Tensor& out);

std::tuple<at::Tensor, at::Tensor, at::Tensor> silu_and_mul_quantize_experts(
    const at::Tensor& x, const at::Tensor& expert_offsets, const at::Tensor& global_scales,
    std::optional<double> limit);
void silu_and_mul_quantize_experts_out(const at::Tensor& x, const at::Tensor& expert_offsets,
                                       const at::Tensor& global_scales,
                                       std::optional<double> limit, const at::Tensor& codes,
                                       const at::Tensor& scales, const at::Tensor& error_flags);

at::Tensor dequantize(const at::Tensor& codes, const at::Tensor& scales,
                      const at::Tensor& global_scale, std::optional<at::ScalarType> out_dtype);
void dequantize_out(const at::Tensor& codes, const at::Tensor& scales,
                    const at::Tensor& global_scale, const at::Tensor& out);

// ---- GEMM (gemm_ops.cpp) ----
at::Tensor prepare_weights(const at::Tensor& codes, const at::Tensor& scales);

at::Tensor gemm_w4a16(const at::Tensor& a, const at::Tensor& weight, int64_t n,
                      const at::Tensor& alpha, std::optional<at::ScalarType> out_dtype);
void gemm_w4a16_out(const at::Tensor& a, const at::Tensor& weight, int64_t n,
                    const at::Tensor& alpha, const at::Tensor& out);
at::Tensor gemm_w4a4(const at::Tensor& a_codes, const at::Tensor& a_scales,
                     const at::Tensor& weight, int64_t n, const at::Tensor& alpha,
                     std::optional<at::ScalarType> out_dtype);
void gemm_w4a4_out(const at::Tensor& a_codes, const at::Tensor& a_scales, const at::Tensor& weight,
                   int64_t n, const at::Tensor& alpha, const at::Tensor& out);

at::Tensor grouped_gemm_w4a16(const at::Tensor& a, const at::Tensor& expert_offsets,
                              const at::Tensor& weight, int64_t n, const at::Tensor& alpha,
                              std::optional<at::ScalarType> out_dtype);
void grouped_gemm_w4a16_out(const at::Tensor& a, const at::Tensor& expert_offsets,
                            const at::Tensor& weight, int64_t n, const at::Tensor& alpha,
                            const at::Tensor& out);
at::Tensor grouped_gemm_w4a4(const at::Tensor& a_codes, const at::Tensor& a_scales,
                             const at::Tensor& expert_offsets, const at::Tensor& weight, int64_t n,
                             const at::Tensor& alpha, std::optional<at::ScalarType> out_dtype);
void grouped_gemm_w4a4_out(const at::Tensor& a_codes, const at::Tensor& a_scales,
                           const at::Tensor& expert_offsets, const at::Tensor& weight, int64_t n,
                           const at::Tensor& alpha, const at::Tensor& out);

// ---- routing, permutation, combine (routing_ops.cpp) ----
std::tuple<at::Tensor, at::Tensor> route(const at::Tensor& logits,
                                         const std::optional<at::Tensor>& correction_bias,
                                         int64_t top_k, std::string_view scoring, bool renormalize,
                                         int64_t n_group, int64_t topk_group,
                                         double routed_scaling_factor);
void route_out(const at::Tensor& logits, const std::optional<at::Tensor>& correction_bias,
               int64_t top_k, std::string_view scoring, bool renormalize, int64_t n_group,
               int64_t topk_group, double routed_scaling_factor, const at::Tensor& ids,
               const at::Tensor& weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> permute(
    const at::Tensor& ids, int64_t num_experts);
void permute_out(const at::Tensor& ids, int64_t num_experts, const at::Tensor& counts,
                 const at::Tensor& expert_offsets, const at::Tensor& scale_offsets,
                 const at::Tensor& sorted_to_pair, const at::Tensor& pair_to_sorted,
                 const at::Tensor& sorted_to_token);

at::Tensor combine(const at::Tensor& rows, const at::Tensor& weights,
                   const at::Tensor& pair_to_sorted, const std::optional<at::Tensor>& shared,
                   std::optional<at::ScalarType> out_dtype);
void combine_out(const at::Tensor& rows, const at::Tensor& weights, const at::Tensor& pair_to_sorted,
                 const std::optional<at::Tensor>& shared, const at::Tensor& out);

}  // namespace nvfp4moe::torch_ext
