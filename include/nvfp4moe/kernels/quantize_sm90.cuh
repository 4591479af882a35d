// NVFP4 quantization kernel for Hopper (sm_90a): bf16/fp16 [rows, K] -> packed e2m1 codes
// [rows, K/2] + swizzled e4m3 scales (128x4 tiles, padding zeroed), in one pass with no
// sm_100 instruction. One kernel serves four operations (launchers in src/cuda/quantize.cu):
//   * one matrix, global scale g read from device memory;
//   * one matrix, runtime scale: g = global_scale_from_amax(*amax) (amax_sm90.cuh ran before);
//   * per-expert matrices over device offsets off[E+1], g[e] per expert, optional row gather;
//   * the same fed by silu(gate) * up of a [rows, 2K] input (kSilu, silu_mul_sm90.cuh).
//
// Work split. grid.x = scale tiles (scale_rows / 128; per expert ~8 blocks per SM, each
// visiting several tiles), grid.y = slabs of 2 * slab_pairs column groups (a group = 4 scale
// columns = 64 elements; slabs narrow when there are few tiles, to fill the machine):
//
//              K ->  | slab 0 (up to 8 groups = 512 elem) | slab 1 | ...
//   scale tile t     | chunk = 4 rows {a, a+32, a+64, a+96} x 2 groups, one warp;
//   (128 rows)       | warp w takes a = w, w+8, w+16, w+24, each with all pairs of the slab
//
// Each lane owns one 16-element block (two 16-byte loads, kUnroll chunks ahead), writes 8 code
// bytes; each group of 4 lanes writes one 4-byte scale word, and the 4 rows of a chunk fill 16
// contiguous bytes of a 512-byte scale tile. Tiles with no data rows are only zero-filled.
#pragma once

#include <cstdint>

#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/silu_mul_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kMaxSlabPairs = 4;  // a block covers up to 4 pairs of column groups (512 elements)

struct QuantizeParams {
  const void* x;          // activations, 16-byte aligned
  int64_t x_row_stride;   // elements between input rows: k, or 2k for the SiLU input
  int32_t rows_in;        // rows of x (bound of gather entries)
  int32_t k;              // quantized width, multiple of 16
  uint8_t* codes;         // [rows_out, k/2]
  uint8_t* scales;        // scale_rows * padded_scale_cols(k) bytes
  int32_t rows_out;
  int32_t scale_rows;     // multiple of 128
  const float* g;         // [E] or [1] encode global scales (unused when amax != nullptr)
  const float* amax;      // runtime scale: g = global_scale_from_amax(*amax)
  float* g_out;           // runtime scale: receives g and 1/g (may be null)
  float* g_inv_out;
  const int32_t* off;     // [E+1] expert offsets; nullptr: one matrix of rows_out rows
  int32_t num_experts;
  const int32_t* gather;  // [>= off[E]] input row of each output row, or nullptr
  uint32_t* error_flags;  // kErrorBad* bits are ORed here (may be null)
  float limit;            // SwiGLU clamp (kSilu and has_limit only)
  int32_t has_limit;
  int32_t scale_tiles;    // scale_rows / 128
  int32_t slab_pairs;     // column-group pairs per block (grid.y slabs): 1, 2 or 4
};

// Zeroes code bytes [total_rows * k/2, rows_out * k/2) (rows past off[E]): zeroing block
// `index` of `count` takes every count-th 2 KB stripe (8-byte stores; k/2 % 8 == 0).
__device__ __forceinline__ void zero_code_rows(const QuantizeParams& p, int32_t total_rows, int64_t index,
                                               int64_t count) {
  const int64_t row_bytes = p.k / 2;
  const int64_t end = int64_t(p.rows_out) * row_bytes;
  for (int64_t b = int64_t(total_rows) * row_bytes + 8 * (index * kQuantThreads + threadIdx.x); b < end;
       b += 8 * kQuantThreads * count) {
    *reinterpret_cast<uint2*>(p.codes + b) = make_uint2(0u, 0u);
  }
}

