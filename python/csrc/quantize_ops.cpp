// Quantization ops: tensor checks, output allocation, then the launchers of
// nvfp4moe/cuda/quantize.h on torch's current stream.
//
// Shapes (rows R, width K, E experts):
//   codes  [R, K/2] torch.float4_e2m1fn_x2 (accepted as uint8 too)
//   scales [roundup(R, 128), roundup(K/16, 4)] torch.float8_e4m3fn holding the 128x4 swizzled
//          bytes (the shape is the padded scale matrix; the byte order is the swizzle);
//          per-expert: [expert_scale_rows_capacity(R, E), roundup(K/16, 4)]; the kernels write
//          scale rows [0, sf_off[E]) (each expert padded to 128 rows); the functional ops
//          return zeros past that, the out= ops leave those rows as they were
//   global scales: float32 device tensors (encode form g = 448 * 6 / amax).
#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/format/swizzle.h"
#include "ops.h"
#include "tensor_checks.h"

namespace nvfp4moe::torch_ext {
namespace {

// x [rows, k]: CUDA, contiguous, bf16/fp16, k a positive multiple of 16.
ActDType check_activation(const at::Tensor& x, const char* op, int64_t k_multiple = 16) {
  check_cuda(x, op, "x");
  check_dim(x, 2, op, "x");
  check_contiguous(x, op, "x");
  ActDType dtype = act_dtype_of(x, op, "x");
  TORCH_CHECK(x.size(1) > 0 && x.size(1) % k_multiple == 0, op, ": x: expected the last dimension to be a positive multiple of ",
              k_multiple, ", got shape ", x.sizes());
  return dtype;
}

std::vector<int64_t> scale_shape(int64_t rows, int64_t k) {
  return {padded_scale_rows(rows), padded_scale_cols(k)};
}

// codes [rows, k/2] and scales [scale_rows, padded_cols(k)] output buffers.
void check_nvfp4_outputs(const at::Tensor& codes, const at::Tensor& scales, int64_t rows, int64_t k,
                         int64_t scale_rows, const at::Tensor& ref, const char* op) {
  check_cuda(codes, op, "codes");
  check_same_device(codes, ref, op, "codes");
  check_codes_dtype(codes, op, "codes");
  check_contiguous(codes, op, "codes");
  TORCH_CHECK(codes.dim() == 2 && codes.size(0) == rows && codes.size(1) == k / 2, op,
              ": codes: expected shape [", rows, ", ", k / 2, "], got ", codes.sizes());
  check_cuda(scales, op, "scales");
  check_same_device(scales, ref, op, "scales");
  check_scales_dtype(scales, op, "scales");
  check_contiguous(scales, op, "scales");
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == scale_rows && scales.size(1) == padded_scale_cols(k),
              op, ": scales: expected shape [", scale_rows, ", ", padded_scale_cols(k), "], got ",
              scales.sizes());
}

// Expert offsets off [E+1] int32 and global scales g [E] float32 on x's device.
int check_expert_args(const at::Tensor& off, const at::Tensor& g, const at::Tensor& x, const char* op) {
  check_input(off, at::kInt, x, op, "expert_offsets");
  check_dim(off, 1, op, "expert_offsets");
  const int64_t num_experts = off.size(0) - 1;
  TORCH_CHECK(num_experts >= 1 && num_experts <= cuda::kQuantMaxExperts, op,
              ": expert_offsets: expected [E+1] entries with 1 <= E <= ", cuda::kQuantMaxExperts,
              ", got shape ", off.sizes());
  check_input(g, at::kFloat, x, op, "global_scales");
  TORCH_CHECK(g.dim() == 1 && g.size(0) == num_experts, op, ": global_scales: expected shape [",
              num_experts, "] (one per expert), got ", g.sizes());
  return static_cast<int>(num_experts);
}

void check_error_flags(const at::Tensor& flags, const at::Tensor& x, const char* op) {
  check_input(flags, at::kInt, x, op, "error_flags");
  TORCH_CHECK(flags.numel() == 1, op, ": error_flags: expected a one-element int32 tensor, got shape ",
              flags.sizes());
}

uint32_t* flags_ptr(const at::Tensor& flags) { return reinterpret_cast<uint32_t*>(flags.data_ptr<int32_t>()); }

std::optional<float> limit_of(std::optional<double> limit, const char* op) {
  if (!limit) return std::nullopt;
  TORCH_CHECK(std::isfinite(*limit) && *limit > 0.0, op, ": limit: expected a finite value > 0, got ", *limit);
  return static_cast<float>(*limit);
}

}  // namespace

