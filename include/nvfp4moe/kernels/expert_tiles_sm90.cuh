// Shared constants and the block scan of the per-expert quantization kernels.
//
// Layout (format/swizzle.h): expert e owns output rows [off[e], off[e+1]) and scale rows
// [sf_off[e], sf_off[e+1]) with sf_off[e+1] - sf_off[e] = roundup(off[e+1] - off[e], 128), so
// every 128-row scale tile t belongs to exactly one expert, or to none (t * 128 >= sf_off[E]):
//
//   scale tiles:  | e0: 2 tiles | e1: 0 | e2: 1 tile | ... | unused up to scale_rows/128 |
//
// Invalid offsets (off[0] != 0, decreasing, off[E] > rows_out) cannot be reported before the
// launch (they live on the device): the kernels then treat every expert as empty, set
// kErrorBadOffsets in the caller's error word, and never index memory with the bad values.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

inline constexpr int kQuantThreads = 256;      // threads of every quantization block
inline constexpr int kQuantMaxExperts = 1024;  // 4 experts per thread in the scan
inline constexpr uint32_t kErrorBadOffsets = 1u;
inline constexpr uint32_t kErrorBadGather = 2u;

#if defined(__CUDACC__)

// Block-wide exclusive sum of one value per thread (kQuantThreads threads, all must call);
// *total receives the sum over the block (in every thread). 64 bits: the expert tables carry two
// counters packed in one word (one scan, one pair of barriers).
__device__ __forceinline__ int64_t block_exclusive_sum(int64_t v, int64_t* s_warp /*[8]*/, int64_t* total) {
  static_assert(kQuantThreads == 256, "the scan assumes 8 warps");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t inc = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    int64_t o = __shfl_up_sync(0xffffffffu, inc, d);
    if (lane >= d) inc += o;
  }
  if (lane == 31) s_warp[warp] = inc;
  __syncthreads();
  int64_t before = 0, all = 0;
#pragma unroll
  for (int w = 0; w < 8; ++w) {
    before += (w < warp) ? s_warp[w] : int64_t(0);
    all += s_warp[w];
  }
  *total = all;
  __syncthreads();  // s_warp may be reused by the caller
  return before + inc - v;
}

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
