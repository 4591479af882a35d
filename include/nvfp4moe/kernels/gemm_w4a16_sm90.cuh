// NVFP4-weight x bf16-activation GEMM on Hopper (sm_90a): out = alpha(n) * A [M, K] x W^T,
// W [N, K] NVFP4 in the prepared layout (gemm_layout_sm90.cuh). Single or expert-grouped.
//
// Swap AB: the kernel computes out^T = W x A^T so that weight rows fill wgmma's M side (64 per
// warpgroup) and the few tokens of decode sit on its N side (kTok = 8..128):
//
//   CTA = 2 warpgroups = 128 weight rows x kTok tokens; stage = 128 of K
//     weights  (2 x 2 atoms, 9216 B) --cp.async (or bulk copy)--> smem --ld.shared-->
//              registers --dequant (exact, bf16)--> wgmma A fragments (RS form)
//     tokens   (kTok x 128 bf16, in the prepared K order, gemm_act_permute_sm90.cuh)
//              --cp.async (or TMA)--> smem, 128-byte swizzle --> wgmma B (desc)
//     acc      fp32 [64 x kTok] per warpgroup; kStages-deep ring over K, loads kStages-2
//              (TMA: up to kStages-1) stages ahead (across tile boundaries for persistent CTAs); each
//              k16 step is dequantized while up to 3 earlier wgmma are in flight.
//
// Epilogue: v = acc * 2^7 (undoes the dequant scaling, exact), out = v * alpha(n), rounded to
// bf16 or stored as fp32. Split-K (single GEMMs, decode): each split writes v to an fp32
// workspace; the last CTA of an output tile to arrive (atomic counter) sums the splits in
// split order 0, 1, ... (deterministic whoever arrives last), applies alpha, stores, and
// resets the counter to 0 for the next launch.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/gemm_dequant_sm90.cuh"
#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"
#include "nvfp4moe/kernels/gemm_scheduler_sm90.cuh"
#include "nvfp4moe/kernels/gemm_split_reduce_sm90.cuh"
#include "nvfp4moe/kernels/ptx/async_copy_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/wgmma_rs_sm90.cuh"
#include "nvfp4moe/kernels/ptx/wgmma_sync_sm90.cuh"

