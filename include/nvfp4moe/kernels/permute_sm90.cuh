// Permutation kernels (sm_90): expert ids [T, k] -> the expert-sorted layout of the M = T * k
// (token, slot) pairs, identical to ref::permute: rows of expert e are [off[e], off[e+1]),
// ordered by pair index p = t * k + j ascending. Deterministic by construction: a row is
// off[e] + (number of earlier pairs with expert e); no result depends on atomic ordering
// (the only atomics are shared-memory histogram increments, whose sums are order-free).
//
// Work split. Pairs are cut into tiles of kPermuteTilePairs = 1024; a tile is one CTA of
// 8 warps, warp w owning the 128 consecutive pairs [tile + 128 w, tile + 128 w + 128) as
// 4 chunks of 32 (one pair a lane):
//
//   tile:   | warp 0: c0 c1 c2 c3 | warp 1: c0 c1 c2 c3 | ... | warp 7: c0 c1 c2 c3 |
//
// Inside a chunk __match_any_sync groups the lanes by expert, so a lane's rank among the
// segment's earlier pairs of its expert is (count before this chunk) + (lower lanes of its
// group); hist[w][e] counts the warp segment. An exclusive scan over w per expert, plus the
// tile's base, turns ranks into rows.
//
//   small M (<= kPermuteSingleCtaMaxPairs): one CTA does it all (histogram, scans, then the
//     tiles in order, carrying a running base per expert)          -> permute_single_cta_sm90
//   large M: 1. per-tile histograms  tile_counts[tiles][E]          -> permute_count_sm90
//            2. one CTA: counts, off, sf_off, and in place the exclusive scan over tiles per
//               expert                                               -> permute_scan_sm90
//            3. per tile: ranks, rows, the three maps                -> permute_scatter_sm90
//
// The kernels are not templates, so they are `static` (internal linkage): a test may include
// this header next to src/cuda/permute.cu without defining the kernels' launch symbols twice.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

inline constexpr int kPermuteMaxExperts = 512;
inline constexpr int kPermuteThreads = 256;
inline constexpr int kPermuteWarps = kPermuteThreads / 32;
inline constexpr int kPermuteChunksPerWarp = 4;
inline constexpr int kPermuteSegmentPairs = 32 * kPermuteChunksPerWarp;        // 128
inline constexpr int kPermuteTilePairs = kPermuteSegmentPairs * kPermuteWarps;  // 1024
inline constexpr int kPermuteSingleCtaMaxPairs = 2048;
static_assert(kPermuteMaxExperts <= 2 * kPermuteThreads, "the block scan takes 2 experts a thread");

// In-place exclusive scan of a[0..n), n <= 2 * kPermuteThreads, by the whole block
// (blockDim = kPermuteThreads; thread i owns a[2i], a[2i+1]). Returns the total on every thread.
// warp_tot: kPermuteWarps ints of shared scratch.
__device__ __forceinline__ int block_exclusive_scan(int* a, int n, int* warp_tot) {
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int i0 = 2 * tid, i1 = 2 * tid + 1;
  const int v0 = i0 < n ? a[i0] : 0, v1 = i1 < n ? a[i1] : 0;
  const int mine = v0 + v1;
  int incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += up;
  }
  if (lane == 31) warp_tot[warp] = incl;
  __syncthreads();
  int before = 0, total = 0;
#pragma unroll
  for (int w = 0; w < kPermuteWarps; ++w) {
    const int x = warp_tot[w];
    before += w < warp ? x : 0;
    total += x;
  }
  const int excl = before + incl - mine;
  if (i0 < n) a[i0] = excl;
  if (i1 < n) a[i1] = excl + v0;
  __syncthreads();  // a[] complete, warp_tot free for the next scan
  return total;
}

