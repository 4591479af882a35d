// Output stage of a decode tile, shared by the register and the ring decode kernels
// (gemm_w4a16_decode_sm90.cuh, gemm_w4a16_decode_ring_sm90.cuh): one code path, so the two
// kernels store the same bits by construction. K warp 0 holds the tile's reduced, rescaled sums
// v[gi][r] (r = 0, 1 -> weight row n0; r = 2, 3 -> row n0 + 8; token 8 gi + 2 q + r % 2).
// Without split-K it scales them by the expert's alpha and stores them; with split-K every CTA
// writes its partial sums, and the last CTA of the tile (counter) adds all splits in split
// order (deterministic), stores, and returns the counter to zero for the next launch. The ring
// kernel's fused MoE combine (DecodeCombineParams, no split) follows the store: the last CTA to
// store a tile of a 64-column block combines that block for every token.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/combine_sm90.cuh"
#include "nvfp4moe/kernels/gemm_scheduler_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"

namespace nvfp4moe::kernels {

// Calls f(gi, r, row, n) for each of this thread's outputs v[gi][r] inside the tile: row = the
// tile's output row (tile.row0 + token), n = the weight row (output column).
template <int kGroups, class F>
__device__ __forceinline__ void for_each_output(const GemmW4A16Params& p, const GemmTile& tile, int n0, int q, F f) {
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int tok = 8 * gi + 2 * q + r % 2, n = n0 + 8 * (r / 2);
      if (tok < tile.rows_valid && n < p.n) f(gi, r, int64_t(tile.row0 + tok), n);
    }
}

// The MoE combine fused into a grouped decode GEMM without split (the ring kernel's second
// parameter; out == nullptr: off). The last CTA to finish a 64-column block (counters[n_block],
// zero at launch, zero again at exit) writes out[t, block] = sum_j weights[t, j] *
// rows[pair_to_sorted[t * top_k + j], block] (+ shared[t, block]), the combine kernel's
// arithmetic (combine_sm90.cuh); rows = the GEMM's bf16 output, tokens * top_k of them. A
// parameter of its own, not fields of GemmW4A16Params: the register kernel's parameter block,
// and with it ptxas' allocation of its registers, stays as it was.
struct DecodeCombineParams {
  __nv_bfloat16* out;             // [tokens, n]
  const float* weights;           // [tokens, top_k]
  const int32_t* pair_to_sorted;  // [tokens * top_k]
  const __nv_bfloat16* shared;    // [tokens, n] or null
  int tokens, top_k;
  int* counters;                  // [n_blocks]
};

// The combine of one 64-column block [col0, col0 + 64) for every token, threads etid = 0 ..
// ethreads - 1 taking 8 columns of one token each. One sorted row at a time (combine_vec8 with
// kAhead = 1, a loop): with all k rows loaded ahead, as the combine kernel does, the ring
// kernel's stack grew to 312-352 bytes of spills, some inside the mainloop (ptxas).
__device__ __forceinline__ void decode_combine_columns(const GemmW4A16Params& p, const DecodeCombineParams& c,
                                                       int col0, int etid, int ethreads) {
  const auto* rows = static_cast<const __nv_bfloat16*>(p.out);
  const int vecs = min(kAtomRows, p.n - col0) / kCombineVec;  // n % 8 == 0 (the launcher checks)
  for (int i = etid; i < c.tokens * vecs; i += ethreads) {
    const int64_t t = i / vecs;
    const int col = col0 + kCombineVec * (i % vecs);
    const int32_t* p2s = c.pair_to_sorted + t * c.top_k;
    const float* w = c.weights + t * c.top_k;
    combine_vec8<__nv_bfloat16, __nv_bfloat16, /*kAhead=*/1>(
        rows, c.top_k, p.n, col,
        [&](int j) {
          const int r = p2s[j];
          if (unsigned(r) >= unsigned(p.rows)) __trap();  // a corrupt map: fail loudly (as the combine kernel)
          return r;
        },
        [&](int j) { return w[j]; }, [](const __nv_bfloat16* a) { return ptx::ld_l2_v4(a); },
        c.shared != nullptr ? c.shared + t * p.n : nullptr, c.out + t * p.n);
  }
}

