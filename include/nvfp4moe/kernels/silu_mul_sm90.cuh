// SwiGLU activation on Hopper: x [rows, 2I] (gate = columns [0, I), up = [I, 2I)) ->
// out [rows, I] = round_to_dtype(silu(gate') * up'), with the optional clamp
//   gate' = min(gate, limit), up' = clamp(up, -limit, limit)   (NaN stays NaN)
// silu_mul_pack8 is shared by the plain kernel below and the fused SiLU + per-expert
// quantization (quantize_sm90.cuh), so the fused and unfused GPU paths give the same bits.
//
// Fast SiLU (the precise expf + IEEE division made the fused kernel compute-bound):
//   silu(v) = v * rcp.approx(1 + ex2.approx(-v * log2(e)))          for v >= -64,
//   silu(v) = v / (1 + expf(-v))  (correctly rounded division)       for v < -64 and -Inf.
// Why the split: for v >= -64 every intermediate is a normal float (1 + e <= 2^93), where
// ex2.approx (about 2 ulp, plus the 2^-24 relative rounding of its argument times |arg| <= 93)
// and rcp.approx (1 ulp) stay within ~2^-17 relative of the exact value: the product rounded to
// bf16 (8 bits) or fp16 (11 bits) is the CPU model's or one ulp away. Below -64 the flushing
// variants would lose the tiny results the CPU model keeps (1 + e near 2^128, a subnormal
// reciprocal); there the precise form is used, as rare inputs. Special values give the CPU
// model's results: +-0 -> +-0, +Inf -> Inf, -Inf -> NaN, NaN -> NaN (bf16/fp16 0x7FFF).
// Every step is an explicit _rn intrinsic or inline PTX, so no FMA contraction can differ
// between the two kernels that use it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "nvfp4moe/kernels/expert_tiles_sm90.cuh"
#include "nvfp4moe/kernels/matrix_walk_quant_sm90.cuh"
#include "nvfp4moe/kernels/nvfp4_block_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr float kSiluFastMin = -64.0f;  // below: the precise form (see above)

__device__ __forceinline__ float ex2_approx_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float rcp_approx_ftz(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// min / max that return NaN when an input is NaN (the CPU model's comparisons keep a NaN).
__device__ __forceinline__ float min_nan(float a, float b) {
  float y;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(y) : "f"(a), "f"(b));
  return y;
}
__device__ __forceinline__ float max_nan(float a, float b) {
  float y;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(y) : "f"(a), "f"(b));
  return y;
}

// silu(v) for v >= kSiluFastMin (or NaN, +Inf): the fast form.
__device__ __forceinline__ float silu_fast(float v) {
  const float e = ex2_approx_ftz(__fmul_rn(v, -1.4426950408889634f));
  return __fmul_rn(v, rcp_approx_ftz(__fadd_rn(1.0f, e)));
}
// silu(v) for v < kSiluFastMin (and -Inf -> NaN): the precise form.
__device__ __forceinline__ float silu_precise(float v) { return __fdiv_rn(v, __fadd_rn(1.0f, expf(-v))); }

// The SwiGLU clamp: gate > limit -> limit, up outside [-limit, limit] -> the bound; limit > 0,
// so min/max with NaN propagation are these comparisons exactly.
template <bool kLimit>
__device__ __forceinline__ void swiglu_clamp(float& gate, float& up, float limit) {
  if constexpr (kLimit) {
    gate = min_nan(gate, limit);
    up = max_nan(min_nan(up, limit), -limit);
  }
}