namespace nvfp4moe::kernels {

struct GemmW4A16Params {
  const __nv_bfloat16* a;  // decode kernel: [rows, k] bf16, natural K order, row stride k;
                           // wgmma kernel: [rows, Kp] in the prepared K order (zeros past k)
  const uint8_t* w;        // prepared weights, expert e at w + e * w_expert_bytes
  int64_t w_expert_bytes;
  const float* alpha;      // [E][2]: alpha(n) = alpha[2e] for n < n/2, alpha[2e+1] otherwise
  void* out;               // [rows, n] bf16 or fp32
  int out_f32;
  const int32_t* off;      // grouped: [E+1] device offsets; single: nullptr
  int num_experts;
  int rows;                // single: M; grouped: rows of a/out (offsets are clamped to it)
  int n, k;
  int k_stages;            // Kp / 128
  int n_blocks;            // Np / 128
  int splits;              // single only; > 1 needs partial + counters
  float* partial;          // [splits][rows][n]
  int* counters;           // [n_blocks * tok_tiles], zero before the first launch
  int prefetch_atoms;      // decode kernel: weight atoms per CTA prefetched into L2 ahead of
                           // the register ring (0: none)
  int expert_rows_lo;      // grouped: only experts with lo <= rows <= hi (hi = 0: no bound)
  int expert_rows_hi;      // get tiles (the cold / hot launches of GemmPlan::hot_rows)
  int prewait_atoms;       // decode kernel, grouped: before griddepcontrol.wait, prefetch this
                           // many atoms of the CTA's first tile into L2 (0: off; a hint: the
                           // offsets read then may be stale, see the decode kernel)
  int* claim;              // decode kernel, kClaim instantiation (else unused): the counter
                           // (zero at launch, zero again at exit) from which CTAs claim their
                           // tiles after the first (dynamic balance)
  int staged_epilogue;     // warp-specialized kernel: the output tile goes out through shared
                           // memory in 16-byte stores (bf16 out, n % 8 == 0; else 0: each
                           // thread stores its own 2-byte elements)
  int tile_rows;           // warp-specialized kernel, single GEMMs: balanced token tiles of at
                           // most this many rows (1..kTok; 0: kTok), so the host can fit the
                           // tile count to whole waves (GemmPlan::tile_rows)
};

// kWarpGroups = 2: 128 weight rows per CTA (one prepared row block). kWarpGroups = 4: 256 rows
// per CTA (two row blocks; the second may lie past Np and is then zero-filled and masked): the
// bf16 activation tile, four times the bytes of the weight tile per element, is then reused by
// twice the weight rows, halving the L2 traffic per MMA at large M (docs/GEMM.md v8).
template <int kTok, int kWarpGroupsT = 2>
struct GemmW4A16Config {
  static_assert(kTok % 8 == 0 && kTok >= 8 && kTok <= 256, "wgmma n must be 8..256, multiple of 8");
  static_assert(kWarpGroupsT == 2 || kWarpGroupsT == 4, "2 or 4 warpgroups (128 or 256 weight rows)");
  static constexpr int kWarpGroups = kWarpGroupsT;
  static constexpr int kThreads = 128 * kWarpGroups;
  static constexpr int kBlockN = 64 * kWarpGroups;
  static_assert(kBlockN % kWeightRowPad == 0, "a CTA covers whole prepared row blocks");
  static constexpr int kAtomsK = kWeightKPad / kAtomK;                  // 2 atoms per stage
  static constexpr int kActSubBytes = kTok * 128;                       // kTok x 64 bf16
  static constexpr int kActBytes = kAtomsK * kActSubBytes;
  static constexpr int kWeightBytes = kWarpGroups * kAtomsK * kAtomBytes;  // 9216 per 2 warpgroups
  static constexpr int kStageBytes = kActBytes + kWeightBytes;
  static_assert(kActSubBytes % 1024 == 0 && kStageBytes % 1024 == 0, "128B-swizzle tiles need 1 KiB alignment");
  // 2 warpgroups: stages sized so that kTok 8..32 fit 2 CTAs per SM (228 KB), kTok 64 and 128
  // one. 4 warpgroups (one CTA per SM): as many stages as fit next to the 8 KB of static
  // shared memory (kTok 128: 4 stages of 50 KB; kTok 64: 6 of 34 KB).
  static constexpr int kStages =
      kWarpGroups == 4 ? (220 * 1024) / kStageBytes
                       : (kTok == 8 ? 8 : (kTok == 16 ? 7 : (kTok == 32 ? 5 : (kTok == 64 ? 6 : 5))));
  static_assert(kStages >= 3, "the pipeline loads kStages-2 stages ahead");
  static constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + alignment slack
  // Register budget: 2 warpgroups <= 128 (kTok <= 32, 2 CTAs) or 255; 4 warpgroups 128.
  // A-fragment buffers = wgmma in flight per warpgroup + 1. Each in-flight RS wgmma pins its
  // 4 A registers; with 4 warpgroups at kTok 128, 4 buffers next to 64 accumulators exceed 128
  // registers and ptxas then serializes every wgmma (C7512; SASS: WARPGROUP.DEPBAR 0 after
  // each HGMMA, one in flight). 2 buffers keep one wgmma per warpgroup in flight while the
  // next is dequantized, and 4 warpgroups queue 4 at the tensor core.
  static constexpr int kABuffers = (kWarpGroups == 4 && kTok > 64) ? 2 : 4;
  static constexpr int kMinCtasPerSm = (kWarpGroups == 2 && kTok <= 32) ? 2 : 1;
};

// A thread's share of one prepared 64 x 64 weight atom in shared memory, as the RS wgmma's A
// operand needs it: 16 bytes of codes (one 32-bit word per k16 step) and the thread's scale pair
// as bf16x2 {S, S} for its rows r0 and r0 + 8 (gemm_dequant_sm90.cuh).
// The accumulators of the RS wgmma kernels (both pipelines): fenced before the first and after
// the last wgmma of a tile, so the compiler moves no access to them across the asynchronous
// MMAs; zeroed (and fenced) for each new tile.
template <int kN>
__device__ __forceinline__ void fence_accumulators(float (&acc)[kN]) {
#pragma unroll
  for (int r = 0; r < kN; ++r) ptx::fence_operand(acc[r]);
}
template <int kN>
__device__ __forceinline__ void zero_accumulators(float (&acc)[kN]) {
#pragma unroll
  for (int r = 0; r < kN; ++r) acc[r] = 0.0f;
  fence_accumulators(acc);
}

// The A-fragment buffers start zeroed (a defined value before their first dequantization).
template <int kBufs>
__device__ __forceinline__ void zero_fragment_buffers(uint32_t (&buf)[kBufs][4]) {
#pragma unroll
  for (int b = 0; b < kBufs; ++b)
#pragma unroll
    for (int j = 0; j < 4; ++j) buf[b][j] = 0u;
}

struct AtomFragments {
  uint32_t code_w[4];
  uint32_t s_r0, s_r8;
};
__device__ __forceinline__ AtomFragments load_atom_fragments(uint32_t atom, int tid_wg) {
  const uint4 codes = ptx::ld_shared_v4(atom + tid_wg * 16);
  const uint32_t sc = ptx::ld_shared_u16(atom + kAtomCodeBytes + tid_wg * 2);
  return AtomFragments{{codes.x, codes.y, codes.z, codes.w}, scale_to_bf16x2<0>(sc), scale_to_bf16x2<1>(sc)};
}

// One CTA's walk over its tiles and their K stages (tiles t = blockIdx.x + j * gridDim.x).
// The loader and the compute side each hold one; the loader runs kDist stages ahead, across
// tile boundaries, so a persistent CTA never drains its pipeline between tiles.
struct StageCursor {
  int t = 0;          // tile index
  int ks = 0;         // K stage within the tile
  int ks_end = 0;
  bool valid = false;
  GemmTile tile{};
};

// p.n_blocks counts CTA row blocks of Cfg::kBlockN rows (the launcher sets it).
//
// Every thread issues its share of a stage's 16-byte cp.async, and all warps meet at one
// __syncthreads per stage (the stage has landed for everyone, and everyone is done with the slot
// about to be refilled). (v9 filled the stages by TMA from thread 0 instead: exact but 4-15%
// slower on the H100, removed in v36; the warp-specialized kernel, gemm_w4a16_ws_sm90.cuh, gives
// the TMA copies a warpgroup of their own.)
template <int kTok, int kWarpGroups = 2>
__global__ void __launch_bounds__(GemmW4A16Config<kTok, kWarpGroups>::kThreads,
                                  GemmW4A16Config<kTok, kWarpGroups>::kMinCtasPerSm)
    gemm_w4a16_sm90_kernel(const GemmW4A16Params p) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  using Cfg = GemmW4A16Config<kTok, kWarpGroups>;
  constexpr int kStages = Cfg::kStages;
  constexpr int kDist = kStages - 2;  // cp.async: loads run this many stages ahead (see the loop)
  constexpr int kBufs = Cfg::kABuffers;
  static_assert((Cfg::kAtomsK * 4) % kBufs == 0, "buffer rotation must repeat every stage");
  extern __shared__ uint8_t smem_raw[];
  __shared__ int s_off[kMaxExperts + 1];
  __shared__ int s_prefix[kMaxExperts + 1];
  __shared__ int s_is_last;
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const uint32_t smem_base = ptx::smem_addr(smem);

