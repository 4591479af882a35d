// Combine kernel (sm_90): the weighted sum of each token's k expert rows, back in token order.
//
//   out[t, :] = sum_{j = 0..k-1} w[t, j] * rows[pair_to_sorted[t * k + j], :]  (+ shared[t, :])
//
// in float32, acc = 0 then acc = acc + w * x for j ascending, the shared term last, each step a
// separately rounded multiply and add (__fmul_rn / __fadd_rn: no FMA), exactly ref::combine;
// then rounded once to the output dtype. rows/shared: bf16 or fp16 [M, H] / [T, H];
// out: bf16, fp16 or float32 [T, H].
//
// Work split: blockIdx.x = token t, blockIdx.y = a slice of kCombineThreads 16-byte vectors
// (8 elements) of the row; thread i of slice s handles columns [8 (s * kCombineThreads + i), +8).
// A thread issues its k row loads (16 B each) before any math: memory-bound, k loads in flight.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kCombineThreads = 128;
inline constexpr int kCombineVec = 8;  // 16-bit elements per 16-byte load
inline constexpr int kCombineMaxTopK = 16;

// 8 packed 16-bit values -> 8 floats (exact).
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]);
template <>
__device__ __forceinline__ void unpack8<__nv_bfloat16>(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
template <>
__device__ __forceinline__ void unpack8<__half>(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

// 8 floats -> out[0..8) (round to nearest even for the 16-bit types).
template <typename OutT>
__device__ __forceinline__ void store8(OutT* out, const float (&f)[8]);
template <>
__device__ __forceinline__ void store8<float>(float* out, const float (&f)[8]) {
  reinterpret_cast<float4*>(out)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(out)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
template <>
__device__ __forceinline__ void store8<__nv_bfloat16>(__nv_bfloat16* out, const float (&f)[8]) {
  uint4 v;
  uint32_t* w = &v.x;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    w[i] = *reinterpret_cast<const uint32_t*>(&h);
  }
  *reinterpret_cast<uint4*>(out) = v;
}
template <>
__device__ __forceinline__ void store8<__half>(__half* out, const float (&f)[8]) {
  uint4 v;
  uint32_t* w = &v.x;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2 h = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    w[i] = *reinterpret_cast<const uint32_t*>(&h);
  }
  *reinterpret_cast<uint4*>(out) = v;
}

// One thread's 8 columns [col, col + 8) of token t's output: the arithmetic of the comment at
// the top, in that order. row_of(j) / weight_of(j): sorted row and weight of slot j (the caller
// checks the row); load(ptr): the 16-byte load of a sorted row's columns (the fused combine of
// the decode GEMM reads rows other CTAs wrote in the same launch: through L2). shared: null or
// the token's shared-expert row. Shared by the combine kernel and the decode GEMM's fused
// combine (gemm_decode_store_sm90.cuh), so the two give the same bits by construction.
// kAhead: rows loaded before their arithmetic (all k in the combine kernel: memory-bound, every
// load in flight at once; fewer where registers are scarce). The order of the arithmetic is the
// same for every kAhead.
template <typename RowT, typename OutT, int kAhead = kCombineMaxTopK, class RowOf, class WeightOf, class Load>
__device__ __forceinline__ void combine_vec8(const RowT* rows, int top_k, int hidden, int col, RowOf row_of,
                                             WeightOf weight_of, Load load, const RowT* shared, OutT* out) {
  static_assert(kCombineMaxTopK % kAhead == 0, "slots come in whole chunks");
  // One row at a time (kAhead = 1) stays a loop: the fewest registers next to a kernel's own.
  constexpr int kUnrollChunks = kAhead == 1 ? 1 : kCombineMaxTopK / kAhead;
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
#pragma unroll kUnrollChunks
  for (int j0 = 0; j0 < kCombineMaxTopK; j0 += kAhead) {
    uint4 x[kAhead];
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      if (j0 + j < top_k) x[j] = load(rows + int64_t(row_of(j0 + j)) * hidden + col);
    }
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      if (j0 + j < top_k) {
        float f[8];
        unpack8<RowT>(x[j], f);
        const float w = weight_of(j0 + j);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = __fadd_rn(acc[i], __fmul_rn(w, f[i]));
      }
    }
  }
  if (shared != nullptr) {
    float f[8];
    unpack8<RowT>(ptx::ld_stream_v4(shared + col), f);
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = __fadd_rn(acc[i], f[i]);
  }
  store8<OutT>(out + col, acc);
}

template <typename RowT, typename OutT, bool kHasShared>
__global__ void __launch_bounds__(kCombineThreads)
    combine_sm90(const RowT* __restrict__ rows, const float* __restrict__ weights,
                 const int32_t* __restrict__ pair_to_sorted, int m, int top_k, int hidden,
                 const RowT* __restrict__ shared, OutT* __restrict__ out) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  __shared__ int s_row[kCombineMaxTopK];
  __shared__ float s_w[kCombineMaxTopK];
  const int64_t t = blockIdx.x;
  if (int(threadIdx.x) < top_k) {
    const int64_t p = t * top_k + threadIdx.x;
    const int r = pair_to_sorted[p];
    if (unsigned(r) >= unsigned(m)) __trap();  // a corrupt map: fail loudly, never read out of bounds
    s_row[threadIdx.x] = r;
    s_w[threadIdx.x] = weights[p];
  }
  __syncthreads();
  const int col = (int(blockIdx.y) * kCombineThreads + int(threadIdx.x)) * kCombineVec;
  if (col >= hidden) return;
  combine_vec8<RowT, OutT>(
      rows, top_k, hidden, col, [&](int j) { return s_row[j]; }, [&](int j) { return s_w[j]; },
      [](const RowT* a) { return ptx::ld_stream_v4(a); }, kHasShared ? shared + t * hidden : nullptr,
      out + t * hidden);
}

}  // namespace nvfp4moe::kernels