// Expert of pair p, checked: an id outside [0, E) stops the kernel (a sticky launch failure,
// never a silent wrong layout). The launchers cannot check device data before launching.
// Read through L2 (ld.global.cg, never the non-coherent path): in the fused route-and-permute
// kernel the ids were written by other CTAs of the same launch.
__device__ __forceinline__ int checked_expert(const int32_t* ids, int p, int num_experts) {
  const int e = __ldcg(ids + p);
  if (unsigned(e) >= unsigned(num_experts)) __trap();
  return e;
}

// Pass 1 of a tile for one warp: the experts of its segment's pairs (-1 past M), their ranks
// among the segment's earlier pairs of the same expert, and hist_row[e] = the segment's count
// of e. hist_row must be zero on entry (for the experts that occur).
__device__ __forceinline__ void rank_segment(const int32_t* __restrict__ ids, int seg_begin, int m,
                                             int num_experts, int* hist_row, int lane,
                                             int (&expert)[kPermuteChunksPerWarp],
                                             int (&rank)[kPermuteChunksPerWarp]) {
#pragma unroll
  for (int c = 0; c < kPermuteChunksPerWarp; ++c) {
    const int p = seg_begin + 32 * c + lane;
    expert[c] = p < m ? checked_expert(ids, p, num_experts) : -1;
  }
  const unsigned lower_lanes = (1u << lane) - 1u;
#pragma unroll
  for (int c = 0; c < kPermuteChunksPerWarp; ++c) {
    const int e = expert[c];
    const unsigned group = __match_any_sync(0xffffffffu, e);  // lanes of this chunk with expert e
    const int before = __popc(group & lower_lanes);
    const int base = e >= 0 ? hist_row[e] : 0;
    __syncwarp();  // every lane has read hist_row before the group leaders update it
    if (e >= 0 && before == 0) hist_row[e] = base + __popc(group);
    __syncwarp();
    rank[c] = base + before;
  }
}

// Pass 3 of a tile for one warp: rows from the per-(warp, expert) bases in base_row.
__device__ __forceinline__ void scatter_segment(int seg_begin, int top_k, const int* base_row, int lane,
                                                const int (&expert)[kPermuteChunksPerWarp],
                                                const int (&rank)[kPermuteChunksPerWarp],
                                                int32_t* __restrict__ sorted_to_pair,
                                                int32_t* __restrict__ pair_to_sorted,
                                                int32_t* __restrict__ sorted_to_token) {
#pragma unroll
  for (int c = 0; c < kPermuteChunksPerWarp; ++c) {
    const int e = expert[c];
    if (e < 0) continue;
    const int p = seg_begin + 32 * c + lane;
    const int row = base_row[e] + rank[c];
    sorted_to_pair[row] = p;
    pair_to_sorted[p] = row;
    sorted_to_token[row] = p / top_k;
  }
}

// hist[w][e] (segment counts) -> base of segment w for expert e: base[e] + sum_{w' < w} hist[w'][e].
// Returns nothing; base_out[e] (may alias base_in) receives base[e] + the tile's count of e.
__device__ __forceinline__ void scan_segments(int (*hist)[kPermuteMaxExperts], int num_experts,
                                              const int* base_in, int* base_out) {
  for (int e = int(threadIdx.x); e < num_experts; e += kPermuteThreads) {
    int run = base_in[e];
#pragma unroll
    for (int w = 0; w < kPermuteWarps; ++w) {
      const int c = hist[w][e];
      hist[w][e] = run;
      run += c;
    }
    if (base_out) base_out[e] = run;
  }
}

// counts[e] in s_count (exclusive prefix on return), sf rows in s_sf: writes counts, off, sf_off.
__device__ __forceinline__ void write_offsets(int* s_count, int* s_sf, int* warp_tot, int num_experts,
                                              int32_t* __restrict__ counts, int32_t* __restrict__ off,
                                              int32_t* __restrict__ sf_off) {
  for (int e = int(threadIdx.x); e < num_experts; e += kPermuteThreads) {
    counts[e] = s_count[e];
    s_sf[e] = (s_count[e] + 127) / 128 * 128;  // each expert's scales: whole 128-row tiles
  }
  __syncthreads();
  const int total = block_exclusive_scan(s_count, num_experts, warp_tot);
  const int sf_total = block_exclusive_scan(s_sf, num_experts, warp_tot);
  for (int e = int(threadIdx.x); e < num_experts; e += kPermuteThreads) {
    off[e] = s_count[e];
    sf_off[e] = s_sf[e];
  }
  if (threadIdx.x == 0) {
    off[num_experts] = total;
    sf_off[num_experts] = sf_total;
  }
}

