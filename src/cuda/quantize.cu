// Launchers of the NVFP4 quantization kernels: validate on the host, pick the dtype, size the
// grid from capacities (never from device data), enqueue on the caller's stream.
#include "nvfp4moe/cuda/quantize.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <limits>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/amax_sm90.cuh"
#include "nvfp4moe/kernels/dequantize_sm90.cuh"
#include "nvfp4moe/kernels/quantize_sm90.cuh"
#include "nvfp4moe/kernels/silu_mul_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

namespace k = ::nvfp4moe::kernels;

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();
constexpr int kQuantUnroll = 2;  // chunks in flight per warp: 2 x 32 bytes per lane (plain input)
constexpr int kSiluUnroll = 1;   // 64 bytes per lane per chunk already (gate and up)

int sm_count() {
  int dev = 0, n = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

// Blocks for a grid-stride kernel over `items`, at most `per_sm` blocks per SM.
unsigned grid_for(int64_t items, int64_t items_per_block, int per_sm) {
  const int64_t want = (items + items_per_block - 1) / items_per_block;
  return unsigned(std::clamp<int64_t>(want, 1, int64_t(sm_count()) * per_sm));
}

void check_dtype(ActDType dtype) {
  NVFP4MOE_CHECK(dtype == ActDType::kBF16 || dtype == ActDType::kFP16,
                 "dtype: expected bf16 or fp16, got ", int(dtype));
}

void check_width(int64_t k, const char* name) {
  NVFP4MOE_CHECK(k > 0 && k % 16 == 0 && k <= kMaxRows, name,
                 ": expected a positive multiple of 16 (below 2^31), got ", k);
}

void check_rows(int64_t rows, const char* name) {
  NVFP4MOE_CHECK(rows >= 0 && rows <= kMaxRows, name, ": expected 0 <= ", name, " < 2^31, got ", rows);
}

void check_ptr(const void* p, const char* name, size_t align = kQuantAlignment) {
  NVFP4MOE_CHECK(p != nullptr, name, ": expected a device pointer, got null");
  NVFP4MOE_CHECK(is_aligned(p, align), name, ": expected ", align, "-byte alignment, got ", p);
}

// Grid of the quantize kernel: grid.y = slabs of 2 * slab_pairs column groups, 4 pairs (512
// elements) unless that leaves fewer than ~2 blocks per SM (then 2 or 1 pairs); grid.x =
// scale tiles, or for the per-expert kernel one resident wave of blocks (kQuantBlocksPerSm
// per SM in all) that each visit several tiles, so the per-block expert scan is amortized and
// no partial last wave idles SMs.
dim3 quantize_grid(int64_t scale_rows, int64_t k, bool experts, int32_t* slab_pairs) {
  const int64_t col_groups = padded_scale_cols(k) / 4;
  const int64_t tiles = scale_rows / 128;
  const int64_t want_blocks = 2 * int64_t(sm_count());
  int64_t pairs = k::kMaxSlabPairs;
  while (pairs > 1 && tiles * ((col_groups + 2 * pairs - 1) / (2 * pairs)) < want_blocks) pairs /= 2;
  const int64_t slabs = (col_groups + 2 * pairs - 1) / (2 * pairs);
  NVFP4MOE_CHECK(slabs <= 65535, "k: too wide for the grid (", k, ")");
  int64_t x = tiles;
  if (experts) x = std::min(x, std::max<int64_t>(1, k::kQuantBlocksPerSm * int64_t(sm_count()) / slabs));
  *slab_pairs = int32_t(pairs);
  return dim3(unsigned(x), unsigned(slabs));
}

template <typename T, bool kSilu>
void launch_quantize(k::QuantizeParams p, cudaStream_t stream) {
  const dim3 grid = quantize_grid(p.scale_rows, p.k, p.off != nullptr, &p.slab_pairs);
  if (grid.x == 0) return;
  constexpr int kUnroll = kSilu ? kSiluUnroll : kQuantUnroll;
  k::quantize_nvfp4_kernel<T, kSilu, kUnroll><<<grid, k::kQuantThreads, 0, stream>>>(p);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void launch_quantize_dtype(ActDType dtype, bool silu, const k::QuantizeParams& p, cudaStream_t stream) {
  if (dtype == ActDType::kBF16) {
    silu ? launch_quantize<__nv_bfloat16, true>(p, stream) : launch_quantize<__nv_bfloat16, false>(p, stream);
  } else {
    silu ? launch_quantize<__half, true>(p, stream) : launch_quantize<__half, false>(p, stream);
  }
}

k::QuantizeParams plain_params(const void* x, int64_t rows, int64_t k, uint8_t* codes, uint8_t* scales) {
  k::QuantizeParams p{};
  p.x = x;
  p.x_row_stride = k;
  p.rows_in = int32_t(rows);
  p.k = int32_t(k);
  p.codes = codes;
  p.scales = scales;
  p.rows_out = int32_t(rows);
  p.scale_rows = int32_t(padded_scale_rows(rows));
  p.scale_tiles = p.scale_rows / 128;
  return p;
}

// Shared checks and parameters of the two per-expert entry points.
k::QuantizeParams expert_params(const void* x, int64_t rows_in, int64_t k, const int32_t* off, int num_experts,
                                const float* g, int64_t rows_out, uint8_t* codes, uint8_t* scales,
                                int64_t scale_rows, uint32_t* error_flags) {
  check_rows(rows_out, "rows_out");
  check_ptr(off, "off", 4);
  check_ptr(g, "g", 4);
  NVFP4MOE_CHECK(num_experts >= 1 && num_experts <= kQuantMaxExperts, "num_experts: expected 1..",
                 kQuantMaxExperts, ", got ", num_experts);
  if (error_flags != nullptr) check_ptr(error_flags, "error_flags", 4);
  const int64_t capacity = expert_scale_rows_capacity(rows_out, num_experts);
  NVFP4MOE_CHECK(scale_rows % 128 == 0 && scale_rows >= capacity && scale_rows <= kMaxRows,
                 "scale_rows: expected a multiple of 128 >= expert_scale_rows_capacity(rows_out = ", rows_out,
                 ", E = ", num_experts, ") = ", capacity, ", got ", scale_rows);
  check_ptr(scales, "scales");
  if (rows_out > 0) {
    check_ptr(x, "x");
    check_ptr(codes, "codes");
  }
  k::QuantizeParams p{};
  p.x = x;
  p.x_row_stride = k;
  p.rows_in = int32_t(rows_in);
  p.k = int32_t(k);
  p.codes = codes;
  p.scales = scales;
  p.rows_out = int32_t(rows_out);
  p.scale_rows = int32_t(scale_rows);
  p.scale_tiles = int32_t(scale_rows / 128);
  p.g = g;
  p.off = off;
  p.num_experts = num_experts;
  p.error_flags = error_flags;
  return p;
}

}  // namespace

void quantize(const void* x, ActDType dtype, int64_t rows, int64_t k, const float* g, uint8_t* codes,
              uint8_t* scales, cudaStream_t stream) {
  check_dtype(dtype);
  check_width(k, "k");
  check_rows(rows, "rows");
  if (rows == 0) return;  // nothing to write: codes and scales are empty
  check_ptr(x, "x");
  check_ptr(codes, "codes");
  check_ptr(scales, "scales");
  check_ptr(g, "g", 4);
  k::QuantizeParams p = plain_params(x, rows, k, codes, scales);
  p.g = g;
  launch_quantize_dtype(dtype, false, p, stream);
}

void amax_abs(const void* x, ActDType dtype, int64_t numel, float* amax, cudaStream_t stream) {
  check_dtype(dtype);
  NVFP4MOE_CHECK(numel >= 0 && numel % 8 == 0, "numel: expected a non-negative multiple of 8, got ", numel);
  check_ptr(amax, "amax", 4);
  if (numel > 0) check_ptr(x, "x");
  NVFP4MOE_CUDA_CHECK(cudaMemsetAsync(amax, 0, sizeof(float), stream));
  if (numel == 0) return;
  const int64_t n16 = numel / 8;
  const unsigned grid = grid_for(n16, int64_t(k::kQuantThreads) * 4, 8);
  if (dtype == ActDType::kBF16) {
    k::amax_abs_kernel<__nv_bfloat16><<<grid, k::kQuantThreads, 0, stream>>>(static_cast<const uint4*>(x), n16, amax);
  } else {
    k::amax_abs_kernel<__half><<<grid, k::kQuantThreads, 0, stream>>>(static_cast<const uint4*>(x), n16, amax);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void quantize_runtime_scale(const void* x, ActDType dtype, int64_t rows, int64_t k, uint8_t* codes,
                            uint8_t* scales, float* amax, float* g, float* g_inv, cudaStream_t stream) {
  check_dtype(dtype);
  check_width(k, "k");
  check_rows(rows, "rows");
  check_ptr(amax, "amax", 4);
  if (g != nullptr) check_ptr(g, "g", 4);
  if (g_inv != nullptr) check_ptr(g_inv, "g_inv", 4);
  if (rows > 0) {
    check_ptr(x, "x");
    check_ptr(codes, "codes");
    check_ptr(scales, "scales");
  }
  amax_abs(x, dtype, rows * k, amax, stream);
  if (rows == 0) {  // still publish g = 1 (the all-zero convention) and 1/g
    k::global_scale_from_amax_kernel<<<1, 1, 0, stream>>>(amax, g, g_inv);
    NVFP4MOE_CUDA_CHECK_LAUNCH();
    return;
  }
  k::QuantizeParams p = plain_params(x, rows, k, codes, scales);
  p.amax = amax;
  p.g_out = g;
  p.g_inv_out = g_inv;
  launch_quantize_dtype(dtype, false, p, stream);
}

void quantize_experts(const void* x, ActDType dtype, int64_t rows_in, int64_t k, const int32_t* off,
                      int num_experts, const float* g, const int32_t* gather, int64_t rows_out, uint8_t* codes,
                      uint8_t* scales, int64_t scale_rows, uint32_t* error_flags, cudaStream_t stream) {
  check_dtype(dtype);
  check_width(k, "k");
  check_rows(rows_in, "rows_in");
  if (gather != nullptr) {
    check_ptr(gather, "gather", 4);
  } else {
    NVFP4MOE_CHECK(rows_in >= rows_out, "rows_in: without a gather map expected >= rows_out = ", rows_out,
                   ", got ", rows_in);
  }
  k::QuantizeParams p =
      expert_params(x, rows_in, k, off, num_experts, g, rows_out, codes, scales, scale_rows, error_flags);
  p.gather = gather;
  launch_quantize_dtype(dtype, false, p, stream);
}

void silu_and_mul(const void* x, ActDType dtype, int64_t rows, int64_t inter, std::optional<float> limit,
                  void* out, cudaStream_t stream) {
  check_dtype(dtype);
  check_rows(rows, "rows");
  NVFP4MOE_CHECK(inter > 0 && inter % 8 == 0 && inter <= kMaxRows / 2, "inter: expected a positive multiple of 8, got ",
                 inter);
  NVFP4MOE_CHECK(!limit || *limit > 0.0f, "limit: expected a positive SwiGLU limit, got ", limit ? *limit : 0.0f);
  if (rows == 0) return;
  check_ptr(x, "x");
  check_ptr(out, "out");
  const unsigned grid = grid_for(rows, 1, 16);
  const int has_limit = limit ? 1 : 0;
  const float l = limit ? *limit : 0.0f;
  if (dtype == ActDType::kBF16) {
    k::silu_and_mul_kernel<__nv_bfloat16><<<grid, k::kQuantThreads, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(out), int32_t(rows), int32_t(inter),
        has_limit, l);
  } else {
    k::silu_and_mul_kernel<__half><<<grid, k::kQuantThreads, 0, stream>>>(
        static_cast<const __half*>(x), static_cast<__half*>(out), int32_t(rows), int32_t(inter), has_limit, l);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void silu_and_mul_quantize_experts(const void* x, ActDType dtype, int64_t rows, int64_t inter,
                                   std::optional<float> limit, const int32_t* off, int num_experts, const float* g,
                                   uint8_t* codes, uint8_t* scales, int64_t scale_rows, uint32_t* error_flags,
                                   cudaStream_t stream) {
  check_dtype(dtype);
  check_width(inter, "inter");
  NVFP4MOE_CHECK(inter <= kMaxRows / 2, "inter: expected < 2^30, got ", inter);
  NVFP4MOE_CHECK(!limit || *limit > 0.0f, "limit: expected a positive SwiGLU limit, got ", limit ? *limit : 0.0f);
  k::QuantizeParams p =
      expert_params(x, rows, inter, off, num_experts, g, rows, codes, scales, scale_rows, error_flags);
  p.x_row_stride = 2 * inter;
  p.has_limit = limit ? 1 : 0;
  p.limit = limit ? *limit : 0.0f;
  launch_quantize_dtype(dtype, true, p, stream);
}

namespace {
template <typename OutT>
void launch_dequantize(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k, const float* g,
                       OutT* out, cudaStream_t stream) {
  check_width(k, "k");
  check_rows(rows, "rows");
  if (rows == 0) return;
  check_ptr(codes, "codes");
  check_ptr(scales, "scales", 1);
  check_ptr(g, "g", 4);
  check_ptr(out, "out");
  const unsigned grid = grid_for(rows * (k / 8), k::kQuantThreads, 8);
  k::dequantize_nvfp4_kernel<OutT><<<grid, k::kQuantThreads, 0, stream>>>(codes, scales, int32_t(rows),
                                                                           int32_t(k), g, out);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}
}  // namespace

void dequantize(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k, const float* g, float* out,
                cudaStream_t stream) {
  launch_dequantize<float>(codes, scales, rows, k, g, out, stream);
}

void dequantize_bf16(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k, const float* g,
                     void* out, cudaStream_t stream) {
  launch_dequantize<__nv_bfloat16>(codes, scales, rows, k, g, static_cast<__nv_bfloat16*>(out), stream);
}

}  // namespace nvfp4moe::cuda
