// Launchers of the NVFP4 quantization kernels: validate on the host, pick the dtype, size the
// grid from capacities (never from device data), enqueue on the caller's stream.
#include "nvfp4moe/cuda/quantize.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/pdl_launch.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/amax_sm90.cuh"
#include "nvfp4moe/kernels/dequantize_sm90.cuh"
#include "nvfp4moe/kernels/gather_experts_nvfp4_sm90.cuh"
#include "nvfp4moe/kernels/quantize_bulk_sm90.cuh"
#include "nvfp4moe/kernels/quantize_rows_sm90.cuh"
#include "nvfp4moe/kernels/quantize_sm90.cuh"
#include "nvfp4moe/kernels/runtime_quant_sm90.cuh"
#include "nvfp4moe/kernels/silu_mul_sm90.cuh"
#include "nvfp4moe/kernels/tile_quant_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

namespace k = ::nvfp4moe::kernels;

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();

int sm_count() {
  int dev = 0, n = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

// Blocks of a persistent warp-walk kernel (matrix_walk_quant_sm90.cuh) over `elems` elements
// in warp steps of `step_elems`: one step per warp when the work is small, else one resident
// wave (`per_sm` blocks per SM, the kernel's launch bound).
unsigned walk_grid(int64_t elems, int64_t step_elems, int per_sm) {
  const int64_t steps = (elems + step_elems - 1) / step_elems;
  const int64_t blocks = (steps + k::kQuantThreads / 32 - 1) / (k::kQuantThreads / 32);
  return unsigned(std::clamp<int64_t>(blocks, 1, int64_t(sm_count()) * per_sm));
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

int g_bulk_override = -1;  // set_quantize_bulk

int env_or(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != 0 ? std::atoi(v) : fallback;
}

// Whether large calls of an even row step take the bulk-copy kernel
// (kernels/quantize_bulk_sm90.cuh): set_quantize_bulk, else NVFP4MOE_QUANT_BULK=0|1|2|3 from
// the environment, else 3. The default is where the kernel won on both devices measured
// (docs/results/quantize.md): the per-expert calls without SiLU (H100 4-15% faster, H200 13-15%).
// One matrix stays on the tile-slab kernel (H100 K = 7168: 10% slower on the bulk kernel; and
// in the DeepSeek-V3 layer at T = 4096 the shared expert's quantizer on it cost 2.7% on both
// devices), the fused SiLU input on the row-step kernel (H100 K = 7168: 5% slower; H200 11%
// faster).
bool quantize_bulk(bool one_matrix, bool silu) {
  static const int env = env_or("NVFP4MOE_QUANT_BULK", 3);
  const int want = g_bulk_override >= 0 ? g_bulk_override : env;
  return want == 1 || (want == 2 && !one_matrix) || (want == 3 && !one_matrix && !silu);
}

// Kernel variant by width: K % 256 == 0 (every model width) takes the row-step walk
// (quantize_rows_sm90.cuh) with the largest step of kQuantChunks (plain) or kSiluChunks (SiLU
// input) chunks or fewer that divides the row (plain 4 or 2; SiLU 2 or 3); other widths and rows
// of other chunk counts take the flat walk (quantize_sm90.cuh), as does a call with the
// values output (compiled into the flat one-chunk kernel only). By size: small tensors (less
// than one resident wave of warps with a full step each) one chunk per warp step, so that the
// latency is one load and one chunk's arithmetic. Large calls of an even row step stream their
// input through shared memory (quantize_bulk_sm90.cuh) where quantize_bulk() says so.
struct QuantPlan {
  int row_step = 0;  // chunks per step of the row-step walk; 0: the flat walk
  bool one_chunk = false;
  bool bulk = false;
};

// gemm_values: the values output in the GEMM's K order (ValuesOrder::kGemm), which the row-step
// and bulk kernels write (the caller checked K % 256 == 0); natural-order values take the flat
// one-chunk kernel.
template <bool kSilu>
QuantPlan plan_quantize(const k::QuantizeParams& p, bool gemm_values = false) {
  constexpr int kChunks = kSilu ? k::kSiluChunks : k::kQuantChunks;
  const int64_t elems = int64_t(p.rows_out) * p.k;
  const int64_t wave_warps = int64_t(sm_count()) * k::kBlocksPerSm<kSilu> * (k::kQuantThreads / 32);
  const bool flat_values = p.values != nullptr && !gemm_values;
  QuantPlan plan;
  plan.one_chunk = flat_values || elems < wave_warps * kChunks * k::kWalkChunkElems;
  const int64_t cpr = p.k % k::kWalkChunkElems == 0 ? p.k / k::kWalkChunkElems : 0;  // chunks per row
  if (!flat_values && cpr > 0 && p.rows_out < (int32_t(1) << 30)) {
    const int candidates[2] = {kChunks, kSilu ? 3 : 2};
    if (plan.one_chunk) plan.row_step = 1;
    for (int c : candidates) {
      if (plan.row_step == 0 && cpr % c == 0) plan.row_step = c;
    }
    // GEMM-order values are written by the row-step kernels only: one chunk per step where no
    // larger step divides the row (plain input of 768 or 1280 columns, SiLU input of 256).
    if (gemm_values && plan.row_step == 0) plan.row_step = 1;
  }
  // Even steps only: the lane-block layout needs them (so K % 512 == 0), and the SiLU input's
  // 3-chunk steps (Qwen3's 768-wide product) measured 5% slower there with lane pairs (H200,
  // M = 8192).
  plan.bulk = plan.row_step > 1 && plan.row_step % 2 == 0 && quantize_bulk(p.off == nullptr, kSilu);
  return plan;
}

// Launches the bulk-copy kernel with kChunks chunks per step and kStages buffers per warp: its
// ring in dynamic shared memory, the grid one resident wave (blocks per SM as the occupancy
// calculator gives them).
template <typename T, bool kSilu, bool kLimit, int kChunks, int kStages, bool kGemmValues = false>
void launch_bulk_staged(const k::QuantizeParams& p, cudaStream_t stream) {
  constexpr auto kernel = k::quantize_nvfp4_bulk_kernel<T, kSilu, kLimit, kChunks, kStages, kGemmValues>;
  constexpr int kSmem = k::kBulkRingBytes<T, kSilu, kChunks, kStages>;
  static const int per_sm = [] {
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
    int n = 0;
    NVFP4MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, k::kQuantThreads, kSmem));
    return std::max(n, 1);
  }();
  const int64_t elems = int64_t(p.rows_out) * p.k;
  const dim3 grid(walk_grid(elems, int64_t(kChunks) * k::kWalkChunkElems, per_sm)), block(k::kQuantThreads);
  launch_pdl(kernel, grid, block, size_t(kSmem), stream, p);
}