// 8 gate and 8 up activations (16 bytes each) -> 8 products silu(gate') * up' rounded to T,
// packed. The one device SiLU of the library (silu_and_mul and the fused kernel). The fast
// form for all 8, then, behind a branch that ordinary inputs never take, the precise form for
// gates below kSiluFastMin (a branch, not a select: expf and the division stay off the hot path).
template <typename T, bool kLimit>
__device__ __forceinline__ uint4 silu_mul_pack8(const uint4& gate, const uint4& up, float limit) {
  float gv[8], uv[8], r[8];
  unpack8<T>(gate, gv);
  unpack8<T>(up, uv);
  bool slow = false;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    swiglu_clamp<kLimit>(gv[i], uv[i], limit);
    r[i] = __fmul_rn(silu_fast(gv[i]), uv[i]);
    slow |= gv[i] < kSiluFastMin;
  }
  if (slow) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (gv[i] < kSiluFastMin) r[i] = __fmul_rn(silu_precise(gv[i]), uv[i]);
    }
  }
  using Tr = ActTraits<T>;
  return make_uint4(Tr::pack(r[0], r[1]), Tr::pack(r[2], r[3]), Tr::pack(r[4], r[5]), Tr::pack(r[6], r[7]));
}

inline constexpr int kSiluChunks = 2;       // 2 x (512 B gate + 512 B up) in flight per warp
inline constexpr int kSiluBlocksPerSm = 4;  // launch bound: 32 warps per SM

// Plain silu_and_mul over the output [rows, I] walked as one flat row-major array (I % 8 ==
// 0): each warp step covers kSiluChunks x 256 consecutive output elements, lane l the 8
// elements at 8 l of each 256 (16-byte loads and stores, every warp instruction one
// contiguous 512-byte segment), persistent grid-stride over the whole matrix, so rows
// narrower or wider than a block cost the same per byte and a few rows still spread over
// several warps. x and out 16-byte aligned.
// kGemmOrder: out in the prefill GEMM's K order (I % 64 == 0; gemm_act_permute_sm90.cuh): within
// each 64-column block natural pair 8q + i sits at pair q + 4i, so a lane's 8 elements (pairs
// 4h..4h+3 of block q = col / 16 % 4, h = col / 8 % 2) go out as 4-byte pieces 16 bytes apart.
template <typename T, bool kLimit, bool kGemmOrder = false>
__global__ void __launch_bounds__(kQuantThreads, kSiluBlocksPerSm)
    silu_and_mul_kernel(const T* __restrict__ x, T* __restrict__ out, int32_t rows, int32_t inter, float limit) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  const int lane = int(threadIdx.x) & 31;
  MatrixWalk walk;
  walk.init(global_warp(), total_warps(), kSiluChunks * kWalkChunkElems, uint32_t(inter));
  for (; walk.row < rows; walk.advance()) {
    uint4 gw[kSiluChunks], uw[kSiluChunks];
#pragma unroll
    for (int u = 0; u < kSiluChunks; ++u) {
      const WalkPos q = walk.at(u * kWalkChunkElems + 8 * lane);
      gw[u] = uw[u] = make_uint4(0u, 0u, 0u, 0u);
      if (q.row < rows) {
        const T* g = x + q.row * 2 * int64_t(inter) + q.col;
        gw[u] = ptx::ld_stream_v4(g);
        uw[u] = ptx::ld_stream_v4(g + inter);
      }
    }
#pragma unroll
    for (int u = 0; u < kSiluChunks; ++u) {
      const WalkPos q = walk.at(u * kWalkChunkElems + 8 * lane);
      if (q.row < rows) {
        const uint4 v = silu_mul_pack8<T, kLimit>(gw[u], uw[u], limit);
        if constexpr (kGemmOrder) {
          uint32_t* dst = reinterpret_cast<uint32_t*>(out + q.row * int64_t(inter) + q.col / 64 * 64) +
                          (q.col / 16) % 4 + 16 * ((q.col / 8) % 2);
          dst[0] = v.x;
          dst[4] = v.y;
          dst[8] = v.z;
          dst[12] = v.w;
        } else {
          *reinterpret_cast<uint4*>(out + q.row * int64_t(inter) + q.col) = v;
        }
      }
    }
  }
}

}  // namespace nvfp4moe::kernels
