// Decode path of the NVFP4-weight x bf16-activation GEMM with the weight stream in a shared-
// memory ring filled by bulk copies (the "ring" decode kernel). Same params, tiles, prepared
// layout, split-K protocol, claimed tiles and arithmetic as gemm_w4a16_decode_sm90.cuh (the
// "register" decode kernel); each warp multiplies the same atoms in the same order, so the two
// kernels give the same bits (tests).
//
// Why: the register kernel keeps 2 atoms per warp in flight (~37 KB per SM at 4 CTAs), paid
// for in registers, and its ring fills and drains with every tile; ncu found its warps waiting
// on those loads (60% of stalls, L1TEX scoreboard) and the one-tile-per-CTA calls of the MoE
// at T = 1 at 78% (w13) and ~50% (w2) of copy bandwidth (docs/GEMM.md v12-v13). Here one
// producer warp walks the CTA's tiles and keeps kStages K stages in flight with one
// `cp.async.bulk` of the stage's weights (4608 contiguous bytes: two atoms) and one per token
// row of its activations (<= 256 bytes), completing on the stage's `full` mbarrier; it runs
// into the next tile while the consumers finish the current one, so the stream does not stop
// at tile boundaries and the bytes in flight no longer cost registers.
//
//   CTA = 8 consumer warps (4 row warps x 2 K warps, as the register kernel) + 1 producer warp
//   stage s (dynamic shared memory): [atom 0 | atom 1 | activations kTok rows x 272 B]
//   (256 B of K per row, padded to 272 so the lanes' 16-byte reads of two rows fall in
//   different banks); rows past the tile's valid rows are not copied and never read (the
//   consumers clamp a token column to the tile's last row, as the register kernel does), columns
//   past K are stale and replaced by zeros in registers (the same test as the register kernel).
//   consumer warp (rw, kw): per stage waits `full`, reads atom kw's 16 code bytes and 2 scale
//   bytes of its lane and the lane's activations, releases the stage (one arrival per warp on
//   `empty`), then dequantizes and multiplies; the tile's first stage also carries the tile
//   index (s_tile, -1: no more tiles), so the consumers follow the producer's schedule, claimed
//   tiles included.
//   epilogue: the register kernel's (K warp 1's sums through shared memory, fixed order; split-K
//   partials, last CTA sums), with a barrier of the 256 consumer threads only.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/gemm_decode_store_sm90.cuh"
#include "nvfp4moe/kernels/gemm_dequant_sm90.cuh"
#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"
#include "nvfp4moe/kernels/gemm_scheduler_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"
#include "nvfp4moe/kernels/ptx/async_copy_sm90.cuh"
#include "nvfp4moe/kernels/ptx/bulk_copy_sm90.cuh"
#include "nvfp4moe/kernels/ptx/named_barrier_sm90.cuh"
#include "nvfp4moe/kernels/ptx/grid_dependency_sm90.cuh"
#include "nvfp4moe/kernels/ptx/mbarrier_sm90.cuh"
#include "nvfp4moe/kernels/ptx/mma_sync_sm90.cuh"