// The fused combine of the 64-column block of `tile`: every epilogue thread calls it after
// decode_store_tile (no split). Each CTA counts its tile on the block's counter after a fence;
// the one that counts the block's last tile (every tile of a grouped call covers one block:
// total_tiles / n_blocks per block) reads all the block's rows back through L2 and writes the
// tokens' combined outputs, then returns the counter to zero. Deterministic: the combine reads
// only finished rows, in slot order, whichever CTA is last.
template <class Sync>
__device__ __forceinline__ void decode_combine_block(const GemmW4A16Params& p, const DecodeCombineParams& c,
                                                     const GemmTile& tile, bool writer, bool thread0, int etid,
                                                     int ethreads, int tiles_per_block, int& is_last, Sync sync) {
  if (writer) __threadfence();  // this CTA's rows of the block before its count
  sync();
  int* counter = c.counters + tile.n_block;
  if (thread0) is_last = atomicAdd(counter, 1) == tiles_per_block - 1;
  sync();
  if (!is_last) return;
  __threadfence();  // every other tile's rows of the block are visible after the count
  decode_combine_columns(p, c, tile.n_block * kAtomRows, etid, ethreads);
  if (thread0) *counter = 0;  // every count of this launch is in
}

// Called by every thread that takes part in `sync` (the kernel's barrier over the threads that
// run the epilogue); `writer` is true for K warp 0's threads. `is_last` is a shared-memory flag.
template <int kGroups, class Sync>
__device__ __forceinline__ void decode_store_tile(const GemmW4A16Params& p, const GemmTile& tile, int n0, int q,
                                                  bool writer, bool thread0, int counter_index,
                                                  const float (&v)[kGroups][4], int& is_last, Sync sync) {
  const int half_n = p.n / 2;
  const float a_lo = p.alpha[2 * tile.expert], a_hi = p.alpha[2 * tile.expert + 1];
  auto store = [&](int64_t m, int n, float x) {
    const float r = x * (n < half_n ? a_lo : a_hi);
    if (p.out_f32) static_cast<float*>(p.out)[m * p.n + n] = r;
    else static_cast<__nv_bfloat16*>(p.out)[m * p.n + n] = __float2bfloat16_rn(r);
  };
  if (p.splits == 1) {
    if (writer) for_each_output<kGroups>(p, tile, n0, q, [&](int gi, int r, int64_t m, int n) { store(m, n, v[gi][r]); });
    return;
  }
  if (writer) {
    float* part = p.partial + int64_t(tile.split) * p.rows * p.n;
    for_each_output<kGroups>(p, tile, n0, q, [&](int gi, int r, int64_t m, int n) { part[m * p.n + n] = v[gi][r]; });
    __threadfence();
  }
  sync();
  int* counter = p.counters + counter_index;
  if (thread0) is_last = atomicAdd(counter, 1) == p.splits - 1;
  sync();
  if (is_last && writer) {
    __threadfence();
    float sum[kGroups][4];
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
      for (int r = 0; r < 4; ++r) sum[gi][r] = 0.0f;
#pragma unroll 4
    for (int s = 0; s < p.splits; ++s) {  // split order: deterministic
      const float* part_s = p.partial + int64_t(s) * p.rows * p.n;
      for_each_output<kGroups>(p, tile, n0, q,
                               [&](int gi, int r, int64_t m, int n) { sum[gi][r] += __ldcg(part_s + m * p.n + n); });
    }
    for_each_output<kGroups>(p, tile, n0, q, [&](int gi, int r, int64_t m, int n) { store(m, n, sum[gi][r]); });
    if (thread0) *counter = 0;
  }
}

}  // namespace nvfp4moe::kernels
