// The prefill NVFP4 GEMM with a warp-specialized pipeline (sm_90a): the same math and stage
// layout as the 256-row CTA of gemm_w4a16_sm90.cuh (token tiles 64, 128 and 160, no split of
// K), with the loads taken out of the MMA warps:
//
//   warpgroup 0 (producer, 40 registers; 64 with 4 consumers): one thread walks the CTA's
//     (tile, K stage) sequence and fills each free slot with two TMA boxes of the activation
//     tile (128-byte swizzle) and one bulk copy per 64-row weight block, completing on the
//     slot's `full` mbarrier;
//   warpgroups 1, 2 (consumers, 232 registers): each owns 128 weight rows (two 64-row blocks,
//     two accumulator sets; at token tile 64 optionally warpgroups 1-4 of one block each at 104
//     registers, v34, GemmWsConfig) and waits only for its data: per k16 step it dequantizes and
//     issues one wgmma per block, and each thread arrives on the slot's `empty` mbarrier once
//     the wgmma that read it have retired. At the end of a tile each stores its bf16 outputs
//     through shared memory in 16-byte chunks (ws_store_tile_staged, the default) or element
//     by element (fp32 output, N % 8 != 0, or GemmW4A16Params::staged_epilogue == 0).
//
// Against the cp.async kernel: no thread of an MMA warp computes a copy address or waits at a
// CTA-wide barrier, so a straggling warp no longer stalls the others at every stage, and the
// producer runs up to kStages-1 stages ahead across tile boundaries. Token tiles are balanced
// (gemm_scheduler_sm90.cuh: r rows in ceil(r / kTok) tiles of about equal size; a single GEMM
// may ask for tiles of at most p.tile_rows < kTok rows, a tile count fitted to whole waves) and
// each runs the narrowest MMA (32, 64, 96, 128, 160 tokens) covering its rows. Against that kernel's TMA
// variant (v9, thread 0 issuing inside its own MMA stream, measured slower): the producer has a
// warpgroup of its own. Each output element sees the same k16 wgmma sequence as in the
// 4-warpgroup kernel (only the MMA's token width and the tile bounds differ, and an element's
// sum does not depend on them), so the two kernels' outputs are identical bit for bit.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"
#include "nvfp4moe/kernels/ptx/bulk_copy_sm90.cuh"
#include "nvfp4moe/kernels/ptx/epilogue_sm90.cuh"
#include "nvfp4moe/kernels/ptx/mbarrier_sm90.cuh"
#include "nvfp4moe/kernels/ptx/named_barrier_sm90.cuh"
#include "nvfp4moe/kernels/ptx/setmaxnreg_sm90.cuh"

