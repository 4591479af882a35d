// Decode path of the NVFP4-weight x bf16-activation GEMM (<= 16 tokens per weight): a pure
// weight stream. Same semantics, params, prepared layout and split-K protocol as
// gemm_w4a16_sm90.cuh; used for token tiles 8 and 16 (gemm.cu, is_decode). A tile with
// fewer rows than kTok skips its empty groups of 8 tokens (loads and MMAs).
//
// Why a separate kernel: at 8-16 tokens the tensor work is negligible and the time is the
// weight stream; the limit is the instructions per weight (docs/GEMM.md). Every warp streams
// its own weights straight into registers and multiplies with warp-level mma.sync (no shared
// memory for the weights, no barriers in the mainloop):
//
//   CTA = 8 warps = 4 row warps x 2 K warps over one 64-row weight block x kTok tokens (the
//         wide CTA, kKWarpsT = 4: 16 warps = 4 x 4, for grouped calls with few tiles)
//   row warp r: rows 16r..16r+15 of every atom (its 512 B of codes + 64 B of scales, the
//               m16 slice of the atom's A fragment)
//   K warp h:   atoms h, h + kKWarps, ... of the tile (narrow: atom h of every K stage; each
//               warp the same count)
//   per atom and lane: one 16-byte load of codes (4 k16 steps), one 2-byte load of its scale
//               pair (the lane's scale group is the same for the 4 steps: prepared K order),
//               two 16-byte L1-cached loads of activations per 8 tokens (its 16 columns);
//               a register ring kDepth atoms deep, addressed from two running bases with
//               compile-time offsets, and an optional L2 bulk prefetch by thread 0 running
//               prefetch_atoms ahead of the ring; per k16 step 9 integer ops + 4 HMUL2 of
//               dequantization and kTok/8 mma m16n8k16 (kTok 8: two alternating
//               accumulator sets, so consecutive MMAs are independent)
//   before the wait (kPrewait instantiation, grouped, prewait_atoms > 0; the launcher's
//               prefetch_before_wait): the CTA reads the offsets, finds its first tile and
//               prefetches its start into L2 while the previous kernel finishes; all of it is
//               redone after the wait
//   epilogue:   K warps 1.. add their sums through shared memory (fixed order, so deterministic),
//               then v = sum * 2^7, out = v * alpha(n) or the split-K partial.
//
// Tiles: single GEMMs (64-row block fastest, token tile, split slowest) or grouped (per-expert
// prefix in shared memory, as the wgmma kernel, with 64-row blocks). Each CTA takes tile
// blockIdx.x first; then either every gridDim.x-th tile (static) or, with kClaim, the next
// unclaimed one from a global counter (dynamic: a CTA whose SM streams faster takes more tiles;
// thread 0 claims the next tile when it starts the current one, so the atomic's latency hides
// behind the mainloop). Which CTA computes a tile never changes its bits (a tile, or a split,
// is always summed in the same order), so both orders give the same output. The rings fill and drain
// per tile: the mainloop is one short unrolled body (a version with cursors running ahead
// across tiles was 2x the instructions and stalled on instruction-cache misses).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/gemm_decode_store_sm90.cuh"
#include "nvfp4moe/kernels/gemm_dequant_sm90.cuh"
#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"
#include "nvfp4moe/kernels/gemm_scheduler_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"
#include "nvfp4moe/kernels/ptx/ld_global_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/mma_sync_sm90.cuh"

