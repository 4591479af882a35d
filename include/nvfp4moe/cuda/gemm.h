// NVFP4 GEMMs on Hopper (sm_90a): weights NVFP4 (prepared by cuda/weights.h), activations
// bf16 (W4A16) or NVFP4 (W4A4), output bf16 or fp32. Single (one weight) and grouped (E experts,
// rows grouped by device offsets). Semantics: docs/GEMM.md and ref/gemm.h (the CPU model):
//
//   out[m, n] = float(sum_k a[m,k] * w[n,k]) * alpha(n),  alpha(n) = alpha[2e] (n < N/2) or
//   alpha[2e+1] (n >= N/2) for the expert e owning row m; the weight values are e2m1 * e4m3
//   (no global scale), the activations bf16 (W4A16) or e2m1 * e4m3 (W4A4, no global scale).
//   Pass alpha = 1/gB (W4A16) or 1/(gA*gB) (W4A4), the same value twice for an unfused weight.
//
// All pointers are device pointers; nothing is read back to the host, nothing is allocated, so
// every call is CUDA-graph capturable (grouped calls for any routing). Requirements (checked,
// Error naming the argument): K % 16 == 0, pointers 16-byte aligned, rows, N, K < 2^31,
// E <= 1024, workspace as large as *_workspace_bytes says. *_workspace_bytes(m, ...) covers
// every call with at most m rows (smaller batches may take another kernel, split count or
// activation layout), so one workspace sized for the largest batch serves all. The workspace
// must be zeroed once after allocation (its split-K and tile-claim counters return to zero at
// the end of every call) and not be shared
// by concurrent calls. Kernels are launched with programmatic dependent launch
// (common/pdl_launch.h; NVFP4MOE_PDL=0 disables it).
// Grouped offsets off [E+1] (int32, device) are read on the device and clamped to [0, rows];
// rows >= off[E] of out are not written.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "nvfp4moe/cuda/weights.h"

namespace nvfp4moe::cuda {

enum class OutDType : int { kBF16 = 0, kFP32 = 1 };

// NVFP4 activations as the quantization kernels write them: codes [rows, K/2]; scales
// swizzled (format/swizzle.h), for grouped calls per expert from scale row sf_off[e]
// (scale_rows rows in all, >= expert_scale_rows_capacity(rows, E)).
struct Nvfp4Act {
  const uint8_t* codes = nullptr;
  const uint8_t* scales = nullptr;
  int64_t scale_rows = 0;  // grouped only
};

// ---- single GEMM: a [m, K], weight w (num_experts must be 1), out [m, N] ----
size_t gemm_w4a16_workspace_bytes(int64_t m, int64_t n, int64_t k);
void gemm_w4a16(const __nv_bfloat16* a, int64_t m, const PreparedWeights& w, const float* alpha,
                void* out, OutDType out_dtype, void* workspace, size_t workspace_bytes,
                cudaStream_t stream);

size_t gemm_w4a4_workspace_bytes(int64_t m, int64_t n, int64_t k);
void gemm_w4a4(const Nvfp4Act& a, int64_t m, const PreparedWeights& w, const float* alpha,
               void* out, OutDType out_dtype, void* workspace, size_t workspace_bytes,
               cudaStream_t stream);

// ---- grouped GEMM: rows [off[e], off[e+1]) of a (rows allocated) use expert e ----
size_t grouped_gemm_w4a16_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts);
// prefetch_before_wait: the kernel before this call on the stream lets its dependents launch
// only after its own griddepcontrol.wait (quantize_experts / silu_and_mul_quantize_experts with
// a values output do), so `off` is complete when this launch begins. The decode kernel (token
// tile <= 16) then prefetches the start of its weights into L2 before it waits, while that
// kernel finishes (docs/GEMM.md v10). A hint only: results never depend on it; without that
// ordering it would prefetch by stale offsets (wasted bandwidth), so it is off by default.
void grouped_gemm_w4a16(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                        const PreparedWeights& w, const float* alpha, void* out,
                        OutDType out_dtype, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream, bool prefetch_before_wait = false);