  const int tid = threadIdx.x, wg = tid / 128, tid_wg = tid % 128;
  const int warp_wg = tid_wg / 32, lane = tid % 32;
  const bool grouped = p.off != nullptr;
  const int tok_tiles_single = (p.rows + kTok - 1) / kTok;
  int total_tiles;
  if (grouped) {
    load_offsets(p.off, p.num_experts, p.rows, s_off);
    total_tiles = build_tile_prefix<kTok>(s_off, p.num_experts, p.n_blocks, s_prefix, p.expert_rows_lo, p.expert_rows_hi);
  } else {
    total_tiles = p.n_blocks * tok_tiles_single * p.splits;
  }
  const int k_atoms = p.k_stages * Cfg::kAtomsK;
  const int per_split = (p.k_stages + p.splits - 1) / p.splits;

  auto tile_of = [&](int t) {
    return grouped ? grouped_tile<kTok>(t, s_off, s_prefix, p.num_experts) : single_tile<kTok>(t, p.rows, p.n_blocks);
  };
  // Position a cursor on tile t (or the next tile with a non-empty K range).
  auto seek = [&](StageCursor& c, int t) {
    c.valid = false;
    for (; t < total_tiles; t += gridDim.x) {
      c.tile = tile_of(t);
      c.ks = grouped ? 0 : c.tile.split * per_split;
      c.ks_end = grouped ? p.k_stages : min(p.k_stages, c.ks + per_split);
      if (c.ks < c.ks_end) {
        c.t = t;
        c.valid = true;
        return;
      }
    }
  };
  auto advance = [&](StageCursor& c) {
    if (++c.ks == c.ks_end) seek(c, c.t + gridDim.x);
  };

