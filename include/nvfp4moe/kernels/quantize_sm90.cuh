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
//   (128 rows)       | (group-fastest: 8/W rows x W groups), one warp instruction
//
// One matrix: chunk k of a tile goes to warp k % 8. Per expert: the block's tiles are taken
// in batches of up to 32 whose chunks form one sequence (chunk v -> warp v % 8), so tiles
// with a few rows each (many experts, small batches) still keep all warps busy.
// Each lane owns one 16-element block (two 16-byte loads; the warp's next kUnroll chunks are
// in flight while the current ones are computed), writes 8 code bytes; each group of 4 lanes
// writes one 4-byte scale word. Padding rows of a tile get zero words; per expert, tiles past
// sf_off[E] are not touched (unless the offsets are invalid: then all are zeroed).
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

// Lane geometry of a slab. A unit is one row x one column group (4 blocks, 64 elements); a
// tile slab has n_valid * W units (W = 2 * slab_pairs groups per row, the last slab may use
// only nq < W of them), numbered group-fastest, so a chunk (8 consecutive units, one warp
// instruction) covers 8 / W rows x W groups: with W = 8 one contiguous 1 KB row segment.
// Only data rows form units: a tile with few rows still uses every lane.
struct SlabLane {
  int warp, lane, c, unit_lane;  // c = lane & 3: block of the group; unit_lane = lane >> 2
  int32_t q0, nq;                // the block's slab: groups [q0, q0 + nq)
  int log_w;                     // log2(W)
  int32_t n_scale_cols;
};

__device__ __forceinline__ SlabLane slab_lane(const QuantizeParams& p) {
  SlabLane L;
  L.warp = int(threadIdx.x) >> 5;
  L.lane = int(threadIdx.x) & 31;
  L.c = L.lane & 3;
  L.unit_lane = L.lane >> 2;
  const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
  L.q0 = int32_t(blockIdx.y) * 2 * p.slab_pairs;
  L.nq = min(2 * p.slab_pairs, col_groups - L.q0);
  L.log_w = __ffs(p.slab_pairs);  // slab_pairs is a power of two: W = 2 * slab_pairs
  L.n_scale_cols = p.k / 16;
  return L;
}

// Chunks of a tile slab with n_valid data rows.
__device__ __forceinline__ int tile_chunks(const SlabLane& L, int n_valid) {
  return ((n_valid << L.log_w) + 7) >> 3;
}

// This lane's unit in local chunk lc of a tile: tile row r, slab group qi, scale column j, and
// whether it is a data block (recomputed where needed rather than held in registers).
struct LaneUnit {
  int r, qi;
  int32_t j;
  bool active;
};
__device__ __forceinline__ LaneUnit lane_unit(const SlabLane& L, int n_valid, int lc) {
  const int unit = lc * 8 + L.unit_lane;
  LaneUnit u;
  u.r = unit >> L.log_w;
  u.qi = unit & ((1 << L.log_w) - 1);
  u.j = 4 * (L.q0 + u.qi) + L.c;
  u.active = u.r < n_valid && u.qi < L.nq && u.j < L.n_scale_cols;
  return u;
}

// One chunk of one lane in flight: its input words (2, or 4 with the SiLU input; zero for
// lanes without a data block).
template <bool kSilu>
struct ChunkRegs {
  uint4 in[kSilu ? 4 : 2];
};