namespace nvfp4moe::kernels {

// Tensor maps of the activations [rows, Kp] bf16 in the prepared K order, box 64 columns x
// ws_width(i) rows, 128-byte swizzle: a tile's producer loads the box of its MMA width
// (gemm_balanced_tiles.h), so a 100-row tile of a token-tile-160 kernel moves 128 rows, not
// 160. Rows past `rows` are zero-filled by the TMA unit; rows of the next expert are loaded and
// never stored. Entries wider than the kernel's kTok are unused.
struct WsActMaps {
  CUtensorMap box[kWsWidths];
};

// kConsumers: 2 consumer warpgroups of two 64-row blocks each (every token tile), or 4 of one block
// each (token tile 64, v34): the same MMAs, twice the warps to hide the latency of each k16 step's
// dequantize -> wgmma -> wait chain where the MMAs are narrow (32 tokens at 32 rows per expert).
template <int kTok, int kStep = 32, int kConsumers = 2>
struct GemmWsConfig {
  static_assert(kTok == 64 || kTok == 128 || kTok == 160, "the warp-specialized kernel takes token tiles 64, 128, 160");
  static constexpr int kTokTile = kTok;
  static_assert(kConsumers == 2 || (kConsumers == 4 && kTok == 64),
                "4 consumer warpgroups: token tile 64 only (their 104 registers hold 32 accumulators a block)");
  using Stage = GemmW4A16Config<kTok, 4>;  // stage = the activation tile, then 4 row blocks x 2 atoms
  static constexpr int kConsumerWarpGroups = kConsumers;
  static constexpr int kBlocksPerConsumer = 4 / kConsumers;   // 64-row blocks of the CTA's 256 rows
  static constexpr int kThreads = 128 * (1 + kConsumerWarpGroups);
  static constexpr int kBlockN = Stage::kBlockN;              // 256
  static constexpr int kStages = Stage::kStages;
  static constexpr int kStageBytes = Stage::kStageBytes;
  static constexpr int kActSubBytes = Stage::kActSubBytes;
  static constexpr int kActBytes = Stage::kActBytes;
  static constexpr int kAtomsK = Stage::kAtomsK;
  static constexpr int kBlockBytes = kAtomsK * kAtomBytes;   // one 64-row block's run per stage
  static constexpr int kSmemBytes = Stage::kSmemBytes;
  // A-fragment buffers: wgmma in flight per warpgroup + 1. Each RS wgmma pins its 4 A
  // registers until it retires. Token tile 160: 160 accumulators leave room for 2 (ptxas with 4:
  // C7512, every wgmma serialized for lack of registers); one m64n160k16 per warpgroup in flight
  // while the next fragment is dequantized still keeps two queued at the tensor core.
  static constexpr int kABuffers = kTok > 128 ? 2 : 4;
  // setmaxnreg moves registers within the CTA's launch allocation (kThreads x kLaunchRegs, the
  // most __launch_bounds__(kThreads, 1) allows in units of 8): 2 consumers: 128 x 40 + 256 x 232 =
  // 64512 = 384 x 168; 4 consumers: 128 x 64 + 512 x 104 = 61440 = 640 x 96.
  static constexpr int kLaunchRegs = 65536 / (128 * (1 + kConsumers)) / 8 * 8;
  static constexpr int kProducerRegs = kConsumers == 2 ? 40 : 64;
  static constexpr int kConsumerRegs = kConsumers == 2 ? 232 : 104;
  static_assert(128 * kProducerRegs + 128 * kConsumers * kConsumerRegs <= 128 * (1 + kConsumers) * kLaunchRegs,
                "the warpgroups' registers fit the launch allocation");
  static constexpr uint32_t kConsumerThreads = 128 * kConsumerWarpGroups;
  static_assert(kStep == 16 || kStep == 32, "MMA widths in steps of 16 or 32 tokens");
  static_assert(kStep == 32 || kTok == 160, "steps of 16: the token-tile-160 kernel only");
  static constexpr int kMaxWidthIndex = kTok / 16 - 1;  // ws_width(i) == kTok
  static_assert(ws_width(kMaxWidthIndex) == kTok, "the widest MMA is the token tile");
  static_assert(kConsumerWarpGroups * kBlocksPerConsumer * 64 == kBlockN, "the consumers cover the CTA's rows");
  // The staged epilogue (ws_store_tile_staged): each consumer stages passes of kStagedPassTokens
  // tokens x its 64 kBlocksPerConsumer columns, a token's row padded by 16 bytes so the 8 rows of a
  // stmatrix land in distinct banks; all consumers' buffers share the last K stage's slot.
  static constexpr int kStagedRowBytes = kBlocksPerConsumer * 64 * 2 + 16;
  static constexpr int kStagedPassTokens = kBlocksPerConsumer == 2 ? 64 : 32;
  static constexpr int kStagedConsumerBytes = kStagedPassTokens * kStagedRowBytes;  // 17408 or 4608
  static_assert(kConsumerWarpGroups * kStagedConsumerBytes <= kStageBytes, "the staged epilogue fits one stage slot");
};

// The staged epilogue (GemmW4A16Params::staged_epilogue). The direct one has each thread store
// its 2-byte elements: a warp's store covers 4 token rows x 16 bytes, half of each 32-byte sector,
// and a consumer issues kTok store instructions per tile (ncu: ~50% excess sectors). Staged: the
// accumulators go into shared memory by stmatrix (transposed: a token's columns contiguous), then
// each thread copies whole 16-byte chunks of token rows to global memory, 8x fewer and full-sector
// stores. The staging buffer is the slot of the tile's last K stage: the consumers release that
// slot only during the next tile's first stage, so the producer cannot be filling it, and the
// consumers meet once (named barrier) before any overwrites the activations another's last wgmma
// read. Per consumer and pass: Cfg::kStagedPassTokens tokens x its columns
// (two consumers: 64 tokens x 128 columns, kTok 160 in passes of 64, 64, 32; four: 32 x 64).
//
// Consumer c's staged store of its 64 kBlocksPerConsumer columns x the tile's valid tokens.
// acc[b][r]: block b (64 columns), thread rows n0 + 8 ((r / 2) % 2) x tokens 8 (r / 4) + 2 (lane %
// 4) + (r % 2), as in the direct epilogue; the same values (acc * kDequantRescale * alpha, rounded
// to bf16).
template <class Cfg>
__device__ __forceinline__ void ws_store_tile_staged(float (&acc)[Cfg::kBlocksPerConsumer][Cfg::kTokTile / 2],
                                                     const GemmW4A16Params& p, const GemmTile& tile, int c, int tid_c,
                                                     uint32_t staging, float a_lo, float a_hi) {
  constexpr int kTok = Cfg::kTokTile;
  constexpr int kB = Cfg::kBlocksPerConsumer;
  constexpr int kRowBytes = Cfg::kStagedRowBytes;
  constexpr int kChunks = kB * 8;  // 16-byte chunks (8 columns) of a token's row
  const int warp_c = tid_c / 32, lane = tid_c % 32;
  const int col0 = tile.n_block * 256 + c * kB * 64;  // this consumer's first output column
  const uint32_t buf = staging + uint32_t(c * Cfg::kStagedConsumerBytes);
  float scale[kB][2];  // alpha of the thread's rows: block b, half h (rows n0, n0 + 8)
#pragma unroll
  for (int b = 0; b < kB; ++b)
#pragma unroll
    for (int h = 0; h < 2; ++h) scale[b][h] = col0 + b * 64 + warp_c * 16 + lane / 4 + 8 * h < p.n / 2 ? a_lo : a_hi;
  // stmatrix.x4: matrix i = lane / 8 is (token group g + i / 2, row half i % 2); lane gives the
  // address of its memory row lane % 8, i.e. token 8 (g + i / 2) + lane % 8.
  const int mi = lane / 8, mrow = lane % 8;
  auto* out = static_cast<__nv_bfloat16*>(p.out);
  constexpr int kGroups = kTok / 8;
  constexpr int kPasses = (kTok + Cfg::kStagedPassTokens - 1) / Cfg::kStagedPassTokens;
#pragma unroll
  for (int pass = 0; pass < kPasses; ++pass) {
    constexpr int kPassGroups = Cfg::kStagedPassTokens / 8;
    const int g0 = pass * kPassGroups;
    const int groups = kGroups - g0 < kPassGroups ? kGroups - g0 : kPassGroups;
    if (pass > 0) ptx::named_barrier_sync(2 + c, 128);  // the previous pass's chunks are out
#pragma unroll
    for (int b = 0; b < kB; ++b) {
#pragma unroll
      for (int gg = 0; gg < groups; gg += 2) {
        uint32_t r[4];
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          const int ri = 4 * (g0 + gg + m / 2) + 2 * (m % 2);  // tokens 2q, 2q + 1 of row half m % 2
          const float s = scale[b][m % 2];
          const __nv_bfloat162 v = __floats2bfloat162_rn(acc[b][ri] * kDequantRescale * s,
                                                         acc[b][ri + 1] * kDequantRescale * s);
          r[m] = *reinterpret_cast<const uint32_t*>(&v);
        }
        const int tok_l = (gg + mi / 2) * 8 + mrow, col_l = b * 64 + warp_c * 16 + 8 * (mi % 2);
        ptx::stmatrix_x4_trans(buf + uint32_t(tok_l * kRowBytes + col_l * 2), r[0], r[1], r[2], r[3]);
      }
    }
    ptx::named_barrier_sync(2 + c, 128);  // the pass is staged
    for (int idx = tid_c; idx < groups * 8 * kChunks; idx += 128) {
      const int tok_l = idx / kChunks, chunk = idx % kChunks;
      const int tok = g0 * 8 + tok_l, n = col0 + chunk * 8;
      if (tok < tile.rows_valid && n < p.n) {
        *reinterpret_cast<uint4*>(out + (int64_t(tile.row0) + tok) * p.n + n) =
            ptx::ld_shared_v4(buf + uint32_t(tok_l * kRowBytes + chunk * 16));
      }
    }
  }
  // The slot's next writer is the producer's TMA (async proxy), after this thread's release.
  ptx::fence_proxy_async_smem();
}

