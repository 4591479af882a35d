// Launchers of the Hopper NVFP4 quantization kernels (kernels/*_sm90.cuh). Every function
// enqueues on the caller's stream, never synchronizes and never reads device memory on the
// host, so all of them can be captured in a CUDA graph. Arguments are validated first: a bad
// shape, a misaligned pointer or a too-small buffer throws nvfp4moe::Error before any launch.
//
// Numerics: bit-exact with the CPU golden model (ref/quantize.h) for quantize,
// quantize_runtime_scale, quantize_experts and dequantize. silu_and_mul uses a fast device
// SiLU (kernels/silu_mul_sm90.cuh: ex2.approx and rcp.approx for gate >= -64, the precise
// expf and division below): each product rounded to the activation dtype equals the CPU
// model's or is one ulp away (tolerance; the measured rate is printed by the GPU tests and
// recorded in docs/results/quantize.md), and is exactly the CPU model's for gate +-0, +-Inf,
// NaN or <= -89 and for up 0, +-Inf, NaN. The fused silu_and_mul_quantize_experts uses the
// same device SiLU and equals silu_and_mul followed by quantize_experts bit for bit.
//
// Device-side validation of device data. The expert offsets off[E+1] and the gather map live
// on the device, so they are checked by the kernels: when off is not {off[0] = 0,
// non-decreasing, off[E] <= rows_out}, every output is written as zero and
// kQuantErrorBadOffsets is ORed into *error_flags; a gather entry outside [0, rows_in) makes
// that row quantize as zeros and sets kQuantErrorBadGather. No kernel reads or writes out of
// bounds whatever these hold. error_flags (may be null) is the caller's zeroed device word.
// The per-expert global scales g[e] are expected finite and > 0 (not checked on the device).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

#include "nvfp4moe/format/halfs.h"

