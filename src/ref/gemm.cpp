// CPU golden model of the NVFP4 GEMMs (include/nvfp4moe/ref/gemm.h).
//
// Every GEMM here decodes its operands to float (exact: e2m1 x e4m3 has at most 5 significant
// bits), then computes out[m, n] = float(sum_k double(a_k) * double(b_k)) * alpha(n) with the
// k loop in ascending order. Grouped GEMMs decode one expert's weight at a time, so memory
// stays at one [N, K] float matrix however many experts there are.
#include "nvfp4moe/ref/gemm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/swizzle.h"
#include "parallel_for.h"

namespace nvfp4moe::ref {
namespace {

using detail::parallel_for;

// Sums of exact products in float64, k ascending (the documented order), for kCols output
// columns at once: independent accumulation chains, each in the same order as a lone dot.
template <int kCols>
inline void dot_f64_cols(const float* a, const float* b, int64_t k, double* acc) {
  for (int j = 0; j < kCols; ++j) acc[j] = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    const double ai = double(a[i]);
    for (int j = 0; j < kCols; ++j) acc[j] += ai * double(b[j * k + i]);
  }
}

// out[r * ldo + c] = float(dot(a[r], b[c])) * alpha(c) for r < m, c < n, where
// alpha(c) = lo for c < n/2 else hi (apply_alpha = false: no multiply at all).
// a: [m, k], b: [n, k] float32, row-major. Work items are (row, 64-column chunk) pairs.
void matmul_rows(const float* a, int64_t m, const float* b, int64_t n, int64_t k, bool apply_alpha,
                 HalfAlpha alpha, float* out, int64_t ldo) {
  constexpr int64_t kColChunk = 64;
  constexpr int kCols = 8;
  const int64_t col_chunks = (n + kColChunk - 1) / kColChunk;
  const int64_t items = m * col_chunks;
  const int64_t macs_per_item = std::max<int64_t>(1, kColChunk * k);
  const int64_t min_items = std::max<int64_t>(1, (int64_t{1} << 18) / macs_per_item);
  const int64_t half = n / 2;
  auto store = [&](int64_t r, int64_t c, double acc) {
    float s = float(acc);
    if (apply_alpha) s = s * (c < half ? alpha.lo : alpha.hi);
    out[r * ldo + c] = s;
  };
  parallel_for(items, min_items, [&](int64_t begin, int64_t end) {
    double acc[kCols];
    for (int64_t it = begin; it < end; ++it) {
      const int64_t r = it / col_chunks;
      const int64_t c0 = (it % col_chunks) * kColChunk, c1 = std::min(n, c0 + kColChunk);
      const float* arow = a + r * k;
      int64_t c = c0;
      for (; c + kCols <= c1; c += kCols) {
        dot_f64_cols<kCols>(arow, b + c * k, k, acc);
        for (int j = 0; j < kCols; ++j) store(r, c + j, acc[j]);
      }
      for (; c < c1; ++c) {
        dot_f64_cols<1>(arow, b + c * k, k, acc);
        store(r, c, acc[0]);
      }
    }
  });
}

void check_view(const Nvfp4View& v, const char* name) {
  NVFP4MOE_CHECK(v.rows >= 0, name, ".rows: expected >= 0, got ", v.rows);
  NVFP4MOE_CHECK(v.k > 0 && v.k % kBlockSize == 0, name,
                 ".k: expected a positive multiple of 16, got ", v.k);
  NVFP4MOE_CHECK(int64_t(v.codes.size()) == v.rows * v.k / 2, name,
                 ".codes: expected rows*k/2 = ", v.rows * v.k / 2, " bytes, got ", v.codes.size());
  NVFP4MOE_CHECK(int64_t(v.scales.size()) == swizzled_scale_bytes(v.rows, v.k), name,
                 ".scales: expected swizzled_scale_bytes(rows, k) = ",
                 swizzled_scale_bytes(v.rows, v.k), " bytes, got ", v.scales.size());
}

void check_alpha(HalfAlpha a, const char* name) {
  NVFP4MOE_CHECK(std::isfinite(a.lo) && std::isfinite(a.hi), name,
                 ": expected finite values, got lo=", a.lo, " hi=", a.hi);
}

void check_dtype(ActDType dtype) {
  NVFP4MOE_CHECK(dtype == ActDType::kBF16 || dtype == ActDType::kFP16,
                 "dtype: expected bf16 or fp16, got ", int(dtype));
}

void dequantize_unscaled_unchecked(const Nvfp4View& v, float* out) {
  float e2m1_value[16];
  for (int c = 0; c < 16; ++c) e2m1_value[c] = e2m1_to_float(uint8_t(c));
  const int64_t pc = padded_scale_cols(v.k), sc = scale_cols(v.k);
  parallel_for(v.rows, std::max<int64_t>(1, 65536 / v.k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = v.codes.data() + r * (v.k / 2);
      float* dst = out + r * v.k;
      for (int64_t c = 0; c < sc; ++c) {
        const float s = e4m3_to_float(v.scales[size_t(swizzled_scale_offset(r, c, pc))]);
        for (int64_t i = c * kBlockSize; i < (c + 1) * kBlockSize; i += 2) {
          const uint8_t byte = row[i / 2];
          dst[i] = e2m1_value[unpack_e2m1_low(byte)] * s;
          dst[i + 1] = e2m1_value[unpack_e2m1_high(byte)] * s;
        }
      }
    }
  });
}