  // Stage copies: kTok x 128 tokens (two swizzled 64-wide halves), then 2 wg x 2 atoms.
  // Per-thread constants: activation chunk column ch = tid % 16, rows tid/16 + 16*it;
  // weight chunks tid + 256*it.
  const int act_ch = tid % 16, act_half = act_ch / 8;
  const int act_row0 = tid / 16;
  const uint32_t act_dst0 = uint32_t(act_half * Cfg::kActSubBytes + act_row0 * 128 +
                                     (((act_ch % 8) ^ (act_row0 & 7)) << 4));
  // Weight chunk c16 = tid + kThreads*it of a stage: warpgroup g = c16 / 288, byte
  // (c16 % 288) * 16 of that warpgroup's 2-atom run; source offsets are fixed per thread
  // (int32: < 2^31). With 4 warpgroups the 64-row block of warpgroups 2 and 3 may lie past Np
  // (Np = 128 mod 256): those chunks are zero-filled (w_blk: the chunk's 64-row block in the CTA).
  constexpr int kChunksPerWg = Cfg::kAtomsK * kAtomBytes / 16;  // 288
  constexpr int kWeightChunks = Cfg::kWarpGroups * kChunksPerWg;
  constexpr int kWeightChunkIters = (kWeightChunks + Cfg::kThreads - 1) / Cfg::kThreads;
  int w_src_off[kWeightChunkIters];
  int w_blk[kWeightChunkIters];
#pragma unroll
  for (int it = 0; it < kWeightChunkIters; ++it) {
    const int c16 = tid + it * Cfg::kThreads, g = c16 / kChunksPerWg;
    w_src_off[it] = g * k_atoms * kAtomBytes + (c16 - g * kChunksPerWg) * 16;
    w_blk[it] = g;
  }
  const int row_blocks64 = int(prepared_rows(p.n) / kAtomRows);
  // Activations are already in the prepared K order (gemm_act_permute_sm90.cuh), rows padded
  // to Kp columns (zeros past K): every 16-byte chunk of a stage exists.
  auto load_stage = [&](int slot, const StageCursor& c) {
    const uint32_t st = smem_base + slot * Cfg::kStageBytes;
    const int kcol = c.ks * kWeightKPad + act_ch * 8;
    const __nv_bfloat16* src0 = p.a + (int64_t(c.tile.row0) + act_row0) * (p.k_stages * kWeightKPad) + kcol;
#pragma unroll
    for (int it = 0; it < (kTok * 16 + Cfg::kThreads - 1) / Cfg::kThreads; ++it) {
      const int row = act_row0 + it * (Cfg::kThreads / 16);
      // Rows past the tile's valid rows are not loaded: token j of the MMA reads only row j of
      // the tile, and the epilogue never stores tokens >= rows_valid, so whatever those rows
      // hold (a previous stage, or garbage) never reaches the output.
      if ((kTok * 16 % Cfg::kThreads == 0 || row < kTok) && row < c.tile.rows_valid) {
        ptx::cp_async_16(st + act_dst0 + it * (Cfg::kThreads / 16) * 128,
                         src0 + int64_t(it) * (Cfg::kThreads / 16) * (p.k_stages * kWeightKPad), 16);
      }
    }
    // Weight rows of the tile: 64-row blocks kWarpGroups*n_block + g, one per warpgroup g.
    const uint8_t* wsrc = p.w + c.tile.expert * p.w_expert_bytes +
                          (int64_t(c.tile.n_block) * Cfg::kWarpGroups * k_atoms + int64_t(c.ks) * Cfg::kAtomsK) *
                              kAtomBytes;
#pragma unroll
    for (int it = 0; it < kWeightChunkIters; ++it) {
      if (kWeightChunks % Cfg::kThreads == 0 || it * Cfg::kThreads + tid < kWeightChunks) {
        const bool ok = Cfg::kBlockN == kWeightRowPad || c.tile.n_block * Cfg::kWarpGroups + w_blk[it] < row_blocks64;
        ptx::cp_async_16(st + Cfg::kActBytes + (it * Cfg::kThreads + tid) * 16, ok ? wsrc + w_src_off[it] : p.w,
                         ok ? 16 : 0);
      }
    }
  };

