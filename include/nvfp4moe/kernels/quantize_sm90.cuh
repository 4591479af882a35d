// Per-expert NVFP4 quantization kernel for Hopper (sm_90a): bf16/fp16 rows -> packed e2m1
// codes [rows_out, K/2] + per-expert swizzled e4m3 scales (128x4 tiles, padding zeroed), in
// one pass with no sm_100 instruction (launchers in src/cuda/quantize.cu):
//   * per-expert matrices over device offsets off[E+1], g[e] per expert, optional row gather;
//   * the same fed by silu(gate) * up of a [rows, 2K] input (kSilu, silu_mul_sm90.cuh).
// This file's kernel is the flat walk for any K % 16 == 0; widths that are a multiple of 256
// take the row-step walk (quantize_rows_sm90.cuh), which shares the tables, loads and stores
// defined here. One matrix (quantize, runtime scale) takes tile_quant_sm90.cuh (large) or
// runtime_quant_sm90.cuh (small runtime-scale tensors; it reuses quantize_store_chunk).
//
// Work split: the output [rows_out, K] is walked as one flat array (matrix_walk_quant_sm90.cuh):
// a warp step is kChunks x 256 consecutive elements, lane l holds elements 8l .. 8l+7 of each
// 256 (one 16-byte load per lane, 512 contiguous bytes per warp instruction), lanes 2i and
// 2i+1 share one 16-element block (quantize_pair8: the block amax crosses with one shuffle),
// each lane stores its 4 code bytes (128 contiguous bytes per warp), and when K % 64 == 0
// the 8 lanes of a scale-column group assemble the group's 4 scale bytes into one 4-byte
// word of the swizzled layout (one store; else one byte per block). The grid is persistent
// (sized to the device, or to the work when it is small): kChunks x 512 B per warp in flight,
// 32 warps per SM (24 with the SiLU input, 2 x 1 KB each), so ~48-64 KB of loads per SM are
// outstanding (Little's law: ~35 KB needed).
//
// Experts: every block builds the expert tables in shared memory (offsets, scale-row
// offsets sf_off = prefix sum of the 128-padded counts, g and 1/g per expert, the experts
// whose last tile has padding rows, in expert order) with one read of off and g and two block
// scans, while the block's first loads are in flight (their addresses do not depend on the experts:
// rows past off[E] are read up to the capacity rows_out and written as zero codes). A lane
// finds the expert of its row by binary search, cached while the row stays in it. Padding
// rows of each expert's last tile are zeroed by the whole grid, one (expert, column group)
// tile per warp step (lane = one 16-byte line). Scale bytes past sf_off[E] are not touched
// (unless the offsets are invalid: then the whole scale buffer and all codes are zeroed).
#pragma once

#include <cstdint>

#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/matrix_walk_quant_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/silu_mul_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kQuantChunks = 4;       // plain input: 4 x 512 B in flight per warp
inline constexpr int kQuantBlocksPerSm = 4;  // launch bound: 32 warps per SM (64 registers)
inline constexpr int kFusedBlocksPerSm = 3;  // SiLU input: 24 warps (85 registers: no spills)
template <bool kSilu>
inline constexpr int kBlocksPerSm = kSilu ? kFusedBlocksPerSm : kQuantBlocksPerSm;

