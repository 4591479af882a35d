// Tile scheduling of the NVFP4 GEMM: which (expert, 128-row weight block, token tile, K split)
// a CTA computes. Single GEMMs enumerate a fixed grid; grouped GEMMs discover the work on the
// device from the expert offsets (no host read), so a launch is graph-capturable for any
// routing:
//
//   tiles of expert e = n_blocks * ceil(rows_e / kTok)      (0 for an empty expert)
//   prefix[e] = sum of the tiles of experts < e             (built per CTA in shared memory)
//   tile t -> e = last expert with prefix[e] <= t, then token tile fastest, weight block next,
//   so consecutive CTAs share a weight block (L2 reuse); CTAs stride over t (persistent).
//   Single GEMMs order weight blocks fastest instead (a wave then reads a few token tiles
//   and all weights, which fit in L2), splits slowest.
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/gemm_balanced_tiles.h"

namespace nvfp4moe::kernels {

inline constexpr int kMaxExperts = 1024;

struct GemmTile {
  int expert;
  int n_block;     // 128-row weight block
  int tok_tile;    // token tile within the expert
  int split;       // K split (single GEMMs only)
  int row0;        // first activation/output row of the tile
  int rows_valid;  // rows of the tile that exist (<= kTok)
};

// Exclusive prefix sum of v[0..n) into v[0..n] by warp 0 (v[n] = total). Called by all threads
// of the block; ends with a barrier.
__device__ __forceinline__ void block_exclusive_scan(int* v, int n) {
  if (threadIdx.x < 32) {
    int lane = threadIdx.x, carry = 0;
    for (int base = 0; base < n; base += 32) {
      int x = base + lane < n ? v[base + lane] : 0, incl = x;
      for (int d = 1; d < 32; d <<= 1) {
        int y = __shfl_up_sync(0xffffffffu, incl, d);
        if (lane >= d) incl += y;
      }
      if (base + lane < n) v[base + lane] = carry + incl - x;
      carry += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) v[n] = carry;
  }
  __syncthreads();
}

// Expert offsets clamped to [0, rows], so malformed offsets can never address rows outside
// the buffers (an expert whose end is before its start is empty). s_off: E+1 entries. Ends
// with a barrier.
// kThroughL2: read with ld.global.cg (no L1 line is kept), for a read made before
// griddepcontrol.wait whose result is only a hint (the decode kernel's early L2 prefetch).
template <bool kThroughL2 = false>
__device__ __forceinline__ void load_offsets(const int32_t* off, int num_experts, int rows, int* s_off) {
  for (int e = threadIdx.x; e <= num_experts; e += blockDim.x) {
    const int32_t v = kThroughL2 ? __ldcg(off + e) : off[e];
    s_off[e] = min(max(v, 0), rows);
  }
  __syncthreads();
}

// Rows of expert e from clamped offsets.
__device__ __forceinline__ int expert_rows(const int* s_off, int e) { return max(0, s_off[e + 1] - s_off[e]); }

// Tiles per expert (into s_prefix[0..E)), then their exclusive prefix (s_prefix[E] = total).
// Only experts with rows_lo <= rows <= rows_hi (rows_hi = 0: no upper bound) get tiles: a
// grouped call may be split into launches for cold and hot experts (GemmPlan::hot_rows).
template <int kTok>
__device__ __forceinline__ int build_tile_prefix(const int* s_off, int num_experts, int n_blocks,
                                                 int* s_prefix, int rows_lo = 0, int rows_hi = 0) {
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
    int rows_e = expert_rows(s_off, e);
    const bool mine = rows_e >= rows_lo && (rows_hi == 0 || rows_e <= rows_hi);
    s_prefix[e] = mine ? n_blocks * ((rows_e + kTok - 1) / kTok) : 0;
  }
  __syncthreads();
  block_exclusive_scan(s_prefix, num_experts);
  return s_prefix[num_experts];
}

template <int kTok>
__device__ __forceinline__ GemmTile grouped_tile(int t, const int* s_off, const int* s_prefix,
                                                 int num_experts) {
  int lo = 0, hi = num_experts - 1;  // last e with prefix[e] <= t
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (s_prefix[mid] <= t) lo = mid; else hi = mid - 1;
  }
  GemmTile g;
  g.expert = lo;
  int rows_e = expert_rows(s_off, lo);
  int tok_tiles = (rows_e + kTok - 1) / kTok;
  int rem = t - s_prefix[lo];
  g.tok_tile = rem % tok_tiles;
  g.n_block = rem / tok_tiles;
  g.split = 0;
  g.row0 = s_off[lo] + g.tok_tile * kTok;
  g.rows_valid = min(kTok, rows_e - g.tok_tile * kTok);
  return g;
}

template <int kTok>
__device__ __forceinline__ GemmTile single_tile(int t, int rows, int n_blocks) {
  int tok_tiles = (rows + kTok - 1) / kTok;
  GemmTile g;
  g.expert = 0;
  g.n_block = t % n_blocks;  // weight blocks fastest: a wave shares few token tiles (L2)
  g.tok_tile = (t / n_blocks) % tok_tiles;
  g.split = t / (tok_tiles * n_blocks);
  g.row0 = g.tok_tile * kTok;
  g.rows_valid = min(kTok, rows - g.row0);
  return g;
}

// Balanced token tiles (the warp-specialized kernel, gemm_balanced_tiles.h): the tile count of
// fixed kTok-row tiles, the rows spread evenly over them.
template <int kTok>
__device__ __forceinline__ void balanced_tile_rows(int rows, int tok_tile, GemmTile& g) {
  const TileRows tr = balanced_tile_rows(rows, kTok, tok_tile);
  g.row0 += tr.first;
  g.rows_valid = tr.count;
}

template <int kTok>
__device__ __forceinline__ GemmTile grouped_tile_balanced(int t, const int* s_off, const int* s_prefix,
                                                          int num_experts) {
  GemmTile g = grouped_tile<kTok>(t, s_off, s_prefix, num_experts);
  g.row0 = s_off[g.expert];
  balanced_tile_rows<kTok>(expert_rows(s_off, g.expert), g.tok_tile, g);
  return g;
}

// Single GEMM, balanced token tiles of at most max_rows rows (the warp-specialized kernel, no
// split of K): weight blocks fastest, as single_tile.
__device__ __forceinline__ GemmTile single_tile_balanced(int t, int rows, int n_blocks, int max_rows) {
  GemmTile g;
  g.expert = 0;
  g.n_block = t % n_blocks;
  g.tok_tile = t / n_blocks;
  g.split = 0;
  const TileRows tr = balanced_tile_rows(rows, max_rows, g.tok_tile);
  g.row0 = tr.first;
  g.rows_valid = tr.count;
  return g;
}

}  // namespace nvfp4moe::kernels
