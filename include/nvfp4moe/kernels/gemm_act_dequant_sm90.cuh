// W4A4 front end: NVFP4 activations (codes [rows, K/2] + swizzled e4m3 scales) -> bf16
// [rows, K] with out = e2m1(code) * e4m3(scale), WITHOUT the global scale 1/gA (that goes
// into the GEMM's alpha = 1/(gA*gB)). e2m1 x e4m3 has at most 5 significant bits and lies in
// [2^-10, 2688], so the bf16 values are exact and the W4A16 GEMM on them computes exactly the
// W4A4 products: the result equals a native block-scaled W4A4 GEMM up to fp32 summation order.
//
// Grouped (off != nullptr): row r of expert e (off[e] <= r < off[e+1]) reads scale row
// sf_off[e] + (r - off[e]), sf_off[e+1] = sf_off[e] + roundup(rows_e, 128) (format/swizzle.h);
// rows >= off[E] are not written. One thread per 16-element block (8 code bytes, 1 scale).
//
// prepared_order = 0: out [rows, K] in natural order (the decode GEMM kernel's input);
// prepared_order = 1: out [rows, Kp] in the prepared K order with zeros past K (the wgmma
// kernel's input, gemm_act_permute_sm90.cuh), stored as 16-byte chunks after lane transposes
// (chunk_stores = 1) or in 4-byte pieces (0).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/gemm_act_permute_sm90.cuh"
#include "nvfp4moe/kernels/gemm_scheduler_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kActDequantThreads = 256;

__global__ void __launch_bounds__(kActDequantThreads)
    act_dequant_bf16_sm90_kernel(const uint8_t* codes, const uint8_t* scales, int rows, int k,
                                 const int32_t* off, int num_experts, int scale_rows,
                                 int prepared_order, __nv_bfloat16* out, int chunk_stores) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  __shared__ int s_off[kMaxExperts + 1];
  __shared__ int s_sf[kMaxExperts + 1];
  const bool grouped = off != nullptr;
  if (grouped) {
    load_offsets(off, num_experts, rows, s_off);
    for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
      s_sf[e] = int(round_up(max(0, s_off[e + 1] - s_off[e]), kScaleTileRows));
    }
    __syncthreads();
    block_exclusive_scan(s_sf, num_experts);
  }
  const int blocks_in = k / kBlockSize;
  const int blocks_per_row = prepared_order ? int(prepared_cols(k) / kBlockSize) : blocks_in;
  const int64_t pc = padded_scale_cols(k);
  // blocks_per_row % 4 == 0 in prepared order (Kp % 128 == 0)
  warp_uniform_row_walk(rows, blocks_per_row, [&](int r, int c, bool active) {
    int srow = r;
    // A row past off[E] (grouped) is not written; its lanes still take part in the shuffles.
    bool data = active;
    if (grouped && data) {
      if (r >= s_off[num_experts]) {
        data = false;
      } else {
        int lo = 0, hi = num_experts - 1;  // expert e with off[e] <= r < off[e+1]
        while (lo < hi) {
          int mid = (lo + hi + 1) / 2;
          if (s_off[mid] <= r) lo = mid; else hi = mid - 1;
        }
        srow = s_sf[lo] + (r - s_off[lo]);
        // Always, with a buffer sized as documented and monotone offsets; offsets that are not
        // (clamped, not rejected) may sum past the buffer, and past 2^31 into negatives.
        data = srow >= 0 && srow < scale_rows;
      }
    }
    uint32_t packed[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (data && c < blocks_in) {
      const uint32_t sc = scales[swizzled_scale_offset(srow, c, pc)];
      const uint2 q = *reinterpret_cast<const uint2*>(codes + (int64_t(r) * k + int64_t(c) * kBlockSize) / 2);
      const uint4 v0 = block_values_bf16x8(q.x, sc), v1 = block_values_bf16x8(q.y, sc);
      packed[0] = v0.x, packed[1] = v0.y, packed[2] = v0.z, packed[3] = v0.w;
      packed[4] = v1.x, packed[5] = v1.y, packed[6] = v1.z, packed[7] = v1.w;
    }
    if (prepared_order) {
      uint32_t* dst_row = reinterpret_cast<uint32_t*>(out + int64_t(r) * blocks_per_row * kBlockSize);
      if (chunk_stores) store_group_prepared_order_chunks(dst_row, c, packed, data);
      else if (data) store_group_prepared_order(dst_row, c, packed);
    } else if (data) {
      uint4* dst = reinterpret_cast<uint4*>(out + int64_t(r) * k + int64_t(c) * kBlockSize);
      dst[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
      dst[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
    }
  });
}

}  // namespace nvfp4moe::kernels
