// CPU golden model of NVFP4 quantization (API and contracts: include/nvfp4moe/ref/quantize.h,
// semantics: docs/FORMAT.md).
//
// Every 16-element block goes through quantize_block16 (format/block_quant.h), the same
// arithmetic the GPU kernels use, so GPU results can be compared bit for bit. Each public
// function validates all of its arguments before it writes the first byte: a bad argument
// throws nvfp4moe::Error and leaves every output untouched.
//
// Single-threaded on purpose: quantization is a few float operations per element, far cheaper
// than the reference GEMMs it feeds, and one thread keeps the code obviously deterministic.

#include "nvfp4moe/ref/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe::ref {
namespace {

// Largest element count we accept for one tensor: keeps every size product (rows * k,
// scale_rows * cols) far from int64 overflow, so the size checks themselves cannot wrap.
constexpr int64_t kMaxElements = int64_t(1) << 48;

bool is_known_dtype(ActDType t) { return t == ActDType::kBF16 || t == ActDType::kFP16; }

// rows * cols stays within kMaxElements (rows, cols >= 0).
bool fits(int64_t rows, int64_t cols) { return cols == 0 || rows <= kMaxElements / cols; }

// Quantizes one row of k activations (k % 16 == 0) into a packed code row [k/2] and writes its
// k/16 scale bytes into row r of a swizzled scale matrix with padded_cols columns.
void quantize_row(const uint16_t* src, ActDType dtype, int64_t k, float g, uint8_t* codes_row,
                  uint8_t* swizzled_scales, int64_t r, int64_t padded_cols) {
  float block[kBlockSize];
  for (int64_t j = 0; j < k / kBlockSize; ++j) {
    for (int i = 0; i < kBlockSize; ++i) block[i] = act_to_float(src[j * kBlockSize + i], dtype);
    quantize_block16(block, g, codes_row + j * (kBlockSize / 2),
                     swizzled_scales + swizzled_scale_offset(r, j, padded_cols));
  }
}

// Checks the per-expert layout shared by quantize_experts, its fused variant and
// dequantize_experts: off [E+1] (off[0] = 0, non-decreasing, off[E] <= rows), g [E] (usable:
// finite, in (0, 2^118]), and a scale buffer of scale_rows rows that holds every expert's padded
// block. `fn` names the public function in the message.
void check_expert_layout(const char* fn, std::span<const int32_t> off, std::span<const float> g,
                         const char* rows_name, int64_t rows, int64_t k,
                         std::span<const uint8_t> scales, int64_t scale_rows) {
  NVFP4MOE_CHECK(!g.empty(), fn, ": g: expected one global scale per expert (E >= 1), got 0");
  const int64_t num_experts = int64_t(g.size());
  NVFP4MOE_CHECK(int64_t(off.size()) == num_experts + 1, fn,
                 ": off: expected E + 1 = ", num_experts + 1, " entries (E = g.size()), got ",
                 off.size());
  NVFP4MOE_CHECK(off[0] == 0, fn, ": off[0]: expected 0, got ", off[0]);
  for (int64_t e = 0; e < num_experts; ++e) {
    NVFP4MOE_CHECK(off[e + 1] >= off[e], fn, ": off: expected non-decreasing, got off[", e,
                   "] = ", off[e], " > off[", e + 1, "] = ", off[e + 1]);
  }
  const int64_t total = off[num_experts];
  NVFP4MOE_CHECK(total <= rows, fn, ": off[E]: expected <= ", rows_name, " = ", rows, ", got ",
                 total);
  for (int64_t e = 0; e < num_experts; ++e) {
    NVFP4MOE_CHECK(is_usable_global_scale(g[e]), fn, ": g[", e,
                   "]: expected a finite global scale in (0, 2^118], got ", g[e]);
  }
  const int64_t capacity = expert_scale_rows_capacity(total, num_experts);
  NVFP4MOE_CHECK(capacity <= std::numeric_limits<int32_t>::max(), fn, ": off: scale rows needed (",
                 capacity, ") exceed the int32 range of sf_off");
  NVFP4MOE_CHECK(scale_rows % kScaleTileRows == 0, fn,
                 ": scale_rows: expected a multiple of 128, got ", scale_rows);
  NVFP4MOE_CHECK(scale_rows >= capacity && fits(scale_rows, padded_scale_cols(k)), fn,
                 ": scale_rows: expected >= expert_scale_rows_capacity(off[E] = ", total,
                 ", E = ", num_experts, ") = ", capacity, ", got ", scale_rows);
  NVFP4MOE_CHECK(int64_t(scales.size()) == scale_rows * padded_scale_cols(k), fn,
                 ": scales: expected scale_rows * padded_scale_cols(k) = ",
                 scale_rows * padded_scale_cols(k), " bytes, got ", scales.size());
}

// Common checks of a [rows, k] NVFP4 matrix shape.
void check_shape(const char* fn, const char* rows_name, int64_t rows, const char* k_name,
                 int64_t k) {
  NVFP4MOE_CHECK(k > 0 && k % kBlockSize == 0, fn, ": ", k_name,
                 ": expected a positive multiple of 16, got ", k);
  NVFP4MOE_CHECK(rows >= 0 && fits(rows, k), fn, ": ", rows_name, ": expected 0 <= ", rows_name,
                 " with ", rows_name, " * ", k_name, " <= 2^48, got ", rows, " (", k_name, " = ", k,
                 ")");
}

void check_dtype(const char* fn, ActDType dtype) {
  NVFP4MOE_CHECK(is_known_dtype(dtype), fn, ": dtype: expected bf16 or fp16, got ",
                 static_cast<int>(dtype));
}

// Per-expert quantization after validation (the shared body of quantize_experts and the fused
// SiLU variant). Output row i reads input row gather[i] (or i when gather is empty).
void quantize_experts_unchecked(std::span<const uint16_t> x, ActDType dtype, int64_t k,
                                std::span<const int32_t> off, std::span<const float> g,
                                std::span<const int32_t> gather, int64_t rows_out,
                                std::span<uint8_t> codes, std::span<uint8_t> scales) {
  const int64_t num_experts = int64_t(g.size());
  const int64_t padded_cols = padded_scale_cols(k);
  std::vector<int32_t> sf_off(size_t(num_experts + 1));
  expert_scale_offsets(off.data(), int(num_experts), sf_off.data());

  // Only the experts' padded blocks [0, sf_off[E]) are written (padding rows and columns
  // zeroed); scale bytes past them are left untouched, as the GPU kernels do.
  std::fill(scales.begin(), scales.begin() + int64_t(sf_off[size_t(num_experts)]) * padded_cols,
            uint8_t(0));
  const int64_t total = off[num_experts];
  std::fill(codes.begin() + total * (k / 2), codes.begin() + rows_out * (k / 2), uint8_t(0));

  for (int64_t e = 0; e < num_experts; ++e) {
    uint8_t* expert_scales = scales.data() + int64_t(sf_off[e]) * padded_cols;
    for (int64_t i = off[e]; i < off[e + 1]; ++i) {
      const int64_t src_row = gather.empty() ? i : int64_t(gather[i]);
      quantize_row(x.data() + src_row * k, dtype, k, g[e], codes.data() + i * (k / 2),
                   expert_scales, i - off[e], padded_cols);
    }
  }
}

// SiLU(gate') * up' rounded to dtype, after validation.
void silu_and_mul_unchecked(std::span<const uint16_t> x, ActDType dtype, int64_t rows,
                            int64_t inter, std::optional<float> limit, std::span<uint16_t> out) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* gate_row = x.data() + r * 2 * inter;
    const uint16_t* up_row = gate_row + inter;
    for (int64_t c = 0; c < inter; ++c) {
      float gate = act_to_float(gate_row[c], dtype);
      float up = act_to_float(up_row[c], dtype);
      if (limit) {
        // Written with comparisons (not fminf/fmaxf) so a NaN input stays NaN.
        const float l = *limit;
        gate = (gate > l) ? l : gate;
        up = (up > l) ? l : (up < -l) ? -l : up;
      }
      const float silu = gate / (1.0f + std::exp(-gate));
      out[size_t(r * inter + c)] = act_from_float(silu * up, dtype);
    }
  }
}

