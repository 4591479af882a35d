// NVFP4 quantization kernel for Hopper (sm_90a): bf16/fp16 [rows, K] -> packed e2m1 codes
// [rows, K/2] + swizzled e4m3 scales (128x4 tiles, padding zeroed), in one pass with no
// sm_100 instruction. One kernel serves four operations (launchers in src/cuda/quantize.cu):
//   * one matrix, global scale g read from device memory;
//   * one matrix, runtime scale: g = global_scale_from_amax(*amax) (amax_sm90.cuh ran before);
//   * per-expert matrices over device offsets off[E+1], g[e] per expert, optional row gather;
//   * the same fed by silu(gate) * up of a [rows, 2K] input (kSilu, silu_mul_sm90.cuh).
//
// Work split. grid.x = scale tiles (scale_rows / 128; per expert one resident wave of
// blocks, each visiting several tiles), grid.y = slabs of W = 2 * slab_pairs column groups (a
// group = 4 scale columns = 64 elements; slabs narrow when there are few tiles, to fill the
// machine):
//
//              K ->  | slab 0 (W <= 8 groups = 512 elem) | slab 1 | ...
//   scale tile t     | unit = 1 data row x 1 group (4 lanes); chunk = 8 consecutive units
//   (128 rows)       | (group-fastest: 8/W rows x W groups), one warp instruction;
//                    | chunk k of the tile -> warp k % 8
//
// Each lane owns one 16-element block (two 16-byte loads, the next kUnroll chunks in flight
// while the current ones are computed), writes 8 code bytes; each group of 4 lanes writes one
// 4-byte scale word. Padding rows of a tile get zero words; tiles with no data rows are only
// zero-filled; per expert, tiles past sf_off[E] are not touched (unless the offsets are
// invalid).
#pragma once

#include <cstdint>

#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/silu_mul_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kMaxSlabPairs = 4;  // a block covers up to 4 pairs of column groups (512 elements)
inline constexpr int kQuantBlocksPerSm = 3;  // occupancy the kernel is compiled for (80 registers)

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

// Input words of kUnroll chunks of one lane (2 per chunk, 4 with the SiLU input; zero for
// lanes without a data block).
template <bool kSilu, int kUnroll>
struct ChunkBatch {
  uint4 in[kUnroll][kSilu ? 4 : 2];
};

// Lane geometry of one tile. A unit is one row x one column group (4 blocks, 64 elements);
// a tile slab has n_valid * W units (W = 2 * slab_pairs groups per row, the last slab may use
// only nq < W of them), numbered group-fastest, so a chunk (8 consecutive units, one warp
// instruction) covers 8 / W rows x W groups: with W = 8 one contiguous 1 KB row segment.
// Only data rows form units: a tile with few rows still uses every lane.
struct TileLane {
  int warp, c, unit_lane;  // c = lane & 3: block of the group; unit_lane = lane >> 2
  int32_t q0, nq;          // the block's slab: groups [q0, q0 + nq)
  int log_w;               // log2(W)
  int32_t n_scale_cols;
  int n_mine;              // chunks of this warp: warp, warp + 8, ... below ceil(units / 8)
};

// This lane's unit in the warp's chunk i: tile row r, slab group qi, and whether it is a data
// block (recomputed where needed rather than held in registers).
struct LaneUnit {
  int r, qi;
  int32_t j;  // scale column of the lane's block
  bool active;
};
__device__ __forceinline__ LaneUnit lane_unit(const TileLane& L, const ExpertTile& tile, int i) {
  const int unit = (L.warp + 8 * i) * 8 + L.unit_lane;
  LaneUnit u;
  u.r = unit >> L.log_w;
  u.qi = unit & ((1 << L.log_w) - 1);
  u.j = 4 * (L.q0 + u.qi) + L.c;
  u.active = i < L.n_mine && u.r < tile.n_valid && u.qi < L.nq && u.j < L.n_scale_cols;
  return u;
}

// Issues every load of this warp's chunks i0 .. i0 + kUnroll - 1 (data stays in flight).
template <typename T, bool kSilu, int kUnroll>
__device__ __forceinline__ void load_chunks(const QuantizeParams& p, const ExpertTile& tile, const TileLane& L,
                                            int i0, ChunkBatch<kSilu, kUnroll>& B) {
  const T* x = static_cast<const T*>(p.x);
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const LaneUnit lu = lane_unit(L, tile, i0 + u);
#pragma unroll
    for (int w = 0; w < (kSilu ? 4 : 2); ++w) B.in[u][w] = make_uint4(0u, 0u, 0u, 0u);
    if (lu.active) {
      const int32_t out_row = tile.first_row + lu.r;
      int32_t src = out_row;
      if (p.gather != nullptr) {
        src = __ldg(p.gather + out_row);
        if (src < 0 || src >= p.rows_in) {
          if (p.error_flags != nullptr) atomicOr(p.error_flags, kErrorBadGather);
          src = -1;
        }
      }
      if (src >= 0) {
        const T* ptr = x + int64_t(src) * p.x_row_stride + 16 * lu.j;
        B.in[u][0] = load_16b(ptr);
        B.in[u][1] = load_16b(ptr + 8);
        if constexpr (kSilu) {  // up half of the [rows, 2k] input
          B.in[u][2] = load_16b(ptr + p.k);
          B.in[u][3] = load_16b(ptr + p.k + 8);
        }
      }
    }
  }
}