// ---- grouped W4A16 GEMM on activations already in the GEMM's K order ----
// Whether grouped_gemm_w4a16 of this shape runs the prefill (wgmma) kernel, whose activation
// operand is each row in the GEMM's K order (cuda::ValuesOrder::kGemm, quantize.h) and K % 128
// == 0 (no column padding). Then a caller may hand that operand in directly:
// grouped_gemm_w4a16_gemm_order skips the permute launch of grouped_gemm_w4a16 (the MoE layer's
// quantizers write it so at prefill sizes, which also saves the W4A4 dequantize launch).
bool grouped_gemm_takes_gemm_order(int64_t rows, int64_t n, int64_t k, int num_experts);
// As grouped_gemm_w4a16 with a [rows, K] in the GEMM's K order; requires
// grouped_gemm_takes_gemm_order(rows, w.n, w.k, w.num_experts). Its workspace holds no
// activations (the split-K counters only, zeroed once, as for the other calls).
size_t grouped_gemm_w4a16_gemm_order_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts);
void grouped_gemm_w4a16_gemm_order(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                                   const PreparedWeights& w, const float* alpha, void* out,
                                   OutDType out_dtype, void* workspace, size_t workspace_bytes,
                                   cudaStream_t stream);

// ---- grouped W4A16 GEMM followed by the MoE combine (the layer's GEMM2 at small batches) ----
// out [rows, N] bf16 receives the GEMM rows as grouped_gemm_w4a16 writes them, and c.out [tokens,
// N] bf16 the combine of cuda::combine (routing.h) over them: c.out[t] = sum_j c.weights[t, j] *
// out[c.pair_to_sorted[t * top_k + j]] (+ c.shared[t]), fp32, slot order, rounded once; rows =
// tokens * top_k. Where fusing is on (set_gemm_fused_combine) and the GEMM takes its decode
// kernel in one launch without split-K (grouped_gemm_fuses_combine), the combine runs in the
// GEMM's epilogue: the last CTA to finish a 64-column block combines it (same bits as the two
// launches, one kernel boundary fewer); otherwise the two run one after the other.
// Workspace: grouped_gemm_w4a16_workspace_bytes.
struct GroupedCombine {
  const float* weights = nullptr;           // [tokens, top_k]
  const int32_t* pair_to_sorted = nullptr;  // [tokens * top_k]: row of out of each (token, slot)
  int64_t tokens = 0;
  int top_k = 0;                            // 1..16
  const __nv_bfloat16* shared = nullptr;    // [tokens, N] added last, or null
  __nv_bfloat16* out = nullptr;             // [tokens, N]
};
// Whether grouped_gemm_w4a16_combine runs as one kernel for these sizes.
bool grouped_gemm_fuses_combine(int64_t rows, int64_t n, int64_t k, int num_experts);
// Whether grouped_gemm_w4a16_combine may fuse: 1 on, 0 off, -1 the default, which is
// NVFP4MOE_FUSED_COMBINE=0|1 from the environment, else off. Off by default: measured slower
// than the two launches on the H100 (DeepSeek-V3 layer T = 1 113 -> 136 us, T = 16 884 -> 912;
// docs/GEMM.md v17). Process-wide, not thread-safe.
void set_gemm_fused_combine(int mode);
bool gemm_fused_combine_on();  // the mode now in force
void grouped_gemm_w4a16_combine(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                                const PreparedWeights& w, const float* alpha, __nv_bfloat16* out,
                                const GroupedCombine& c, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream, bool prefetch_before_wait = false);

size_t grouped_gemm_w4a4_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts);
void grouped_gemm_w4a4(const Nvfp4Act& a, int64_t rows, const int32_t* off,
                       const PreparedWeights& w, const float* alpha, void* out,
                       OutDType out_dtype, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream);