// Everything in one CTA of kPermuteThreads (M <= kPermuteSingleCtaMaxPairs; M = 0 writes the
// zero offsets). A __device__ body: the fused route-and-permute kernel runs it in its last CTA.
__device__ __forceinline__ void permute_single_cta(const int32_t* ids, int m, int top_k, int num_experts,
                                                   int32_t* __restrict__ counts, int32_t* __restrict__ off,
                                                   int32_t* __restrict__ sf_off,
                                                   int32_t* __restrict__ sorted_to_pair,
                                                   int32_t* __restrict__ pair_to_sorted,
                                                   int32_t* __restrict__ sorted_to_token) {
  __shared__ int s_hist[kPermuteWarps][kPermuteMaxExperts];
  __shared__ int s_run[kPermuteMaxExperts];  // counts, then off, then the running base
  __shared__ int s_sf[kPermuteMaxExperts];
  __shared__ int s_warp_tot[kPermuteWarps];
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;

  for (int e = tid; e < num_experts; e += kPermuteThreads) s_run[e] = 0;
  __syncthreads();
  for (int p = tid; p < m; p += kPermuteThreads) atomicAdd(&s_run[checked_expert(ids, p, num_experts)], 1);
  __syncthreads();
  write_offsets(s_run, s_sf, s_warp_tot, num_experts, counts, off, sf_off);
  // s_run = off[e] now (block_exclusive_scan ended with a barrier)

  int* hist_row = s_hist[warp];
  for (int tile = 0; tile < m; tile += kPermuteTilePairs) {
    const int seg_begin = tile + warp * kPermuteSegmentPairs;
    for (int e = lane; e < num_experts; e += 32) hist_row[e] = 0;
    __syncwarp();
    int expert[kPermuteChunksPerWarp], rank[kPermuteChunksPerWarp];
    rank_segment(ids, seg_begin, m, num_experts, hist_row, lane, expert, rank);
    __syncthreads();
    scan_segments(s_hist, num_experts, s_run, s_run);
    __syncthreads();
    scatter_segment(seg_begin, top_k, hist_row, lane, expert, rank, sorted_to_pair, pair_to_sorted,
                    sorted_to_token);
    __syncthreads();  // hist rows are rewritten by the next tile
  }
}

static __global__ void __launch_bounds__(kPermuteThreads)
    permute_single_cta_sm90(const int32_t* __restrict__ ids, int m, int top_k, int num_experts,
                            int32_t* __restrict__ counts, int32_t* __restrict__ off,
                            int32_t* __restrict__ sf_off, int32_t* __restrict__ sorted_to_pair,
                            int32_t* __restrict__ pair_to_sorted, int32_t* __restrict__ sorted_to_token) {
  permute_single_cta(ids, m, top_k, num_experts, counts, off, sf_off, sorted_to_pair, pair_to_sorted,
                     sorted_to_token);
}

// Large M, step 1: tile_counts[tile][e] = pairs of the tile routed to e.
static __global__ void __launch_bounds__(kPermuteThreads)
    permute_count_sm90(const int32_t* __restrict__ ids, int m, int num_experts,
                       int32_t* __restrict__ tile_counts) {
  __shared__ int s_count[kPermuteMaxExperts];
  const int tid = int(threadIdx.x);
  for (int e = tid; e < num_experts; e += kPermuteThreads) s_count[e] = 0;
  __syncthreads();
  const int begin = int(blockIdx.x) * kPermuteTilePairs;
  const int end = min(begin + kPermuteTilePairs, m);
  for (int p = begin + tid; p < end; p += kPermuteThreads) {
    atomicAdd(&s_count[checked_expert(ids, p, num_experts)], 1);
  }
  __syncthreads();
  int32_t* out = tile_counts + int64_t(blockIdx.x) * num_experts;
  for (int e = tid; e < num_experts; e += kPermuteThreads) out[e] = s_count[e];
}