namespace nvfp4moe::kernels {

// kDepthT: weight atoms in flight per warp; kMinCtasT: CTAs per SM (register budget
// 65536 / (kThreads x kMinCtasT)). gemm.cu picks per call: kTok 8 at 4 (grouped) or 3 (single),
// kTok 16 at 3 (grouped: 80 registers, 4-byte spill, 24% faster than 2) or 2 (single).
// kKWarpsT: K warps per CTA. 2 (256 threads): each takes one atom of every K stage. 4 (512
// threads, the wide CTA): each takes every 4th atom, i.e. one atom of every other K stage, so a
// tile streams through twice the warps; gemm.cu takes it for grouped calls whose tiles cannot
// fill the narrow CTAs' slots (Qwen3 at T = 1: 192 tiles for 528 slots), at 2 CTAs per SM.
template <int kTok, int kDepthT = 2, int kMinCtasT = 3, int kKWarpsT = 2>
struct GemmDecodeConfig {
  static_assert(kTok == 8 || kTok == 16, "decode path: 8 or 16 tokens per tile");
  static_assert(kKWarpsT == 2 || kKWarpsT == 4, "decode path: 2 or 4 K warps");
  static constexpr int kRowWarps = kAtomRows / 16;  // 4: one m16 slice each
  static constexpr int kAtomsPerStage = kWeightKPad / kAtomK;  // 2
  static constexpr int kKWarps = kKWarpsT;
  static constexpr int kThreads = 32 * kRowWarps * kKWarps;  // 256 or 512
  static constexpr int kBlockN = kAtomRows;                  // 64 weight rows per tile
  static constexpr int kGroups = kTok / 8;                   // mma n8 token groups
  static constexpr int kDepth = kDepthT;                     // weight atoms in flight per warp
  // Independent accumulator chains: kTok 8 alternates two sets over the k16 steps; kTok 16
  // already has two (one per token group).
  static constexpr int kAccSets = kGroups == 1 ? 2 : 1;
  static constexpr int kMinCtasPerSm = kMinCtasT;
};

// kPrewait: compiled with the early prefetch before the wait (grouped calls with
// prefetch_before_wait). A separate instantiation: the prologue and bookkeeping it adds cost
// the other calls ~1.5% when compiled into every kernel (DeepSeek-V3 T = 64, docs/GEMM.md v10).
// kClaim: tiles after the first claimed from p.claim (grouped calls the heuristics pick; see the
// tile loop). Likewise its own instantiation: compiled into every kernel, its shared slot and
// in-flight atomic raised the register spills of the 4-CTA tile-8 kernel from 32/40 to 56/68
// bytes (ptxas), which the static calls would pay too.
// kKWarpsT 4 (the wide CTA): K stages per split must be even (every K warp the same atom
// count); the launcher checks it.
template <int kTok, int kDepthT = GemmDecodeConfig<kTok>::kDepth, int kMinCtasT = GemmDecodeConfig<kTok>::kMinCtasPerSm,
          bool kPrewait = false, bool kClaim = false, int kKWarpsT = 2>
__global__ void __launch_bounds__(32 * 4 * kKWarpsT, kMinCtasT) gemm_w4a16_decode_sm90_kernel(const GemmW4A16Params p) {
  ptx::launch_dependents();  // launched with PDL (common/pdl_launch.h); the wait is below
  using Cfg = GemmDecodeConfig<kTok, kDepthT, kMinCtasT, kKWarpsT>;
  static_assert(Cfg::kThreads == 32 * 4 * kKWarpsT, "launch bounds");
  constexpr int kDepth = Cfg::kDepth, kGroups = Cfg::kGroups;
  __shared__ int s_off[kMaxExperts + 1];
  __shared__ int s_prefix[kMaxExperts + 1];
  __shared__ float4 s_red[Cfg::kKWarps - 1][Cfg::kRowWarps][kTok / 4][32];  // K warps 1.. sums
  __shared__ int s_is_last;
  __shared__ int s_claimed[2];  // kClaim: the tile after iteration j, in slot j % 2

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rw = warp % Cfg::kRowWarps, kw = warp / Cfg::kRowWarps;
  const int g = lane / 4, q = lane % 4;
  const bool grouped = p.off != nullptr;
  const int n_blocks = p.n_blocks;  // 64-row blocks (set by the launcher)
  const int tok_tiles_single = (p.rows + kTok - 1) / kTok;
  const int k_atoms = p.k_stages * Cfg::kAtomsPerStage;
  const int per_split = (p.k_stages + p.splits - 1) / p.splits;
  const int code_off = rw * 512 + lane * 16;
  const int scale_off = kAtomCodeBytes + (rw * 32 + lane) * 2 - code_off;  // from the codes pointer

  // Grouped split-K: tile t covers expert tile t / splits, split t % splits (the splits of one
  // output tile run side by side); single GEMMs order splits slowest (single_tile).
  auto tile_of = [&](int t) {
    if (!grouped) return single_tile<kTok>(t, p.rows, n_blocks);
    GemmTile tile = grouped_tile<kTok>(t / p.splits, s_off, s_prefix, p.num_experts);
    tile.split = t % p.splits;
    return tile;
  };
  // The tile's weights: its atoms are contiguous (K fastest within a 64-row block) from the
  // returned address; n_atoms = atoms per warp of its split (<= 0: nothing to do).
  auto tile_weights = [&](const GemmTile& tile, int& n_atoms) {
    const int ks0 = tile.split * per_split;
    n_atoms = min(p.k_stages, ks0 + per_split) - ks0;
    if constexpr (Cfg::kKWarps != Cfg::kAtomsPerStage) n_atoms = n_atoms * Cfg::kAtomsPerStage / Cfg::kKWarps;
    return p.w + tile.expert * p.w_expert_bytes + (int64_t(tile.n_block) * k_atoms + ks0 * Cfg::kAtomsPerStage) * kAtomBytes;
  };
  // Thread 0 only: the CTA's first tile and how many of its atoms are already on their way
  // into L2 (prefetched before the wait); in shared memory, not registers across the mainloop.
  __shared__ const uint8_t* s_ahead_w;
  __shared__ int s_ahead_atoms;

  // Before the wait (the previous kernel of the stream may still run): the first tile's weights
  // start streaming into L2 while it finishes. The offsets read here are a hint: in the MoE
  // forward the kernel before this one triggers its dependents only after its own wait, so the
  // routing that wrote them is complete, but nothing else orders this read; stale offsets would
  // only prefetch other weights (clamped: always inside the weight buffer). Everything below
  // the wait reads the offsets again.
  if constexpr (kPrewait) {
    if (tid == 0) s_ahead_w = nullptr;
    if (grouped && p.prewait_atoms > 0) {
      load_offsets<true>(p.off, p.num_experts, p.rows, s_off);
      const int early_tiles =
          build_tile_prefix<kTok>(s_off, p.num_experts, n_blocks, s_prefix, p.expert_rows_lo, p.expert_rows_hi) * p.splits;
      if (tid == 0 && int(blockIdx.x) < early_tiles) {
        int n_first;
        const uint8_t* w_first = tile_weights(tile_of(blockIdx.x), n_first);
        const int atoms = min(p.prewait_atoms, n_first * Cfg::kKWarps);  // the tile's atoms
        if (atoms > 0) ptx::prefetch_l2_bulk(w_first, uint32_t(atoms) * kAtomBytes);
        s_ahead_w = w_first;
        s_ahead_atoms = atoms;
      }
      __syncthreads();  // s_off / s_prefix are rebuilt below; s_ahead_* are set
    } else {
      __syncthreads();  // s_ahead_w is set before any warp's tile loop reads it
    }
  }
  ptx::grid_dependency_wait();

  int total_tiles;
  if (grouped) {
    load_offsets(p.off, p.num_experts, p.rows, s_off);
    total_tiles =
        build_tile_prefix<kTok>(s_off, p.num_experts, n_blocks, s_prefix, p.expert_rows_lo, p.expert_rows_hi) * p.splits;
  } else {
    total_tiles = n_blocks * tok_tiles_single * p.splits;
  }

  // Register ring: slot d (of kDepth) holds one atom's codes, scale pair and activations,
  // loaded kDepth atoms ahead. Atom i of this warp's walk (atom ka0 + kKWarps i of the tile's block)
  // has its codes at w_base + i * kWStride and this lane's 16 activation columns at
  // a_base[gi] + i * kAStride. The bases advance once per kDepth atoms and every load adds a
  // compile-time offset that ptxas folds into the load's immediate: ~8 instructions per atom
  // instead of ~45 with the addresses recomputed from (i, col) (ncu, docs/GEMM.md v7).
  constexpr int kWStride = Cfg::kKWarps * kAtomBytes;   // bytes between a warp's atoms
  constexpr int kAStride = Cfg::kKWarps * kAtomK * 2;   // bf16 activation bytes likewise
  uint4 codes[kDepth];
  uint32_t scales[kDepth];
  uint4 act[kDepth][kGroups][2];
  const uint8_t* w_base = nullptr;
  const uint8_t* a_base[kGroups];
  int n = 0;       // atoms of this warp's walk over the current tile
  int n_full = 0;  // leading atoms of the walk whose 64 columns are all inside K (warp-uniform)
  int k_left = 0;  // columns of K from this lane's first column of atom 0 to the end
  int groups_active = kGroups;  // token groups of 8 holding rows of the tile (warp-uniform)
  auto load = [&](int d, int rel, int i) {  // atom i = base + rel into ring slot d
    const uint8_t* wp = w_base + rel * kWStride;
    codes[d] = ptx::ld_stream_v4(wp);
    scales[d] = ptx::ld_stream_u16(wp + scale_off);
    if (i < n_full) {
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        if (gi > 0 && gi >= groups_active) break;
        const uint8_t* ap = a_base[gi] + rel * kAStride;
        act[d][gi][0] = ptx::ld_cached_v4(ap);
        act[d][gi][1] = ptx::ld_cached_v4(ap + 16);
      }
    } else {  // a K that is not a multiple of 128: zeros past K (K % 16 == 0, so the lane's 16
              // columns are all in or all out)
      const bool inside = i * kAtomK * Cfg::kKWarps < k_left;
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        if (gi > 0 && gi >= groups_active) break;
        const uint8_t* ap = a_base[gi] + rel * kAStride;
        act[d][gi][0] = inside ? ptx::ld_cached_v4(ap) : make_uint4(0, 0, 0, 0);
        act[d][gi][1] = inside ? ptx::ld_cached_v4(ap + 16) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto advance = [&] {
    w_base += kDepth * kWStride;
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi) a_base[gi] += kDepth * kAStride;
  };

  float acc[Cfg::kAccSets][kGroups][4];
#pragma unroll
  for (int x = 0; x < Cfg::kAccSets; ++x)
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[x][gi][r] = 0.0f;

  auto compute = [&](int d) {
    const uint32_t code_w[4] = {codes[d].x, codes[d].y, codes[d].z, codes[d].w};
    const uint32_t s_r0 = scale_to_bf16x2<0>(scales[d]), s_r8 = scale_to_bf16x2<1>(scales[d]);
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      uint32_t a[4];
      dequant_a_frag(code_w[s], s_r0, s_r8, a);
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        if (gi > 0 && gi >= groups_active) break;  // a short tile skips its empty token groups
        const uint4& v = act[d][gi][s / 2];
        ptx::mma_m16n8k16_bf16(acc[s % Cfg::kAccSets][gi], a, s % 2 ? v.z : v.x, s % 2 ? v.w : v.y);
      }
    }
  };

  // Tile epilogue. Thread holds weight rows n0, n0 + 8 x tokens 8gi + 2q + {0, 1}:
  // v[gi][r]: r = 0, 1 -> row n0; r = 2, 3 -> row n0 + 8; token 8gi + 2q + r % 2.
  auto epilogue = [&](const GemmTile& tile, int counter_index) {
    float v[kGroups][4];
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
      for (int r = 0; r < 4; ++r) v[gi][r] = Cfg::kAccSets == 2 ? acc[0][gi][r] + acc[Cfg::kAccSets - 1][gi][r] : acc[0][gi][r];
    if (kw >= 1) {
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        // narrow CTA: kw is 1 here; a constant index keeps the address math out of its registers
        s_red[Cfg::kKWarps == 2 ? 0 : kw - 1][rw][gi][lane] = make_float4(v[gi][0], v[gi][1], v[gi][2], v[gi][3]);
      }
    }
    __syncthreads();
    if (kw == 0) {  // K warps in order 0, 1, ...: deterministic
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        float4 o = s_red[0][rw][gi][lane];
#pragma unroll
        for (int h = 1; h < Cfg::kKWarps - 1; ++h) {  // wide CTA: K warps 2, 3 (v + o1 + o2 + o3)
          v[gi][0] += o.x;
          v[gi][1] += o.y;
          v[gi][2] += o.z;
          v[gi][3] += o.w;
          o = s_red[h][rw][gi][lane];
        }
        v[gi][0] = (v[gi][0] + o.x) * kDequantRescale;
        v[gi][1] = (v[gi][1] + o.y) * kDequantRescale;
        v[gi][2] = (v[gi][2] + o.z) * kDequantRescale;
        v[gi][3] = (v[gi][3] + o.w) * kDequantRescale;
      }
    }
    decode_store_tile<kGroups>(p, tile, tile.n_block * Cfg::kBlockN + rw * 16 + g, q, kw == 0, tid == 0, counter_index, v,
                               s_is_last, [] { __syncthreads(); });
    __syncthreads();  // s_red is rewritten by the next tile's epilogue
