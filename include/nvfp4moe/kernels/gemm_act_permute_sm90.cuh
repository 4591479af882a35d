// Activations for the wgmma GEMM kernel: bf16 [rows, K] in natural order -> [rows, Kp] in the
// prepared K order of gemm_layout_sm90.cuh (Kp = roundup(K, 128), zeros past K), so that the
// kernel's 16-byte copies land each k16 step where the dequantized weights expect it.
//
// Within each 64-column block, natural column 16q + 4s + 2h + b goes to 16s + 8h + 2q + b:
// the 16 columns of group q become the column pairs q, q+4, ..., q+28 (4-byte pieces, 16 bytes
// apart). One thread per 16-column group; the four threads of a block (4 consecutive lanes) fill
// its 128 bytes, either by eight 4-byte stores each (strided: a warp's store instruction writes
// 16 bytes into each of 8 lines, half sectors) or, after two 4 x 4 lane transposes, by two
// 16-byte stores each (chunks, the default: 64 contiguous bytes per block and instruction, whole
// sectors, 4x fewer store instructions). The loops are warp-uniform for the shuffles.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"
#include "nvfp4moe/kernels/lane_transpose_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kActPermuteThreads = 256;

// Write the 16 bf16 of group `group` (natural columns 16*group..) of one row, given as 8 column
// pairs, into the prepared-order row `dst_row`.
__device__ __forceinline__ void store_group_prepared_order(uint32_t* dst_row, int group, const uint32_t (&pairs)[8]) {
  const int block = group / 4, q = group % 4;
  uint32_t* base = dst_row + block * 32 + q;  // 32 pairs per 64-column block
#pragma unroll
  for (int i = 0; i < 8; ++i) base[4 * i] = pairs[i];  // natural pair 8q + i -> logical pair q + 4i
}

// The same 16 bf16 of group `group` stored as chunks: the 4 lanes 4m..4m+3 hold the groups
// q = group % 4 = lane % 4 of one 64-column block of one row; logical chunk c of the block
// (pairs 4c..4c+3) holds natural pair c of groups 0..3, so a transpose of pairs 0-3 gives lane q
// chunk q and one of pairs 4-7 chunk 4 + q. All 32 lanes call it; `store`: this lane's group
// holds data (the same for the 4 lanes of a block).
__device__ __forceinline__ void store_group_prepared_order_chunks(uint32_t* dst_row, int group,
                                                                  const uint32_t (&pairs)[8], bool store) {
  const int q = group % 4;
  const uint4 lo = transpose4x4_lanes(make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]), q, 1, 2);
  const uint4 hi = transpose4x4_lanes(make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]), q, 1, 2);
  if (store) {
    uint4* block = reinterpret_cast<uint4*>(dst_row + (group / 4) * 32);
    block[q] = lo;
    block[4 + q] = hi;
  }
}

// A warp-uniform grid-stride walk over the rows x cols items of a matrix (row-major): fn(r, c,
// active) for this lane's item; with cols % 4 == 0 the 4 lanes of a 64-column block (the chunk
// stores' transposes) are active together. The coordinates advance by the stride's quotient and
// remainder, so the loop divides nothing (a 64-bit division per item was a third of the front
// ends' instructions).
template <typename Fn>
__device__ __forceinline__ void warp_uniform_row_walk(int rows, int cols, Fn&& fn) {
  const int64_t total = int64_t(rows) * cols;
  const int stride = int(gridDim.x * blockDim.x);
  const int lane = int(threadIdx.x % 32);
  int64_t base = int64_t(blockIdx.x) * blockDim.x + (threadIdx.x - lane);
  if (base >= total) return;
  const int64_t first = base + lane;
  int r = int(first / cols), c = int(first % cols);
  const int dr = stride / cols, dc = stride % cols;
  for (; base < total; base += stride) {
    fn(r, c, base + lane < total);
    r += dr;
    c += dc;
    if (c >= cols) {
      c -= cols;
      ++r;
    }
  }
}

// chunk_stores: store_group_prepared_order_chunks (1) or store_group_prepared_order (0).
__global__ void __launch_bounds__(kActPermuteThreads)
    act_permute_bf16_sm90_kernel(const __nv_bfloat16* __restrict__ a, int rows, int k, __nv_bfloat16* __restrict__ out,
                                 int chunk_stores) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  const int groups_in = k / 16, groups_out = int(prepared_cols(k) / 16);  // groups_out % 8 == 0
  warp_uniform_row_walk(rows, groups_out, [&](int r, int grp, bool active) {
    uint32_t pairs[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (active && grp < groups_in) {
      const uint4* src = reinterpret_cast<const uint4*>(a + int64_t(r) * k + grp * 16);
      const uint4 lo = src[0], hi = src[1];
      pairs[0] = lo.x; pairs[1] = lo.y; pairs[2] = lo.z; pairs[3] = lo.w;
      pairs[4] = hi.x; pairs[5] = hi.y; pairs[6] = hi.z; pairs[7] = hi.w;
    }
    uint32_t* dst_row = reinterpret_cast<uint32_t*>(out + int64_t(r) * groups_out * 16);
    if (chunk_stores) store_group_prepared_order_chunks(dst_row, grp, pairs, active);
    else if (active) store_group_prepared_order(dst_row, grp, pairs);
  });
}

}  // namespace nvfp4moe::kernels