namespace nvfp4moe::kernels {

template <int kTok, int kStagesT, int kMinCtasT>
struct GemmDecodeRingConfig {
  static_assert(kTok == 8 || kTok == 16, "decode path: 8 or 16 tokens per tile");
  static constexpr int kRowWarps = kAtomRows / 16;                   // 4
  static constexpr int kKWarps = kWeightKPad / kAtomK;               // 2: one atom of every stage each
  static constexpr int kConsumerWarps = kRowWarps * kKWarps;         // 8
  static constexpr int kConsumers = 32 * kConsumerWarps;             // 256
  static constexpr int kThreads = kConsumers + 32;                   // + the producer warp
  static constexpr int kGroups = kTok / 8;
  static constexpr int kAccSets = kGroups == 1 ? 2 : 1;
  static constexpr int kStages = kStagesT;
  static constexpr int kMinCtasPerSm = kMinCtasT;
  static constexpr int kWeightStageBytes = kKWarps * kAtomBytes;     // 4608
  static constexpr int kActRowBytes = kWeightKPad * 2;               // 256: one stage of K, bf16
  static constexpr int kActPitch = kActRowBytes + 16;                // 272 (banks, see above)
  static constexpr int kStageBytes = kWeightStageBytes + kTok * kActPitch;
  static constexpr int kRingBytes = kStages * kStageBytes;           // dynamic shared memory
  static_assert(kStageBytes % 16 == 0, "bulk copies need 16-byte aligned destinations");
};

namespace ring {

// Barrier of the consumer warps only (the producer warp may be anywhere in its loop).
template <int kCount>
__device__ __forceinline__ void consumers_sync() {
  ptx::named_barrier_sync(1, kCount);
}

}  // namespace ring

template <int kTok, int kStagesT, int kMinCtasT, bool kClaim = false>
__global__ void __launch_bounds__(GemmDecodeRingConfig<kTok, kStagesT, kMinCtasT>::kThreads, kMinCtasT)
    gemm_w4a16_decode_ring_sm90_kernel(const GemmW4A16Params p, const DecodeCombineParams combine) {
  ptx::launch_dependents();  // launched with PDL (common/pdl_launch.h); the wait is below
  using Cfg = GemmDecodeRingConfig<kTok, kStagesT, kMinCtasT>;
  constexpr int kStages = Cfg::kStages, kGroups = Cfg::kGroups;
  extern __shared__ __align__(128) uint8_t ring_smem[];
  __shared__ int s_off[kMaxExperts + 1];
  __shared__ int s_prefix[kMaxExperts + 1];
  __shared__ float4 s_red[Cfg::kRowWarps][kTok / 4][32];  // K warp 1's sums
  __shared__ int s_is_last;
  __shared__ int s_tile[kStages];  // the tile whose first stage this is (-1: no more tiles)
  __shared__ __align__(8) uint64_t full_bar[kStages], empty_bar[kStages];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const bool grouped = p.off != nullptr;
  const int n_blocks = p.n_blocks;
  const int tok_tiles_single = (p.rows + kTok - 1) / kTok;
  const int k_atoms = p.k_stages * Cfg::kKWarps;
  const int per_split = (p.k_stages + p.splits - 1) / p.splits;
  const uint32_t ring0 = uint32_t(__cvta_generic_to_shared(ring_smem));
  auto full_of = [&](int s) { return uint32_t(__cvta_generic_to_shared(&full_bar[s])); };
  auto empty_of = [&](int s) { return uint32_t(__cvta_generic_to_shared(&empty_bar[s])); };

  auto tile_of = [&](int t) {
    if (!grouped) return single_tile<kTok>(t, p.rows, n_blocks);
    GemmTile tile = grouped_tile<kTok>(t / p.splits, s_off, s_prefix, p.num_experts);
    tile.split = t % p.splits;
    return tile;
  };
  // The tile's K stages (its split's) and the address of its first: stages are contiguous.
  auto tile_stages = [&](const GemmTile& tile, int& n_stages) {
    const int ks0 = tile.split * per_split;
    n_stages = min(p.k_stages, ks0 + per_split) - ks0;
    return p.w + tile.expert * p.w_expert_bytes + (int64_t(tile.n_block) * k_atoms + ks0 * Cfg::kKWarps) * kAtomBytes;
  };

  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(full_of(s), 1);                     // the producer's arrival (+ bytes)
      ptx::mbarrier_init(empty_of(s), Cfg::kConsumerWarps);  // one arrival per consumer warp
    }
    ptx::fence_mbarrier_init();
  }
  ptx::grid_dependency_wait();
  int total_tiles;
  if (grouped) {  // both end with a barrier, which also publishes the mbarrier initialisation
    load_offsets(p.off, p.num_experts, p.rows, s_off);
    total_tiles = build_tile_prefix<kTok>(s_off, p.num_experts, n_blocks, s_prefix, p.expert_rows_lo, p.expert_rows_hi) *
                  p.splits;
  } else {
    total_tiles = n_blocks * tok_tiles_single * p.splits;
    __syncthreads();
  }

  if (warp == Cfg::kConsumerWarps) {
    // ---- producer: the CTA's tiles, stage by stage, kStages ahead of the consumers ----
    int stage = 0;
    uint32_t phase = 0;
    auto next_stage = [&] {
      if (++stage == kStages) {
        stage = 0;
        phase ^= 1u;
      }
    };
    for (int t = blockIdx.x; t < total_tiles;) {
      int claimed = 0;
      if (kClaim && lane == 0) claimed = atomicAdd(p.claim, 1);  // the tile after this one
      const GemmTile tile = tile_of(t);
      int n_stages;
      const uint8_t* w = tile_stages(tile, n_stages);
      const int col0 = tile.split * per_split * kWeightKPad;
      const __nv_bfloat16* a_row = p.a + (int64_t(tile.row0) + lane) * p.k;
      for (int ks = 0; ks < n_stages; ++ks) {
        ptx::mbarrier_wait(empty_of(stage), phase ^ 1u);  // a fresh barrier passes parity 1 at once
        const int col = col0 + ks * kWeightKPad;
        const uint32_t act_bytes = uint32_t(min(kWeightKPad, p.k - col)) * 2u;  // K % 16 == 0: >= 32
        const uint32_t dst = ring0 + uint32_t(stage * Cfg::kStageBytes);
        if (lane == 0) {
          if (ks == 0) s_tile[stage] = t;  // published by the arrival's release
          ptx::mbarrier_arrive_expect_tx(full_of(stage),
                                         uint32_t(Cfg::kWeightStageBytes) + uint32_t(tile.rows_valid) * act_bytes);
        }
        __syncwarp();
        if (lane == 0) ptx::bulk_copy_g2s(dst, w + int64_t(ks) * Cfg::kWeightStageBytes, Cfg::kWeightStageBytes, full_of(stage));
        if (lane < tile.rows_valid)
          ptx::bulk_copy_g2s(dst + Cfg::kWeightStageBytes + lane * Cfg::kActPitch, a_row + col, act_bytes, full_of(stage));
        next_stage();
      }
      if constexpr (kClaim) {
        if (lane == 0 && claimed == total_tiles - 1) atomicExch(p.claim, 0);  // the last claim resets
        t = int(gridDim.x) + __shfl_sync(0xffffffffu, claimed, 0);
      } else {
        t += gridDim.x;
      }
      // A tile without stages (an empty split) is skipped by the consumers too: they never see it.
    }
    ptx::mbarrier_wait(empty_of(stage), phase ^ 1u);
    if (lane == 0) {
      s_tile[stage] = -1;
      ptx::mbarrier_arrive(full_of(stage));
    }
    return;
  }

  // ---- consumers ----
  const int rw = warp % Cfg::kRowWarps, kw = warp / Cfg::kRowWarps;
  const int g = lane / 4, q = lane % 4;
  const uint32_t code_off = uint32_t(kw * kAtomBytes + rw * 512 + lane * 16);
  const uint32_t scale_off = uint32_t(kw * kAtomBytes + kAtomCodeBytes + (rw * 32 + lane) * 2);
  float acc[Cfg::kAccSets][kGroups][4];