// p.n_blocks counts 256-row blocks; p.splits must be 1 (the launcher checks it).
// kStep: MMA widths in steps of kStep tokens (gemm_balanced_tiles.h ws_width_index); kConsumers:
// consumer warpgroups (GemmWsConfig).
template <int kTok, int kStep = 32, int kConsumers = 2>
__global__ void __launch_bounds__(GemmWsConfig<kTok, kStep, kConsumers>::kThreads, 1)
    gemm_w4a16_ws_sm90_kernel(const GemmW4A16Params p, const __grid_constant__ WsActMaps act_maps) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  using Cfg = GemmWsConfig<kTok, kStep, kConsumers>;
  constexpr int kStages = Cfg::kStages;
  constexpr int kBufs = Cfg::kABuffers;
  constexpr int kSteps = Cfg::kAtomsK * 4 * Cfg::kBlocksPerConsumer;  // wgmma per stage
  static_assert(kSteps % kBufs == 0, "buffer rotation must repeat every stage");
  extern __shared__ uint8_t smem_raw[];
  __shared__ int s_off[kMaxExperts + 1];
  __shared__ int s_prefix[kMaxExperts + 1];
  // full[kStages], empty[kStages], spare
  __shared__ uint64_t s_bar[2 * kStages + 1];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const uint32_t smem_base = ptx::smem_addr(smem);
  const uint32_t bar_base = ptx::smem_addr(s_bar);
  auto full_bar = [&](int slot) { return bar_base + uint32_t(slot) * 8u; };
  auto empty_bar = [&](int slot) { return bar_base + uint32_t(kStages + slot) * 8u; };
  const uint32_t spare_bar = bar_base + uint32_t(2 * kStages) * 8u;  // stage 0's release: nothing to free

  const int tid = threadIdx.x, wg = tid / 128;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(full_bar(s), 1);  // the producer's arrive.expect_tx
      ptx::mbarrier_init(empty_bar(s), Cfg::kConsumerThreads);
    }
    ptx::mbarrier_init(spare_bar, Cfg::kConsumerThreads);
    ptx::fence_mbarrier_init();
