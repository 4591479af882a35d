// Device-side expert lookup for the per-expert quantization kernels: which expert owns a
// 128-row tile of scale rows, read from the device offsets off[E+1] with no host involvement.
//
// Layout (format/swizzle.h): expert e owns output rows [off[e], off[e+1]) and scale rows
// [sf_off[e], sf_off[e+1]) with sf_off[e+1] - sf_off[e] = roundup(off[e+1] - off[e], 128), so
// every 128-row scale tile t belongs to exactly one expert, or to none (t * 128 >= sf_off[E]):
//
//   scale tiles:  | e0: 2 tiles | e1: 0 | e2: 1 tile | ... | unused up to scale_rows/128 |
//
// Each block rebuilds the tile prefix of its own (one coalesced read of off, a block scan,
// amortized over the several tiles a block visits, looked up a batch at a time); it also validates off (off[0] == 0,
// non-decreasing, off[E] <= rows_out). Invalid offsets cannot be reported before the launch
// (they live on the device): the kernels then treat every expert as empty (all outputs zero,
// the whole scale buffer included), set kQuantErrorOffsets in the caller's error word, and
// never index memory with the bad values. With valid offsets only the tiles below sf_off[E]
// are written (tiles_to_write).
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

// Block-wide exclusive sum of one int per thread (kQuantThreads threads, all must call);
// *total receives the sum over the block (in every thread).
__device__ __forceinline__ int32_t block_exclusive_sum(int32_t v, int32_t* s_warp /*[8]*/, int32_t* total) {
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
  int32_t before = 0, all = 0;
#pragma unroll
  for (int w = 0; w < 8; ++w) {
    before += (w < warp) ? s_warp[w] : 0;
    all += s_warp[w];
  }
  *total = all;
  __syncthreads();  // s_warp may be reused by the caller
  return before + inc - v;
}

// Per-block view of the expert split: construct once (reads and validates off, scans the tile
// counts; all threads of the block take part, it synchronizes), then fill_batch for each batch
// of scale tiles the block handles (each thread writes the entries of its own experts).
// off: [E+1] device offsets, 1 <= E <= kQuantMaxExperts.
class ExpertTileFinder {
 public:
  static constexpr int kPerThread = kQuantMaxExperts / kQuantThreads;

  __device__ __forceinline__ ExpertTileFinder(const int32_t* off, int num_experts, int32_t rows_out,
                                              uint32_t* error_flags, int32_t* s_warp /*[8]*/,
                                              int32_t* s_off /*[kQuantMaxExperts+1]*/)
      : num_experts_(num_experts), s_off_(s_off) {
    const int e0 = int(threadIdx.x) * kPerThread;
    bool bad = false;
    int64_t my_tiles = 0;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int e = e0 + i;
      if (e < num_experts) {
        const int32_t lo = __ldg(off + e), hi = __ldg(off + e + 1);
        bad |= hi < lo;
        if (e == 0) bad |= lo != 0;
        if (e == num_experts - 1) bad |= hi > rows_out;
        my_tiles += (int64_t(hi) - int64_t(lo) + 127) / 128;
        s_off[e + 1] = hi;  // s_off[0] = 0 is written below (valid offsets only)
      }
    }
    bad_ = __syncthreads_or(bad);
    if (bad_) {
      // Invalid offsets: every expert empty (outputs all zero), flag once.
      if (error_flags != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
        atomicOr(error_flags, kErrorBadOffsets);
      }
      total_rows_ = 0;
      return;
    }
    // Valid offsets: every count <= rows_out < 2^31 and the tile sums fit in int32.
    if (threadIdx.x == 0) s_off[0] = 0;
    first_tile_ = block_exclusive_sum(int32_t(my_tiles), s_warp, &total_tiles_);  // syncs: s_off ready
    total_rows_ = s_off[num_experts];
  }

  __device__ __forceinline__ int32_t total_rows() const { return total_rows_; }

  // Scale tiles the kernel writes: the experts' padded blocks, sf_off[E] / 128 tiles (bytes
  // past them are left untouched); with invalid offsets every tile (all zeroed).
  __device__ __forceinline__ int32_t tiles_to_write(int32_t scale_tiles) const {
    return bad_ ? scale_tiles : min(total_tiles_, scale_tiles);
  }

  __device__ __forceinline__ bool bad() const { return bad_; }

  // Batch lookup (valid offsets only): s_tiles[k] = the tile t0 + k * stride for k < count.
  // Each thread writes the entries of the tiles of its own experts; the caller synchronizes
  // before reading. Cost per thread: its experts plus its entries (no block barrier).
  __device__ __forceinline__ void fill_batch(int32_t t0, int32_t stride, int count, ExpertTile* s_tiles) const {
    int32_t first = first_tile_;
    const int e0 = int(threadIdx.x) * kPerThread;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      if (e0 + i < num_experts_) {
        const int32_t lo = s_off_[e0 + i];
        const int32_t cnt = s_off_[e0 + i + 1] - lo;
        const int32_t end = first + (cnt + 127) / 128;  // this expert's tiles: [first, end)
        for (int k = first > t0 ? (first - t0 + stride - 1) / stride : 0; k < count; ++k) {
          const int32_t t = t0 + k * stride;
          if (t >= end) break;
          const int32_t r0 = (t - first) * 128;
          s_tiles[k] = ExpertTile{e0 + i, lo + r0, min(cnt - r0, 128), total_rows_};
        }
        first = end;
      }
    }
  }

 private:
  int32_t first_tile_ = 0;
  int32_t total_tiles_ = 0;  // sf_off[E] / 128
  int32_t total_rows_ = 0;
  int num_experts_;
  bool bad_ = false;
  const int32_t* s_off_;
};

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