#pragma unroll
  for (int x = 0; x < Cfg::kAccSets; ++x)
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[x][gi][r] = 0.0f;

  // The register kernel's epilogue (same arithmetic and order), consumer barrier instead of
  // __syncthreads. v[gi][r]: r = 0, 1 -> row n0; r = 2, 3 -> row n0 + 8; token 8gi + 2q + r % 2.
  auto epilogue = [&](const GemmTile& tile, int counter_index) {
    float v[kGroups][4];
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
      for (int r = 0; r < 4; ++r) v[gi][r] = Cfg::kAccSets == 2 ? acc[0][gi][r] + acc[Cfg::kAccSets - 1][gi][r] : acc[0][gi][r];
    if (kw == 1) {
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) s_red[rw][gi][lane] = make_float4(v[gi][0], v[gi][1], v[gi][2], v[gi][3]);
    }
    ring::consumers_sync<Cfg::kConsumers>();
    if (kw == 0) {
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        const float4 o = s_red[rw][gi][lane];
        v[gi][0] = (v[gi][0] + o.x) * kDequantRescale;
        v[gi][1] = (v[gi][1] + o.y) * kDequantRescale;
        v[gi][2] = (v[gi][2] + o.z) * kDequantRescale;
        v[gi][3] = (v[gi][3] + o.w) * kDequantRescale;
      }
    }
    decode_store_tile<kGroups>(p, tile, tile.n_block * kAtomRows + rw * 16 + g, q, kw == 0, tid == 0, counter_index, v,
                               s_is_last, [] { ring::consumers_sync<Cfg::kConsumers>(); });
    if (combine.out != nullptr) {  // the launcher fuses only calls without split
      decode_combine_block(p, combine, tile, kw == 0, tid == 0, tid, Cfg::kConsumers, total_tiles / n_blocks, s_is_last,
                           [] { ring::consumers_sync<Cfg::kConsumers>(); });
    }
    ring::consumers_sync<Cfg::kConsumers>();  // s_red / s_is_last are rewritten by the next tile
