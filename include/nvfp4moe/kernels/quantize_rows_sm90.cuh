// Per-expert NVFP4 quantization (and the fused SiLU*Mul + quantization) for widths that are a
// multiple of 256 -- every model width -- on Hopper (sm_90a). Same work split and outputs as
// quantize_nvfp4_kernel (quantize_sm90.cuh: lanes 2i, 2i+1 share a 16-element block, 8 lanes
// one 4-byte scale word, persistent grid, rolling prefetch, expert tables in shared memory),
// but a warp step is kChunks chunks of 256 elements of ONE row (kChunks divides K / 256):
//
//   row r: | step 0: kChunks x 256 | step 1 | ... | step K / (256 kChunks) - 1 |
//   warp w takes steps w, w + W, w + 2W, ... (row-major order, W = warps of the grid)
//
// so a step's row, expert, gather entry, source pointer and scale row are computed once for
// the whole step (not per lane and chunk), every chunk's addresses are those plus constant
// offsets, and rows past off[E] are skipped as whole steps. Why: in the flat walk (any
// K % 16 == 0) a lane could sit in a different row than its neighbours, which cost per-lane
// row arithmetic, bounds tests and reconvergence around every chunk: 35 lane-instructions per
// element there (Nsight Compute, H100, M = 65536, K = 7168), of which 8 convert.
#pragma once

#include <cstdint>

#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/matrix_walk_quant_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"
#include "nvfp4moe/kernels/quantize_sm90.cuh"
#include "nvfp4moe/kernels/silu_mul_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kL2AheadSteps = 2;  // L2 prefetch distance (SiLU input), in steps

// The step walk: step s = (row s / spr, segment s % spr), spr = steps per row; warp w takes steps
// w, w + W, w + 2W, ... (W = warps of the grid), so the grid sweeps the matrix front to back. Rows
// plus one grid stride of rows stay below 2^31 (the launcher checks rows < 2^30). The warp's walk
// ends at row end_row (exclusive: the rows of the call). A blocked walk (each warp one contiguous
// range of rows) measured 50% slower on the H100 (docs/results/quantize.md) and was removed.
struct RowStepWalk {
  int32_t row, seg;              // the current step
  int32_t step_rows, step_segs;  // distance to this warp's next step
  int32_t spr;
  int32_t end_row;               // the walk is done once row >= end_row

  __device__ __forceinline__ void init(int64_t warp, int64_t warps, int32_t steps_per_row) {
    spr = steps_per_row;
    row = int32_t(warp / spr);
    seg = int32_t(warp % spr);
    step_rows = int32_t(warps / spr);
    step_segs = int32_t(warps % spr);
  }
  __device__ __forceinline__ void init(const QuantizeParams& p, int32_t steps_per_row) {
    end_row = p.rows_out;
    init(global_warp(), total_warps(), steps_per_row);
  }
  __device__ __forceinline__ void advance() {
    seg += step_segs;
    row += step_rows;
    if (seg >= spr) {
      seg -= spr;
      ++row;
    }
  }
};

// One lane's input of a step: kChunks x 8 activations (and 8 up values each with the SiLU input).
template <bool kSilu, int kChunks>
struct StepIn {
  uint4 a[kChunks];
  uint4 up[kChunks];  // kSilu only
};

// The source row of output row `row` (through the gather map), or nullptr when row >= bound or
// the gather entry is out of range (*bad_src set).
template <typename T>
__device__ __forceinline__ const T* step_source(const QuantizeParams& p, int32_t row, int32_t col0, int32_t bound,
                                                int lane, bool* bad_src) {
  *bad_src = false;
  if (row >= bound) return nullptr;
  int32_t src = row;
  if (p.gather != nullptr) {
    src = __ldg(p.gather + row);
    if (src < 0 || src >= p.rows_in) {
      *bad_src = true;
      return nullptr;
    }
  }
  return static_cast<const T*>(p.x) + int64_t(src) * p.x_row_stride + col0 + 8 * lane;
}

// Asks L2 for step `st`'s input (kChunks x 512 bytes, twice with the SiLU input) when its row
// holds data (< bound). One lane calls it; no registers, nothing to wait for.
template <typename T, bool kSilu, int kChunks>
__device__ __forceinline__ void prefetch_step_l2(const QuantizeParams& p, const RowStepWalk& st, int32_t bound) {
  if (st.row >= bound) return;
  int32_t src = st.row;
  if (p.gather != nullptr) {
    src = __ldg(p.gather + st.row);
    if (src < 0 || src >= p.rows_in) return;
  }
  const T* x = static_cast<const T*>(p.x) + int64_t(src) * p.x_row_stride + st.seg * (kChunks * kWalkChunkElems);
  constexpr uint32_t kBytes = kChunks * kWalkChunkElems * sizeof(T);
  ptx::prefetch_l2_bulk(x, kBytes);
  if constexpr (kSilu) ptx::prefetch_l2_bulk(x + p.k, kBytes);
}

