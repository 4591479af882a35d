// GEMM ops over nvfp4moe/cuda/gemm.h and the weight preparation of cuda/weights.h.
//
// Weights (B [N, K] per expert) run in the GEMM's prepared layout: prepare_weights turns
// ModelOpt's codes [E, N, K/2] + row-major scales [E, N, K/16] into a uint8 tensor
// [E, prepared_weight_bytes(N, K)] (host work, done once at load). Every GEMM op then takes
// that tensor plus N (K comes from the activations):
//   out[m, n] = alpha(e, n) * sum_k a[m, k] * w_e[n, k]
//   alpha float32 [E, 2] (or [2E]): alpha[e, 0] for n < N/2, alpha[e, 1] for n >= N/2; pass
//   1/gB (W4A16) or 1/(gA*gB) (W4A4), the same value twice for an unfused weight.
// Activations: W4A16 bf16 a [M, K]; W4A4 codes [M, K/2] + swizzled scales as the quantize ops
// return them (per tensor for the single GEMM, per expert for the grouped one).
// Grouped: rows [off[e], off[e+1]) of a use expert e; rows >= off[E] of out are left as they
// are by the out= variants and zero in the functional ones.
#include <ATen/ATen.h>

#include <cstring>
#include <span>
#include <vector>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/weights.h"
#include "nvfp4moe/format/swizzle.h"
#include "ops.h"
#include "tensor_checks.h"