  // Pipeline: the i-th stage of this CTA lands in slot i % kStages, loaded kDist stages
  // ahead. Inside a stage the 8 k16 steps (2 atoms x 4) are dequantized one ahead of the
  // wgmma into buf[j % kBufs]; wait<kBufs-1> after each wgmma retires the one that last read
  // the buffer written next. At most kBufs-1 wgmma of stage i-1 are in flight when stage i
  // starts (all retired at a tile's end), so the slot of stage i-2 is the first free one.
  StageCursor ld, cp;
  seek(ld, blockIdx.x);
  cp = ld;

#pragma unroll
  for (int s = 0; s < kDist; ++s) {
    if (ld.valid) {
      load_stage(s, ld);
      advance(ld);
    }
    ptx::cp_async_commit();
  }
  float acc[kTok / 2];
  uint32_t buf[kBufs][4];
  zero_fragment_buffers(buf);
  zero_accumulators(acc);

  for (int i = 0; cp.valid; ++i) {
    ptx::cp_async_wait<kDist - 1>();
    ptx::fence_proxy_async_smem();  // cp.async wrote the tile through the generic proxy
    __syncthreads();  // stage i visible to all; every warpgroup finished the wgmma of stage i-2
    if (ld.valid) {
      load_stage((i + kDist) % kStages, ld);
      advance(ld);
    }
    ptx::cp_async_commit();

    const uint32_t act = smem_base + (i % kStages) * Cfg::kStageBytes;
    const uint32_t wsm = act + Cfg::kActBytes + wg * Cfg::kAtomsK * kAtomBytes;
    // One stage of MMAs at token width kN <= kTok: the first kN/2 accumulators of the kTok
    // layout are exactly the m64nkN accumulators (same fragment order, tokens 0..kN-1).
    auto mma_stage = [&]<int kN>() {
#pragma unroll
      for (int at = 0; at < Cfg::kAtomsK; ++at) {
        const AtomFragments f = load_atom_fragments(wsm + at * kAtomBytes, tid_wg);
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          uint32_t(&a)[4] = buf[(at * 4 + s) % kBufs];
          dequant_a_frag(f.code_w[s], f.s_r0, f.s_r8, a);
          ptx::wgmma_fence();
          ptx::WgmmaRS<kN>::mma(acc, a, ptx::smem_desc_k128b(act + at * Cfg::kActSubBytes + s * 32), 1);
          ptx::wgmma_commit();
          ptx::wgmma_wait<kBufs - 1>();
        }
      }
    };
    // A tile with few valid tokens (an expert's last token tile, a small expert, a short
    // single GEMM) runs the narrowest MMA that covers them: the tensor-core time of a token
    // tile 128 holding 10 rows drops 4x at width 32 (docs/GEMM.md v8).
    constexpr int kN32 = kTok > 32 ? 32 : kTok, kN64 = kTok > 64 ? 64 : kTok;
    const int tile_rows = cp.tile.rows_valid;
    if (kTok > 32 && tile_rows <= 32) mma_stage.template operator()<kN32>();
    else if (kTok > 64 && tile_rows <= 64) mma_stage.template operator()<kN64>();
    else mma_stage.template operator()<kTok>();

