// The GEMM launchers' tuning switches (the set_gemm_* setters of cuda/gemm.h): the state of each,
// read by the plan and the launchers in gemm.cu. A switch's value is its setter's when set, else
// its environment variable's (read once), else the default that the measurements chose, for the
// sources a switch has (a few have only one; each accessor's comment in gemm_switches.cpp says). Host code only, no device reads; like the
// setters, process-wide and not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "nvfp4moe/cuda/gemm_token_tiles.h"

namespace nvfp4moe::cuda::gemm_switches {

// set_gemm_plan_override: 0 (or -1 for prefetch_atoms) leaves the heuristics' choice.
int token_tile_override();

// The grouped token-tile steps (cuda/gemm_token_tiles.h): NVFP4MOE_GEMM_GROUPED_TOK when set
// (read once), else the default.
const std::vector<GroupedTokStep>& grouped_tok_steps();
int split_override();
int prefetch_atoms_override();
int block_n_override();

// Hot-expert row threshold of grouped calls: set_gemm_hot_expert_rows, else NVFP4MOE_GEMM_HOT;
// -1 when neither (the heuristics decide).
int hot_rows_setting();

// Decode kernel: wide CTA K warps forced (2 or 4; -1: heuristics), ring kernel or register
// kernel, claimed tiles, L2 prefetch distances.
int decode_k_warps_setting();
bool decode_ring(bool grouped, bool wide);
bool decode_claiming(int64_t max_tiles, int64_t grid, bool ring);
int decode_prefetch_atoms_grouped();
int64_t decode_prewait_bytes();
inline constexpr int kDecodePrefetchAtomsSingle = 0;

// Warp-specialized wgmma kernel.
bool ws_pipeline();
bool ws_tile_160();
int ws_width_step();
int ws_consumers_tile64();
bool ws_staged_epilogue();
bool ws_single_fit();
bool ws_single_persistent();

// Activation front ends (act_permute, act_dequant): 16-byte chunk stores (1) or 4-byte pieces (0).
int act_chunk_stores();

}  // namespace nvfp4moe::cuda::gemm_switches
