// Flat walk of a row-major [rows, width] matrix by the warps of a persistent grid, shared by
// the quantization and SiLU kernels (quantize_sm90.cuh, silu_mul_sm90.cuh).
//
// The matrix is one array of rows * width elements cut into chunks of 256 elements (one warp
// instruction: 32 lanes x 8 elements x 2 bytes = 512 contiguous bytes). A warp step covers
// n consecutive chunks; warp w takes steps w, w + W, w + 2W, ... (W = warps in the grid).
//
//   elements:  | warp 0: n chunks | warp 1: n chunks | ... | warp W-1 | warp 0 again | ...
//
// Rows and columns are tracked incrementally (one 64-bit division per thread at the start,
// none per step); a lane's position inside a step is found with one compare, and a 32-bit
// division only where the step crosses a row end (never for width >= 256 * n with width a
// multiple of 256 * n). The step start is a multiple of 256 elements, so with width % 16 == 0
// the lanes 2i, 2i+1 always hold one whole 16-element block of one row, and with width % 64
// == 0 lanes 8i .. 8i+7 one whole 4-block group of scale columns.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

inline constexpr int kWalkChunkElems = 256;  // elements of one warp instruction (8 per lane)

struct WalkPos {
  int64_t row;
  uint32_t col;
};

#if defined(__CUDACC__)

__device__ __forceinline__ int64_t global_warp() { return (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; }
__device__ __forceinline__ int64_t total_warps() { return (int64_t(gridDim.x) * blockDim.x) >> 5; }

struct MatrixWalk {
  int64_t row;         // position of this warp's current step start
  uint32_t col;
  int64_t step_rows;   // distance to its next step: step_rows rows + step_cols columns
  uint32_t step_cols;
  uint32_t width;      // < 2^31

  __device__ __forceinline__ void init(int64_t warp, int64_t warps, int step_elems, uint32_t w) {
    width = w;
    const int64_t first = warp * step_elems, stride = warps * step_elems;
    row = first / w;
    col = uint32_t(first % w);
    step_rows = stride / w;
    step_cols = uint32_t(stride % w);
  }
  __device__ __forceinline__ void advance() {
    col += step_cols;  // both < 2^31: no wrap
    row += step_rows;
    if (col >= width) {
      col -= width;
      ++row;
    }
  }
  // Row and column of the element `delta` (< 2^16) past the step start.
  __device__ __forceinline__ WalkPos at(int delta) const {
    uint32_t c = col + uint32_t(delta);
    int64_t r = row;
    if (c >= width) {
      const uint32_t q = c / width;
      r += q;
      c -= q * width;
    }
    return WalkPos{r, c};
  }
};

#endif  // __CUDACC__

}  // namespace nvfp4moe::kernels