namespace nvfp4moe::cuda {

inline constexpr uint32_t kQuantErrorBadOffsets = 1u;  // off malformed: outputs zeroed
inline constexpr uint32_t kQuantErrorBadGather = 2u;   // a gather entry out of range
inline constexpr int kQuantMaxExperts = 1024;

// Alignment every data pointer needs (16-byte vector loads and stores).
inline constexpr size_t kQuantAlignment = 16;

// Column order of the per-expert quantizers' optional bf16 values output (quantize_experts).
//   kNatural: [rows_out, k] as the input (the decode GEMM kernel's operand);
//   kGemm:    [rows_out, k] with each row in the prefill (wgmma) GEMM's K order: within each
//             64-column block, natural column 16q + 4s + 2h + b at 16s + 8h + 2q + b
//             (docs/GEMM.md "Activation K order"), the operand grouped_gemm_w4a16_gemm_order
//             reads without its own permute or dequantize launch.
enum class ValuesOrder { kNatural, kGemm };

// (1) Quantize x [rows, k] (k % 16 == 0) with the encode global scale *g (device float).
//   codes:  [rows, k/2] packed e2m1;  scales: swizzled_scale_bytes(rows, k) bytes, padding 0.
void quantize(const void* x, ActDType dtype, int64_t rows, int64_t k, const float* g,
              uint8_t* codes, uint8_t* scales, cudaStream_t stream);

// amax(|x|) of numel activations (numel % 8 == 0), NaN ignored, into *amax (device float).
// Two stream-ordered operations: cudaMemsetAsync(amax, 0) and one reduction kernel.
void amax_abs(const void* x, ActDType dtype, int64_t numel, float* amax, cudaStream_t stream);

// (2) Runtime global scale: *amax = amax(|x|), *g = global_scale_from_amax(*amax),
// *g_inv = 1 / *g (correctly rounded; the GEMM's alpha factor), then quantize with g.
// amax is a device workspace float; g and g_inv may be null. No host sync. Tensors of at most
// kQuantRuntimeSingleLaunchMaxElems elements: one kernel launch (one thread-block cluster
// reads the input once); larger ones: memset + amax kernel + quantize kernel (input read twice).
inline constexpr int64_t kQuantRuntimeSingleLaunchMaxElems = 131072;
void quantize_runtime_scale(const void* x, ActDType dtype, int64_t rows, int64_t k,
                            uint8_t* codes, uint8_t* scales, float* amax, float* g,
                            float* g_inv, cudaStream_t stream);

// (3) Per-expert quantization (semantics of ref::quantize_experts). Expert e (E = num_experts,
// 1..kQuantMaxExperts) owns output rows [off[e], off[e+1]) and uses g[e]; output row i reads
// input row gather[i] when gather is given, else row i (then rows_in >= rows_out is required).
//   off [E+1], g [E], gather [rows_out]: device arrays.
//   codes [rows_out, k/2]: rows in [off[E], rows_out) are written as zero.
//   scales: scale_rows * padded_scale_cols(k) bytes; expert e's swizzled matrix starts at
//   scale row sf_off[e] (computed on the device). Only scale rows [0, sf_off[E]) are written
//   (each expert's padding rows and columns as zero); bytes past sf_off[E] *
//   padded_scale_cols(k) are left untouched (the GEMMs never read them), so small batches do
//   not pay for the capacity. With invalid offsets the whole buffer is zeroed. Since off[E]
//   is not known on the host, scale_rows must be >= expert_scale_rows_capacity(rows_out, E)
//   (bound for any split) and a multiple of 128.
// Grids are sized from rows_out and scale_rows (capacities); each block finds its expert.
//   values (optional, 16-byte aligned) [rows_out, k] bf16: rows < off[E] also receive their
//   quantized values e2m1(code) * e4m3(scale) without the global scale (exact in bf16), i.e.
//   the W4A4 GEMM's activation operand as its decode kernel reads it, so a caller at small
//   batches can hand them to grouped_gemm_w4a16 (alpha 1/(gA*gB)) and skip the GEMM's own
//   dequantization launch (the MoE layer does). Rows >= off[E] are not touched. Meant for
//   small batches: with it the kernel runs its small-tensor variant at any size.
//   Values only: with values given, codes and scales may both be null; then nothing else is
//   written (no codes, no scale bytes, no padding; scale_rows is not checked), which is all a
//   decode GEMM on the values needs. With invalid offsets nothing is written (the values keep
//   their old contents) and error_flags reports it.
//   values_order (ValuesOrder, above): kGemm writes the values alone (codes and scales must be
//   null; k % 256 == 0) with each row's columns in the prefill GEMM's K order, the operand
//   grouped_gemm_w4a16_gemm_order reads; at any size (the large-tensor kernels write it).
void quantize_experts(const void* x, ActDType dtype, int64_t rows_in, int64_t k,
                      const int32_t* off, int num_experts, const float* g,
                      const int32_t* gather, int64_t rows_out, uint8_t* codes,
                      uint8_t* scales, int64_t scale_rows, uint32_t* error_flags,
                      cudaStream_t stream, void* values = nullptr,
                      ValuesOrder values_order = ValuesOrder::kNatural);

// (3b) quantize_experts' output, built from rows quantized once: when every g[e] is the same g,
// quantize_experts(x, off, g, gather, ...) writes what quantize(x, g) -> (codes_in, scales_in)
// followed by this copy writes, byte for byte: codes row i = codes_in row gather[i], expert e's
// scale rows from sf_off[e] = the scale words of those input rows (padding rows zero), the
// same device-side validation and error_flags (kQuantErrorBadOffsets, kQuantErrorBadGather),
// scale rows past sf_off[E] untouched. The MoE layer's first quantizer gathers each token top_k
// times; quantizing the tokens once and copying reads and computes top_k times less.
//   codes_in [rows_in, k/2], scales_in swizzled_scale_bytes(rows_in, k) (quantize's output);
//   off [E+1], gather [rows_out]: device arrays; codes, scales, scale_rows as quantize_experts.
void gather_experts_nvfp4(const uint8_t* codes_in, const uint8_t* scales_in, int64_t rows_in, int64_t k,
                          const int32_t* off, int num_experts, const int32_t* gather, int64_t rows_out,
                          uint8_t* codes, uint8_t* scales, int64_t scale_rows, uint32_t* error_flags,
                          cudaStream_t stream);

// (4a) silu_and_mul: x [rows, 2*inter] (gate | up) -> out [rows, inter], same dtype,
// inter % 8 == 0; optional SwiGLU clamp `limit` (gate <= limit, up in [-limit, limit]).
// out_order kGemm: out's rows in the prefill GEMM's K order (inter % 64 == 0; ValuesOrder), the
// operand grouped_gemm_w4a16_gemm_order reads where inter % 128 == 0.
void silu_and_mul(const void* x, ActDType dtype, int64_t rows, int64_t inter,
                  std::optional<float> limit, void* out, cudaStream_t stream,
                  ValuesOrder out_order = ValuesOrder::kNatural);

// (4b) Fused: silu_and_mul of x [rows, 2*inter] rounded to dtype, then quantize_experts
// (no gather) of the [rows, inter] product, in one pass with no intermediate buffer.
// inter % 16 == 0; rows plays rows_out (capacity); other arguments as quantize_experts.
void silu_and_mul_quantize_experts(const void* x, ActDType dtype, int64_t rows, int64_t inter,
                                   std::optional<float> limit, const int32_t* off,
                                   int num_experts, const float* g, uint8_t* codes,
                                   uint8_t* scales, int64_t scale_rows, uint32_t* error_flags,
                                   cudaStream_t stream, void* values = nullptr,
                                   ValuesOrder values_order = ValuesOrder::kNatural);

// (5) Dequantize codes [rows, k/2] + swizzled scales with global scale *g (device) to
// float32 or bf16 (out [rows, k]): e2m1 * e4m3 / g, bf16 rounded to nearest even.
void dequantize(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k,
                const float* g, float* out, cudaStream_t stream);
void dequantize_bf16(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k,
                     const float* g, void* out, cudaStream_t stream);

// Tuning and validation only: which kernel large calls of a width K % 512 == 0 take (quantize,
// quantize_runtime_scale's quantize pass, quantize_experts, silu_and_mul_quantize_experts).
// 1: the bulk-copy kernel (kernels/quantize_bulk_sm90.cuh: each warp streams its input through
// a shared-memory ring) for all of them, 2: for the per-expert calls (quantize_experts, the
// fused SiLU*Mul + quantize), 3: for quantize_experts only, 0: for none (the register kernels:
// the row-step walk; one matrix the tile-slab kernel); -1: the default (NVFP4MOE_QUANT_BULK
// from the environment, else 3: where it was faster on both the H100 and the H200; see
// docs/results/quantize.md). Same bytes either way. Process-wide, not thread-safe.
void set_quantize_bulk(int mode);

}  // namespace nvfp4moe::cuda