    if (cp.ks + 1 == cp.ks_end) {  // last stage of the tile: epilogue
      ptx::wgmma_wait<0>();
      fence_accumulators(acc);
      const GemmTile tile = tile_of(cp.t);  // recomputed: keeps the cursor small
      // Thread holds rows n0, n0+8 x tokens 8j + 2q + {0,1}.
      const int n0 = tile.n_block * Cfg::kBlockN + wg * 64 + warp_wg * 16 + lane / 4;
      const int q = lane % 4, half_n = p.n / 2;
      const float a_lo = p.alpha[2 * tile.expert], a_hi = p.alpha[2 * tile.expert + 1];
      auto store = [&](int64_t m, int n, float v) {
        float r = v * (n < half_n ? a_lo : a_hi);
        if (p.out_f32) static_cast<float*>(p.out)[m * p.n + n] = r;
        else static_cast<__nv_bfloat16*>(p.out)[m * p.n + n] = __float2bfloat16_rn(r);
      };
      // 4 warpgroups: never split (the plans take 256-row tiles only when tiles fill the GPU);
      // leaving the split path out keeps the kernel within its 128 registers.
      if (kWarpGroups == 4 || p.splits == 1) {
#pragma unroll
        for (int r = 0; r < kTok / 2; ++r) {
          int tok = 8 * (r / 4) + 2 * q + (r % 2), n = n0 + 8 * ((r / 2) % 2);
          if (tok < tile.rows_valid && n < p.n) store(tile.row0 + tok, n, acc[r] * kDequantRescale);
        }
      } else if constexpr (kWarpGroups == 2) {
        float* part = p.partial + int64_t(tile.split) * p.rows * p.n;
#pragma unroll
        for (int r = 0; r < kTok / 2; ++r) {
          int tok = 8 * (r / 4) + 2 * q + (r % 2), n = n0 + 8 * ((r / 2) % 2);
          if (tok < tile.rows_valid && n < p.n) part[int64_t(tile.row0 + tok) * p.n + n] = acc[r] * kDequantRescale;
        }
        __threadfence();
        __syncthreads();
        int* counter = p.counters + tile.n_block * tok_tiles_single + tile.tok_tile;
        if (tid == 0) s_is_last = atomicAdd(counter, 1) == p.splits - 1;
        __syncthreads();
        if (s_is_last) {
          __threadfence();
          const int col0 = tile.n_block * Cfg::kBlockN;
          reduce_split_tile<Cfg::kThreads>(p.partial, p.splits, p.rows, p.n, tile.row0, tile.rows_valid, col0,
                                           min(Cfg::kBlockN, p.n - col0), store);
          if (tid == 0) *counter = 0;
        }
      }
      zero_accumulators(acc);
    }
    advance(cp);
  }
  ptx::wgmma_wait<0>();
  ptx::cp_async_wait<0>();
}

}  // namespace nvfp4moe::kernels