#pragma unroll
    for (int x = 0; x < Cfg::kAccSets; ++x)
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[x][gi][r] = 0.0f;
  };

  int stage = 0;
  uint32_t phase = 0;
  for (;;) {
    ptx::mbarrier_wait(full_of(stage), phase);
    const int t = s_tile[stage];
    if (t < 0) break;
    const GemmTile tile = tile_of(t);
    int n;
    tile_stages(tile, n);  // the producer pushed exactly n (>= 1) stages of this tile
    const int ka0 = tile.split * per_split * Cfg::kKWarps + kw;  // this warp's first atom
    const int k_left = p.k - ka0 * kAtomK - 16 * q;  // K columns from this lane's first column
    const int n_full = min(n, max(0, (p.k / kAtomK - ka0 + 1) / 2));  // atoms all inside K
    const int groups_active = (tile.rows_valid + 7) / 8;
    uint32_t act_off[kGroups];
#pragma unroll
    for (int gi = 0; gi < kGroups; ++gi)
      act_off[gi] = uint32_t(Cfg::kWeightStageBytes + min(gi * 8 + g, tile.rows_valid - 1) * Cfg::kActPitch + kw * 128 + 32 * q);
    for (int i = 0; i < n; ++i) {
      if (i > 0) ptx::mbarrier_wait(full_of(stage), phase);
      const uint32_t base = ring0 + uint32_t(stage * Cfg::kStageBytes);
      const uint4 codes = ptx::ld_shared_v4(base + code_off);
      const uint32_t scales = ptx::ld_shared_u16(base + scale_off);
      uint4 act[kGroups][2];
      const bool inside = i < n_full || i * kAtomK * Cfg::kKWarps < k_left;
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        if (gi > 0 && gi >= groups_active) break;
        act[gi][0] = inside ? ptx::ld_shared_v4(base + act_off[gi]) : make_uint4(0, 0, 0, 0);
        act[gi][1] = inside ? ptx::ld_shared_v4(base + act_off[gi] + 16) : make_uint4(0, 0, 0, 0);
      }
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(empty_of(stage));  // this warp is done reading the stage
      if (++stage == kStages) {
        stage = 0;
        phase ^= 1u;
      }
      const uint32_t code_w[4] = {codes.x, codes.y, codes.z, codes.w};
      const uint32_t s_r0 = scale_to_bf16x2<0>(scales), s_r8 = scale_to_bf16x2<1>(scales);
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        uint32_t a[4];
        dequant_a_frag(code_w[s], s_r0, s_r8, a);
#pragma unroll
        for (int gi = 0; gi < kGroups; ++gi) {
          if (gi > 0 && gi >= groups_active) break;
          const uint4& v = act[gi][s / 2];
          ptx::mma_m16n8k16_bf16(acc[s % Cfg::kAccSets][gi], a, s % 2 ? v.z : v.x, s % 2 ? v.w : v.y);
        }
      }
    }
    epilogue(tile, grouped ? t / p.splits : tile.n_block * tok_tiles_single + tile.tok_tile);
  }
}

}  // namespace nvfp4moe::kernels