// Quantizes scale tile t (128 scale rows x the block's slab of column groups): loads, codes
// and scale words of its data rows; zero scale words for its padding rows and columns.
// Warp w takes rows a = w, w + 8, w + 16, w + 24 (a-major) and for each every column-group
// pair of the slab, so a tile with few data rows still spreads its loads over the warps.
template <typename T, bool kSilu, int kUnroll>
__device__ __forceinline__ void quantize_tile(const QuantizeParams& p, const ExpertTile& tile, int32_t t,
                                              float g_runtime) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
  const int32_t q0 = int32_t(blockIdx.y) * 2 * p.slab_pairs;
  const int32_t nq = min(2 * p.slab_pairs, col_groups - q0);
  uint8_t* tile_scales = p.scales + (int64_t(t) * col_groups + q0) * kScaleTileBytes;
  if (tile.n_valid == 0) {  // no data rows: the slab's scale bytes are all padding
    for (int i = tid; i < nq * 32; i += kQuantThreads) {
      reinterpret_cast<uint4*>(tile_scales)[i] = make_uint4(0u, 0u, 0u, 0u);
    }
    return;
  }
  const float g = p.amax != nullptr ? g_runtime : __ldg(p.g + tile.expert);
  const float inv_g = reciprocal_rn(g);

  const int c = lane & 3;         // block of the group
  const int b = (lane >> 2) & 3;  // row of the chunk: a + 32 b
  const int h = lane >> 4;        // group of the pair
  const int32_t n_scale_cols = p.k / 16;
  const int64_t code_row_bytes = p.k / 2;
  const T* x = static_cast<const T*>(p.x);
  const int log_pairs = __ffs(p.slab_pairs) - 1;  // slab_pairs is a power of two
  const int n_chunks = 4 * p.slab_pairs;          // this warp's chunks: 4 rows a x pairs

  for (int k0 = 0; k0 < n_chunks; k0 += kUnroll) {
    // Issue every load of kUnroll chunks first (2 words per lane; 4 with the SiLU input).
    uint4 in[kUnroll][kSilu ? 4 : 2];
    int32_t out_row[kUnroll];
    bool active[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int kk = k0 + u;  // warp-uniform
      const int a = warp + 8 * (kk >> log_pairs);
      const int q = q0 + 2 * (kk & (p.slab_pairs - 1)) + h;
      const int row_local = a + 32 * b;
      const int32_t j = 4 * q + c;
      out_row[u] = tile.first_row + row_local;
      active[u] = kk < n_chunks && q < q0 + nq && row_local < tile.n_valid && j < n_scale_cols;
#pragma unroll
      for (int i = 0; i < (kSilu ? 4 : 2); ++i) in[u][i] = make_uint4(0u, 0u, 0u, 0u);
      if (active[u]) {
        int32_t src = out_row[u];
        if (p.gather != nullptr) {
          src = __ldg(p.gather + out_row[u]);
          if (src < 0 || src >= p.rows_in) {
            if (p.error_flags != nullptr) atomicOr(p.error_flags, kErrorBadGather);
            src = -1;
          }
        }
        if (src >= 0) {
          const T* ptr = x + int64_t(src) * p.x_row_stride + 16 * j;
          in[u][0] = load_16b(ptr);
          in[u][1] = load_16b(ptr + 8);
          if constexpr (kSilu) {  // up half of the [rows, 2k] input
            in[u][2] = load_16b(ptr + p.k);
            in[u][3] = load_16b(ptr + p.k + 8);
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int kk = k0 + u;
      if (kk >= n_chunks) break;  // warp-uniform
      const int a = warp + 8 * (kk >> log_pairs);
      const int q = q0 + 2 * (kk & (p.slab_pairs - 1)) + h;
      uint32_t scale_word = 0;
      if (a < tile.n_valid) {  // warp-uniform: some row of the chunk holds data
        uint4 w0 = in[u][0], w1 = in[u][1];
        if constexpr (kSilu) {
          if (active[u]) {
            w0 = silu_mul_pack8<T>(in[u][0], in[u][2], p.has_limit != 0, p.limit);
            w1 = silu_mul_pack8<T>(in[u][1], in[u][3], p.has_limit != 0, p.limit);
          }
        }
        uint8_t s;
        const uint2 codes = quantize_block16_lane<T>(w0, w1, g, inv_g, &s);
        scale_word = scale_word_of_group(s, lane);
        if (active[u]) {
          *reinterpret_cast<uint2*>(p.codes + int64_t(out_row[u]) * code_row_bytes + 8 * (4 * q + c)) = codes;
        }
      }
      if (c == 0 && q < q0 + nq) {  // lanes 4b (+16): 16 contiguous bytes per group
        *reinterpret_cast<uint32_t*>(tile_scales + (q - q0) * kScaleTileBytes + a * 16 + b * 4) = scale_word;
      }
    }
  }
}

template <typename T, bool kSilu, int kUnroll>
__global__ void __launch_bounds__(kQuantThreads, 3) quantize_nvfp4_kernel(QuantizeParams p) {
  __shared__ int32_t s_warp[8];
  __shared__ ExpertTile s_tile;
  __shared__ int32_t s_off[kQuantMaxExperts + 1];
  // Runtime scale: every block derives the same g from the finished amax.
  float g_runtime = 1.0f;
  if (p.amax != nullptr) {
    g_runtime = global_scale_from_amax(*p.amax);
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
      if (p.g_out != nullptr) *p.g_out = g_runtime;
      if (p.g_inv_out != nullptr) *p.g_inv_out = reciprocal_rn(g_runtime);
    }
  }
  if (p.off != nullptr) {
    // Per expert: the block visits tiles blockIdx.x, + gridDim.x, ... (prologue amortized),
    // then takes its share of zeroing the code rows past off[E].
    ExpertTileFinder finder(p.off, p.num_experts, p.rows_out, p.error_flags, s_warp, &s_tile, s_off);
    for (int32_t t = blockIdx.x; t < p.scale_tiles; t += gridDim.x) {
      quantize_tile<T, kSilu, kUnroll>(p, finder.find(t), t, g_runtime);
    }
    zero_code_rows(p, finder.total_rows(), int64_t(blockIdx.x) * gridDim.y + blockIdx.y,
                   int64_t(gridDim.x) * gridDim.y);
  } else {
    for (int32_t t = blockIdx.x; t < p.scale_tiles; t += gridDim.x) {
      const int32_t r0 = t * 128;
      const ExpertTile tile{0, r0, max(0, min(p.rows_out - r0, 128)), p.rows_out};
      quantize_tile<T, kSilu, kUnroll>(p, tile, t, g_runtime);
    }
  }
}

}  // namespace nvfp4moe::kernels