// The output side of one step (row, columns [col0, col0 + kChunks * 256)), found once per step:
// this lane's code word of chunk 0 (chunk u: + 32 u words), its lane group's scale word of chunk
// 0 (chunk u: + 4 u tiles; data rows only) and whether the row holds data (< off[E]; rows past
// it get zero codes). A bad gather entry of a data row is reported here (its input reads as 0).
// With kGemmValues (the values output in the GEMM's K order, below) instead of codes and scales:
// this lane's first bf16 pair in the values row.
struct StepOut {
  uint32_t* codes;
  uint8_t* scale_word;
  uint32_t* value_pairs;
  bool data;
};

// The values output in the wgmma GEMM's prepared K order (QuantizeParams::values, kGemmValues
// kernels; gemm_act_permute_sm90.cuh): within each 64-column block, natural bf16 pair 8q + i
// (q: the 16-element block, i: its pair) sits at pair q + 4i, so the block's 16-byte chunk c
// holds natural pair c of blocks q = 0..3. Each lane stores its own pairs, 4 bytes each, 16
// bytes apart. (Whole 16-byte chunks after a transpose across the four lanes of a 64-column
// block measured slower on an H100, the shuffles queueing in the same pipe as the stores they
// replace, and were removed: docs/results/quantize.md, fifteenth and twenty-third sessions.)
// Offset, in pairs from the step's first pair, of this lane's first store:
//   lane pairs (lanes 2j, 2j + 1 hold elements 0-7 / 8-15 of block j of a 256-element chunk):
//     block j = lane / 2 is q = j % 4 of 64-column block j / 4; half h = lane % 2 holds natural
//     pairs 4h + i, at pairs q + 16h + 4i;
//   lane blocks (lane l holds block l of 32 per two chunks): q = l % 4 of 64-column block l / 4,
//     natural pairs i = 0..7 at pairs q + 4i.
template <bool kLaneBlocks>
__device__ __forceinline__ int32_t gemm_values_lane_offset(int lane) {
  return kLaneBlocks ? (lane / 4) * 32 + lane % 4 : (lane / 8) * 32 + (lane / 2) % 4 + 16 * (lane % 2);
}

// Stores 4 natural pairs (a lane's 8 values) at pairs dst[0], dst[4], dst[8], dst[12]: 16 bytes
// apart, 8 lanes fill each 128-byte block of the row.
__device__ __forceinline__ void store_value_pairs_strided(uint32_t* dst, const uint4& v) {
  dst[0] = v.x;
  dst[4] = v.y;
  dst[8] = v.z;
  dst[12] = v.w;
}

// kLaneBlocks: the lane-block layout of the bulk kernel (quantize_bulk_sm90.cuh: lane l owns
// blocks l, l + 32, ...; its code words at 2 l, its scale byte in column l of the step).
template <bool kLaneBlocks = false, bool kGemmValues = false>
__device__ __forceinline__ StepOut begin_step(const QuantizeParams& p, const ExpertTables& t, int E, ExpertCache& ec,
                                              int32_t row, int32_t col0, int32_t total, int32_t nq, bool bad_src,
                                              int lane) {
  StepOut o;
  o.data = row < total;  // the whole warp
  o.scale_word = nullptr;
  o.codes = nullptr;
  o.value_pairs = nullptr;
  if constexpr (kGemmValues) {
    o.value_pairs = reinterpret_cast<uint32_t*>(p.values) + (int64_t(row) * p.k + col0) / 2 +
                    gemm_values_lane_offset<kLaneBlocks>(lane);
  } else {
    o.codes = reinterpret_cast<uint32_t*>(p.codes + int64_t(row) * (p.k / 2) + col0 / 2) + (kLaneBlocks ? 2 * lane : lane);
  }
  if (o.data) {
    if (row < ec.lo || row >= ec.hi) ec.find(t, E, row);
    if constexpr (!kGemmValues) {
      const int32_t col = col0 / kBlockSize + (kLaneBlocks ? lane : 4 * (lane >> 3));
      o.scale_word = p.scales + swizzled_offset(row + ec.sf_minus_lo, col, nq);
    }
    if (bad_src && lane == 0 && p.error_flags != nullptr) atomicOr(p.error_flags, kErrorBadGather);
  }
  return o;
}