#pragma unroll
    for (int i = 0; i < kWsWidths; ++i)
      if (ws_width(i) <= kTok) ptx::prefetch_tensor_map(&act_maps.box[i]);
  }
  const bool grouped = p.off != nullptr;
  const int tile_rows = p.tile_rows > 0 && p.tile_rows < kTok ? p.tile_rows : kTok;  // single GEMMs
  int total_tiles;
  if (grouped) {  // both end with a CTA barrier, which also publishes the mbarrier inits
    load_offsets(p.off, p.num_experts, p.rows, s_off);
    total_tiles = build_tile_prefix<kTok>(s_off, p.num_experts, p.n_blocks, s_prefix, p.expert_rows_lo, p.expert_rows_hi);
  } else {
    total_tiles = p.n_blocks * ((p.rows + tile_rows - 1) / tile_rows);
    __syncthreads();
  }
  auto tile_of = [&](int t) {
    return grouped ? grouped_tile_balanced<kTok>(t, s_off, s_prefix, p.num_experts)
                   : single_tile_balanced(t, p.rows, p.n_blocks, tile_rows);
  };
  const int k_atoms = p.k_stages * Cfg::kAtomsK;

  if (wg == 0) {  // ---- producer ----------------------------------------------------------------
    ptx::setmaxnreg_dec<Cfg::kProducerRegs>();
    if (tid != 0) return;
    const int row_blocks64 = int(prepared_rows(p.n) / kAtomRows);
    int slot = 0, round = 0;
    for (int t = blockIdx.x; t < total_tiles; t += gridDim.x) {
      const GemmTile tile = tile_of(t);
      // Row blocks past Np (the second half of a CTA when Np = 128 mod 256) are not loaded:
      // their consumer computes on stale shared memory, rows the epilogue masks.
      const int w_blocks = min(4, row_blocks64 - tile.n_block * 4);
      // The activation box of the tile's MMA width (ws_width_index, as the consumers choose it).
      const int box = min(ws_width_index(tile.rows_valid, kStep), Cfg::kMaxWidthIndex);
      const CUtensorMap* act_map = &act_maps.box[box];
      const uint32_t tx_bytes = 2u * uint32_t(ws_width(box)) * 128u + uint32_t(w_blocks) * Cfg::kBlockBytes;
      const uint8_t* wsrc = p.w + tile.expert * p.w_expert_bytes + int64_t(tile.n_block) * 4 * k_atoms * kAtomBytes;
      for (int ks = 0; ks < p.k_stages; ++ks) {
        // Round r > 0 reuses the slot of stage i - kStages: wait for its (r-1)-th release.
        if (round > 0) ptx::mbarrier_wait(empty_bar(slot), uint32_t(round - 1) & 1u);
        const uint32_t full = full_bar(slot);
        const uint32_t st = smem_base + uint32_t(slot) * Cfg::kStageBytes;
        ptx::mbarrier_arrive_expect_tx(full, tx_bytes);
        const int x = ks * kWeightKPad;
        ptx::tma_load_2d(st, act_map, x, tile.row0, full);
        ptx::tma_load_2d(st + Cfg::kActSubBytes, act_map, x + kWeightKPad / 2, tile.row0, full);
        for (int g = 0; g < w_blocks; ++g) {
          ptx::bulk_copy_g2s(st + Cfg::kActBytes + g * Cfg::kBlockBytes,
                             wsrc + (int64_t(g) * k_atoms + int64_t(ks) * Cfg::kAtomsK) * kAtomBytes, Cfg::kBlockBytes,
                             full);
        }
        if (++slot == kStages) {
          slot = 0;
          ++round;
        }
      }
    }
    return;
  }

  // ---- consumers: warpgroup c owns row blocks kB c .. kB c + kB - 1 of the CTA's 256 rows -----------
  ptx::setmaxnreg_inc<Cfg::kConsumerRegs>();
  const int c = wg - 1, tid_c = tid % 128, warp_c = tid_c / 32, lane = tid % 32;
  float acc[Cfg::kBlocksPerConsumer][kTok / 2];
  uint32_t buf[kBufs][4];
  zero_fragment_buffers(buf);