// Large M, step 2 (one CTA): per expert, the exclusive scan over tiles, in place
// (tile_counts[tile][e] becomes the number of pairs of e in tiles before `tile`); the totals
// give counts, off and sf_off.
static __global__ void __launch_bounds__(kPermuteThreads)
    permute_scan_sm90(int32_t* __restrict__ tile_counts, int num_tiles, int num_experts,
                      int32_t* __restrict__ counts, int32_t* __restrict__ off, int32_t* __restrict__ sf_off) {
  __shared__ int s_count[kPermuteMaxExperts];
  __shared__ int s_sf[kPermuteMaxExperts];
  __shared__ int s_warp_tot[kPermuteWarps];
  const int tid = int(threadIdx.x);
  const int e0 = 2 * tid, e1 = 2 * tid + 1;  // adjacent experts: the loads of a tile row coalesce
  constexpr int kBatch = 16;  // tiles loaded before any store: 32 loads in flight a thread
  int run0 = 0, run1 = 0;
  for (int t0 = 0; t0 < num_tiles; t0 += kBatch) {
    int c0[kBatch], c1[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int32_t* row = tile_counts + int64_t(t0 + u) * num_experts;
      const bool in = t0 + u < num_tiles;
      c0[u] = in && e0 < num_experts ? row[e0] : 0;
      c1[u] = in && e1 < num_experts ? row[e1] : 0;
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (t0 + u >= num_tiles) break;
      int32_t* row = tile_counts + int64_t(t0 + u) * num_experts;
      if (e0 < num_experts) row[e0] = run0;
      if (e1 < num_experts) row[e1] = run1;
      run0 += c0[u];
      run1 += c1[u];
    }
  }
  if (e0 < num_experts) s_count[e0] = run0;
  if (e1 < num_experts) s_count[e1] = run1;
  __syncthreads();
  write_offsets(s_count, s_sf, s_warp_tot, num_experts, counts, off, sf_off);
}

// Large M, step 3: ranks and rows of one tile. tile_prefix: step 2's in-place result.
static __global__ void __launch_bounds__(kPermuteThreads)
    permute_scatter_sm90(const int32_t* __restrict__ ids, int m, int top_k, int num_experts,
                         const int32_t* __restrict__ off, const int32_t* __restrict__ tile_prefix,
                         int32_t* __restrict__ sorted_to_pair, int32_t* __restrict__ pair_to_sorted,
                         int32_t* __restrict__ sorted_to_token) {
  __shared__ int s_hist[kPermuteWarps][kPermuteMaxExperts];
  __shared__ int s_base[kPermuteMaxExperts];
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int32_t* prefix = tile_prefix + int64_t(blockIdx.x) * num_experts;
  for (int e = tid; e < num_experts; e += kPermuteThreads) s_base[e] = off[e] + prefix[e];
  int* hist_row = s_hist[warp];
  for (int e = lane; e < num_experts; e += 32) hist_row[e] = 0;
  __syncwarp();
  const int seg_begin = int(blockIdx.x) * kPermuteTilePairs + warp * kPermuteSegmentPairs;
  int expert[kPermuteChunksPerWarp], rank[kPermuteChunksPerWarp];
  rank_segment(ids, seg_begin, m, num_experts, hist_row, lane, expert, rank);
  __syncthreads();
  scan_segments(s_hist, num_experts, s_base, nullptr);
  __syncthreads();
  scatter_segment(seg_begin, top_k, hist_row, lane, expert, rank, sorted_to_pair, pair_to_sorted,
                  sorted_to_token);
}

}  // namespace nvfp4moe::kernels
