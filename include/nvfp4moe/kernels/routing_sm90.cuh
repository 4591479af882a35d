// Routing kernels (sm_90): router logits [T, E] -> top-k expert ids [T, k] int32 and weights
// [T, k] float32, one warp per token, bit-identical to the CPU model (src/ref/routing.cpp).
// These serve large batches (throughput); small ones take routing_cta_sm90.cuh (latency).
// The warp sigmoid kernel records at most 32 kept groups (lane j keeps the j-th): the launcher
// sends topk_group > 32 (< n_group) to the CTA kernels at any batch size.
//
// Why bit-identical ids need care: the model picks the k largest *rounded* scores
// (p = exp(l - max) / sum for softmax, c = 1 / (1 + exp(-l)) + bias for sigmoid), ties to the
// lower index. Two experts whose exact scores differ can round to the same float, and then the
// lower index wins; so the device must produce the very same floats, not merely close ones:
//   - exp: expf_glibc below reproduces glibc's expf (the host's std::exp(float)) bit for bit;
//     CUDA's expf/__expf differ from it by up to 2 ulp.
//   - the softmax sum is taken serially in expert order, as the model does;
//   - every float op is an explicit _rn intrinsic so nvcc cannot contract it into an FMA.
//
// Work split: blockDim = 32 * kRoutingWarpsPerBlock, warp w of block b routes token
// b * kRoutingWarpsPerBlock + w. Lane l holds experts l, l + 32, ..., l + 32 * (kSlots - 1)
// (kSlots = ceil(E / 32) rounded up to a power of two), so every logits load is coalesced.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace nvfp4moe::kernels {

inline constexpr int kRoutingMaxExperts = 512;
inline constexpr int kRoutingMaxTopK = 16;
inline constexpr int kRoutingWarpsPerBlock = 4;
inline constexpr int kRoutingThreads = 32 * kRoutingWarpsPerBlock;
static_assert(kRoutingMaxTopK <= 32, "lane j keeps the j-th choice: k must fit in a warp");

// ---------------------------------------------------------------------------------------------
// expf identical to glibc's (>= 2.27, the Arm optimized-routines algorithm, x86-64 FMA build):
// exp(x) = 2^(k/32) * 2^(r/32) with a table of 2^(i/32) and a cubic in double precision.
// Checked equal to the host's std::exp(float) on all 2^32 inputs (glibc 2.36); the GPU test
// RoutingExpf re-checks a sample against the host of the test machine.
// ---------------------------------------------------------------------------------------------

// tab[i] = bits(2^(i/32)) - (i << 47): adding (ki << 47) yields 2^(k/32) for k = ki.
// Global memory (read through L1), not __constant__: lanes index it divergently.
static __device__ const unsigned long long kExp2Table32[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull};

// table: a copy of kExp2Table32 (e.g. in shared memory, filled while the logits load), or
// nullptr for the global one.
__device__ __forceinline__ float expf_glibc(float x, const unsigned long long* table = nullptr) {
  constexpr double kN = 32.0;
  constexpr double kInvLn2N = 0x1.71547652b82fep+0 * kN;
  constexpr double kShift = 0x1.8p+52;  // adding it rounds z to an integer kept in the low bits
  constexpr double kC0 = 0x1.c6af84b912394p-5 / kN / kN / kN;
  constexpr double kC1 = 0x1.ebfce50fac4f3p-3 / kN / kN;
  constexpr double kC2 = 0x1.62e42ff0c52d6p-1 / kN;
  const uint32_t bits = __float_as_uint(x);
  const uint32_t abstop = (bits >> 20) & 0x7ffu;
  if (abstop >= 0x42bu) {                         // |x| >= 88 or NaN
    if (bits == 0xff800000u) return 0.0f;         // exp(-inf)
    if (abstop >= 0x7f8u) return __fadd_rn(x, x);  // +inf, NaN
    if (x > 0x1.62e42ep6f) return __int_as_float(0x7f800000);  // overflow
    if (x < -0x1.9fe368p6f) return 0.0f;                       // underflow
  }
  const double xd = double(x);
  const double z = __dmul_rn(kInvLn2N, xd);
  double kd = __dadd_rn(z, kShift);
  const uint64_t ki = uint64_t(__double_as_longlong(kd));
  kd = __dadd_rn(kd, -kShift);
  const double r = __fma_rn(kInvLn2N, xd, -kd);  // glibc's FMA build contracts z - kd
  const unsigned long long tab = table ? table[ki % 32] : __ldg(&kExp2Table32[ki % 32]);
  const double s = __longlong_as_double((long long)(tab + (ki << 47)));
  const double zz = __fma_rn(kC0, r, kC1);
  const double r2 = __dmul_rn(r, r);
  double y = __fma_rn(kC2, r, 1.0);
  y = __fma_rn(zz, r2, y);
  y = __dmul_rn(y, s);
  return __double2float_rn(y);
}