// Quantizes the loaded chunks i0 .. i0 + kUnroll - 1 of this warp: code bytes of the data
// blocks and one scale word per (data row, group) of the slab (zero bytes for padding
// columns). All 32 lanes take part (the scale word is assembled with shuffles).
template <typename T, bool kSilu, int kUnroll>
__device__ __forceinline__ void quantize_chunks(const QuantizeParams& p, const ExpertTile& tile, const TileLane& L,
                                                int i0, const ChunkBatch<kSilu, kUnroll>& B, float g, float inv_g,
                                                uint8_t* tile_scales, int lane) {
  const int64_t code_row_bytes = p.k / 2;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int i = i0 + u;
    if (i >= L.n_mine) break;  // warp-uniform
    const LaneUnit lu = lane_unit(L, tile, i);
    uint4 w0 = B.in[u][0], w1 = B.in[u][1];
    if constexpr (kSilu) {
      if (lu.active) {
        w0 = silu_mul_pack8<T>(B.in[u][0], B.in[u][2], p.has_limit != 0, p.limit);
        w1 = silu_mul_pack8<T>(B.in[u][1], B.in[u][3], p.has_limit != 0, p.limit);
      }
    }
    uint8_t s;
    const uint2 codes = quantize_block16_lane<T>(w0, w1, g, inv_g, &s);
    const uint32_t scale_word = scale_word_of_group(s, lane);
    if (lu.active) {
      *reinterpret_cast<uint2*>(p.codes + int64_t(tile.first_row + lu.r) * code_row_bytes + 8 * lu.j) = codes;
    }
    if (L.c == 0 && lu.r < tile.n_valid && lu.qi < L.nq) {  // padding rows: zeroed by quantize_tile
      *reinterpret_cast<uint32_t*>(tile_scales + lu.qi * kScaleTileBytes + (lu.r & 31) * 16 + (lu.r >> 5) * 4) =
          scale_word;
    }
  }
}

// Quantizes scale tile t (128 scale rows x the block's slab of column groups): loads, codes
// and scale words of its data rows; zero scale words for its padding rows and columns.
// Chunk k of the tile goes to warp k % 8. Software pipeline in registers: the loads of the
// warp's next kUnroll chunks are issued before the current ones are quantized, so each warp
// keeps kUnroll chunks in flight while it computes.
template <typename T, bool kSilu, int kUnroll>
__device__ __forceinline__ void quantize_tile(const QuantizeParams& p, const ExpertTile& tile, int32_t t,
                                              float g_runtime) {
  const int tid = threadIdx.x, lane = tid & 31;
  TileLane L;
  L.warp = tid >> 5;
  L.c = lane & 3;
  L.unit_lane = lane >> 2;
  const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
  L.q0 = int32_t(blockIdx.y) * 2 * p.slab_pairs;
  L.nq = min(2 * p.slab_pairs, col_groups - L.q0);
  L.log_w = __ffs(p.slab_pairs);  // slab_pairs is a power of two: W = 2 * slab_pairs
  L.n_scale_cols = p.k / 16;
  uint8_t* tile_scales = p.scales + (int64_t(t) * col_groups + L.q0) * kScaleTileBytes;
  if (tile.n_valid == 0) {  // no data rows: the slab's scale bytes are all padding
    for (int i = tid; i < L.nq * 32; i += kQuantThreads) {
      reinterpret_cast<uint4*>(tile_scales)[i] = make_uint4(0u, 0u, 0u, 0u);
    }
    return;
  }
  const int n_chunks = ((tile.n_valid << L.log_w) + 7) >> 3;
  L.n_mine = n_chunks > L.warp ? (n_chunks - L.warp + 7) >> 3 : 0;
  // g is read here but first used after the first loads are issued (one round trip less
  // on the critical path of small inputs).
  const float g = p.amax != nullptr ? g_runtime : __ldg(p.g + tile.expert);
  ChunkBatch<kSilu, kUnroll> cur, next;
  load_chunks<T, kSilu, kUnroll>(p, tile, L, 0, cur);
  // Padding rows [n_valid, 128) of the slab: zero scale words (while the loads fly).
  for (int i = tid; i < ((128 - tile.n_valid) << L.log_w); i += kQuantThreads) {
    const int r = tile.n_valid + (i >> L.log_w), qi = i & ((1 << L.log_w) - 1);
    if (qi < L.nq) *reinterpret_cast<uint32_t*>(tile_scales + qi * kScaleTileBytes + (r & 31) * 16 + (r >> 5) * 4) = 0u;
  }
  const float inv_g = reciprocal_rn(g);
  for (int i0 = 0; i0 < L.n_mine; i0 += kUnroll) {
    const bool more = i0 + kUnroll < L.n_mine;  // warp-uniform
    if (more) load_chunks<T, kSilu, kUnroll>(p, tile, L, i0 + kUnroll, next);
    quantize_chunks<T, kSilu, kUnroll>(p, tile, L, i0, cur, g, inv_g, tile_scales, lane);
    if (more) cur = next;
  }
}

template <typename T, bool kSilu, int kUnroll>
__global__ void __launch_bounds__(kQuantThreads, kQuantBlocksPerSm) quantize_nvfp4_kernel(QuantizeParams p) {
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
    // Per expert: the block visits tiles blockIdx.x, + gridDim.x, ... below sf_off[E] / 128
    // (prologue amortized; scale bytes past sf_off[E] are not written), then takes its share
    // of zeroing the code rows past off[E].
    ExpertTileFinder finder(p.off, p.num_experts, p.rows_out, p.error_flags, s_warp, &s_tile, s_off);
    const int32_t tiles = finder.tiles_to_write(p.scale_tiles);  // block-uniform
    for (int32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
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