struct QuantizeParams {
  const void* x;          // activations, 16-byte aligned
  int64_t x_row_stride;   // elements between input rows: k, or 2k for the SiLU input
  int32_t rows_in;        // rows of x (bound of gather entries)
  int32_t k;              // quantized width, multiple of 16
  uint8_t* codes;         // [rows_out, k/2]
  uint8_t* scales;        // scale_rows * padded_scale_cols(k) bytes
  int32_t rows_out;       // output rows (per expert: the capacity; rows past off[E] -> 0)
  int32_t scale_rows;     // multiple of 128
  const float* g;         // [E] or [1] encode global scales (unused when amax != nullptr)
  float* amax;            // runtime scale: g = global_scale_from_amax(*amax) (small kernel: written)
  float* g_out;           // runtime scale: receives g and 1/g (may be null)
  float* g_inv_out;
  const int32_t* off;     // [E+1] expert offsets; nullptr: one matrix of rows_out rows
  int32_t num_experts;
  const int32_t* gather;  // [rows_out] input row of each output row, or nullptr
  uint32_t* error_flags;  // kErrorBad* bits are ORed here (may be null)
  float limit;            // SwiGLU clamp (kSilu with a limit only)
  uint16_t* values;       // optional [rows_out, k] bf16: data rows receive their quantized
                          // values e2m1 * e4m3 (no global scale; block_values_bf16x8);
                          // only the one-chunk kernel writes them (the launcher picks it).
                          // With values, codes and scales may both be null: values only
                          // (the MoE's small batches, whose decode GEMM reads nothing else)
};

// Expert tables of one block.
struct ExpertTables {
  int32_t off[kQuantMaxExperts + 1];  // output rows of expert e: [off[e], off[e+1])
  int32_t sf[kQuantMaxExperts + 1];   // first scale row of expert e
  float g[kQuantMaxExperts];
  float g_inv[kQuantMaxExperts];      // reciprocal_rn(g[e])
  int32_t pad_list[kQuantMaxExperts]; // experts with padding rows in their last tile
  int32_t n_pad;
  int32_t bad;                        // offsets invalid: every output zero
  int64_t scan[8];
};

// Builds the tables from off and g (all threads; synchronizes). Returns E.
// Thread t takes experts t, t + 256, ... (one round of 256 experts per scan): for E <= 256, one
// expert a thread and one scan of the tile and padding counts packed in one 64-bit word. Why:
// at small M the tables are most of a call's dependent chain (M = 16, K = 7168: the per-expert
// kernel issued 2.6x the tile kernel's instructions per warp, ncu); four experts a thread and two
// scans cost ~100 more dependent instructions and two more barriers.
__device__ __forceinline__ int build_expert_tables(const QuantizeParams& p, ExpertTables& t) {
  constexpr int kRounds = kQuantMaxExperts / kQuantThreads;  // experts per thread at most
  const int E = p.num_experts;
  const int tid = int(threadIdx.x);
  int32_t cnt[kRounds];
  bool bad = false;
#pragma unroll
  for (int r = 0; r < kRounds; ++r) {
    const int e = r * kQuantThreads + tid;
    cnt[r] = 0;
    if (e < E) {
      // off == nullptr: one matrix of rows_out rows (E = 1), g from *g or from the finished *amax.
      const int32_t lo = p.off != nullptr ? __ldg(p.off + e) : 0;
      const int32_t hi = p.off != nullptr ? __ldg(p.off + e + 1) : p.rows_out;
      // g == nullptr: no scale (gather_experts_nvfp4_kernel copies quantized rows).
      const float g = p.amax != nullptr ? global_scale_from_amax(*p.amax) : p.g != nullptr ? __ldg(p.g + e) : 1.0f;
      bad |= hi < lo;
      if (e == 0) bad |= lo != 0;
      if (e == E - 1) bad |= hi > p.rows_out;
      cnt[r] = hi - lo;  // only used when valid (then 0 <= cnt <= rows_out)
      t.off[e + 1] = hi;
      t.g[e] = g;
      t.g_inv[e] = reciprocal_rn(g);
      if (p.amax != nullptr && blockIdx.x == 0) {  // runtime scale (one matrix): publish g and 1/g
        if (p.g_out != nullptr) *p.g_out = g;
        if (p.g_inv_out != nullptr) *p.g_inv_out = t.g_inv[e];
      }
    }
  }
  bad = __syncthreads_or(bad);
  if (bad) {
    if (threadIdx.x == 0) {
      t.bad = 1;
      t.off[0] = 0;
      t.off[E] = 0;  // no data rows
      if (p.error_flags != nullptr && blockIdx.x == 0) atomicOr(p.error_flags, kErrorBadOffsets);
    }
    __syncthreads();
    return E;
  }
  // Scale tiles (high word) and padded experts (low word) of the rounds before, then of the
  // experts before this thread's in its round: expert order, so every block builds the same
  // pad_list (zero_padding_tiles splits its items over the whole grid by index). The low word
  // never carries (at most kQuantMaxExperts padded experts).
  int64_t before_round = 0;
#pragma unroll
  for (int r = 0; r < kRounds; ++r) {
    if (r * kQuantThreads >= E) break;  // uniform over the block
    const int e = r * kQuantThreads + tid;
    const int32_t tiles = (cnt[r] >> 7) + ((cnt[r] & 127) != 0);
    const bool pads = (cnt[r] & 127) != 0;
    int64_t round_total;
    const int64_t before =
        before_round + block_exclusive_sum((int64_t(tiles) << 32) | int64_t(pads), t.scan, &round_total);
    const int32_t tiles_before = int32_t(before >> 32);
    if (e < E) t.sf[e] = tiles_before * 128;
    if (e == E - 1) t.sf[E] = (tiles_before + tiles) * 128;
    if (pads) t.pad_list[int32_t(before & 0xffffffff)] = e;
    before_round += round_total;
  }
  if (threadIdx.x == 0) {
    t.off[0] = 0;
    t.bad = 0;
    t.n_pad = int32_t(before_round & 0xffffffff);
  }
  __syncthreads();
  return E;
}