void check_silu_args(const char* fn, std::span<const uint16_t> x, ActDType dtype, int64_t rows,
                     int64_t inter, std::optional<float> limit) {
  check_dtype(fn, dtype);
  NVFP4MOE_CHECK(inter > 0 && inter <= kMaxElements, fn, ": inter: expected in (0, 2^48], got ",
                 inter);
  NVFP4MOE_CHECK(rows >= 0 && fits(rows, 2 * inter), fn,
                 ": rows: expected 0 <= rows with rows * 2 * inter <= 2^48, got ", rows);
  NVFP4MOE_CHECK(int64_t(x.size()) == rows * 2 * inter, fn,
                 ": x: expected rows * 2 * inter = ", rows * 2 * inter, " elements, got ",
                 x.size());
  if (limit) {
    NVFP4MOE_CHECK(std::isfinite(*limit) && *limit > 0.0f, fn,
                   ": limit: expected a finite value > 0, got ", *limit);
  }
}

}  // namespace

float amax_abs(std::span<const uint16_t> x, ActDType dtype) {
  check_dtype("amax_abs", dtype);
  float amax = 0.0f;
  for (uint16_t v : x) amax = abs_max_ignore_nan(amax, act_to_float(v, dtype));
  return amax;
}

void quantize(std::span<const uint16_t> x, ActDType dtype, int64_t rows, int64_t k, float g,
              std::span<uint8_t> codes, std::span<uint8_t> scales) {
  check_dtype(__func__, dtype);
  check_shape(__func__, "rows", rows, "k", k);
  NVFP4MOE_CHECK(int64_t(x.size()) == rows * k, "x: expected rows * k = ", rows * k,
                 " elements, got ", x.size());
  NVFP4MOE_CHECK(is_usable_global_scale(g), "g: expected a finite global scale in (0, 2^118], got ",
                 g);
  NVFP4MOE_CHECK(int64_t(codes.size()) == rows * k / 2,
                 "codes: expected rows * k / 2 = ", rows * k / 2, " bytes, got ", codes.size());
  NVFP4MOE_CHECK(int64_t(scales.size()) == swizzled_scale_bytes(rows, k),
                 "scales: expected swizzled_scale_bytes(rows, k) = ", swizzled_scale_bytes(rows, k),
                 " bytes, got ", scales.size());

  std::fill(scales.begin(), scales.end(), uint8_t(0));
  const int64_t padded_cols = padded_scale_cols(k);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(x.data() + r * k, dtype, k, g, codes.data() + r * (k / 2), scales.data(), r,
                 padded_cols);
  }
}

