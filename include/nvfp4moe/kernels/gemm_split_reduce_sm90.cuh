// Split-K reduction of the wgmma GEMM (gemm_w4a16_sm90.cuh): the last CTA to finish an output
// tile sums the splits' fp32 partial tiles in split order 0, 1, ... (bitwise the same whoever
// arrives last) and hands each sum to the epilogue's store.
//
// The whole CTA walks the tile row-major (128 columns a row, 16-byte vectors when N % 4 == 0),
// each thread kUnroll vectors at a time over all splits: its loads do not depend on each other,
// so ~kUnroll x (splits unrolled) of them are in flight. Walking the accumulator fragment
// instead (each thread its kTok/2 scattered elements, as before v9) left 3-5 loads in flight
// next to the 254 live registers of the 128-token kernel, and the reduction took most of the
// ~60 us of a 128-row single GEMM (docs/GEMM.md v9).
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

// partial: [splits][rows][n] fp32; the tile is rows row0 .. row0+rows_valid-1, columns
// col0 .. col0+cols-1 (cols <= 128). store(m, n, sum) writes one output element.
template <int kThreads, typename Store>
__device__ __forceinline__ void reduce_split_tile(const float* partial, int splits, int rows, int n, int row0,
                                                  int rows_valid, int col0, int cols, Store&& store) {
  constexpr int kUnroll = 4;
  const int64_t split_stride = int64_t(rows) * n;
  if ((n & 3) == 0) {  // cols is then a multiple of 4 too (col0 is a multiple of 128)
    const int total = rows_valid * 32;  // float4 vectors of the tile
    for (int base = int(threadIdx.x); base < total; base += kThreads * kUnroll) {
      float4 sum[kUnroll];
      int64_t off[kUnroll];
      bool ok[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = base + u * kThreads, c = (v & 31) * 4;
        ok[u] = v < total && c < cols;
        off[u] = int64_t(row0 + (v >> 5)) * n + col0 + c;
        sum[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll 4
      for (int s = 0; s < splits; ++s) {
        const float* ps = partial + s * split_stride;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (ok[u]) {
            const float4 x = __ldcg(reinterpret_cast<const float4*>(ps + off[u]));
            sum[u].x += x.x;
            sum[u].y += x.y;
            sum[u].z += x.z;
            sum[u].w += x.w;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (ok[u]) {
          const int v = base + u * kThreads, m = row0 + (v >> 5), c = col0 + (v & 31) * 4;
          store(m, c, sum[u].x);
          store(m, c + 1, sum[u].y);
          store(m, c + 2, sum[u].z);
          store(m, c + 3, sum[u].w);
        }
      }
    }
  } else {
    const int total = rows_valid * 128;
    for (int base = int(threadIdx.x); base < total; base += kThreads * kUnroll) {
      float sum[kUnroll];
      int64_t off[kUnroll];
      bool ok[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int e = base + u * kThreads, c = e & 127;
        ok[u] = e < total && c < cols;
        off[u] = int64_t(row0 + (e >> 7)) * n + col0 + c;
        sum[u] = 0.0f;
      }
#pragma unroll 4
      for (int s = 0; s < splits; ++s) {
        const float* ps = partial + s * split_stride;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (ok[u]) sum[u] += __ldcg(ps + off[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int e = base + u * kThreads;
        if (ok[u]) store(row0 + (e >> 7), col0 + (e & 127), sum[u]);
      }
    }
  }
}

}  // namespace nvfp4moe::kernels