// The expert of a lane's current row, cached while the row stays inside it.
struct ExpertCache {
  int32_t lo = 0, hi = 0;  // rows [lo, hi) of the cached expert (empty: look up first)
  int32_t sf_minus_lo = 0; // scale row = row + sf_minus_lo
  float g = 1.0f, g_inv = 1.0f;

  // row < t.off[E]: binary search for the e with off[e] <= row < off[e+1].
  __device__ __forceinline__ void find(const ExpertTables& t, int E, int32_t row) {
    int a = 0, b = E;  // off[a] <= row < off[b]
    while (b - a > 1) {
      const int mid = (a + b) >> 1;
      if (t.off[mid] <= row) a = mid; else b = mid;
    }
    lo = t.off[a];
    hi = t.off[a + 1];
    sf_minus_lo = t.sf[a] - lo;
    g = t.g[a];
    g_inv = t.g_inv[a];
  }
};

// Byte offset of scale (row r, column j) in the swizzled layout with nq = padded columns / 4.
__device__ __forceinline__ int64_t swizzled_offset(int32_t r, int32_t j, int32_t nq) {
  return (int64_t(r >> 7) * nq + (j >> 2)) * kScaleTileBytes + (r & 31) * 16 + ((r >> 5) & 3) * 4 + (j & 3);
}

// Zeroes line `lane` (16 bytes: rows lane, lane+32, lane+64, lane+96) of the tile at 128-row
// block tile_row and column group q where the rows are padding (row in tile >= n_valid).
__device__ __forceinline__ void zero_tile_line(uint8_t* scales, int32_t tile_row, int32_t q, int32_t nq, int n_valid,
                                               int lane) {
  uint8_t* line = scales + (int64_t(tile_row) * nq + q) * kScaleTileBytes + lane * 16;
  if (lane >= n_valid) {
    *reinterpret_cast<uint4*>(line) = make_uint4(0u, 0u, 0u, 0u);
  } else {
#pragma unroll
    for (int b = 1; b < 4; ++b) {
      if (lane + 32 * b >= n_valid) reinterpret_cast<uint32_t*>(line)[b] = 0u;
    }
  }
}

// Zeroes the padding rows of the experts' last tiles: items (expert in pad_list, column group
// q), one per warp step, lane a = the tile's 16-byte line a.
__device__ __forceinline__ void zero_padding_tiles(const QuantizeParams& p, const ExpertTables& t, int32_t nq) {
  const int lane = int(threadIdx.x) & 31;
  const int64_t items = int64_t(t.n_pad) * nq;
  for (int64_t i = global_warp(); i < items; i += total_warps()) {
    const int e = t.pad_list[int32_t(i / nq)];
    zero_tile_line(p.scales, (t.sf[e + 1] >> 7) - 1, int32_t(i % nq), nq, (t.off[e + 1] - t.off[e]) & 127, lane);
  }
}