float quantize_runtime_scale(std::span<const uint16_t> x, ActDType dtype, int64_t rows, int64_t k,
                             std::span<uint8_t> codes, std::span<uint8_t> scales) {
  check_dtype(__func__, dtype);
  // quantize() validates the rest; the amax pass before it writes nothing.
  const float g = global_scale_from_amax(amax_abs(x, dtype));
  quantize(x, dtype, rows, k, g, codes, scales);
  return g;
}

void quantize_experts(std::span<const uint16_t> x, ActDType dtype, int64_t rows_in, int64_t k,
                      std::span<const int32_t> off, std::span<const float> g,
                      std::span<const int32_t> gather, int64_t rows_out, std::span<uint8_t> codes,
                      std::span<uint8_t> scales, int64_t scale_rows) {
  check_dtype(__func__, dtype);
  check_shape(__func__, "rows_in", rows_in, "k", k);
  check_shape(__func__, "rows_out", rows_out, "k", k);
  NVFP4MOE_CHECK(int64_t(x.size()) == rows_in * k, "x: expected rows_in * k = ", rows_in * k,
                 " elements, got ", x.size());
  NVFP4MOE_CHECK(int64_t(codes.size()) == rows_out * k / 2,
                 "codes: expected rows_out * k / 2 = ", rows_out * k / 2, " bytes, got ",
                 codes.size());
  check_expert_layout(__func__, off, g, "rows_out", rows_out, k, scales, scale_rows);
  const int64_t total = off[g.size()];
  if (gather.empty()) {
    NVFP4MOE_CHECK(rows_in >= total, "rows_in: expected >= off[E] = ", total,
                   " without a gather map, got ", rows_in);
  } else {
    NVFP4MOE_CHECK(int64_t(gather.size()) >= total, "gather: expected >= off[E] = ", total,
                   " entries, got ", gather.size());
    for (int64_t i = 0; i < total; ++i) {
      NVFP4MOE_CHECK(gather[i] >= 0 && gather[i] < rows_in, "gather[", i,
                     "]: expected a row in [0, rows_in = ", rows_in, "), got ", gather[i]);
    }
  }
  quantize_experts_unchecked(x, dtype, k, off, g, gather, rows_out, codes, scales);
}