namespace nvfp4moe::torch_ext {
namespace {

// The prepared weight tensor: uint8 [E, prepared_weight_bytes(n, k)] on a's device.
cuda::PreparedWeights check_weight(const at::Tensor& weight, int64_t n, int64_t k, bool grouped,
                                   const at::Tensor& ref, const char* op) {
  check_input(weight, at::kByte, ref, op, "weight");
  TORCH_CHECK(n >= 1 && n < (int64_t{1} << 31), op, ": n: expected 1 <= n < 2^31, got ", n);
  TORCH_CHECK(k >= 16 && k % 16 == 0, op, ": K (from the activations) must be a positive multiple of 16, got ", k);
  check_dim(weight, 2, op, "weight");
  const int64_t per_expert = cuda::prepared_weight_bytes(n, k);
  TORCH_CHECK(weight.size(1) == per_expert, op, ": weight: expected [E, ", per_expert,
              "] (prepare_weights of an [", n, ", ", k, "] weight), got shape ", weight.sizes());
  if (!grouped) {
    TORCH_CHECK(weight.size(0) == 1, op, ": weight: a single GEMM takes one weight ([1, ", per_expert,
                "]), got shape ", weight.sizes());
  }
  TORCH_CHECK(is_aligned(weight.data_ptr(), 16), op, ": weight: expected a 16-byte aligned tensor");
  return cuda::PreparedWeights{static_cast<const uint8_t*>(weight.data_ptr()), n, k,
                               static_cast<int>(weight.size(0))};
}

void check_alpha(const at::Tensor& alpha, int64_t num_experts, const at::Tensor& ref, const char* op) {
  check_input(alpha, at::kFloat, ref, op, "alpha");
  TORCH_CHECK(alpha.numel() == 2 * num_experts, op, ": alpha: expected ", 2 * num_experts,
              " float32 values ([E, 2]: per expert, first half then second half of N), got shape ",
              alpha.sizes());
}

void check_offsets(const at::Tensor& off, int64_t num_experts, const at::Tensor& ref, const char* op) {
  check_input(off, at::kInt, ref, op, "expert_offsets");
  TORCH_CHECK(off.dim() == 1 && off.size(0) == num_experts + 1, op, ": expert_offsets: expected shape [",
              num_experts + 1, "] (E + 1 for the weight's E experts), got ", off.sizes());
}

cuda::OutDType out_dtype_of(at::ScalarType t, const char* op) {
  if (t == at::kBFloat16) return cuda::OutDType::kBF16;
  if (t == at::kFloat) return cuda::OutDType::kFP32;
  TORCH_CHECK(false, op, ": out: expected dtype torch.bfloat16 or torch.float32, got ", t);
}

at::ScalarType out_scalar_type(std::optional<at::ScalarType> t, const char* op) {
  const at::ScalarType s = t.value_or(at::kBFloat16);
  out_dtype_of(s, op);
  return s;
}

// bf16 activations a [rows, K].
void check_bf16_act(const at::Tensor& a, const char* op) {
  check_cuda(a, op, "a");
  check_dtype(a, at::kBFloat16, op, "a");
  check_dim(a, 2, op, "a");
  check_contiguous(a, op, "a");
}

// NVFP4 activations: codes [rows, K/2], scales [scale_rows, roundup(K/16, 4)].
cuda::Nvfp4Act check_nvfp4_act(const at::Tensor& codes, const at::Tensor& scales, const char* op) {
  check_cuda(codes, op, "a_codes");
  check_codes_dtype(codes, op, "a_codes");
  check_dim(codes, 2, op, "a_codes");
  check_contiguous(codes, op, "a_codes");
  const int64_t k = codes.size(1) * 2;
  check_cuda(scales, op, "a_scales");
  check_same_device(scales, codes, op, "a_scales");
  check_scales_dtype(scales, op, "a_scales");
  check_contiguous(scales, op, "a_scales");
  TORCH_CHECK(scales.dim() == 2 && scales.size(1) == padded_scale_cols(k) && scales.size(0) % 128 == 0, op,
              ": a_scales: expected [scale_rows, ", padded_scale_cols(k),
              "] with scale_rows a multiple of 128 (as the quantize ops return them), got shape ", scales.sizes());
  return cuda::Nvfp4Act{bytes_of(codes), bytes_of(scales), scales.size(0)};
}

// A zeroed workspace of `bytes` on ref's device (split-K counters must start at zero).
at::Tensor workspace_of(size_t bytes, const at::Tensor& ref) {
  return at::zeros({static_cast<int64_t>(bytes)}, ref.options().dtype(at::kByte));
}

void* data_or_null(const at::Tensor& t) { return t.numel() ? t.data_ptr() : nullptr; }

}  // namespace

// ---- weight preparation (host, load time) ----
at::Tensor prepare_weights(const at::Tensor& codes, const at::Tensor& scales) {
  constexpr const char* op = "nvfp4_moe.prepare_weights";
  check_codes_dtype(codes, op, "codes");
  check_scales_dtype(scales, op, "scales");
  TORCH_CHECK(codes.dim() == 2 || codes.dim() == 3, op,
              ": codes: expected [N, K/2] or [E, N, K/2], got shape ", codes.sizes());
  TORCH_CHECK(scales.dim() == codes.dim(), op, ": scales: expected ", codes.dim(),
              " dimensions like codes, got shape ", scales.sizes());
  const bool batched = codes.dim() == 3;
  const int64_t e = batched ? codes.size(0) : 1;
  const int64_t n = codes.size(-2), k = codes.size(-1) * 2;
  TORCH_CHECK(n >= 1 && k >= 16 && k % 16 == 0, op, ": codes: expected N >= 1 and K a positive multiple of 16, got shape ",
              codes.sizes());
  TORCH_CHECK(scales.size(-2) == n && scales.size(-1) == k / 16 && (!batched || scales.size(0) == e), op,
              ": scales: expected row-major (unswizzled) block scales of shape ",
              batched ? "[E, N, K/16] = [" : "[N, K/16] = [", batched ? std::to_string(e) + ", " : std::string(), n,
              ", ", k / 16, "], got ", scales.sizes());
  at::Tensor c = codes.view(at::kByte).to(at::kCPU).contiguous();
  at::Tensor s = scales.view(at::kByte).to(at::kCPU).contiguous();
  const int64_t per_expert = cuda::prepared_weight_bytes(n, k);
  at::Tensor out = at::empty({e, per_expert}, at::TensorOptions().dtype(at::kByte));
  const uint8_t* cp = c.data_ptr<uint8_t>();
  const uint8_t* sp = s.data_ptr<uint8_t>();
  uint8_t* op_ = out.data_ptr<uint8_t>();
  for (int64_t i = 0; i < e; ++i) {
    cuda::prepare_weight(std::span<const uint8_t>(cp + i * n * k / 2, size_t(n * k / 2)),
                         std::span<const uint8_t>(sp + i * n * k / 16, size_t(n * k / 16)), n, k,
                         std::span<uint8_t>(op_ + i * per_expert, size_t(per_expert)));
  }
  return out.to(codes.device());
}

// ---- single GEMMs ----
void gemm_w4a16_out(const at::Tensor& a, const at::Tensor& weight, int64_t n, const at::Tensor& alpha,
                    const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.gemm_w4a16";
  check_bf16_act(a, op);
  const int64_t m = a.size(0), k = a.size(1);
  cuda::PreparedWeights w = check_weight(weight, n, k, false, a, op);
  check_alpha(alpha, 1, a, op);
  const cuda::OutDType od = out_dtype_of(out.scalar_type(), op);
  check_output(out, {m, n}, out.scalar_type(), a, op, "out");
  c10::cuda::CUDAGuard guard(a.device());
  const size_t ws_bytes = cuda::gemm_w4a16_workspace_bytes(m, n, k);
  at::Tensor ws = workspace_of(ws_bytes, a);
  cuda::gemm_w4a16(static_cast<const __nv_bfloat16*>(a.data_ptr()), m, w, alpha.data_ptr<float>(), out.data_ptr(),
                   od, data_or_null(ws), ws_bytes, current_stream());
}

at::Tensor gemm_w4a16(const at::Tensor& a, const at::Tensor& weight, int64_t n, const at::Tensor& alpha,
                      std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "nvfp4_moe.gemm_w4a16";
  check_bf16_act(a, op);
  at::Tensor out = at::empty({a.size(0), n}, a.options().dtype(out_scalar_type(out_dtype, op)));
  gemm_w4a16_out(a, weight, n, alpha, out);
  return out;
}

void gemm_w4a4_out(const at::Tensor& a_codes, const at::Tensor& a_scales, const at::Tensor& weight, int64_t n,
                   const at::Tensor& alpha, const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.gemm_w4a4";
  cuda::Nvfp4Act act = check_nvfp4_act(a_codes, a_scales, op);
  const int64_t m = a_codes.size(0), k = a_codes.size(1) * 2;
  TORCH_CHECK(a_scales.size(0) == padded_scale_rows(m), op, ": a_scales: expected ", padded_scale_rows(m),
              " scale rows for ", m, " rows (per-tensor quantization), got shape ", a_scales.sizes());
  cuda::PreparedWeights w = check_weight(weight, n, k, false, a_codes, op);
  check_alpha(alpha, 1, a_codes, op);
  const cuda::OutDType od = out_dtype_of(out.scalar_type(), op);
  check_output(out, {m, n}, out.scalar_type(), a_codes, op, "out");
  c10::cuda::CUDAGuard guard(a_codes.device());
  const size_t ws_bytes = cuda::gemm_w4a4_workspace_bytes(m, n, k);
  at::Tensor ws = workspace_of(ws_bytes, a_codes);
  cuda::gemm_w4a4(act, m, w, alpha.data_ptr<float>(), out.data_ptr(), od, data_or_null(ws), ws_bytes,
                  current_stream());
}

at::Tensor gemm_w4a4(const at::Tensor& a_codes, const at::Tensor& a_scales, const at::Tensor& weight, int64_t n,
                     const at::Tensor& alpha, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "nvfp4_moe.gemm_w4a4";
  check_dim(a_codes, 2, op, "a_codes");
  at::Tensor out = at::empty({a_codes.size(0), n}, a_codes.options().dtype(out_scalar_type(out_dtype, op)));
  gemm_w4a4_out(a_codes, a_scales, weight, n, alpha, out);
  return out;
}

// ---- grouped GEMMs ----
void grouped_gemm_w4a16_out(const at::Tensor& a, const at::Tensor& expert_offsets, const at::Tensor& weight,
                            int64_t n, const at::Tensor& alpha, const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.grouped_gemm_w4a16";
  check_bf16_act(a, op);
  const int64_t rows = a.size(0), k = a.size(1);
  cuda::PreparedWeights w = check_weight(weight, n, k, true, a, op);
  check_offsets(expert_offsets, w.num_experts, a, op);
  check_alpha(alpha, w.num_experts, a, op);
  const cuda::OutDType od = out_dtype_of(out.scalar_type(), op);
  check_output(out, {rows, n}, out.scalar_type(), a, op, "out");
  c10::cuda::CUDAGuard guard(a.device());
  const size_t ws_bytes = cuda::grouped_gemm_w4a16_workspace_bytes(rows, n, k, w.num_experts);
  at::Tensor ws = workspace_of(ws_bytes, a);
  cuda::grouped_gemm_w4a16(static_cast<const __nv_bfloat16*>(a.data_ptr()), rows,
                           expert_offsets.data_ptr<int32_t>(), w, alpha.data_ptr<float>(), out.data_ptr(), od,
                           data_or_null(ws), ws_bytes, current_stream());
}

at::Tensor grouped_gemm_w4a16(const at::Tensor& a, const at::Tensor& expert_offsets, const at::Tensor& weight,
                              int64_t n, const at::Tensor& alpha, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "nvfp4_moe.grouped_gemm_w4a16";
  check_bf16_act(a, op);
  at::Tensor out = at::zeros({a.size(0), n}, a.options().dtype(out_scalar_type(out_dtype, op)));
  grouped_gemm_w4a16_out(a, expert_offsets, weight, n, alpha, out);
  return out;
}

void grouped_gemm_w4a4_out(const at::Tensor& a_codes, const at::Tensor& a_scales, const at::Tensor& expert_offsets,
                           const at::Tensor& weight, int64_t n, const at::Tensor& alpha, const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.grouped_gemm_w4a4";
  cuda::Nvfp4Act act = check_nvfp4_act(a_codes, a_scales, op);
  const int64_t rows = a_codes.size(0), k = a_codes.size(1) * 2;
  cuda::PreparedWeights w = check_weight(weight, n, k, true, a_codes, op);
  TORCH_CHECK(a_scales.size(0) >= expert_scale_rows_capacity(rows, w.num_experts), op, ": a_scales: expected >= ",
              expert_scale_rows_capacity(rows, w.num_experts), " scale rows (per-expert quantization of ", rows,
              " rows over ", w.num_experts, " experts), got shape ", a_scales.sizes());
  check_offsets(expert_offsets, w.num_experts, a_codes, op);
  check_alpha(alpha, w.num_experts, a_codes, op);
  const cuda::OutDType od = out_dtype_of(out.scalar_type(), op);
  check_output(out, {rows, n}, out.scalar_type(), a_codes, op, "out");
  c10::cuda::CUDAGuard guard(a_codes.device());
  const size_t ws_bytes = cuda::grouped_gemm_w4a4_workspace_bytes(rows, n, k, w.num_experts);
  at::Tensor ws = workspace_of(ws_bytes, a_codes);
  cuda::grouped_gemm_w4a4(act, rows, expert_offsets.data_ptr<int32_t>(), w, alpha.data_ptr<float>(),
                          out.data_ptr(), od, data_or_null(ws), ws_bytes, current_stream());
}

at::Tensor grouped_gemm_w4a4(const at::Tensor& a_codes, const at::Tensor& a_scales, const at::Tensor& expert_offsets,
                             const at::Tensor& weight, int64_t n, const at::Tensor& alpha,
                             std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "nvfp4_moe.grouped_gemm_w4a4";
  check_dim(a_codes, 2, op, "a_codes");
  at::Tensor out = at::zeros({a_codes.size(0), n}, a_codes.options().dtype(out_scalar_type(out_dtype, op)));
  grouped_gemm_w4a4_out(a_codes, a_scales, expert_offsets, weight, n, alpha, out);
  return out;
}

}  // namespace nvfp4moe::torch_ext