// Issues the loads of local chunk lc of a tile (first output row first_row, n_valid rows).
// ok = false (chunk past the warp's share): nothing loaded.
template <typename T, bool kSilu>
__device__ __forceinline__ void load_chunk(const QuantizeParams& p, const SlabLane& L, int32_t first_row,
                                           int n_valid, int lc, bool ok, ChunkRegs<kSilu>& R) {
  const LaneUnit lu = lane_unit(L, n_valid, lc);
#pragma unroll
  for (int w = 0; w < (kSilu ? 4 : 2); ++w) R.in[w] = make_uint4(0u, 0u, 0u, 0u);
  if (ok && lu.active) {
    const int32_t out_row = first_row + lu.r;
    int32_t src = out_row;
    if (p.gather != nullptr) {
      src = __ldg(p.gather + out_row);
      if (src < 0 || src >= p.rows_in) {
        if (p.error_flags != nullptr) atomicOr(p.error_flags, kErrorBadGather);
        src = -1;
      }
    }
    if (src >= 0) {
      const T* ptr = static_cast<const T*>(p.x) + int64_t(src) * p.x_row_stride + 16 * lu.j;
      R.in[0] = load_16b(ptr);
      R.in[1] = load_16b(ptr + 8);
      if constexpr (kSilu) {  // up half of the [rows, 2k] input
        R.in[2] = load_16b(ptr + p.k);
        R.in[3] = load_16b(ptr + p.k + 8);
      }
    }
  }
}

// Quantizes loaded chunk lc of a tile: code bytes of the data blocks and one scale word per
// (data row, group) of the slab (zero bytes for padding columns). All 32 lanes must call it
// (the scale word is assembled with shuffles). tile_scales: the tile's slab (group q0).
template <typename T, bool kSilu>
__device__ __forceinline__ void quantize_chunk(const QuantizeParams& p, const SlabLane& L, int32_t first_row,
                                               int n_valid, int lc, const ChunkRegs<kSilu>& R, float g,
                                               float inv_g, uint8_t* tile_scales) {
  const LaneUnit lu = lane_unit(L, n_valid, lc);
  uint4 w0 = R.in[0], w1 = R.in[1];
  if constexpr (kSilu) {
    if (lu.active) {
      w0 = silu_mul_pack8<T>(R.in[0], R.in[2], p.has_limit != 0, p.limit);
      w1 = silu_mul_pack8<T>(R.in[1], R.in[3], p.has_limit != 0, p.limit);
    }
  }
  uint8_t s;
  const uint2 codes = quantize_block16_lane<T>(w0, w1, g, inv_g, &s);
  const uint32_t scale_word = scale_word_of_group(s, L.lane);
  if (lu.active) {
    *reinterpret_cast<uint2*>(p.codes + int64_t(first_row + lu.r) * (p.k / 2) + 8 * lu.j) = codes;
  }
  if (L.c == 0 && lu.r < n_valid && lu.qi < L.nq) {  // padding rows: zero_padding_rows
    *reinterpret_cast<uint32_t*>(tile_scales + lu.qi * kScaleTileBytes + (lu.r & 31) * 16 + (lu.r >> 5) * 4) =
        scale_word;
  }
}

// Zero scale words of the padding rows [n_valid, 128) of a tile slab, shared by `count`
// threads starting at `index`: 16-byte stores where all 4 rows of a line are padding.
__device__ __forceinline__ void zero_padding_rows(const SlabLane& L, int n_valid, uint8_t* tile_scales, int index,
                                                  int count) {
  for (int i = index; i < (32 << L.log_w); i += count) {  // (line a, group qi) pairs
    const int a = i >> L.log_w, qi = i & ((1 << L.log_w) - 1);
    if (qi >= L.nq) continue;
    uint8_t* line = tile_scales + qi * kScaleTileBytes + a * 16;
    if (a >= n_valid) {
      *reinterpret_cast<uint4*>(line) = make_uint4(0u, 0u, 0u, 0u);
    } else {
#pragma unroll
      for (int b = 1; b < 4; ++b) {
        if (a + 32 * b >= n_valid) reinterpret_cast<uint32_t*>(line)[b] = 0u;
      }
    }
  }
}

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

