// Device-side expert lookup for the per-expert quantization kernels: which expert owns a
// 128-row tile of scale rows, read from the device offsets off[E+1] with no host involvement.
//
// Layout (format/swizzle.h): expert e owns output rows [off[e], off[e+1]) and scale rows
// [sf_off[e], sf_off[e+1]) with sf_off[e+1] - sf_off[e] = roundup(off[e+1] - off[e], 128), so
// every 128-row scale tile t belongs to exactly one expert, or to none (t * 128 >= sf_off[E]):
//
//   scale tiles:  | e0: 2 tiles | e1: 0 | e2: 1 tile | ... | unused up to scale_rows/128 |
//
// Each block rebuilds the tile prefix of its own (one coalesced read of off, a block scan);
// it also validates off (off[0] == 0, non-decreasing, off[E] <= rows_out). Invalid offsets
// cannot be reported before the launch (they live on the device): the kernels then treat
// every expert as empty (all outputs zero), set kQuantErrorOffsets in the caller's error
// word, and never index memory with the bad values.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

inline constexpr int kQuantThreads = 256;      // threads of every quantization block
inline constexpr int kQuantMaxExperts = 1024;  // 4 experts per thread in the scan
inline constexpr uint32_t kErrorBadOffsets = 1u;
inline constexpr uint32_t kErrorBadGather = 2u;

// The expert that owns one 128-row scale tile.
struct ExpertTile {
  int32_t expert;     // -1: the tile belongs to no expert (all its scale rows are padding)
  int32_t first_row;  // output row of the tile's first scale row
  int32_t n_valid;    // rows of the tile that hold data, 0..128
  int32_t total_rows; // off[E] (0 when the offsets are invalid)
};

#if defined(__CUDACC__)

// Block-wide exclusive sum of one int per thread (kQuantThreads threads, all must call).
__device__ __forceinline__ int32_t block_exclusive_sum(int32_t v, int32_t* s_warp /*[8]*/) {
  static_assert(kQuantThreads == 256, "the scan assumes 8 warps");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int32_t inc = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    int32_t o = __shfl_up_sync(0xffffffffu, inc, d);
    if (lane >= d) inc += o;
  }
  if (lane == 31) s_warp[warp] = inc;
  __syncthreads();
  int32_t before = 0;
#pragma unroll
  for (int w = 0; w < 8; ++w) before += (w < warp) ? s_warp[w] : 0;
  __syncthreads();  // s_warp may be reused by the caller
  return before + inc - v;
}

// Finds the expert of scale tile t (all threads of the block must call; result is uniform).
// off: [E+1] device offsets, 1 <= E <= kQuantMaxExperts.
__device__ __forceinline__ ExpertTile locate_expert_tile(const int32_t* off, int num_experts,
                                                         int32_t rows_out, int32_t t,
                                                         uint32_t* error_flags) {
  constexpr int kPerThread = kQuantMaxExperts / kQuantThreads;
  __shared__ int32_t s_warp[8];
  __shared__ ExpertTile s_tile;
  const int tid = threadIdx.x;
  const int e0 = tid * kPerThread;

  // This thread's experts: e0 .. e0 + kPerThread - 1 (those < E).
  int32_t lo[kPerThread], hi[kPerThread];
  bool bad = false;
  int64_t my_tiles = 0;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int e = e0 + i;
    lo[i] = hi[i] = 0;
    if (e < num_experts) {
      lo[i] = __ldg(off + e);
      hi[i] = __ldg(off + e + 1);
      bad |= hi[i] < lo[i];
      if (e == 0) bad |= lo[i] != 0;
      if (e == num_experts - 1) bad |= hi[i] > rows_out;
      my_tiles += (int64_t(hi[i]) - int64_t(lo[i]) + 127) / 128;
    }
  }
  if (tid == 0) s_tile = ExpertTile{-1, 0, 0, 0};
  bad = __syncthreads_or(bad);
  if (bad) {
    if (error_flags != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && tid == 0) {
      atomicOr(error_flags, kErrorBadOffsets);
    }
    return ExpertTile{-1, 0, 0, 0};  // s_tile not needed: uniform early exit
  }
  // Valid offsets: every count <= rows_out < 2^31, tile sums fit in int32.
  int32_t first_tile = block_exclusive_sum(int32_t(my_tiles), s_warp);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int e = e0 + i;
    if (e < num_experts) {
      const int32_t cnt = hi[i] - lo[i];
      const int32_t tiles = (cnt + 127) / 128;
      if (t >= first_tile && t < first_tile + tiles) {
        const int32_t r0 = (t - first_tile) * 128;
        s_tile.expert = e;
        s_tile.first_row = lo[i] + r0;
        s_tile.n_valid = min(cnt - r0, 128);
      }
      first_tile += tiles;
    }
    if (e == num_experts - 1) s_tile.total_rows = hi[i];
  }
  __syncthreads();
  ExpertTile r = s_tile;
  return r;
}

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
