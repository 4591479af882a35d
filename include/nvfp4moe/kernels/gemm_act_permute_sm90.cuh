// Activations for the wgmma GEMM kernel: bf16 [rows, K] in natural order -> [rows, Kp] in the
// prepared K order of gemm_layout_sm90.cuh (Kp = roundup(K, 128), zeros past K), so that the
// kernel's 16-byte copies land each k16 step where the dequantized weights expect it.
//
// Within each 64-column block, natural column 16q + 4s + 2h + b goes to 16s + 8h + 2q + b:
// the 16 columns of group q become the column pairs q, q+4, ..., q+28 (4-byte pieces, 16 bytes
// apart). One thread per 16-column group; the four threads of a block fill its 128 bytes.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"
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

__global__ void __launch_bounds__(kActPermuteThreads)
    act_permute_bf16_sm90_kernel(const __nv_bfloat16* __restrict__ a, int rows, int k, __nv_bfloat16* __restrict__ out) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  const int groups_in = k / 16, groups_out = int(prepared_cols(k) / 16);
  const int64_t total = int64_t(rows) * groups_out;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int r = int(i / groups_out), grp = int(i % groups_out);
    uint32_t pairs[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (grp < groups_in) {
      const uint4* src = reinterpret_cast<const uint4*>(a + int64_t(r) * k + grp * 16);
      const uint4 lo = src[0], hi = src[1];
      pairs[0] = lo.x; pairs[1] = lo.y; pairs[2] = lo.z; pairs[3] = lo.w;
      pairs[4] = hi.x; pairs[5] = hi.y; pairs[6] = hi.z; pairs[7] = hi.w;
    }
    store_group_prepared_order(reinterpret_cast<uint32_t*>(out + int64_t(r) * groups_out * 16), grp, pairs);
  }
}

}  // namespace nvfp4moe::kernels
