// Tensor checks shared by the op implementations (csrc/*_ops.cpp). Each check raises a torch
// error (RuntimeError in Python) that names the op and the argument before anything is
// launched; the launchers behind the ops then validate the raw shapes a second time.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <optional>

#include "nvfp4moe/format/halfs.h"

namespace nvfp4moe::torch_ext {

// x lives on a CUDA device.
inline void check_cuda(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.is_cuda(), op, ": ", arg, ": expected a CUDA tensor, got one on ", t.device());
}

// Row-major dense storage (what the kernels index).
inline void check_contiguous(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.is_contiguous(), op, ": ", arg, ": expected a contiguous tensor (call .contiguous())");
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* arg) {
  TORCH_CHECK(t.dim() == dim, op, ": ", arg, ": expected ", dim, " dimensions, got shape ", t.sizes());
}

inline void check_dtype(const at::Tensor& t, at::ScalarType dtype, const char* op, const char* arg) {
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", arg, ": expected dtype ", dtype, ", got ",
              t.scalar_type());
}

// Same CUDA device as the reference tensor (the op runs on ref's device and stream).
inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                              const char* arg) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", arg, ": expected a tensor on ", ref.device(),
              " (the device of the op's first input), got one on ", t.device());
}

// A CUDA, contiguous tensor of `dtype` on ref's device: the common case of every input.
inline void check_input(const at::Tensor& t, at::ScalarType dtype, const at::Tensor& ref,
                        const char* op, const char* arg) {
  check_cuda(t, op, arg);
  check_same_device(t, ref, op, arg);
  check_dtype(t, dtype, op, arg);
  check_contiguous(t, op, arg);
}

// Activation dtype of x: bfloat16 or float16.
inline ActDType act_dtype_of(const at::Tensor& x, const char* op, const char* arg) {
  if (x.scalar_type() == at::kBFloat16) return ActDType::kBF16;
  if (x.scalar_type() == at::kHalf) return ActDType::kFP16;
  TORCH_CHECK(false, op, ": ", arg, ": expected dtype torch.bfloat16 or torch.float16, got ",
              x.scalar_type());
}

// Packed e2m1 codes travel as torch.float4_e2m1fn_x2 or as their uint8 view.
inline void check_codes_dtype(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.scalar_type() == at::kFloat4_e2m1fn_x2 || t.scalar_type() == at::kByte, op, ": ",
              arg, ": expected dtype torch.float4_e2m1fn_x2 or torch.uint8, got ", t.scalar_type());
}

// e4m3 block scales travel as torch.float8_e4m3fn or as their uint8 view.
inline void check_scales_dtype(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.scalar_type() == at::kFloat8_e4m3fn || t.scalar_type() == at::kByte, op, ": ", arg,
              ": expected dtype torch.float8_e4m3fn or torch.uint8, got ", t.scalar_type());
}

// A float32 device scalar (one element), e.g. a global scale.
inline void check_scalar_f32(const at::Tensor& t, const at::Tensor& ref, const char* op,
                             const char* arg) {
  check_input(t, at::kFloat, ref, op, arg);
  TORCH_CHECK(t.numel() == 1, op, ": ", arg, ": expected a one-element tensor, got shape ",
              t.sizes());
}

// An output buffer: CUDA, contiguous, exact shape and dtype (out= variants never resize).
inline void check_output(const at::Tensor& t, at::IntArrayRef shape, at::ScalarType dtype,
                         const at::Tensor& ref, const char* op, const char* arg) {
  check_cuda(t, op, arg);
  check_same_device(t, ref, op, arg);
  check_dtype(t, dtype, op, arg);
  check_contiguous(t, op, arg);
  TORCH_CHECK(t.sizes() == shape, op, ": ", arg, ": expected shape ", shape, ", got ", t.sizes());
}

// Byte pointers of codes/scales whichever of their two dtypes they carry.
inline uint8_t* bytes_of(const at::Tensor& t) { return static_cast<uint8_t*>(t.data_ptr()); }

// The stream every launcher receives: torch's current stream of the op's device.
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// Allocate [rows, cols] bytes on x's device, then view them as `dtype` (1-byte dtypes only).
inline at::Tensor empty_bytes(at::IntArrayRef shape, at::ScalarType dtype, const at::Tensor& like) {
  return at::empty(shape, like.options().dtype(at::kByte)).view(dtype);
}

// Zero-filled: for per-expert scale buffers, whose rows past sf_off[E] the kernels leave
// untouched (the functional ops return deterministic bytes there; out= buffers keep theirs).
inline at::Tensor zeroed_bytes(at::IntArrayRef shape, at::ScalarType dtype, const at::Tensor& like) {
  return at::zeros(shape, like.options().dtype(at::kByte)).view(dtype);
}

}  // namespace nvfp4moe::torch_ext
