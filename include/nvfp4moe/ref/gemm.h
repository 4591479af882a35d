// CPU golden model: NVFP4 GEMMs (docs/FORMAT.md, "GEMM semantics").
//
// Weights B are [N, K] per expert, packed [N, K/2] (K contiguous) with swizzled e4m3 scales
// (swizzled_scale_bytes(N, K) bytes) and an encode global scale gB. A fused gate|up weight
// [2I, K] may carry two global scales: the GEMMs take an alpha per output half.
//
//   W4A4:  out[m, n] = alpha(n) * sum_k (e2m1(A[m,k]) * sA[m,k/16]) * (e2m1(B[n,k]) * sB[n,k/16])
//          alpha = 1 / (gA * gB)
//   W4A16: out[m, n] = alpha(n) * sum_k A[m,k] * (e2m1(B[n,k]) * sB[n,k/16])
//          alpha = 1 / gB
//
// alpha(n) = alpha_lo for n < N/2 and alpha_hi for n >= N/2 (pass the same value twice for an
// unfused weight). The products are exact in float; the reference sums them in float64 and
// rounds once to float32, so a GPU result differs only by its float32 summation order.
// Outputs are float32; round with round_to_act() for the bf16/fp16 output of the kernels.
//
// Exact order of operations (the GPU epilogue does the same float multiply):
//   acc        = sum over k = 0, 1, ..., K-1 of double(a_k) * double(b_k)   (each product exact)
//   out[m, n]  = float(acc) * alpha(n)                                      (two float roundings)
// where a_k, b_k are the dequantized element values without the global scales
// (e2m1 * e4m3 block scale; for W4A16 a_k is the bf16/fp16 value). With small-integer data
// and power-of-two scales every partial sum is exact, so any summation order gives these bits.
//
// Validation (nvfp4moe::Error naming the argument, before anything is written): K > 0 and
// K % 16 == 0, N > 0, span sizes match the shapes, alpha finite, off[0] = 0, off non-decreasing,
// expert weights all [N, K]. Work is split over threads by output rows and columns; every
// output element is computed by one thread in the fixed k order, so results are deterministic.
#pragma once

#include <cstdint>
#include <span>

#include "nvfp4moe/format/halfs.h"

namespace nvfp4moe::ref {

// One NVFP4 matrix operand (codes + swizzled scales), viewed, not owned.
struct Nvfp4View {
  std::span<const uint8_t> codes;   // [rows, k/2]
  std::span<const uint8_t> scales;  // swizzled; for per-expert activations see the grouped API
  int64_t rows = 0;
  int64_t k = 0;
};

// Per-output-half alpha of one weight (one expert).
struct HalfAlpha {
  float lo = 1.0f;  // n <  N/2
  float hi = 1.0f;  // n >= N/2
};

// Single GEMMs. a: [M, K]; b: [N, K]; out: [M, N] float32.
void gemm_w4a4(const Nvfp4View& a, const Nvfp4View& b, HalfAlpha alpha, std::span<float> out);
void gemm_w4a16(std::span<const uint16_t> a, ActDType dtype, int64_t m, const Nvfp4View& b,
                HalfAlpha alpha, std::span<float> out);

// Grouped GEMMs over E experts. Rows [off[e], off[e+1]) of A multiply expert e's weight
// b[e] ([N, K], same N and K for all experts) with alpha[e]; out: [off[E], N] float32.
// W4A4: A codes [rows, K/2], A scales laid out per expert at scale row sf_off[e]
// (as ref::quantize_experts writes them; scale_rows rows in all).
void grouped_gemm_w4a4(std::span<const uint8_t> a_codes, std::span<const uint8_t> a_scales,
                       int64_t scale_rows, int64_t k, std::span<const int32_t> off,
                       std::span<const Nvfp4View> b, std::span<const HalfAlpha> alpha,
                       std::span<float> out);
void grouped_gemm_w4a16(std::span<const uint16_t> a, ActDType dtype, int64_t k,
                        std::span<const int32_t> off, std::span<const Nvfp4View> b,
                        std::span<const HalfAlpha> alpha, std::span<float> out);

// Plain float32 GEMM for the unquantized reference layer: a [M, K], b [N, K] (row-major,
// K contiguous), out[m, n] = float(sum_k double(a[m,k]) * double(b[n,k])), k ascending.
// Any K >= 0 (K = 0 gives zeros).
void gemm_f32(std::span<const float> a, int64_t m, std::span<const float> b, int64_t n, int64_t k,
              std::span<float> out);

// Dequantize an NVFP4 weight without its global scale: out[n, k] = e2m1(B[n,k]) * sB[n,k/16]
// (exact in float). Multiply by 1/g to get the weight values. out: [rows, k] float32.
void dequantize_unscaled(const Nvfp4View& b, std::span<float> out);

// Round float32 values to the activation dtype (bits), elementwise.
void round_to_act(std::span<const float> in, ActDType dtype, std::span<uint16_t> out);

}  // namespace nvfp4moe::ref