#pragma unroll
    for (int x = 0; x < Cfg::kAccSets; ++x)
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[x][gi][r] = 0.0f;
  };

  // Dynamic tiles: iteration j of the CTA claims the tile of iteration j + 1. Thread 0 issues
  // the atomic when the iteration starts and publishes the result in slot j % 2 just before the
  // epilogue, whose barriers make it visible; everyone reads it after the epilogue, and the slot
  // is rewritten two iterations later, after another epilogue's barriers. Every iteration
  // claims once, so exactly total_tiles claims are made in all (one that fails per CTA with a
  // tile, one that succeeds per tile past the first gridDim.x): the claim that returns
  // total_tiles - 1 is the last and returns the counter to zero for the next launch.
  int claimed = 0;  // thread 0: the atomic's result, in flight during the mainloop
  auto publish_claim = [&](int j) {
    if (kClaim && tid == 0) {
      if (claimed == total_tiles - 1) atomicExch(p.claim, 0);
      s_claimed[j % 2] = int(gridDim.x) + claimed;
    }
  };

  // Tiles: blockIdx.x, then static or claimed (above); every warp of the CTA walks the same
  // tiles with the same atom count, so the epilogue barriers are uniform. Atom i of a tile uses
  // ring slot i % kDepth, reloaded with atom i + kDepth right after its multiplies.
  for (int t = blockIdx.x, j = 0; t < total_tiles; ++j) {
    if (kClaim && tid == 0) claimed = atomicAdd(p.claim, 1);
    const int t_this = t;
    const GemmTile tile = tile_of(t_this);
    const uint8_t* block_w = tile_weights(tile, n);  // n: atoms per warp
    if (n <= 0) {  // uniform over the CTA
      if constexpr (kClaim) {
        publish_claim(j);
        __syncthreads();
        t = s_claimed[j % 2];
      } else {
        t += gridDim.x;
      }
      continue;
    }
    const int ka0 = tile.split * per_split * Cfg::kAtomsPerStage + kw;
    w_base = block_w + kw * kAtomBytes + code_off;
    k_left = p.k - ka0 * kAtomK - 16 * q;
    // Atom ka0 + kKWarps * i is inside K while 64 (ka0 + kKWarps * i) + 64 <= K.
    n_full = min(n, max(0, (p.k / kAtomK - ka0 + (Cfg::kKWarps - 1)) / Cfg::kKWarps));
    groups_active = (tile.rows_valid + 7) / 8;
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi) {
      // Token columns past the tile read the tile's last row: an mma output column depends on
      // its own B column only, and those columns are never stored (no select, no predicate).
      const int tok = min(gi * 8 + g, tile.rows_valid - 1);
      a_base[gi] = reinterpret_cast<const uint8_t*>(p.a + (int64_t(tile.row0) + tok) * p.k + int64_t(ka0) * kAtomK + 16 * q);
    }
    // L2 prefetch: the tile's atoms are contiguous (K fastest within a 64-row block). The ring
    // loads atoms [0, ring) of the CTA's walk first; thread 0 keeps the next prefetch_atoms
    // behind them on their way into L2. (Prefetching the start of the CTA's next tile as well
    // was 3-9% slower: docs/GEMM.md v10.)
    const int tile_atoms = n * Cfg::kKWarps, ring = kDepth * Cfg::kKWarps;
    // thread 0: first atom of the tile not yet prefetched
    int prefetch_next = ring;
    if constexpr (kPrewait) {
      if (tid == 0 && block_w == s_ahead_w) prefetch_next = max(ring, s_ahead_atoms);
    }
    auto prefetch_to = [&](int a_end) {
      a_end = min(a_end, tile_atoms);
      if (prefetch_next < a_end) {
        ptx::prefetch_l2_bulk(block_w + int64_t(prefetch_next) * kAtomBytes, uint32_t(a_end - prefetch_next) * kAtomBytes);
        prefetch_next = a_end;
      }
    };
    const bool prefetcher = tid == 0 && p.prefetch_atoms > 0;
    if (prefetcher) prefetch_to(ring + p.prefetch_atoms);
#pragma unroll
    for (int d = 0; d < kDepth; ++d)
      if (d < n) load(d, d, d);
    for (int i0 = 0; i0 < n; i0 += kDepth) {
      if (prefetcher) prefetch_to((i0 + 2 * kDepth) * Cfg::kKWarps + p.prefetch_atoms);
#pragma unroll
      for (int d = 0; d < kDepth; ++d) {
        const int i = i0 + d;
        if (i < n) {
          compute(d);
          if (i + kDepth < n) load(d, kDepth + d, i + kDepth);
        }
      }
      advance();
    }
    publish_claim(j);
    epilogue(tile, grouped ? t_this / p.splits : tile.n_block * tok_tiles_single + tile.tok_tile);
    if constexpr (kClaim) t = s_claimed[j % 2];
    else t += gridDim.x;
  }
}

}  // namespace nvfp4moe::kernels