// The model's sigmoid: 1 / (1 + exp(-x)), float32, correctly rounded steps.
__device__ __forceinline__ float sigmoid_ref(float x, const unsigned long long* table = nullptr) {
  return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf_glibc(-x, table)));
}

// ---------------------------------------------------------------------------------------------
// Ranking: a 64-bit key whose unsigned order is the model's ranks_before (larger score first,
// equal scores to the lower index, NaN below every number; -0 == +0). Key 0 = no candidate.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ uint64_t rank_key(float v, int idx) {
  const uint32_t u = __float_as_uint(__fadd_rn(v, 0.0f));  // -0 -> +0: equal scores tie by index
  uint32_t ord;
  if ((u & 0x7fffffffu) > 0x7f800000u) ord = 0u;            // NaN: below -inf (whose ord > 0)
  else ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (uint64_t(ord) << 32) | uint64_t(0xffffffffu - uint32_t(idx));  // low part > 0
}

__device__ __forceinline__ int rank_key_index(uint64_t key) {
  return int(0xffffffffu - uint32_t(key));
}

__device__ __forceinline__ uint64_t warp_max_u64(uint64_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  return v;
}

// The k best candidates of the warp, best first. keys[i] is this lane's candidate i (0 = none);
// chosen keys are zeroed. Returns the j-th best index on lane j < k, -1 on the other lanes.
// Keys are unique (the index is part of them), so exactly one slot of one lane matches.
template <int kSlots>
__device__ __forceinline__ int warp_top_k(uint64_t (&keys)[kSlots], int k, int lane) {
  int mine = -1;
  for (int j = 0; j < k; ++j) {
    uint64_t best = 0;
#pragma unroll
    for (int i = 0; i < kSlots; ++i) best = keys[i] > best ? keys[i] : best;
    best = warp_max_u64(best);
    if (lane == j) mine = rank_key_index(best);
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      if (keys[i] == best) keys[i] = 0;
    }
  }
  return mine;
}

template <typename InT>
__device__ __forceinline__ float logit_to_float(InT v);
template <>
__device__ __forceinline__ float logit_to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float logit_to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);  // exact
}

// Final weights on lane j < k (w = the chosen score): renormalized w / (sum_j w_j + eps) with
// the sum in slot order, then * scale. eps = 0 for softmax, 1e-20 for sigmoid (the model's).
__device__ __forceinline__ void finalize_and_store(int id, float w, int k, int lane, bool renormalize,
                                                   float eps, bool add_eps, float scale,
                                                   int32_t* ids_row, float* weights_row) {
  if (renormalize) {
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum = __fadd_rn(sum, __shfl_sync(0xffffffffu, w, j));
    if (add_eps) sum = __fadd_rn(sum, eps);
    w = __fdiv_rn(w, sum);
  }
  w = __fmul_rn(w, scale);
  if (lane < k) {
    ids_row[lane] = id;
    weights_row[lane] = w;
  }
}

// ---------------------------------------------------------------------------------------------
// Softmax top-k (Mixtral / Qwen): p = exp(l - max) / sum, pick the k largest p,
// w = p (renormalized), * scale.
// ---------------------------------------------------------------------------------------------
template <typename InT, int kSlots>
__global__ void __launch_bounds__(kRoutingThreads)
    route_softmax_sm90(const InT* __restrict__ logits, int64_t tokens, int num_experts, int top_k,
                       bool renormalize, float scale, int32_t* __restrict__ ids,
                       float* __restrict__ weights) {
  static_assert(kSlots * 32 <= kRoutingMaxExperts, "kSlots * 32 experts at most");
  __shared__ float s_vals[kRoutingWarpsPerBlock][kSlots * 32];  // exp values, then p
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t t = int64_t(blockIdx.x) * kRoutingWarpsPerBlock + warp;
  if (t >= tokens) return;  // whole warps leave; no block-wide barrier follows
  const InT* row = logits + t * num_experts;
  float* vals = s_vals[warp];

  float l[kSlots];
  float mx = -__int_as_float(0x7f800000);
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int e = lane + 32 * i;
    l[i] = e < num_experts ? logit_to_float(row[e]) : 0.0f;
    if (e < num_experts) mx = fmaxf(mx, l[i]);  // fmaxf skips NaN, as the model's max does
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));

  float ex[kSlots];
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int e = lane + 32 * i;
    ex[i] = expf_glibc(__fsub_rn(l[i], mx));
    if (e < num_experts) vals[e] = ex[i];
  }
  __syncwarp();
  // The model's sum: serial, expert order. E dependent adds on one lane (<= 512).
  float sum = 0.0f;
  if (lane == 0) {
#pragma unroll 8
    for (int e = 0; e < num_experts; ++e) sum = __fadd_rn(sum, vals[e]);
  }
  sum = __shfl_sync(0xffffffffu, sum, 0);
  __syncwarp();  // lane 0 has read every exp value before p overwrites them

  uint64_t keys[kSlots];
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int e = lane + 32 * i;
    const float p = __fdiv_rn(ex[i], sum);
    keys[i] = e < num_experts ? rank_key(p, e) : 0ull;
    if (e < num_experts) vals[e] = p;
  }
  __syncwarp();
  const int id = warp_top_k(keys, top_k, lane);
  const float w = lane < top_k ? vals[id] : 0.0f;
  finalize_and_store(id, w, top_k, lane, renormalize, 0.0f, false, scale, ids + t * top_k,
                     weights + t * top_k);
}