// Shared checks of the grouped GEMMs: expert weights, alpha and offsets. Returns M = off[E].
int64_t check_grouped(int64_t k, std::span<const int32_t> off, std::span<const Nvfp4View> b,
                      std::span<const HalfAlpha> alpha) {
  NVFP4MOE_CHECK(!b.empty(), "b: expected at least one expert weight, got none");
  NVFP4MOE_CHECK(k > 0 && k % kBlockSize == 0, "k: expected a positive multiple of 16, got ", k);
  int64_t e_count = int64_t(b.size());
  NVFP4MOE_CHECK(int64_t(off.size()) == e_count + 1, "off: expected E+1 = ", e_count + 1,
                 " entries, got ", off.size());
  NVFP4MOE_CHECK(int64_t(alpha.size()) == e_count, "alpha: expected E = ", e_count,
                 " entries, got ", alpha.size());
  NVFP4MOE_CHECK(off[0] == 0, "off: expected off[0] = 0, got ", off[0]);
  for (int64_t e = 0; e < e_count; ++e) {
    NVFP4MOE_CHECK(off[size_t(e + 1)] >= off[size_t(e)],
                   "off: expected non-decreasing offsets, got off[", e, "] = ", off[size_t(e)],
                   " > off[", e + 1, "] = ", off[size_t(e + 1)]);
    check_view(b[size_t(e)], "b[e]");
    NVFP4MOE_CHECK(b[size_t(e)].k == k, "b: expert ", e, " has k = ", b[size_t(e)].k, ", expected ",
                   k);
    NVFP4MOE_CHECK(b[size_t(e)].rows == b[0].rows, "b: expert ", e, " has ", b[size_t(e)].rows,
                   " rows, expected ", b[0].rows, " like expert 0");
    check_alpha(alpha[size_t(e)], "alpha[e]");
  }
  NVFP4MOE_CHECK(b[0].rows > 0, "b: expected N > 0 rows, got ", b[0].rows);
  return off[size_t(e_count)];
}

}  // namespace

void dequantize_unscaled(const Nvfp4View& b, std::span<float> out) {
  check_view(b, "b");
  NVFP4MOE_CHECK(int64_t(out.size()) == b.rows * b.k, "out: expected rows*k = ", b.rows * b.k,
                 " floats, got ", out.size());
  dequantize_unscaled_unchecked(b, out.data());
}

void gemm_w4a4(const Nvfp4View& a, const Nvfp4View& b, HalfAlpha alpha, std::span<float> out) {
  check_view(a, "a");
  check_view(b, "b");
  NVFP4MOE_CHECK(a.k == b.k, "b.k: expected a.k = ", a.k, ", got ", b.k);
  NVFP4MOE_CHECK(b.rows > 0, "b.rows: expected N > 0, got ", b.rows);
  check_alpha(alpha, "alpha");
  NVFP4MOE_CHECK(int64_t(out.size()) == a.rows * b.rows, "out: expected M*N = ", a.rows * b.rows,
                 " floats, got ", out.size());
  if (a.rows == 0) return;
  std::vector<float> af(size_t(a.rows * a.k)), bf(size_t(b.rows * b.k));
  dequantize_unscaled_unchecked(a, af.data());
  dequantize_unscaled_unchecked(b, bf.data());
  matmul_rows(af.data(), a.rows, bf.data(), b.rows, a.k, true, alpha, out.data(), b.rows);
}

void gemm_w4a16(std::span<const uint16_t> a, ActDType dtype, int64_t m, const Nvfp4View& b,
                HalfAlpha alpha, std::span<float> out) {
  check_dtype(dtype);
  check_view(b, "b");
  NVFP4MOE_CHECK(b.rows > 0, "b.rows: expected N > 0, got ", b.rows);
  NVFP4MOE_CHECK(m >= 0, "m: expected >= 0, got ", m);
  NVFP4MOE_CHECK(int64_t(a.size()) == m * b.k, "a: expected m*k = ", m * b.k, " elements, got ",
                 a.size());
  check_alpha(alpha, "alpha");
  NVFP4MOE_CHECK(int64_t(out.size()) == m * b.rows, "out: expected M*N = ", m * b.rows,
                 " floats, got ", out.size());
  if (m == 0) return;
  std::vector<float> af(a.size()), bf(size_t(b.rows * b.k));
  for (size_t i = 0; i < a.size(); ++i) af[i] = act_to_float(a[i], dtype);
  dequantize_unscaled_unchecked(b, bf.data());
  matmul_rows(af.data(), m, bf.data(), b.rows, b.k, true, alpha, out.data(), b.rows);
}