// The scale bytes no data row writes, by the whole grid: with invalid offsets all of them
// (codes: every row is then past off[E] = 0 and gets zero codes), else the padding rows of the
// experts' last tiles.
__device__ __forceinline__ void zero_scales_outside_data(const QuantizeParams& p, const ExpertTables& t, int32_t nq) {
  if (p.scales == nullptr) return;  // values only: no scale buffer
  if (t.bad) {
    const int64_t n16 = int64_t(p.scale_rows / 128) * nq * (kScaleTileBytes / 16);  // 16-byte lines
    for (int64_t i = int64_t(blockIdx.x) * kQuantThreads + threadIdx.x; i < n16; i += int64_t(gridDim.x) * kQuantThreads) {
      reinterpret_cast<uint4*>(p.scales)[i] = make_uint4(0u, 0u, 0u, 0u);
    }
  } else {
    zero_padding_tiles(p, t, nq);
  }
}

// Scale byte s of block (sf_row, j) for K % 64 != 0 (rare widths: out of line); the row's last
// block also zeroes the row's padding columns.
__device__ __noinline__ void store_scale_byte(uint8_t* scales, int32_t sf_row, int32_t j, int32_t nq, int32_t n_cols,
                                              uint32_t s) {
  scales[swizzled_offset(sf_row, j, nq)] = uint8_t(s);
  if (j == n_cols - 1) {
    for (int32_t jj = j + 1; jj < 4 * nq; ++jj) scales[swizzled_offset(sf_row, jj, nq)] = 0;
  }
}

// Quantizes one lane's 8 activations w of chunk position q (all 32 lanes call it: shuffles)
// and stores: the 4 code bytes when in_cap (zero codes for w = 0), and for data rows the scale
// byte at scale row sf_row: with K % 64 == 0 one 4-byte word per 8 lanes (a whole column
// group of one row), else one byte per lane pair, the row's last block also zeroing the
// row's padding columns.
// kValues: also store p.values when set (compiled only into the one-chunk kernel that small
// tensors take: in the large-tensor kernels the test alone cost 2-4%, docs/RESULTS.md).
template <typename T, bool kValues = false>
__device__ __forceinline__ void quantize_store_chunk(const QuantizeParams& p, WalkPos q, bool in_cap, bool data,
                                                     const uint4& w, float g, float g_inv, int32_t sf_row, int32_t nq,
                                                     int lane) {
  uint32_t s;
  const uint32_t codes = quantize_pair8<T>(w, g, g_inv, &s);
  if constexpr (kValues) {
    if (p.values != nullptr && data) {  // 16 bytes per lane, 512 contiguous per warp
      *reinterpret_cast<uint4*>(p.values + q.row * p.k + q.col) = block_values_bf16x8(codes, s);
    }
    if (p.codes == nullptr) return;  // values only (the launcher allows it with values alone)
  }
  if (in_cap) *reinterpret_cast<uint32_t*>(p.codes + q.row * (p.k / 2) + q.col / 2) = codes;
  const int32_t j = int32_t(q.col >> 4);
  if ((p.k & 63) == 0) {
    const uint32_t word = scale_word_of_pairs(s, lane);
    if (data && (lane & 7) == 0) *reinterpret_cast<uint32_t*>(p.scales + swizzled_offset(sf_row, j, nq)) = word;
  } else if (data && (lane & 1) == 0) {
    store_scale_byte(p.scales, sf_row, j, nq, p.k / 16, s);
  }
}

// One lane's input of one chunk: 8 activations (and 8 up values with the SiLU input).
template <bool kSilu>
struct ChunkIn {
  uint4 a;
  uint4 up;  // kSilu only
  bool bad_src;  // gather entry out of range
};

