// NVFP4 quantization of large tensors whose width is a multiple of 512 (every model width) with
// the input streamed into shared memory by bulk copies: per-expert (with the optional gather),
// the fused SiLU*Mul + per-expert quantization, and one matrix (quantize, the runtime scale's
// quantize pass: QuantizeParams::off == nullptr). The walk (steps of kChunks x 256 elements of
// one row), the expert tables and the outputs are those of the row-step kernel
// (quantize_rows_sm90.cuh), so both write the same bytes; what differs:
//
//   row-step kernel:  registers hold one step per warp, loaded while the previous step is
//                     quantized; lanes 2i, 2i+1 share each 16-element block (quantize_pair8);
//   this kernel:      each warp owns a ring of kBulkStages step buffers in shared memory;
//                     lane 0 refills a buffer with the step kBulkStages ahead as soon as the
//                     warp has quantized it (cp.async.bulk, completing on the buffer's
//                     mbarrier), so kBulkStages - 1 steps per warp are in flight while it
//                     computes, at no register cost; and each lane quantizes whole blocks
//                     (lane l: blocks l, l + 32, ... of the step; quantize_block16), so the
//                     block's scale work is done once per 16 elements and needs no shuffle.
//
// Why: the row-step kernel stalls on its loads (Nsight Compute, H100, M = 65536, K = 7168:
// 46% of the stall samples on the first use of a step's loaded registers, DRAM 62% busy), and
// more register loads in flight cost occupancy and measured slower (docs/results/quantize.md).
// The ring decode GEMM moved from register loads to a bulk-copy ring and went from 89% to 98%
// of copy bandwidth on the same machine.
//
// Measured (H200, docs/results/quantize.md): 10-21% faster than the register kernels at
// M = 65536, lane blocks 8-12% of that; off by default for now (cuda/quantize.h
// set_quantize_bulk). Each warp's ring is private: no block barrier after the tables, no
// producer warp. A step whose row holds no input (past the bound, or a bad gather entry)
// completes its buffer's phase with a plain arrive and is quantized from zeros, exactly as the
// row-step kernel does.
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/ptx/async_copy_sm90.cuh"
#include "nvfp4moe/kernels/ptx/bulk_copy_sm90.cuh"
#include "nvfp4moe/kernels/ptx/mbarrier_sm90.cuh"
#include "nvfp4moe/kernels/quantize_rows_sm90.cuh"