void grouped_gemm_w4a4(std::span<const uint8_t> a_codes, std::span<const uint8_t> a_scales,
                       int64_t scale_rows, int64_t k, std::span<const int32_t> off,
                       std::span<const Nvfp4View> b, std::span<const HalfAlpha> alpha,
                       std::span<float> out) {
  int64_t m = check_grouped(k, off, b, alpha);
  int64_t e_count = int64_t(b.size()), n = b[0].rows, pc = padded_scale_cols(k);
  std::vector<int32_t> sf_off(size_t(e_count + 1));
  expert_scale_offsets(off.data(), int(e_count), sf_off.data());
  NVFP4MOE_CHECK(int64_t(a_codes.size()) >= m * k / 2,
                 "a_codes: expected at least off[E]*k/2 = ", m * k / 2, " bytes, got ",
                 a_codes.size());
  NVFP4MOE_CHECK(scale_rows >= 0 && scale_rows % kScaleTileRows == 0 && scale_rows >= sf_off.back(),
                 "scale_rows: expected a multiple of 128 >= sf_off[E] = ", sf_off.back(), ", got ",
                 scale_rows);
  NVFP4MOE_CHECK(int64_t(a_scales.size()) == scale_rows * pc, "a_scales: expected scale_rows * ",
                 "padded_scale_cols(k) = ", scale_rows * pc, " bytes, got ", a_scales.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == m * n, "out: expected off[E]*N = ", m * n, " floats, got ",
                 out.size());
  std::vector<float> af, bf(size_t(n * k));
  for (int64_t e = 0; e < e_count; ++e) {
    int64_t r0 = off[size_t(e)], rows = off[size_t(e + 1)] - r0;
    if (rows == 0) continue;
    // Expert e's activations are an independent swizzled matrix starting at scale row sf_off[e].
    Nvfp4View ae{
        a_codes.subspan(size_t(r0 * k / 2), size_t(rows * k / 2)),
        a_scales.subspan(size_t(sf_off[size_t(e)] * pc), size_t(swizzled_scale_bytes(rows, k))),
        rows, k};
    af.resize(size_t(rows * k));
    dequantize_unscaled_unchecked(ae, af.data());
    dequantize_unscaled_unchecked(b[size_t(e)], bf.data());
    matmul_rows(af.data(), rows, bf.data(), n, k, true, alpha[size_t(e)], out.data() + r0 * n, n);
  }
}

void grouped_gemm_w4a16(std::span<const uint16_t> a, ActDType dtype, int64_t k,
                        std::span<const int32_t> off, std::span<const Nvfp4View> b,
                        std::span<const HalfAlpha> alpha, std::span<float> out) {
  check_dtype(dtype);
  int64_t m = check_grouped(k, off, b, alpha);
  int64_t e_count = int64_t(b.size()), n = b[0].rows;
  NVFP4MOE_CHECK(int64_t(a.size()) >= m * k, "a: expected at least off[E]*k = ", m * k,
                 " elements, got ", a.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == m * n, "out: expected off[E]*N = ", m * n, " floats, got ",
                 out.size());
  std::vector<float> af, bf(size_t(n * k));
  for (int64_t e = 0; e < e_count; ++e) {
    int64_t r0 = off[size_t(e)], rows = off[size_t(e + 1)] - r0;
    if (rows == 0) continue;
    af.resize(size_t(rows * k));
    for (int64_t i = 0; i < rows * k; ++i)
      af[size_t(i)] = act_to_float(a[size_t(r0 * k + i)], dtype);
    dequantize_unscaled_unchecked(b[size_t(e)], bf.data());
    matmul_rows(af.data(), rows, bf.data(), n, k, true, alpha[size_t(e)], out.data() + r0 * n, n);
  }
}

void gemm_f32(std::span<const float> a, int64_t m, std::span<const float> b, int64_t n, int64_t k,
              std::span<float> out) {
  NVFP4MOE_CHECK(m >= 0, "m: expected >= 0, got ", m);
  NVFP4MOE_CHECK(n >= 0, "n: expected >= 0, got ", n);
  NVFP4MOE_CHECK(k >= 0, "k: expected >= 0, got ", k);
  NVFP4MOE_CHECK(int64_t(a.size()) == m * k, "a: expected m*k = ", m * k, " floats, got ",
                 a.size());
  NVFP4MOE_CHECK(int64_t(b.size()) == n * k, "b: expected n*k = ", n * k, " floats, got ",
                 b.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == m * n, "out: expected m*n = ", m * n, " floats, got ",
                 out.size());
  matmul_rows(a.data(), m, b.data(), n, k, false, HalfAlpha{}, out.data(), n);
}

void round_to_act(std::span<const float> in, ActDType dtype, std::span<uint16_t> out) {
  check_dtype(dtype);
  NVFP4MOE_CHECK(out.size() == in.size(), "out: expected ", in.size(), " elements like in, got ",
                 out.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = act_from_float(in[i], dtype);
}

}  // namespace nvfp4moe::ref