// Scale tile t of one matrix (plain and runtime-scale paths; first_row = 128 t): chunk k of the
// tile goes to warp k % 8. Software pipeline in registers: the loads of the warp's next
// kUnroll chunks are issued before the current ones are quantized.
template <typename T, bool kSilu, int kUnroll>
__device__ __forceinline__ void quantize_plain_tile(const QuantizeParams& p, const SlabLane& L, int32_t t, float g) {
  const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
  uint8_t* tile_scales = p.scales + (int64_t(t) * col_groups + L.q0) * kScaleTileBytes;
  const int32_t first_row = t * 128;
  const int n_valid = max(0, min(p.rows_out - first_row, 128));
  const int n_chunks = tile_chunks(L, n_valid);
  const int n_mine = n_chunks > L.warp ? (n_chunks - L.warp + 7) >> 3 : 0;
  ChunkRegs<kSilu> cur[kUnroll], next[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) load_chunk<T, kSilu>(p, L, first_row, n_valid, L.warp + 8 * u, u < n_mine, cur[u]);
  zero_padding_rows(L, n_valid, tile_scales, int(threadIdx.x), kQuantThreads);  // while the loads fly
  // g is first needed here: its round trip overlaps the first loads.
  const float inv_g = reciprocal_rn(g);
  for (int i0 = 0; i0 < n_mine; i0 += kUnroll) {
    const bool more = i0 + kUnroll < n_mine;  // warp-uniform
    if (more) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = i0 + kUnroll + u;
        load_chunk<T, kSilu>(p, L, first_row, n_valid, L.warp + 8 * i, i < n_mine, next[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (i0 + u >= n_mine) break;  // warp-uniform
      quantize_chunk<T, kSilu>(p, L, first_row, n_valid, L.warp + 8 * (i0 + u), cur[u], g, inv_g, tile_scales);
    }
    if (more) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) cur[u] = next[u];
    }
  }
}

// Per-expert shared state of one block: the tiles of the current batch and where each one's
// chunks start in the batch's chunk sequence.
inline constexpr int kTileBatch = 32;  // one lane per tile in the chunk-count scan
struct ExpertBatchSmem {
  ExpertTile tiles[kTileBatch];
  int32_t chunk_start[kTileBatch + 1];
};

// Per-expert path: the block's tiles t = blockIdx.x + m * gridDim.x below sf_off[E] / 128, in
// batches of up to kTileBatch tiles whose chunks form one sequence shared by all 8 warps
// (chunk v -> warp v % 8), so tiles with few rows (many experts, small batches) still keep
// every warp busy. Same register pipeline as the plain path, across tile boundaries; each
// chunk's g[e] is loaded with its data, 1/g re-derived only when the expert changes.
template <typename T, bool kSilu, int kUnroll>
__device__ __forceinline__ void quantize_expert_tiles(const QuantizeParams& p, const ExpertTileFinder& finder,
                                                      int32_t total_tiles, ExpertBatchSmem& sm) {
  const SlabLane L = slab_lane(p);
  const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
  const int32_t stride = int32_t(gridDim.x);
  int last_expert = -1;
  float g = 1.0f, inv_g = 1.0f;
  for (int32_t t0 = int32_t(blockIdx.x); t0 < total_tiles; t0 += kTileBatch * stride) {
    const int count = min(kTileBatch, (total_tiles - t0 + stride - 1) / stride);
    __syncthreads();  // the previous batch is done with sm
    finder.fill_batch(t0, stride, count, sm.tiles);
    __syncthreads();
    if (L.warp == 0) {  // chunk counts -> exclusive starts (one lane per tile)
      const int n = L.lane < count ? tile_chunks(L, sm.tiles[L.lane].n_valid) : 0;
      int inc = n;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const int o = __shfl_up_sync(0xffffffffu, inc, d);
        if (L.lane >= d) inc += o;
      }
      sm.chunk_start[L.lane + 1] = inc;
      if (L.lane == 0) sm.chunk_start[0] = 0;
    }
    // Padding rows of every tile of the batch, one tile per warp at a time.
    for (int k = L.warp; k < count; k += 8) {
      zero_padding_rows(L, sm.tiles[k].n_valid,
                        p.scales + (int64_t(t0 + k * stride) * col_groups + L.q0) * kScaleTileBytes, L.lane, 32);
    }
    __syncthreads();
    const int total_chunks = sm.chunk_start[count];
    const int n_mine = total_chunks > L.warp ? (total_chunks - L.warp + 7) >> 3 : 0;
    // Chunk v = warp + 8 i belongs to tile k with chunk_start[k] <= v < chunk_start[k + 1].
    int k_load = 0;
    ChunkRegs<kSilu> cur[kUnroll], next[kUnroll];
    int cur_k[kUnroll], next_k[kUnroll];
    float cur_g[kUnroll], next_g[kUnroll];
    auto issue = [&](int i, ChunkRegs<kSilu>& R, int& kk, float& gk) {
      const int v = L.warp + 8 * i;
      const bool ok = i < n_mine;
      if (ok) {
        while (sm.chunk_start[k_load + 1] <= v) ++k_load;
      }
      kk = k_load;
      const ExpertTile& tile = sm.tiles[k_load];
      gk = ok ? __ldg(p.g + tile.expert) : 1.0f;
      load_chunk<T, kSilu>(p, L, tile.first_row, tile.n_valid, v - sm.chunk_start[k_load], ok, R);
    };
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) issue(u, cur[u], cur_k[u], cur_g[u]);
    for (int i0 = 0; i0 < n_mine; i0 += kUnroll) {
      const bool more = i0 + kUnroll < n_mine;  // warp-uniform
      if (more) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) issue(i0 + kUnroll + u, next[u], next_k[u], next_g[u]);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (i0 + u >= n_mine) break;  // warp-uniform
        const int k = cur_k[u];
        const ExpertTile tile = sm.tiles[k];
        if (tile.expert != last_expert) {  // warp-uniform
          last_expert = tile.expert;
          g = cur_g[u];
          inv_g = reciprocal_rn(g);
        }
        const int v = L.warp + 8 * (i0 + u);
        quantize_chunk<T, kSilu>(p, L, tile.first_row, tile.n_valid, v - sm.chunk_start[k], cur[u], g, inv_g,
                                 p.scales + (int64_t(t0 + k * stride) * col_groups + L.q0) * kScaleTileBytes);
      }
      if (more) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          cur[u] = next[u];
          cur_k[u] = next_k[u];
          cur_g[u] = next_g[u];
        }
      }
    }
  }
}

