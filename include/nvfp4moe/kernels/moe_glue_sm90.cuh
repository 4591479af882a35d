// Small kernels of the MoE forward that belong to no other stage: the row gather of the
// W4A16 path and the one-expert offsets of the shared expert.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

// out[i, :] = x[index[i], :], 16 bytes per thread per step; vec16_per_row = row bytes / 16.
// An index outside [0, rows_in) gives a zero row (never an out-of-bounds read).
// Grid: (ceil(rows / rows_per_block)), block (32, rows_per_block): a warp per row.
__global__ void gather_rows_kernel(const uint4* __restrict__ x, int64_t rows_in, int64_t vec16_per_row,
                                   const int32_t* __restrict__ index, int64_t rows, uint4* __restrict__ out) {
  int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  int32_t src = index[row];
  bool valid = src >= 0 && src < rows_in;
  const uint4* in_row = x + int64_t(valid ? src : 0) * vec16_per_row;
  uint4* out_row = out + row * vec16_per_row;
  for (int64_t v = threadIdx.x; v < vec16_per_row; v += 32) {
    out_row[v] = valid ? in_row[v] : make_uint4(0, 0, 0, 0);
  }
}

// off = {0, tokens}: the shared expert is quantized as one "expert" owning every token row.
__global__ void write_single_expert_offsets_kernel(int32_t* off, int32_t tokens) {
  off[0] = 0;
  off[1] = tokens;
}

}  // namespace nvfp4moe::kernels
