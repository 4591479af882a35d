// CPU golden model: NVFP4 quantization and its companions (amax, global scale, per-expert
// quantization with optional row gather, SiLU*Mul with optional clamp, dequantization).
//
// Plain, readable C++; every GPU quantization kernel is tested bit for bit against these.
// Activations travel as raw 16-bit patterns (bf16 or fp16, see format/halfs.h).
// All functions validate their arguments and throw nvfp4moe::Error naming the bad one
// before writing anything.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "nvfp4moe/format/halfs.h"

namespace nvfp4moe::ref {

// amax(|x|) over a tensor, NaN ignored (an all-NaN or empty tensor gives 0).
float amax_abs(std::span<const uint16_t> x, ActDType dtype);

// Quantize x [rows, k] (k % 16 == 0) with the encode global scale g.
//   codes:  [rows, k/2] packed e2m1 (element 2i in the low nibble)
//   scales: swizzled_scale_bytes(rows, k) bytes (128x4 layout); padding bytes are zeroed.
void quantize(std::span<const uint16_t> x, ActDType dtype, int64_t rows, int64_t k, float g,
              std::span<uint8_t> codes, std::span<uint8_t> scales);

// Runtime global scale: g = global_scale_from_amax(amax_abs(x)), then quantize. Returns g.
float quantize_runtime_scale(std::span<const uint16_t> x, ActDType dtype, int64_t rows, int64_t k,
                             std::span<uint8_t> codes, std::span<uint8_t> scales);

// Per-expert quantization. Expert e owns output rows [off[e], off[e+1]) (off: E+1 entries,
// off[0] = 0, non-decreasing, off[E] <= rows_out) and uses global scale g[e]. Output row i
// reads input row gather[i] when a gather map is given (gather.size() >= off[E], each entry
// in [0, rows_in)), else input row i (then rows_in >= off[E]).
//   codes:  [rows_out, k/2]; rows in [off[E], rows_out) are written as zero.
//   scales: scale_rows * padded_scale_cols(k) bytes, scale_rows % 128 == 0 and
//           scale_rows >= expert_scale_rows_capacity(off[E], E) (the bound for any split);
//           expert e's scales form a swizzled matrix starting at scale row sf_off[e]
//           (format/swizzle.h). Only scale rows [0, sf_off[E]) are written (each expert's
//           padding rows and columns as zero); bytes past sf_off[E] * padded_scale_cols(k)
//           are left untouched (no consumer reads them).
void quantize_experts(std::span<const uint16_t> x, ActDType dtype, int64_t rows_in, int64_t k,
                      std::span<const int32_t> off, std::span<const float> g,
                      std::span<const int32_t> gather, int64_t rows_out,
                      std::span<uint8_t> codes, std::span<uint8_t> scales, int64_t scale_rows);

// SwiGLU activation on x [rows, 2*inter] (gate = columns [0, inter), up = [inter, 2*inter)):
//   gate' = limit ? min(gate, limit) : gate;  up' = limit ? clamp(up, -limit, limit) : up
//   out = round_to_dtype(silu(gate') * up')   with silu(v) = v / (1 + exp(-v)), in float.
// out: [rows, inter], same dtype as x.
void silu_and_mul(std::span<const uint16_t> x, ActDType dtype, int64_t rows, int64_t inter,
                  std::optional<float> limit, std::span<uint16_t> out);

// silu_and_mul followed by quantize_experts (no gather), as one operation: the product is
// rounded to the activation dtype before quantizing, so it equals the two steps exactly.
void silu_and_mul_quantize_experts(std::span<const uint16_t> x, ActDType dtype, int64_t rows,
                                   int64_t inter, std::optional<float> limit,
                                   std::span<const int32_t> off, std::span<const float> g,
                                   std::span<uint8_t> codes, std::span<uint8_t> scales,
                                   int64_t scale_rows);

// Dequantize [rows, k]: out[r, c] = e2m1(code) * e4m3(scale) / g, float32.
void dequantize(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int64_t rows,
                int64_t k, float g, std::span<float> out);

// Dequantize per-expert activations laid out as quantize_experts writes them; rows past
// off[E] come out as 0.
void dequantize_experts(std::span<const uint8_t> codes, std::span<const uint8_t> scales,
                        int64_t rows, int64_t k, std::span<const int32_t> off,
                        std::span<const float> g, int64_t scale_rows, std::span<float> out);

}  // namespace nvfp4moe::ref