template <typename T, bool kSilu>
__device__ __forceinline__ void load_chunk(const QuantizeParams& p, WalkPos q, int64_t bound, ChunkIn<kSilu>& c) {
  c.a = c.up = make_uint4(0u, 0u, 0u, 0u);
  c.bad_src = false;
  if (q.row >= bound) return;
  int32_t src = int32_t(q.row);
  if (p.gather != nullptr) {
    src = __ldg(p.gather + q.row);
    if (src < 0 || src >= p.rows_in) {
      c.bad_src = true;
      return;
    }
  }
  const T* ptr = static_cast<const T*>(p.x) + int64_t(src) * p.x_row_stride + q.col;
  c.a = ptx::ld_stream_v4(ptr);
  if constexpr (kSilu) c.up = ptx::ld_stream_v4(ptr + p.k);
}

// kChunks: chunks per warp step (kQuantChunks / kSiluChunks; 1 for small tensors, so that a
// few rows spread over many warps and no warp runs several chunks one after another).
template <typename T, bool kSilu, bool kLimit, int kChunks>
__global__ void __launch_bounds__(kQuantThreads, kBlocksPerSm<kSilu>) quantize_nvfp4_kernel(QuantizeParams p) {
  // Launched with PDL (common/pdl_launch.h). With the values output (the MoE layer's small
  // batches, whose next kernel is a grouped decode GEMM called with prefetch_before_wait) the
  // next kernel may launch only after this one's wait: the routing is then complete when it
  // starts, and it prefetches its first weights by the routing's offsets while this one runs.
  if (p.values != nullptr) ptx::pdl_prologue_ordered();
  else ptx::pdl_prologue();
  __shared__ ExpertTables t;
  const int lane = int(threadIdx.x) & 31;
  const int64_t cap = p.rows_out;
  MatrixWalk walk;
  walk.init(global_warp(), total_warps(), kChunks * kWalkChunkElems, uint32_t(p.k));
  ChunkIn<kSilu> in[kChunks];
  bool more = walk.row < cap;
  // First step's loads before the tables: rows up to the capacity (off[E] is not known yet).
  if (more) {
#pragma unroll
    for (int u = 0; u < kChunks; ++u) load_chunk<T, kSilu>(p, walk.at(u * kWalkChunkElems + 8 * lane), cap, in[u]);
  }
  const int E = build_expert_tables(p, t);
  const int32_t nq = int32_t(padded_scale_cols(p.k) / 4);
  zero_scales_outside_data(p, t, nq);
  const int64_t total = t.off[E];  // data rows; rows [total, cap) get zero codes
  ExpertCache ec;
  while (more) {
    // Rolling prefetch: as soon as chunk u is quantized, its registers receive chunk u of the
    // warp's next step, so ~kChunks loads stay in flight while the warp computes.
    MatrixWalk next = walk;
    next.advance();
    const bool more_next = next.row < cap;
#pragma unroll
    for (int u = 0; u < kChunks; ++u) {
      if (walk.at(u * kWalkChunkElems).row < cap) {  // warp-uniform: the chunk holds output rows
        const WalkPos q = walk.at(u * kWalkChunkElems + 8 * lane);
        const bool data = q.row < total;
        const int32_t r = int32_t(q.row);
        uint4 w = make_uint4(0u, 0u, 0u, 0u);
        int32_t sf_row = 0;
        if (data) {
          if (r < ec.lo || r >= ec.hi) ec.find(t, E, r);
          sf_row = r + ec.sf_minus_lo;
          if (in[u].bad_src) {
            if (p.error_flags != nullptr) atomicOr(p.error_flags, kErrorBadGather);
          } else if constexpr (kSilu) {
            w = silu_mul_pack8<T, kLimit>(in[u].a, in[u].up, p.limit);
          } else {
            w = in[u].a;
          }
        }
        quantize_store_chunk<T, kChunks == 1>(p, q, q.row < cap, data, w, ec.g, ec.g_inv, sf_row, nq, lane);
      }
      if (more_next) load_chunk<T, kSilu>(p, next.at(u * kWalkChunkElems + 8 * lane), total, in[u]);
    }
    walk = next;
    more = more_next;
  }
}

}  // namespace nvfp4moe::kernels