template <typename T, bool kSilu, int kUnroll>
__global__ void __launch_bounds__(kQuantThreads, kQuantBlocksPerSm) quantize_nvfp4_kernel(QuantizeParams p) {
  __shared__ int32_t s_warp[8];
  __shared__ int32_t s_off[kQuantMaxExperts + 1];
  __shared__ ExpertBatchSmem s_batch;
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
    // Per expert (prologue amortized over the block's tiles; scale bytes past sf_off[E] are
    // not written), then the block's share of zeroing the code rows past off[E].
    ExpertTileFinder finder(p.off, p.num_experts, p.rows_out, p.error_flags, s_warp, s_off);
    if (finder.bad()) {  // invalid offsets: every scale byte zero (no data rows anywhere)
      const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
      const SlabLane L = slab_lane(p);
      for (int32_t t = blockIdx.x; t < p.scale_tiles; t += gridDim.x) {
        uint4* slab = reinterpret_cast<uint4*>(p.scales + (int64_t(t) * col_groups + L.q0) * kScaleTileBytes);
        for (int i = threadIdx.x; i < L.nq * 32; i += kQuantThreads) slab[i] = make_uint4(0u, 0u, 0u, 0u);
      }
    } else {
      quantize_expert_tiles<T, kSilu, kUnroll>(p, finder, finder.tiles_to_write(p.scale_tiles), s_batch);
    }
    zero_code_rows(p, finder.total_rows(), int64_t(blockIdx.x) * gridDim.y + blockIdx.y,
                   int64_t(gridDim.x) * gridDim.y);
  } else {
    const SlabLane L = slab_lane(p);
    const float g = p.amax != nullptr ? g_runtime : __ldg(p.g);
    for (int32_t t = blockIdx.x; t < p.scale_tiles; t += gridDim.x) {
      quantize_plain_tile<T, kSilu, kUnroll>(p, L, t, g);
    }
  }
}

}  // namespace nvfp4moe::kernels