// The tile shape the heuristics pick (for benchmarks and docs): token tile, weight rows per
// CTA of the wgmma kernel (128 or 256; 0 for the decode kernel), K splits.
// Grouped calls with hot_rows > 0 run two launches, each finding its experts on the device
// from the offsets: experts with <= hot_rows rows at tok_tile, the others (hot experts of a
// skewed routing) at token tile 128 with hot_block_n weight rows per CTA and grid hot_grid.
struct GemmPlan {
  int tok_tile = 0;
  int block_n = 0;
  int splits = 1;
  int grid = 0;
  int hot_rows = 0;
  int hot_block_n = 0;
  int hot_grid = 0;
  bool claim = false;  // grouped decode: tiles after each CTA's first claimed from a counter
  int k_warps = 2;     // decode: K warps per CTA (4: the wide CTA for calls with few tiles)
  bool ring = false;   // decode: the weight stream in a shared-memory ring filled by bulk
                       // copies (kernels/gemm_w4a16_decode_ring_sm90.cuh), not in registers
  bool ws = false;     // wgmma kernel: its 256-row CTAs (block_n or hot_block_n 256, token
                       // tiles 64 and 128) take the warp-specialized variant
                       // (kernels/gemm_w4a16_ws_sm90.cuh)
  int tile_rows = 0;   // warp-specialized single GEMMs: balanced token tiles of at most this
                       // many rows (< tok_tile where a tile count fitted to whole waves runs
                       // narrower MMAs; 0: tok_tile)
};
GemmPlan plan_gemm(int64_t m, int64_t n, int64_t k);
GemmPlan plan_grouped_gemm(int64_t rows, int64_t n, int64_t k, int num_experts);

// Tuning only (the GEMM benchmark's --tok / --splits / --prefetch / --block-n): force the token
// tile (8, 16: decode kernel; 32, 64, 128: wgmma kernel), the K split count of every later
// single plan and grouped decode plan (0 restores the heuristics; 1: no split), the decode
// kernel's L2 prefetch distance in weight atoms per CTA (-1: the default, 0: off) and the
// wgmma kernel's weight rows per CTA
// (128 or 256, honoured for token tiles 64 and 128; 0: heuristics). Process-wide, not
// thread-safe; workspaces must be sized while the same override is in force.
void set_gemm_plan_override(int tok, int splits, int prefetch_atoms = -1, int block_n = 0);

// Tuning only: the expert row count above which a grouped call's experts go to the second,
// token-tile-128 launch (GemmPlan::hot_rows). -1: the heuristics (the token tile itself for
// token tiles 32 and 64 in calls of >= 100 GFLOP, else none; or NVFP4MOE_GEMM_HOT=R from the
// environment); 0: one launch; > 0: that threshold for every grouped call on the wgmma
// kernel. Process-wide, not thread-safe.
void set_gemm_hot_expert_rows(int rows);

// Tuning and validation only: whether the wgmma kernel's 256-row CTAs (token tiles 64 and 128)
// take the warp-specialized variant (GemmPlan::ws: one producer warpgroup fills the stages by
// TMA and bulk copies, two MMA warpgroups of 128 weight rows each consume them, no CTA-wide
// barrier in the mainloop). 1: on, 0: off (the cp.async kernel), -1: the default (on, unless
// the environment sets NVFP4MOE_GEMM_WS=0). Same results bit for bit; measured 14-30% faster
// on the H100 (docs/GEMM.md v18). Process-wide, not thread-safe.
void set_gemm_ws_pipeline(int mode);

// Tuning and validation only: the warp-specialized kernel runs each token tile on the narrowest
// MMA width covering its rows; with token tile 160 (grouped calls) in steps of 16 or 32 tokens
// (32, 48, ..., 160 or 32, 64, ..., 160). 0: the default (32, or NVFP4MOE_GEMM_WS_WIDTH_STEP=16
// from the environment). Same results bit for bit. Process-wide, not thread-safe.
void set_gemm_ws_width_step(int step);

// Tuning and validation only: the warp-specialized kernel at token tile 64 runs 2 consumer
// warpgroups of 128 weight rows each, or 4 of 64 rows each (twice the warps per scheduler to hide
// the latency of each k16 step's dequantize -> MMA chain). 0: the default (2, or
// NVFP4MOE_GEMM_WS_CONSUMERS=4 from the environment); other values throw. Same results bit for
// bit. Process-wide, not thread-safe.
void set_gemm_ws_consumers(int warpgroups);

