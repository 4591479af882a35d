// Row gathers (sm_90): the MoE layer's W4A16 front end (moe_glue_sm90.cuh). Templates
// (instantiated for uint4 / uint32_t words) so that more than one translation unit may launch them.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

// out[i, :] = x[index[i], :], 16 bytes per thread per step; vec16_per_row = row bytes / 16.
// An index outside [0, rows_in) gives a zero row (never an out-of-bounds read).
// Grid: (ceil(rows / rows_per_block)), block (32, rows_per_block): a warp per row.
template <typename V>
__global__ void gather_rows_kernel(const V* __restrict__ x, int64_t rows_in, int64_t vec16_per_row,
                                   const int32_t* __restrict__ index, int64_t rows, V* __restrict__ out) {
  int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  int32_t src = index[row];
  bool valid = src >= 0 && src < rows_in;
  const V* in_row = x + int64_t(valid ? src : 0) * vec16_per_row;
  V* out_row = out + row * vec16_per_row;
  for (int64_t v = threadIdx.x; v < vec16_per_row; v += 32) {
    out_row[v] = valid ? in_row[v] : V{};
  }
}

// The same gather into the prefill GEMM's K order (gemm_act_permute_sm90.cuh; 2-byte elements,
// rows a multiple of 64 elements): output chunk c (16 bytes) of 64-column block b holds natural
// pair c of the block's four 16-element groups, read as four 4-byte words.
template <typename W>
__global__ void gather_rows_gemm_order_kernel(const W* __restrict__ x, int64_t rows_in, int64_t vec16_per_row,
                                              const int32_t* __restrict__ index, int64_t rows,
                                              uint4* __restrict__ out) {
  int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  int32_t src = index[row];
  bool valid = src >= 0 && src < rows_in;
  const W* in_row = x + int64_t(valid ? src : 0) * vec16_per_row * 4;
  uint4* out_row = out + row * vec16_per_row;
  for (int64_t v = threadIdx.x; v < vec16_per_row; v += 32) {
    const W* w = in_row + (v / 8) * 32 + v % 8;  // pair c = v % 8 of group 0 of block v / 8
    out_row[v] = valid ? make_uint4(w[0], w[8], w[16], w[24]) : make_uint4(0, 0, 0, 0);
  }
}

}  // namespace nvfp4moe::kernels