// ---------------------------------------------------------------------------------------------
// Sigmoid, grouped (DeepSeek-V3): s = sigmoid(l), c = s + bias (selection only); group score =
// sum of the group's two best c; keep the topk_group best groups; the k best c among their
// experts; w = s (renormalized with + 1e-20), * scale.
// ---------------------------------------------------------------------------------------------
template <typename InT, int kSlots>
__global__ void __launch_bounds__(kRoutingThreads)
    route_sigmoid_sm90(const InT* __restrict__ logits, const float* __restrict__ correction_bias,
                       int64_t tokens, int num_experts, int top_k, int n_group, int topk_group,
                       bool renormalize, float scale, int32_t* __restrict__ ids,
                       float* __restrict__ weights) {
  static_assert(kSlots * 32 <= kRoutingMaxExperts, "kSlots * 32 experts at most");
  __shared__ float s_sig[kRoutingWarpsPerBlock][kSlots * 32];   // s
  __shared__ float s_corr[kRoutingWarpsPerBlock][kSlots * 32];  // c
  __shared__ uint8_t s_kept[kRoutingWarpsPerBlock][kSlots * 32];  // group kept? (n_group <= E)
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t t = int64_t(blockIdx.x) * kRoutingWarpsPerBlock + warp;
  if (t >= tokens) return;
  const InT* row = logits + t * num_experts;
  float* sig = s_sig[warp];
  float* corr = s_corr[warp];
  uint8_t* kept = s_kept[warp];

  float c[kSlots];
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int e = lane + 32 * i;
    c[i] = 0.0f;
    if (e < num_experts) {
      const float s = sigmoid_ref(logit_to_float(row[e]));
      c[i] = correction_bias ? __fadd_rn(s, correction_bias[e]) : s;
      sig[e] = s;
      corr[e] = c[i];
    }
  }
  const int group_size = num_experts / n_group;
  const bool all_groups = topk_group == n_group;  // every group kept: the group step is moot
  if (!all_groups) {
    __syncwarp();
    // Group g on lane g % 32, slot g / 32: the sum of its two best c (the one for size 1).
    // Scanning from a lane-dependent start keeps the 32 lanes on distinct banks; the result
    // does not depend on the scan order (key max is order-free).
    uint64_t gkeys[kSlots];
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      const int g = lane + 32 * i;
      gkeys[i] = 0ull;
      if (g < n_group) {
        const int base = g * group_size;
        uint64_t b1 = 0, b2 = 0;
        for (int x = 0; x < group_size; ++x) {
          int q = x + lane;
          q = q >= group_size ? q % group_size : q;
          const uint64_t key = rank_key(corr[base + q], base + q);
          if (key > b1) {
            b2 = b1;
            b1 = key;
          } else if (key > b2) {
            b2 = key;
          }
        }
        const float score = group_size >= 2
                                ? __fadd_rn(corr[rank_key_index(b1)], corr[rank_key_index(b2)])
                                : corr[rank_key_index(b1)];
        gkeys[i] = rank_key(score, g);
      }
    }
    for (int g = lane; g < n_group; g += 32) kept[g] = 0;
    __syncwarp();
    const int my_group = warp_top_k(gkeys, topk_group, lane);
    if (lane < topk_group) kept[my_group] = 1;
    __syncwarp();
  }

  uint64_t keys[kSlots];
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const int e = lane + 32 * i;
    const bool allowed = e < num_experts && (all_groups || kept[e / group_size]);
    keys[i] = allowed ? rank_key(c[i], e) : 0ull;
  }
  const int id = warp_top_k(keys, top_k, lane);
  __syncwarp();
  const float w = lane < top_k ? sig[id] : 0.0f;
  finalize_and_store(id, w, top_k, lane, renormalize, 1e-20f, true, scale, ids + t * top_k,
                     weights + t * top_k);
}

}  // namespace nvfp4moe::kernels
