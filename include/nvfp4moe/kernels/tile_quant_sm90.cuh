// Tile-slab NVFP4 quantization of ONE matrix (quantize with g from device memory, and the
// quantize pass of quantize_runtime_scale above the single-launch size) -- the kernel these
// two operations had before the flat-walk rewrite (quantize_sm90.cuh), kept for them because
// it measured faster there on the H200 (docs/results/quantize.md: 61% vs 48% of copy at
// M = 65536, K = 7168; 4.9 us vs 6.1 us at M = 1). The per-expert and fused paths use
// quantize_sm90.cuh, which measured faster for them.
//
// Work split. grid.x = scale tiles (rows / 128), grid.y = slabs of W = 2 * slab_pairs column
// groups (a group = 4 scale columns = 64 elements; slabs narrow when there are few tiles, to
// fill the machine):
//
//              K ->  | slab 0 (W <= 8 groups = 512 elem) | slab 1 | ...
//   scale tile t     | unit = 1 data row x 1 group (4 lanes); chunk = 8 consecutive units
//   (128 rows)       | (group-fastest: 8/W rows x W groups), one warp instruction
//
// Chunk k of a tile goes to warp k % 8. Each lane owns one 16-element block (two 16-byte
// loads; the warp's next kUnroll chunks are in flight while the current ones are computed),
// writes 8 code bytes; each group of 4 lanes writes one 4-byte scale word, so a block writes
// whole 512-byte scale tiles (8 per slab) in a short time. Padding rows of the last tile get
// zero words.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