// Quantizes chunk u of a step from this lane's 8 activations a (with the SiLU input: gate a,
// up) and stores its code word and, in lanes 8i, the lane group's scale word; zero codes for a
// row without data. All 32 lanes call it (the scale word is assembled with shuffles).
// kGemmValues: stores the lane's 8 quantized values in the GEMM's K order instead (data rows
// only; nothing else is written).
template <typename T, bool kSilu, bool kLimit, bool kGemmValues = false>
__device__ __forceinline__ void quantize_step_chunk(const QuantizeParams& p, const StepOut& o, const ExpertCache& ec,
                                                    int u, const uint4& a, const uint4& up, int lane) {
  if (o.data) {
    uint4 w = a;
    if constexpr (kSilu) w = silu_mul_pack8<T, kLimit>(a, up, p.limit);
    uint32_t s;
    if constexpr (kGemmValues) {
      const uint32_t codes = quantize_pair8<T>(w, ec.g, ec.g_inv, &s);
      const uint4 values = block_values_bf16x8(codes, s);
      store_value_pairs_strided(o.value_pairs + u * (kWalkChunkElems / 2), values);
      return;
    }
    o.codes[u * (kWalkChunkElems / 8)] = quantize_pair8<T>(w, ec.g, ec.g_inv, &s);
    const uint32_t word = scale_word_of_pairs(s, lane);
    if ((lane & 7) == 0) *reinterpret_cast<uint32_t*>(o.scale_word + u * 4 * kScaleTileBytes) = word;
  } else if constexpr (!kGemmValues) {
    o.codes[u * (kWalkChunkElems / 8)] = 0u;
  }
}

template <typename T, bool kSilu, int kChunks>
__device__ __forceinline__ void load_step_chunk(const QuantizeParams& p, const T* src, int u, StepIn<kSilu, kChunks>& in) {
  in.a[u] = in.up[u] = make_uint4(0u, 0u, 0u, 0u);
  if (src == nullptr) return;
  in.a[u] = ptx::ld_stream_v4(src + u * kWalkChunkElems);
  if constexpr (kSilu) in.up[u] = ptx::ld_stream_v4(src + p.k + u * kWalkChunkElems);
}

// kChunks: chunks per warp step; (K / 256) % kChunks == 0. The launcher takes kChunks = 1 for
// small tensors (as for quantize_nvfp4_kernel), else 4 or 2 (plain input) or 2 or 3 (SiLU
// input), the first that divides K / 256; other widths take the flat walk.
// kGemmValues: the output is p.values alone, in the GEMM's K order (data rows only).
template <typename T, bool kSilu, bool kLimit, int kChunks, bool kGemmValues = false>
__global__ void __launch_bounds__(kQuantThreads, kBlocksPerSm<kSilu>) quantize_nvfp4_rows_kernel(QuantizeParams p) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h): the MoE chain's GEMMs around it
  __shared__ ExpertTables t;
  const int lane = int(threadIdx.x) & 31;
  constexpr int32_t kStepElems = kChunks * kWalkChunkElems;
  RowStepWalk walk;
  walk.init(p, p.k / kStepElems);
  const int32_t cap = walk.end_row;  // this warp's rows end here (the capacity, or its range's end)
  StepIn<kSilu, kChunks> in;
  bool more = walk.row < cap;
  bool bad_src = false;
  // First step's loads before the tables: rows up to the capacity (off[E] is not known yet).
  if (more) {
    const T* src = step_source<T>(p, walk.row, walk.seg * kStepElems, cap, lane, &bad_src);
#pragma unroll
    for (int u = 0; u < kChunks; ++u) load_step_chunk<T, kSilu, kChunks>(p, src, u, in);
  }
  const int E = build_expert_tables(p, t);
  const int32_t nq = int32_t(padded_scale_cols(p.k) / 4);
  zero_scales_outside_data(p, t, nq);
  const int32_t total = t.off[E];
  // SiLU input only: L2 prefetch kL2AheadSteps steps ahead of the loads (which run one step
  // ahead of the arithmetic): the registers hold one step per warp, too few bytes in flight
  // to cover the DRAM latency (the warps' first instruction on each chunk had 46% of the stall
  // samples, DRAM 62% busy). Measured on the H100: fused 77 -> 81% of copy; the plain input
  // got slower with it (72 -> 61-68%), so it has none.
  RowStepWalk ahead = walk;
  if constexpr (kSilu) {
    ahead.advance();
#pragma unroll
    for (int i = 1; i < kL2AheadSteps; ++i) {
      if (lane == 0) prefetch_step_l2<T, kSilu, kChunks>(p, ahead, total);
      ahead.advance();
    }
  }
  ExpertCache ec;
  while (more) {
    if constexpr (kSilu) {
      if (lane == 0) prefetch_step_l2<T, kSilu, kChunks>(p, ahead, total);
      ahead.advance();
    }
    const StepOut out =
        begin_step<false, kGemmValues>(p, t, E, ec, walk.row, walk.seg * kStepElems, total, nq, bad_src, lane);
    // The next step's source; its chunk u is loaded as soon as chunk u is quantized.
    RowStepWalk next = walk;
    next.advance();
    const bool more_next = next.row < cap;
    bool next_bad = false;
    const T* next_src = more_next ? step_source<T>(p, next.row, next.seg * kStepElems, total, lane, &next_bad) : nullptr;
#pragma unroll
    for (int u = 0; u < kChunks; ++u) {
      quantize_step_chunk<T, kSilu, kLimit, kGemmValues>(p, out, ec, u, in.a[u], in.up[u], lane);
      if (more_next) load_step_chunk<T, kSilu, kChunks>(p, next_src, u, in);
    }
    walk = next;
    more = more_next;
    bad_src = next_bad;
  }
}

}  // namespace nvfp4moe::kernels