// Tuning and validation only: the warp-specialized kernel stores bf16 output tiles through shared
// memory in 16-byte chunks (1) or each thread its own 2-byte elements (0); -1: the default
// (staged, or NVFP4MOE_GEMM_WS_EPILOGUE=direct from the environment). Same results bit for bit.
// Process-wide, not thread-safe.
void set_gemm_ws_staged_epilogue(int mode);

// Tuning and validation only: the activation front ends of the prefill (wgmma) kernels, which
// write bf16 activations (act_permute, W4A16) or dequantized NVFP4 ones (act_dequant, W4A4) in the
// GEMM's K order, store 16-byte chunks after 4 x 4 lane transposes (1) or each lane its 4-byte
// pieces, 16 bytes apart (0); -1: the default (chunks, or NVFP4MOE_GEMM_ACT_STORE=strided from the
// environment). Same bytes. Process-wide, not thread-safe.
void set_gemm_act_chunk_stores(int mode);

// Tuning and validation only: single GEMMs on the warp-specialized kernel (token tile 128)
// (1) or not (0) take a token-tile count fitted to whole waves of CTAs (narrower balanced
// tiles where they fill a wave the 128-row tiles leave part empty: Qwen3 w13 at M = 4096 runs
// 43 tiles of 95-96 rows per 256-row block, MMA width 96, 258 tiles in 2 waves of 132 SMs),
// with the 256- vs 128-row CTA choice made on those fitted waves; -1: the default (on, or
// NVFP4MOE_GEMM_WS_FIT=0 from the environment). Same results bit for bit. Process-wide, not
// thread-safe; workspaces must be sized while the same setting is in force.
void set_gemm_ws_single_fit(int mode);

// Tuning and validation only: single GEMMs on the warp-specialized kernel launch at most one CTA
// per SM, each looping over its tiles (1: the producer loads the next tile's first stages during
// the last tile's epilogue), or one CTA per tile (0); -1: the default (persistent, or
// NVFP4MOE_GEMM_WS_PERSIST=0 from the environment). Same results bit for bit. Process-wide,
// not thread-safe.
void set_gemm_ws_single_persistent(int mode);

// Tuning and validation only: how a grouped decode call (token tiles 8 and 16) assigns tiles
// to CTAs. 0: tile blockIdx.x + j * gridDim.x (static); 1: the first tile blockIdx.x, then the
// next unclaimed tile from a counter in the workspace (dynamic: CTAs on faster SMs take more);
// -1: the heuristics (claimed where the host-known bound on the tiles is >= 3 per CTA for the
// ring kernel, >= 8 for the register kernel). Same results bit for bit. Process-wide, not
// thread-safe.
void set_gemm_decode_claiming(int mode);

// Tuning only: K warps per CTA of grouped decode calls (GemmPlan::k_warps). -1: the heuristics
// (4 where the call's tiles fit in one wave of the 512-thread CTAs, else 2; or
// NVFP4MOE_GEMM_KWARPS=2|4 from the environment), 2 or 4 (4 only where the token tile is 8,
// there is no split and K / 128 is even; else 2).
void set_gemm_decode_k_warps(int k_warps);

// Tuning and validation only: which decode kernel token tiles 8 and 16 take (GemmPlan::ring).
// 0: the register kernel (each warp streams its weights into registers), 1: the ring kernel (a
// producer warp fills a shared-memory ring with bulk copies), -1: the default (or
// NVFP4MOE_GEMM_RING=0|1 from the environment; else the ring for grouped calls except where
// the register kernel's wide CTA is chosen, the register kernel for single GEMMs). Same
// results bit for bit at the same split of K and K warps (a call's plan may differ between the
// kernels: their CTAs per SM differ). Process-wide, not thread-safe; workspaces must be sized
// while the same mode is in force.
void set_gemm_decode_ring(int mode);

}  // namespace nvfp4moe::cuda