#pragma unroll
  for (int b = 0; b < Cfg::kBlocksPerConsumer; ++b) zero_accumulators(acc[b]);

  int i = 0;  // this CTA's stage count: stage i sits in slot i % kStages
  for (int t = blockIdx.x; t < total_tiles; t += gridDim.x) {
    const GemmTile tile = tile_of(t);
    // The narrowest MMA that covers the tile's rows (balanced tiles hold r / q rows), on the
    // box the producer loaded for them.
    const int width_index = min(ws_width_index(tile.rows_valid, kStep), Cfg::kMaxWidthIndex);
    for (int ks = 0; ks < p.k_stages; ++ks, ++i) {
      const int slot = i % kStages;
      ptx::mbarrier_wait(full_bar(slot), uint32_t(i / kStages) & 1u);  // stage i has landed
      const uint32_t act = smem_base + uint32_t(slot) * Cfg::kStageBytes;
      const uint32_t wsm = act + Cfg::kActBytes + uint32_t(c * Cfg::kBlocksPerConsumer) * Cfg::kBlockBytes;
      // One stage at token width kN <= kTok (the first kN/2 accumulators of the kTok layout are
      // the m64nkN accumulators). wgmma j of the stage: k16 step j / kB of block j % kB
      // (kB = Cfg::kBlocksPerConsumer).
      auto mma_stage = [&]<int kN>() {
#pragma unroll
        for (int at = 0; at < Cfg::kAtomsK; ++at) {
          AtomFragments f[Cfg::kBlocksPerConsumer];
#pragma unroll
          for (int b = 0; b < Cfg::kBlocksPerConsumer; ++b)
            f[b] = load_atom_fragments(wsm + b * Cfg::kBlockBytes + at * kAtomBytes, tid_c);
#pragma unroll
          for (int s = 0; s < 4; ++s) {
#pragma unroll
            for (int b = 0; b < Cfg::kBlocksPerConsumer; ++b) {
              const int j = (at * 4 + s) * Cfg::kBlocksPerConsumer + b;
              uint32_t(&a)[4] = buf[j % kBufs];
              dequant_a_frag(f[b].code_w[s], f[b].s_r0, f[b].s_r8, a);
              ptx::wgmma_fence();
              // A tile's first k16 step overwrites the accumulators (scale-d 0) instead of
              // adding to zeros written after the last tile's epilogue (a pass over all
              // kTok accumulators, ~5% of a consumer's time at the Qwen3 w2 shape).
              const int accumulate = at > 0 || s > 0 || ks > 0;
              ptx::WgmmaRS<kN>::mma(acc[b], a, ptx::smem_desc_k128b(act + at * Cfg::kActSubBytes + s * 32), accumulate);
              ptx::wgmma_commit();
              ptx::wgmma_wait<kBufs - 1>();
              // After the wait that follows wgmma kBufs-2 of stage i, at most kBufs-1 wgmma
              // of stage i are pending: every wgmma of stage i-1 has retired, so this thread
              // is done with its slot. Every thread arrives, without a branch (stage 0 on a
              // spare barrier): a divergent arrive here makes ptxas serialize every wgmma
              // (C7513).
              if (j == kBufs - 2) ptx::mbarrier_arrive(i > 0 ? empty_bar(slot == 0 ? kStages - 1 : slot - 1) : spare_bar);
            }
          }
        }
      };
      // One case per width the kernel takes (multiples of kStep, at least 32).
      switch (width_index) {
#define NVFP4MOE_WS_WIDTH_CASE(w)                                                          \
  case w:                                                                                  \
    if constexpr (Cfg::kMaxWidthIndex >= w && ws_width(w) % kStep == 0 && ws_width(w) >= 32) \
      mma_stage.template operator()<ws_width(w)>();                                        \
    break;
        NVFP4MOE_WS_WIDTH_CASE(0)
        NVFP4MOE_WS_WIDTH_CASE(1)
        NVFP4MOE_WS_WIDTH_CASE(2)
        NVFP4MOE_WS_WIDTH_CASE(3)
        NVFP4MOE_WS_WIDTH_CASE(4)
        NVFP4MOE_WS_WIDTH_CASE(5)
        NVFP4MOE_WS_WIDTH_CASE(6)
        NVFP4MOE_WS_WIDTH_CASE(7)
        NVFP4MOE_WS_WIDTH_CASE(8)
        NVFP4MOE_WS_WIDTH_CASE(9)
#undef NVFP4MOE_WS_WIDTH_CASE
      }
      static_assert(kWsWidths == 10, "one case per width");
    }

    // Epilogue (as the 4-warpgroup kernel's, block g = 2c + b): thread holds rows n0, n0 + 8
    // x tokens 8j + 2q + {0, 1}.
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int b = 0; b < Cfg::kBlocksPerConsumer; ++b) fence_accumulators(acc[b]);
    const int q = lane % 4, half_n = p.n / 2;
    const float a_lo = p.alpha[2 * tile.expert], a_hi = p.alpha[2 * tile.expert + 1];
    if (p.staged_epilogue) {
      ptx::named_barrier_sync(1, Cfg::kConsumerThreads);  // every consumer's wgmma are done with the slot
      const uint32_t staging = smem_base + uint32_t((i - 1) % kStages) * Cfg::kStageBytes;
      ws_store_tile_staged<Cfg>(acc, p, tile, c, tid_c, staging, a_lo, a_hi);
    } else {
#pragma unroll
      for (int b = 0; b < Cfg::kBlocksPerConsumer; ++b) {
        const int n0 = tile.n_block * Cfg::kBlockN + (c * Cfg::kBlocksPerConsumer + b) * 64 + warp_c * 16 + lane / 4;
#pragma unroll
        for (int r = 0; r < kTok / 2; ++r) {
          const int tok = 8 * (r / 4) + 2 * q + (r % 2), n = n0 + 8 * ((r / 2) % 2);
          if (tok < tile.rows_valid && n < p.n) {
            const int64_t m = tile.row0 + tok;
            const float v = acc[b][r] * kDequantRescale * (n < half_n ? a_lo : a_hi);
            if (p.out_f32) static_cast<float*>(p.out)[m * p.n + n] = v;
            else static_cast<__nv_bfloat16*>(p.out)[m * p.n + n] = __float2bfloat16_rn(v);
          }
        }
      }
    }
  }
  ptx::wgmma_wait<0>();
}

}  // namespace nvfp4moe::kernels