namespace nvfp4moe::kernels {

inline constexpr int kBulkStages = 3;       // step buffers per warp (2 steps in flight while one computes);
                                            // the launcher can take 2 or 5 for A/B runs
inline constexpr int kBulkBlocksPerSm = 3;  // launch bound; the launcher sizes the grid by occupancy

// Bytes of one step buffer: kChunks x 512 B of input (gate, then up, with the SiLU input).
template <typename T, bool kSilu, int kChunks>
inline constexpr uint32_t kBulkStepBytes = uint32_t(kChunks * kWalkChunkElems * sizeof(T)) * (kSilu ? 2u : 1u);

// Dynamic shared memory of one block: every warp's ring.
template <typename T, bool kSilu, int kChunks, int kStages = kBulkStages>
inline constexpr int kBulkRingBytes = (kQuantThreads / 32) * kStages * int(kBulkStepBytes<T, kSilu, kChunks>);

// Issues step `st` into the buffer at `dst` (barrier `bar`); rows >= bound or a bad gather entry
// load nothing (the phase completes by a plain arrive). All lanes call it (the gather entry is
// read by every lane, a broadcast); lane 0 issues. Returns whether the gather entry was bad.
template <typename T, bool kSilu, int kChunks>
__device__ __forceinline__ bool issue_step(const QuantizeParams& p, const RowStepWalk& st, int32_t bound, uint32_t dst,
                                           uint32_t bar, int lane) {
  constexpr int32_t kStepElems = kChunks * kWalkChunkElems;
  constexpr uint32_t kHalf = uint32_t(kStepElems * sizeof(T));
  bool bad = false;
  const T* src = step_source<T>(p, st.row, st.seg * kStepElems, bound, /*lane=*/0, &bad);
  if (lane == 0) {
    if (src != nullptr) {
      ptx::mbarrier_arrive_expect_tx(bar, kBulkStepBytes<T, kSilu, kChunks>);
      ptx::bulk_copy_g2s(dst, src, kHalf, bar);
      if constexpr (kSilu) ptx::bulk_copy_g2s(dst + kHalf, src + p.k, kHalf, bar);
    } else {
      ptx::mbarrier_arrive(bar);
    }
  }
  return bad;
}

// Block i of this lane in a step: block j = lane + 32 i of the step, read from the step buffer
// at buf (this lane's block 0), quantized whole by the lane
// (quantize_block16: the block's scale work once per 16 elements, no shuffle), 8 code bytes
// stored (256 contiguous bytes per warp), and the scale word of blocks 4k .. 4k+3 stored by
// lane 4k. Zero codes for a row without data. All 32 lanes call it.
// kGemmValues: the block's 16 quantized values in the GEMM's K order instead (data rows only;
// quantize_rows_sm90.cuh gemm_values_lane_offset: block i of the lane starts 256 pairs further).
template <typename T, bool kSilu, bool kLimit, bool kGemmValues = false>
__device__ __forceinline__ void quantize_lane_block(const QuantizeParams& p, const StepOut& o, const ExpertCache& ec,
                                                    int i, uint32_t buf, uint32_t up_offset, bool load, int lane) {
  uint2* codes = kGemmValues ? nullptr : reinterpret_cast<uint2*>(o.codes) + 32 * i;
  if (!o.data) {
    if constexpr (!kGemmValues) *codes = make_uint2(0u, 0u);
    return;
  }
  uint4 w0 = make_uint4(0u, 0u, 0u, 0u), w1 = w0, u0 = w0, u1 = w0;
  if (load) {
    w0 = ptx::ld_shared_v4(buf);
    w1 = ptx::ld_shared_v4(buf + 16);
    if constexpr (kSilu) {
      u0 = ptx::ld_shared_v4(buf + up_offset);
      u1 = ptx::ld_shared_v4(buf + up_offset + 16);
    }
  }
  if constexpr (kSilu) {
    w0 = silu_mul_pack8<T, kLimit>(w0, u0, p.limit);
    w1 = silu_mul_pack8<T, kLimit>(w1, u1, p.limit);
  }
  uint32_t s;
  if constexpr (kGemmValues) {
    const uint2 c = quantize_block16<T>(w0, w1, ec.g, ec.g_inv, &s);
    uint32_t* dst = o.value_pairs + 256 * i;
    store_value_pairs_strided(dst, block_values_bf16x8(c.x, s));       // natural pairs 0-3
    store_value_pairs_strided(dst + 16, block_values_bf16x8(c.y, s));  // natural pairs 4-7
    return;
  }
  *codes = quantize_block16<T>(w0, w1, ec.g, ec.g_inv, &s);
  const uint32_t word = scale_word_of_group(s, lane);
  if ((lane & 3) == 0) *reinterpret_cast<uint32_t*>(o.scale_word + i * 8 * kScaleTileBytes) = word;
}

// kChunks: chunks per warp step, even ((K / 256) % kChunks == 0): a step is kChunks / 2 lane
// blocks per lane. kStages: step buffers per warp (kBulkStages; 2 or 5 for A/B runs).
// kGemmValues: the output is p.values alone, in the GEMM's K order (data rows only).
template <typename T, bool kSilu, bool kLimit, int kChunks, int kStages = kBulkStages, bool kGemmValues = false>
__global__ void __launch_bounds__(kQuantThreads, kBulkBlocksPerSm) quantize_nvfp4_bulk_kernel(QuantizeParams p) {
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h), as the row-step kernel
  constexpr int kWarps = kQuantThreads / 32;
  constexpr int32_t kStepElems = kChunks * kWalkChunkElems;
  constexpr uint32_t kStepBytes = kBulkStepBytes<T, kSilu, kChunks>;
  constexpr uint32_t kHalf = uint32_t(kStepElems * sizeof(T));
  __shared__ ExpertTables t;
  __shared__ __align__(8) uint64_t bars[kWarps][kStages];
  extern __shared__ __align__(128) uint8_t ring[];
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const uint32_t ring0 = uint32_t(__cvta_generic_to_shared(ring)) + uint32_t(warp * kStages) * kStepBytes;
  const uint32_t bar0 = uint32_t(__cvta_generic_to_shared(&bars[warp][0]));
  if (lane == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) ptx::mbarrier_init(bar0 + 8 * s, 1);
    ptx::fence_mbarrier_init();
  }
  __syncwarp();
  RowStepWalk walk, issue;
  walk.init(p, p.k / kStepElems);
  issue = walk;
  const int32_t cap = walk.end_row;  // this warp's rows end here (the capacity, or its range's end)
  // The first kStages steps before the tables: rows up to the capacity (off[E] is not known
  // yet; rows past it are loaded and then written as zero codes).
  uint32_t bad_bits = 0;  // bit s: the step in buffer s had a bad gather entry (warp-uniform)
#pragma unroll
  for (int s = 0; s < kStages; ++s) {
    if (issue.row < cap) {
      if (issue_step<T, kSilu, kChunks>(p, issue, cap, ring0 + s * kStepBytes, bar0 + 8 * s, lane)) bad_bits |= 1u << s;
      issue.advance();
    }
  }
  const int E = build_expert_tables(p, t);
  const int32_t nq = int32_t(padded_scale_cols(p.k) / 4);
  zero_scales_outside_data(p, t, nq);
  const int32_t total = t.off[E];
  ExpertCache ec;
  int slot = 0;
  uint32_t phase = 0;  // parity of the buffers' current use (flips when the ring wraps)
  while (walk.row < cap) {
    const bool bad = (bad_bits >> slot) & 1u;
    const StepOut out =
        begin_step</*kLaneBlocks=*/true, kGemmValues>(p, t, E, ec, walk.row, walk.seg * kStepElems, total, nq, bad, lane);
    ptx::mbarrier_wait(bar0 + 8 * slot, phase);
    static_assert(kChunks % 2 == 0, "a step holds 32 lane blocks per two chunks");
    const uint32_t buf = ring0 + uint32_t(slot) * kStepBytes + uint32_t(lane) * 32;
#pragma unroll
    for (int i = 0; i < kChunks / 2; ++i) {
      quantize_lane_block<T, kSilu, kLimit, kGemmValues>(p, out, ec, i, buf + i * 32 * 32, kHalf, !bad, lane);
    }
    // Every lane's reads of this buffer are done (their values were used above): refill it.
    __syncwarp();
    bad_bits &= ~(1u << slot);
    if (issue.row < cap) {
      if (issue_step<T, kSilu, kChunks>(p, issue, total, ring0 + uint32_t(slot) * kStepBytes, bar0 + 8 * slot, lane)) {
        bad_bits |= 1u << slot;
      }
      issue.advance();
    }
    walk.advance();
    if (++slot == kStages) {
      slot = 0;
      phase ^= 1u;
    }
  }
}

}  // namespace nvfp4moe::kernels