void silu_and_mul(std::span<const uint16_t> x, ActDType dtype, int64_t rows, int64_t inter,
                  std::optional<float> limit, std::span<uint16_t> out) {
  check_silu_args(__func__, x, dtype, rows, inter, limit);
  NVFP4MOE_CHECK(int64_t(out.size()) == rows * inter, "out: expected rows * inter = ", rows * inter,
                 " elements, got ", out.size());
  silu_and_mul_unchecked(x, dtype, rows, inter, limit, out);
}

void silu_and_mul_quantize_experts(std::span<const uint16_t> x, ActDType dtype, int64_t rows,
                                   int64_t inter, std::optional<float> limit,
                                   std::span<const int32_t> off, std::span<const float> g,
                                   std::span<uint8_t> codes, std::span<uint8_t> scales,
                                   int64_t scale_rows) {
  check_silu_args(__func__, x, dtype, rows, inter, limit);
  // inter is the k of the quantized output: a multiple of 16.
  check_shape(__func__, "rows", rows, "inter", inter);
  NVFP4MOE_CHECK(int64_t(codes.size()) == rows * inter / 2,
                 "codes: expected rows * inter / 2 = ", rows * inter / 2, " bytes, got ",
                 codes.size());
  check_expert_layout(__func__, off, g, "rows", rows, inter, scales, scale_rows);

  // The intermediate is rounded to dtype, exactly as the unfused path stores it.
  std::vector<uint16_t> act(size_t(rows * inter));
  silu_and_mul_unchecked(x, dtype, rows, inter, limit, act);
  quantize_experts_unchecked(act, dtype, inter, off, g, {}, rows, codes, scales);
}

void dequantize(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int64_t rows,
                int64_t k, float g, std::span<float> out) {
  check_shape(__func__, "rows", rows, "k", k);
  NVFP4MOE_CHECK(is_usable_global_scale(g), "g: expected a finite global scale in (0, 2^118], got ",
                 g);
  NVFP4MOE_CHECK(int64_t(codes.size()) == rows * k / 2,
                 "codes: expected rows * k / 2 = ", rows * k / 2, " bytes, got ", codes.size());
  NVFP4MOE_CHECK(int64_t(scales.size()) == swizzled_scale_bytes(rows, k),
                 "scales: expected swizzled_scale_bytes(rows, k) = ", swizzled_scale_bytes(rows, k),
                 " bytes, got ", scales.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == rows * k, "out: expected rows * k = ", rows * k,
                 " elements, got ", out.size());

  const int64_t padded_cols = padded_scale_cols(k);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t s = scales[size_t(swizzled_scale_offset(r, c / kBlockSize, padded_cols))];
      out[size_t(r * k + c)] =
          dequantize_element(e2m1_code_at(codes.data() + r * (k / 2), c), s, g);
    }
  }
}

void dequantize_experts(std::span<const uint8_t> codes, std::span<const uint8_t> scales,
                        int64_t rows, int64_t k, std::span<const int32_t> off,
                        std::span<const float> g, int64_t scale_rows, std::span<float> out) {
  check_shape(__func__, "rows", rows, "k", k);
  NVFP4MOE_CHECK(int64_t(codes.size()) == rows * k / 2,
                 "codes: expected rows * k / 2 = ", rows * k / 2, " bytes, got ", codes.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == rows * k, "out: expected rows * k = ", rows * k,
                 " elements, got ", out.size());
  check_expert_layout(__func__, off, g, "rows", rows, k, scales, scale_rows);

  const int64_t num_experts = int64_t(g.size());
  const int64_t padded_cols = padded_scale_cols(k);
  std::vector<int32_t> sf_off(size_t(num_experts + 1));
  expert_scale_offsets(off.data(), int(num_experts), sf_off.data());

  const int64_t total = off[num_experts];
  std::fill(out.begin() + total * k, out.end(), 0.0f);
  for (int64_t e = 0; e < num_experts; ++e) {
    const uint8_t* expert_scales = scales.data() + int64_t(sf_off[e]) * padded_cols;
    for (int64_t i = off[e]; i < off[e + 1]; ++i) {
      const int64_t r = i - off[e];
      for (int64_t c = 0; c < k; ++c) {
        const uint8_t s = expert_scales[swizzled_scale_offset(r, c / kBlockSize, padded_cols)];
        out[size_t(i * k + c)] =
            dequantize_element(e2m1_code_at(codes.data() + i * (k / 2), c), s, g[e]);
      }
    }
  }
}

}  // namespace nvfp4moe::ref