// Buffers per warp: kBulkStages, or NVFP4MOE_QUANT_BULK_STAGES=2|5 for A/B runs (bf16 without
// the clamp and without GEMM-order values only; other calls keep kBulkStages).
template <typename T, bool kSilu, bool kLimit, int kChunks, bool kGemmValues>
void launch_bulk(const k::QuantizeParams& p, cudaStream_t stream) {
  if constexpr (kGemmValues) {
    return launch_bulk_staged<T, kSilu, kLimit, kChunks, k::kBulkStages, kGemmValues>(p, stream);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16> && !kLimit) {
    static const int stages = env_or("NVFP4MOE_QUANT_BULK_STAGES", k::kBulkStages);
    if (stages == 2) return launch_bulk_staged<T, kSilu, kLimit, kChunks, 2>(p, stream);
    if (stages == 5) return launch_bulk_staged<T, kSilu, kLimit, kChunks, 5>(p, stream);
  }
  launch_bulk_staged<T, kSilu, kLimit, kChunks, k::kBulkStages>(p, stream);
}

// kGemmValues: p.values alone, in the GEMM's K order (ValuesOrder::kGemm; K % 256 == 0, so the
// plan is a row step and the flat kernels are never taken).
template <typename T, bool kSilu, bool kLimit, bool kGemmValues>
void launch_quantize(const k::QuantizeParams& params, cudaStream_t stream) {
  k::QuantizeParams p = params;
  constexpr int kChunks = kSilu ? k::kSiluChunks : k::kQuantChunks;
  constexpr int kPerSm = k::kBlocksPerSm<kSilu>;
  constexpr int kAlt = kSilu ? 3 : 2;
  const QuantPlan plan = plan_quantize<kSilu>(p, kGemmValues);
  if (plan.bulk) {  // even steps only: kChunks, or kAlt where it is even
    if constexpr (kAlt % 2 == 0) {
      if (plan.row_step == kAlt) launch_bulk<T, kSilu, kLimit, kAlt, kGemmValues>(p, stream);
    }
    if (plan.row_step == kChunks) launch_bulk<T, kSilu, kLimit, kChunks, kGemmValues>(p, stream);
    NVFP4MOE_CUDA_CHECK_LAUNCH();
    return;
  }
  const int64_t elems = int64_t(p.rows_out) * p.k;
  const int64_t step =
      (plan.row_step > 0 ? plan.row_step : plan.one_chunk ? 1 : kChunks) * int64_t(k::kWalkChunkElems);
  const dim3 grid(walk_grid(elems, step, kPerSm)), block(k::kQuantThreads);
  switch (plan.row_step) {
    case 1: launch_pdl(k::quantize_nvfp4_rows_kernel<T, kSilu, kLimit, 1, kGemmValues>, grid, block, 0, stream, p); break;
    case kChunks:
      launch_pdl(k::quantize_nvfp4_rows_kernel<T, kSilu, kLimit, kChunks, kGemmValues>, grid, block, 0, stream, p);
      break;
    case kAlt: launch_pdl(k::quantize_nvfp4_rows_kernel<T, kSilu, kLimit, kAlt, kGemmValues>, grid, block, 0, stream, p); break;
    default:
      if constexpr (kGemmValues) {
        NVFP4MOE_CHECK(false, "internal: GEMM-order values need a row step (K % 256 == 0), got K = ", p.k);
      } else {
        plan.one_chunk ? launch_pdl(k::quantize_nvfp4_kernel<T, kSilu, kLimit, 1>, grid, block, 0, stream, p)
                       : launch_pdl(k::quantize_nvfp4_kernel<T, kSilu, kLimit, kChunks>, grid, block, 0, stream, p);
      }
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

// silu: the SiLU input (with the clamp when has_limit).
template <typename T, bool kGemmValues>
void launch_quantize_kind(bool silu, bool has_limit, const k::QuantizeParams& p, cudaStream_t stream) {
  if (!silu) {
    launch_quantize<T, false, false, kGemmValues>(p, stream);
  } else if (has_limit) {
    launch_quantize<T, true, true, kGemmValues>(p, stream);
  } else {
    launch_quantize<T, true, false, kGemmValues>(p, stream);
  }
}

template <bool kGemmValues = false>
void launch_quantize_dtype(ActDType dtype, bool silu, bool has_limit, const k::QuantizeParams& p,
                           cudaStream_t stream) {
  if (dtype == ActDType::kBF16) {
    launch_quantize_kind<__nv_bfloat16, kGemmValues>(silu, has_limit, p, stream);
  } else {
    launch_quantize_kind<__half, kGemmValues>(silu, has_limit, p, stream);
  }
}

// The per-expert entry points' launch by the values' order.
void launch_expert_quantize(ActDType dtype, bool silu, bool has_limit, const k::QuantizeParams& p,
                            ValuesOrder values_order, cudaStream_t stream) {
  if (values_order == ValuesOrder::kGemm) {
    launch_quantize_dtype<true>(dtype, silu, has_limit, p, stream);
  } else {
    launch_quantize_dtype<false>(dtype, silu, has_limit, p, stream);
  }
}

// One matrix (quantize, and the quantize pass of quantize_runtime_scale above the single-
// launch size): the tile-slab kernel (tile_quant_sm90.cuh; measured faster there, also than the
// row-step walk on the H100: docs/results/quantize.md). grid.y =
// slabs of 2 * slab_pairs column groups, 4 pairs (512 elements) unless that leaves fewer
// than ~2 blocks per SM (then 2 or 1 pairs); grid.x = scale tiles.
void launch_tiles(ActDType dtype, k::tile::TileQuantizeParams p, cudaStream_t stream) {
  const int64_t col_groups = padded_scale_cols(p.k) / 4;
  const int64_t tiles = p.scale_tiles;
  const int64_t want_blocks = 2 * int64_t(sm_count());
  int64_t pairs = k::tile::kMaxSlabPairs;
  while (pairs > 1 && tiles * ((col_groups + 2 * pairs - 1) / (2 * pairs)) < want_blocks) pairs /= 2;
  const int64_t slabs = (col_groups + 2 * pairs - 1) / (2 * pairs);
  NVFP4MOE_CHECK(slabs <= 65535, "k: too wide for the grid (", p.k, ")");
  p.slab_pairs = int32_t(pairs);
  const dim3 grid{unsigned(tiles), unsigned(slabs)};
  if (dtype == ActDType::kBF16) {
    launch_pdl(k::tile::quantize_tiles_kernel<__nv_bfloat16, k::tile::kTileUnroll>, grid, dim3(k::kQuantThreads), 0, stream, p);
  } else {
    launch_pdl(k::tile::quantize_tiles_kernel<__half, k::tile::kTileUnroll>, grid, dim3(k::kQuantThreads), 0, stream, p);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

k::tile::TileQuantizeParams tile_params(const void* x, int64_t rows, int64_t k, uint8_t* codes, uint8_t* scales) {
  k::tile::TileQuantizeParams p{};
  p.x = x;
  p.k = int32_t(k);
  p.rows_out = int32_t(rows);
  p.codes = codes;
  p.scales = scales;
  p.scale_tiles = int32_t(padded_scale_rows(rows) / 128);
  return p;
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
  p.num_experts = 1;  // off == nullptr: one matrix (the bulk-copy kernel's tables)
  return p;
}

// The checks and parameters of a per-expert output (quantize_experts and its silu variant,
// gather_experts_nvfp4): rows, offsets, experts, error word and, unless values only, the scale
// buffer's capacity and the codes.
k::QuantizeParams expert_output_params(int64_t rows_in, int64_t k, const int32_t* off, int num_experts,
                                       int64_t rows_out, uint8_t* codes, uint8_t* scales, int64_t scale_rows,
                                       uint32_t* error_flags, bool values_only) {
  check_rows(rows_out, "rows_out");
  check_ptr(off, "off", 4);
  NVFP4MOE_CHECK(num_experts >= 1 && num_experts <= kQuantMaxExperts, "num_experts: expected 1..",
                 kQuantMaxExperts, ", got ", num_experts);
  if (error_flags != nullptr) check_ptr(error_flags, "error_flags", 4);
  if (!values_only) {
    const int64_t capacity = expert_scale_rows_capacity(rows_out, num_experts);
    NVFP4MOE_CHECK(scale_rows % 128 == 0 && scale_rows >= capacity && scale_rows <= kMaxRows,
                   "scale_rows: expected a multiple of 128 >= expert_scale_rows_capacity(rows_out = ", rows_out,
                   ", E = ", num_experts, ") = ", capacity, ", got ", scale_rows);
    check_ptr(scales, "scales");
    if (rows_out > 0) check_ptr(codes, "codes");
  }
  k::QuantizeParams p{};
  p.rows_in = int32_t(rows_in);
  p.k = int32_t(k);
  p.codes = codes;
  p.scales = scales;
  p.rows_out = int32_t(rows_out);
  p.scale_rows = int32_t(scale_rows);
  p.off = off;
  p.num_experts = num_experts;
  p.error_flags = error_flags;
  return p;
}

// Shared checks and parameters of the two per-expert quantizers. Values only (codes and scales
// both null, values given): scale_rows is not used.
k::QuantizeParams expert_params(const void* x, int64_t rows_in, int64_t k, const int32_t* off, int num_experts,
                                const float* g, int64_t rows_out, uint8_t* codes, uint8_t* scales,
                                int64_t scale_rows, uint32_t* error_flags, void* values, ValuesOrder values_order) {
  NVFP4MOE_CHECK(values_order == ValuesOrder::kNatural || values_order == ValuesOrder::kGemm,
                 "values_order: expected kNatural or kGemm, got ", int(values_order));
  if (values_order == ValuesOrder::kGemm) {
    NVFP4MOE_CHECK(values != nullptr && codes == nullptr && scales == nullptr,
                   "values_order: kGemm writes the values alone: expected values given, codes and scales null");
    NVFP4MOE_CHECK(k % 256 == 0, "k: values in the GEMM's K order need k % 256 == 0, got ", k);
  }
  check_ptr(g, "g", 4);
  if (values != nullptr) check_ptr(values, "values");
  const bool values_only = values != nullptr && codes == nullptr && scales == nullptr;
  k::QuantizeParams p = expert_output_params(rows_in, k, off, num_experts, rows_out, codes, scales, scale_rows,
                                             error_flags, values_only);
  if (rows_out > 0) check_ptr(x, "x");
  p.x = x;
  p.x_row_stride = k;
  p.g = g;
  p.values = static_cast<uint16_t*>(values);
  return p;
}

}  // namespace

void set_quantize_bulk(int mode) { g_bulk_override = mode; }

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
  k::QuantizeParams bp = plain_params(x, rows, k, codes, scales);
  bp.g = g;
  if (plan_quantize<false>(bp).bulk) {  // large, K % 256 == 0: one "expert" on the bulk-copy kernel
    launch_quantize_dtype(dtype, false, false, bp, stream);
    return;
  }
  k::tile::TileQuantizeParams p = tile_params(x, rows, k, codes, scales);
  p.g = g;
  launch_tiles(dtype, p, stream);
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
  k::QuantizeParams p = plain_params(x, rows, k, codes, scales);
  p.amax = amax;
  p.g_out = g;
  p.g_inv_out = g_inv;
  static_assert(k::kSmallRuntimeMaxElems == kQuantRuntimeSingleLaunchMaxElems);
  if (rows * k <= k::kSmallRuntimeMaxElems) {  // one launch: amax and quantize in one cluster
    if (dtype == ActDType::kBF16) {
      launch_pdl(k::quantize_runtime_small_kernel<__nv_bfloat16>, dim3(k::kSmallRuntimeCtas), dim3(k::kSmallRuntimeThreads), 0,
                 stream, p);
    } else {
      launch_pdl(k::quantize_runtime_small_kernel<__half>, dim3(k::kSmallRuntimeCtas), dim3(k::kSmallRuntimeThreads), 0,
                 stream, p);
    }
    NVFP4MOE_CUDA_CHECK_LAUNCH();
    return;
  }
  amax_abs(x, dtype, rows * k, amax, stream);
  if (plan_quantize<false>(p).bulk) {  // g from the finished amax; block 0 publishes g and 1/g
    launch_quantize_dtype(dtype, false, false, p, stream);
    return;
  }
  k::tile::TileQuantizeParams tp = tile_params(x, rows, k, codes, scales);
  tp.amax = amax;
  tp.g_out = g;
  tp.g_inv_out = g_inv;
  launch_tiles(dtype, tp, stream);
}

void quantize_experts(const void* x, ActDType dtype, int64_t rows_in, int64_t k, const int32_t* off,
                      int num_experts, const float* g, const int32_t* gather, int64_t rows_out, uint8_t* codes,
                      uint8_t* scales, int64_t scale_rows, uint32_t* error_flags, cudaStream_t stream, void* values,
                      ValuesOrder values_order) {
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
      expert_params(x, rows_in, k, off, num_experts, g, rows_out, codes, scales, scale_rows, error_flags, values,
                    values_order);
  p.gather = gather;
  launch_expert_quantize(dtype, false, false, p, values_order, stream);
}

void gather_experts_nvfp4(const uint8_t* codes_in, const uint8_t* scales_in, int64_t rows_in, int64_t k,
                          const int32_t* off, int num_experts, const int32_t* gather, int64_t rows_out,
                          uint8_t* codes, uint8_t* scales, int64_t scale_rows, uint32_t* error_flags,
                          cudaStream_t stream) {
  check_width(k, "k");
  check_rows(rows_in, "rows_in");
  check_ptr(gather, "gather", 4);
  if (rows_in > 0) {  // with rows_in = 0 every gather entry is bad: nothing is read
    check_ptr(codes_in, "codes_in");
    check_ptr(scales_in, "scales_in");
  }
  k::QuantizeParams p = expert_output_params(rows_in, k, off, num_experts, rows_out, codes, scales, scale_rows,
                                             error_flags, false);
  p.gather = gather;
  const k::GatherNvfp4In in{codes_in, scales_in};
  // Warps over the codes rows and the scale items (tile, 16 column groups), at most one resident
  // wave (58 registers: 4 blocks of 8 warps per SM).
  const int64_t scale_items = scale_rows / 128 * ((padded_scale_cols(k) / 4 + 15) / 16);
  const int64_t items = std::max<int64_t>(rows_out, scale_items);
  const dim3 grid(grid_for(items, k::kQuantThreads / 32, 4)), block(k::kQuantThreads);
  if (k % 32 == 0) launch_pdl(k::gather_experts_nvfp4_kernel<16>, grid, block, 0, stream, p, in);
  else launch_pdl(k::gather_experts_nvfp4_kernel<8>, grid, block, 0, stream, p, in);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void silu_and_mul(const void* x, ActDType dtype, int64_t rows, int64_t inter, std::optional<float> limit,
                  void* out, cudaStream_t stream, ValuesOrder out_order) {
  check_dtype(dtype);
  check_rows(rows, "rows");
  NVFP4MOE_CHECK(inter > 0 && inter % 8 == 0 && inter <= kMaxRows / 2, "inter: expected a positive multiple of 8, got ",
                 inter);
  NVFP4MOE_CHECK(out_order == ValuesOrder::kNatural || (out_order == ValuesOrder::kGemm && inter % 64 == 0),
                 "out_order: kNatural, or kGemm with inter % 64 == 0; got ", int(out_order), " with inter ", inter);
  NVFP4MOE_CHECK(!limit || *limit > 0.0f, "limit: expected a positive SwiGLU limit, got ", limit ? *limit : 0.0f);
  if (rows == 0) return;
  check_ptr(x, "x");
  check_ptr(out, "out");
  const unsigned grid = walk_grid(rows * inter, int64_t(k::kSiluChunks) * k::kWalkChunkElems, k::kSiluBlocksPerSm);
  const float l = limit ? *limit : 0.0f;
  auto launch = [&](auto kernel, auto* typed_x) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(typed_x)>>;
    launch_pdl(kernel, dim3(grid), dim3(k::kQuantThreads), 0, stream, typed_x, static_cast<T*>(out), int32_t(rows),
               int32_t(inter), l);
  };
  // The kernel by dtype, clamp and output order.
  auto launch_typed = [&](auto* typed_x) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(typed_x)>>;
    if (out_order == ValuesOrder::kGemm) {
      limit ? launch(k::silu_and_mul_kernel<T, true, true>, typed_x) : launch(k::silu_and_mul_kernel<T, false, true>, typed_x);
    } else {
      limit ? launch(k::silu_and_mul_kernel<T, true>, typed_x) : launch(k::silu_and_mul_kernel<T, false>, typed_x);
    }
  };
  if (dtype == ActDType::kBF16) launch_typed(static_cast<const __nv_bfloat16*>(x));
  else launch_typed(static_cast<const __half*>(x));
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void silu_and_mul_quantize_experts(const void* x, ActDType dtype, int64_t rows, int64_t inter,
                                   std::optional<float> limit, const int32_t* off, int num_experts, const float* g,
                                   uint8_t* codes, uint8_t* scales, int64_t scale_rows, uint32_t* error_flags,
                                   cudaStream_t stream, void* values, ValuesOrder values_order) {
  check_dtype(dtype);
  check_width(inter, "inter");
  NVFP4MOE_CHECK(inter <= kMaxRows / 2, "inter: expected < 2^30, got ", inter);
  NVFP4MOE_CHECK(!limit || *limit > 0.0f, "limit: expected a positive SwiGLU limit, got ", limit ? *limit : 0.0f);
  k::QuantizeParams p =
      expert_params(x, rows, inter, off, num_experts, g, rows, codes, scales, scale_rows, error_flags, values,
                    values_order);
  p.x_row_stride = 2 * inter;
  p.limit = limit ? *limit : 0.0f;
  launch_expert_quantize(dtype, true, limit.has_value(), p, values_order, stream);
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