namespace nvfp4moe::kernels::tile {

inline constexpr int kMaxSlabPairs = 4;      // a block covers up to 4 pairs of column groups (512 elements)
inline constexpr int kTileBlocksPerSm = 3;   // occupancy the kernel is compiled for (80 registers)
inline constexpr int kTileUnroll = 2;        // chunks in flight per warp: 2 x 32 bytes per lane

struct TileQuantizeParams {
  const void* x;          // activations [rows, k], 16-byte aligned
  int32_t k;              // multiple of 16
  int32_t rows_out;       // rows
  uint8_t* codes;         // [rows, k/2]
  uint8_t* scales;        // padded_scale_rows(rows) * padded_scale_cols(k) bytes
  const float* g;         // [1] encode global scale (unused when amax != nullptr)
  const float* amax;      // runtime scale: g = global_scale_from_amax(*amax)
  float* g_out;           // runtime scale: receives g and 1/g (may be null)
  float* g_inv_out;
  int32_t scale_tiles;    // padded rows / 128
  int32_t slab_pairs;     // column-group pairs per block (grid.y slabs): 1, 2 or 4
};

// ---- one lane = one 16-element block (two 16-byte loads) ----

// block_multiplier(s, g) with reciprocal_rn(g) computed once by the caller: the same two
// correctly rounded steps, m = (s == 0) ? 0 : 1 / (float(s) * (1 / g)).
__device__ __forceinline__ float block_multiplier_inv_g(uint8_t scale_code, float inv_g) {
  const float s = e4m3_to_float(scale_code);
  if (s == 0.0f) return 0.0f;
  return reciprocal_rn(s * inv_g);
}

// amax(|x|) of a 16-element block given as two packed words, and whether it holds a NaN: one
// NaN-propagating packed max tree over the magnitudes. Without NaN the result is the exact
// amax (the same value abs_max_ignore_nan gives); with a NaN the amax is not used.
template <typename T>
__device__ __forceinline__ float block_amax16(const uint4& w0, const uint4& w1, bool* has_nan) {
  using Tr = ActTraits<T>;
  constexpr uint32_t kMag = 0x7fff7fffu;
  const uint32_t m01 = Tr::max_nan(w0.x & kMag, w0.y & kMag), m23 = Tr::max_nan(w0.z & kMag, w0.w & kMag);
  const uint32_t m45 = Tr::max_nan(w1.x & kMag, w1.y & kMag), m67 = Tr::max_nan(w1.z & kMag, w1.w & kMag);
  const uint32_t m = Tr::max_nan(Tr::max_nan(m01, m23), Tr::max_nan(m45, m67));
  *has_nan = ((((m & kMag) + Tr::kNaNCarry) & 0x80008000u) != 0);
  return fmaxf(Tr::lo(m), Tr::hi(m));
}

// Quantizes this lane's 16-element block (w0: elements 0..7, w1: 8..15) with global scale g
// (inv_g = reciprocal_rn(g)). Returns the 8 code bytes (element 2i in the low nibble of byte i)
// as two words; *scale_code receives the block's e4m3 scale. No shuffles: lanes independent.
template <typename T>
__device__ __forceinline__ uint2 quantize_block16_lane(const uint4& w0, const uint4& w1, float g, float inv_g,
                                                       uint8_t* scale_code) {
  bool has_nan;
  const float amax = block_amax16<T>(w0, w1, &has_nan);
  const uint8_t s = block_scale_code(amax, has_nan, g);
  const float m = block_multiplier_inv_g(s, inv_g);
  *scale_code = s;
  float v[16];
  unpack8<T>(w0, *reinterpret_cast<float(*)[8]>(&v[0]));
  unpack8<T>(w1, *reinterpret_cast<float(*)[8]>(&v[8]));
  // x * m is never NaN when the block holds no NaN, m is finite and not (m == 0 with an Inf
  // in the block): then the fast conversion applies; otherwise use the reference one. In the
  // fast case m >= 0, so every product has its input's sign (also when it is +-0): the sign
  // bits come straight from the packed inputs.
  const bool fast = !has_nan && is_finite_f32(m) && (m != 0.0f || is_finite_f32(amax));
  uint32_t lo = 0, hi = 0;
  if (fast) {
    uint32_t b[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) b[i] = e2m1_magnitude_bits(v[i] * m);
    lo = pack_codes8(b, sign_nibbles8(w0));
#pragma unroll
    for (int i = 0; i < 8; ++i) b[i] = e2m1_magnitude_bits(v[8 + i] * m);
    hi = pack_codes8(b, sign_nibbles8(w1));
  } else {
#pragma unroll
    for (int i = 7; i >= 0; --i) {
      lo = lo * 16u + e2m1_from_float(v[i] * m);
      hi = hi * 16u + e2m1_from_float(v[8 + i] * m);
    }
  }
  return make_uint2(lo, hi);
}

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

__device__ __forceinline__ SlabLane slab_lane(const TileQuantizeParams& p) {
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

// One chunk of one lane in flight: its block's two input words (zero for lanes without a block).
struct ChunkRegs {
  uint4 in[2];
};

// Issues the loads of local chunk lc of a tile (first output row first_row, n_valid rows).
// ok = false (chunk past the warp's share): nothing loaded.
template <typename T>
__device__ __forceinline__ void load_chunk(const TileQuantizeParams& p, const SlabLane& L, int32_t first_row,
                                           int n_valid, int lc, bool ok, ChunkRegs& R) {
  const LaneUnit lu = lane_unit(L, n_valid, lc);
  R.in[0] = R.in[1] = make_uint4(0u, 0u, 0u, 0u);
  if (ok && lu.active) {
    const T* ptr = static_cast<const T*>(p.x) + int64_t(first_row + lu.r) * p.k + 16 * lu.j;
    R.in[0] = ptx::ld_cached_v4(ptr);
    R.in[1] = ptx::ld_cached_v4(ptr + 8);
  }
}

// Quantizes loaded chunk lc of a tile: code bytes of the data blocks and one scale word per
// (data row, group) of the slab (zero bytes for padding columns). All 32 lanes must call it
// (the scale word is assembled with shuffles). tile_scales: the tile's slab (group q0).
template <typename T>
__device__ __forceinline__ void quantize_chunk(const TileQuantizeParams& p, const SlabLane& L, int32_t first_row,
                                               int n_valid, int lc, const ChunkRegs& R, float g,
                                               float inv_g, uint8_t* tile_scales) {
  const LaneUnit lu = lane_unit(L, n_valid, lc);
  const uint4 w0 = R.in[0], w1 = R.in[1];
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

// Scale tile t of the matrix (first_row = 128 t): chunk k of the
// tile goes to warp k % 8. Software pipeline in registers: the loads of the warp's next
// kUnroll chunks are issued before the current ones are quantized.
template <typename T, int kUnroll>
__device__ __forceinline__ void quantize_plain_tile(const TileQuantizeParams& p, const SlabLane& L, int32_t t, float g) {
  const int32_t col_groups = int32_t(padded_scale_cols(p.k)) / 4;
  uint8_t* tile_scales = p.scales + (int64_t(t) * col_groups + L.q0) * kScaleTileBytes;
  const int32_t first_row = t * 128;
  const int n_valid = max(0, min(p.rows_out - first_row, 128));
  const int n_chunks = tile_chunks(L, n_valid);
  const int n_mine = n_chunks > L.warp ? (n_chunks - L.warp + 7) >> 3 : 0;
  ChunkRegs cur[kUnroll], next[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) load_chunk<T>(p, L, first_row, n_valid, L.warp + 8 * u, u < n_mine, cur[u]);
  zero_padding_rows(L, n_valid, tile_scales, int(threadIdx.x), kQuantThreads);  // while the loads fly
  // g is first needed here: its round trip overlaps the first loads.
  const float inv_g = reciprocal_rn(g);
  for (int i0 = 0; i0 < n_mine; i0 += kUnroll) {
    const bool more = i0 + kUnroll < n_mine;  // warp-uniform
    if (more) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = i0 + kUnroll + u;
        load_chunk<T>(p, L, first_row, n_valid, L.warp + 8 * i, i < n_mine, next[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (i0 + u >= n_mine) break;  // warp-uniform
      quantize_chunk<T>(p, L, first_row, n_valid, L.warp + 8 * (i0 + u), cur[u], g, inv_g, tile_scales);
    }
    if (more) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) cur[u] = next[u];
    }
  }
}

template <typename T, int kUnroll>
__global__ void __launch_bounds__(kQuantThreads, kTileBlocksPerSm) quantize_tiles_kernel(TileQuantizeParams p) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  // Runtime scale: every block derives the same g from the finished amax.
  float g = 1.0f;
  if (p.amax != nullptr) {
    g = global_scale_from_amax(*p.amax);
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
      if (p.g_out != nullptr) *p.g_out = g;
      if (p.g_inv_out != nullptr) *p.g_inv_out = reciprocal_rn(g);
    }
  } else {
    g = __ldg(p.g);
  }
  const SlabLane L = slab_lane(p);
  for (int32_t t = blockIdx.x; t < p.scale_tiles; t += gridDim.x) quantize_plain_tile<T, kUnroll>(p, L, t, g);
}

}  // namespace nvfp4moe::kernels::tile