// ---- quantize: static global scale ----
void quantize_out(const at::Tensor& x, const at::Tensor& global_scale, const at::Tensor& codes,
                  const at::Tensor& scales) {
  constexpr const char* op = "nvfp4_moe.quantize";
  ActDType dtype = check_activation(x, op);
  check_scalar_f32(global_scale, x, op, "global_scale");
  const int64_t rows = x.size(0), k = x.size(1);
  check_nvfp4_outputs(codes, scales, rows, k, padded_scale_rows(rows), x, op);
  c10::cuda::CUDAGuard guard(x.device());
  cuda::quantize(x.data_ptr(), dtype, rows, k, global_scale.data_ptr<float>(), bytes_of(codes),
                 bytes_of(scales), current_stream());
}

std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& x, const at::Tensor& global_scale) {
  check_activation(x, "nvfp4_moe.quantize");
  const int64_t rows = x.size(0), k = x.size(1);
  at::Tensor codes = empty_bytes({rows, k / 2}, at::kFloat4_e2m1fn_x2, x);
  at::Tensor scales = empty_bytes(scale_shape(rows, k), at::kFloat8_e4m3fn, x);
  quantize_out(x, global_scale, codes, scales);
  return {codes, scales};
}

// ---- quantize with a global scale computed on the device from amax(|x|) ----
void quantize_runtime_scale_out(const at::Tensor& x, const at::Tensor& codes,
                                const at::Tensor& scales, const at::Tensor& global_scale,
                                const at::Tensor& global_scale_inv) {
  constexpr const char* op = "nvfp4_moe.quantize_runtime_scale";
  ActDType dtype = check_activation(x, op);
  const int64_t rows = x.size(0), k = x.size(1);
  check_nvfp4_outputs(codes, scales, rows, k, padded_scale_rows(rows), x, op);
  check_scalar_f32(global_scale, x, op, "global_scale");
  check_scalar_f32(global_scale_inv, x, op, "global_scale_inv");
  c10::cuda::CUDAGuard guard(x.device());
  // amax is a stream-ordered workspace: the caching allocator keeps it valid for the kernels.
  at::Tensor amax = at::empty({1}, x.options().dtype(at::kFloat));
  cuda::quantize_runtime_scale(x.data_ptr(), dtype, rows, k, bytes_of(codes), bytes_of(scales),
                               amax.data_ptr<float>(), global_scale.data_ptr<float>(),
                               global_scale_inv.data_ptr<float>(), current_stream());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_runtime_scale(const at::Tensor& x) {
  check_activation(x, "nvfp4_moe.quantize_runtime_scale");
  const int64_t rows = x.size(0), k = x.size(1);
  at::Tensor codes = empty_bytes({rows, k / 2}, at::kFloat4_e2m1fn_x2, x);
  at::Tensor scales = empty_bytes(scale_shape(rows, k), at::kFloat8_e4m3fn, x);
  at::Tensor g = at::empty({1}, x.options().dtype(at::kFloat));
  at::Tensor g_inv = at::empty({1}, x.options().dtype(at::kFloat));
  quantize_runtime_scale_out(x, codes, scales, g, g_inv);
  return {codes, scales, g, g_inv};
}

// ---- per-expert quantization (optionally gathering rows) ----
void quantize_experts_out(const at::Tensor& x, const at::Tensor& expert_offsets,
                          const at::Tensor& global_scales, const std::optional<at::Tensor>& gather,
                          const at::Tensor& codes, const at::Tensor& scales,
                          const at::Tensor& error_flags) {
  constexpr const char* op = "nvfp4_moe.quantize_experts";
  ActDType dtype = check_activation(x, op);
  const int num_experts = check_expert_args(expert_offsets, global_scales, x, op);
  const int64_t rows_in = x.size(0), k = x.size(1);
  int64_t rows_out = rows_in;
  if (gather) {
    check_input(*gather, at::kInt, x, op, "gather");
    check_dim(*gather, 1, op, "gather");
    rows_out = gather->size(0);
  }
  check_nvfp4_outputs(codes, scales, rows_out, k, expert_scale_rows_capacity(rows_out, num_experts), x, op);
  check_error_flags(error_flags, x, op);
  c10::cuda::CUDAGuard guard(x.device());
  cuda::quantize_experts(x.data_ptr(), dtype, rows_in, k, expert_offsets.data_ptr<int32_t>(), num_experts,
                         global_scales.data_ptr<float>(),
                         gather && rows_out > 0 ? gather->data_ptr<int32_t>() : nullptr,  // empty map: no rows
                         rows_out, bytes_of(codes), bytes_of(scales), scales.size(0), flags_ptr(error_flags),
                         current_stream());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_experts(
    const at::Tensor& x, const at::Tensor& expert_offsets, const at::Tensor& global_scales,
    const std::optional<at::Tensor>& gather) {
  constexpr const char* op = "nvfp4_moe.quantize_experts";
  check_activation(x, op);
  const int num_experts = check_expert_args(expert_offsets, global_scales, x, op);
  const int64_t rows_out = gather ? gather->numel() : x.size(0), k = x.size(1);
  at::Tensor codes = empty_bytes({rows_out, k / 2}, at::kFloat4_e2m1fn_x2, x);
  at::Tensor scales = zeroed_bytes({expert_scale_rows_capacity(rows_out, num_experts), padded_scale_cols(k)},
                                  at::kFloat8_e4m3fn, x);
  at::Tensor flags = at::zeros({1}, x.options().dtype(at::kInt));
  quantize_experts_out(x, expert_offsets, global_scales, gather, codes, scales, flags);
  return {codes, scales, flags};
}

// ---- silu(gate) * up ----
void silu_and_mul_out(const at::Tensor& x, std::optional<double> limit, const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.silu_and_mul";
  ActDType dtype = check_activation(x, op, 16);  // 2 * inter with inter % 8 == 0
  const int64_t rows = x.size(0), inter = x.size(1) / 2;
  check_output(out, {rows, inter}, x.scalar_type(), x, op, "out");
  std::optional<float> lim = limit_of(limit, op);
  c10::cuda::CUDAGuard guard(x.device());
  cuda::silu_and_mul(x.data_ptr(), dtype, rows, inter, lim, out.data_ptr(), current_stream());
}

at::Tensor silu_and_mul(const at::Tensor& x, std::optional<double> limit) {
  check_activation(x, "nvfp4_moe.silu_and_mul", 16);
  at::Tensor out = at::empty({x.size(0), x.size(1) / 2}, x.options());
  silu_and_mul_out(x, limit, out);
  return out;
}

// ---- fused silu(gate) * up + per-expert quantization ----
void silu_and_mul_quantize_experts_out(const at::Tensor& x, const at::Tensor& expert_offsets,
                                       const at::Tensor& global_scales,
                                       std::optional<double> limit, const at::Tensor& codes,
                                       const at::Tensor& scales, const at::Tensor& error_flags) {
  constexpr const char* op = "nvfp4_moe.silu_and_mul_quantize_experts";
  ActDType dtype = check_activation(x, op, 32);  // 2 * inter with inter % 16 == 0
  const int num_experts = check_expert_args(expert_offsets, global_scales, x, op);
  const int64_t rows = x.size(0), inter = x.size(1) / 2;
  check_nvfp4_outputs(codes, scales, rows, inter, expert_scale_rows_capacity(rows, num_experts), x, op);
  check_error_flags(error_flags, x, op);
  std::optional<float> lim = limit_of(limit, op);
  c10::cuda::CUDAGuard guard(x.device());
  cuda::silu_and_mul_quantize_experts(x.data_ptr(), dtype, rows, inter, lim, expert_offsets.data_ptr<int32_t>(),
                                      num_experts, global_scales.data_ptr<float>(), bytes_of(codes),
                                      bytes_of(scales), scales.size(0), flags_ptr(error_flags),
                                      current_stream());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> silu_and_mul_quantize_experts(
    const at::Tensor& x, const at::Tensor& expert_offsets, const at::Tensor& global_scales,
    std::optional<double> limit) {
  constexpr const char* op = "nvfp4_moe.silu_and_mul_quantize_experts";
  check_activation(x, op, 32);
  const int num_experts = check_expert_args(expert_offsets, global_scales, x, op);
  const int64_t rows = x.size(0), inter = x.size(1) / 2;
  at::Tensor codes = empty_bytes({rows, inter / 2}, at::kFloat4_e2m1fn_x2, x);
  at::Tensor scales = zeroed_bytes({expert_scale_rows_capacity(rows, num_experts), padded_scale_cols(inter)},
                                  at::kFloat8_e4m3fn, x);
  at::Tensor flags = at::zeros({1}, x.options().dtype(at::kInt));
  silu_and_mul_quantize_experts_out(x, expert_offsets, global_scales, limit, codes, scales, flags);
  return {codes, scales, flags};
}

// ---- dequantize to float32 or bf16 ----
void dequantize_out(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& global_scale,
                    const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.dequantize";
  check_cuda(codes, op, "codes");
  check_codes_dtype(codes, op, "codes");
  check_dim(codes, 2, op, "codes");
  check_contiguous(codes, op, "codes");
  const int64_t rows = codes.size(0), k = codes.size(1) * 2;
  TORCH_CHECK(k > 0 && k % 16 == 0, op, ": codes: expected [rows, K/2] with K a positive multiple of 16, got shape ",
              codes.sizes());
  check_cuda(scales, op, "scales");
  check_same_device(scales, codes, op, "scales");
  check_scales_dtype(scales, op, "scales");
  check_contiguous(scales, op, "scales");
  TORCH_CHECK(scales.numel() == swizzled_scale_bytes(rows, k), op, ": scales: expected ",
              swizzled_scale_bytes(rows, k), " swizzled bytes ([", padded_scale_rows(rows), ", ",
              padded_scale_cols(k), "]) for codes of shape ", codes.sizes(), ", got shape ", scales.sizes());
  check_scalar_f32(global_scale, codes, op, "global_scale");
  TORCH_CHECK(out.scalar_type() == at::kFloat || out.scalar_type() == at::kBFloat16, op,
              ": out: expected dtype torch.float32 or torch.bfloat16, got ", out.scalar_type());
  check_output(out, {rows, k}, out.scalar_type(), codes, op, "out");
  c10::cuda::CUDAGuard guard(codes.device());
  if (out.scalar_type() == at::kFloat) {
    cuda::dequantize(bytes_of(codes), bytes_of(scales), rows, k, global_scale.data_ptr<float>(),
                     out.data_ptr<float>(), current_stream());
  } else {
    cuda::dequantize_bf16(bytes_of(codes), bytes_of(scales), rows, k, global_scale.data_ptr<float>(),
                          out.data_ptr(), current_stream());
  }
}

at::Tensor dequantize(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& global_scale,
                      std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "nvfp4_moe.dequantize";
  check_dim(codes, 2, op, "codes");
  const at::ScalarType dtype = out_dtype.value_or(at::kFloat);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, op,
              ": out_dtype: expected torch.float32 or torch.bfloat16, got ", dtype);
  at::Tensor out = at::empty({codes.size(0), codes.size(1) * 2}, codes.options().dtype(dtype));
  dequantize_out(codes, scales, global_scale, out);
  return out;
}

}  // namespace nvfp4moe::torch_ext
