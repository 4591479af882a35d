// GPU launchers of the MoE layer's routing, permutation and combine (kernels in
// nvfp4moe/kernels/{routing,permute,combine}_sm90.cuh). Each validates its arguments and throws
// nvfp4moe::Error naming the bad one before anything is launched; none reads device data on
// the host or synchronizes, so all three can be captured in a CUDA graph. The token count is a
// host argument (the batch size); device buffers are sized by the caller from the maximum
// token count (capacity) and reused for any tokens <= capacity.
//
// Results are bit-identical to the CPU model (ref/routing.h, ref/permute.h) and deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe::cuda {

enum class LogitsDType : int { kFloat32 = 0, kBF16 = 1 };

// Route `tokens` tokens: logits [tokens, E] (float32, or bf16 widened exactly to float) ->
// ids [tokens, k] int32 and weights [tokens, k] float32, as ref::route with the same cfg
// (validate(cfg) applies). correction_bias: [E] float32 or nullptr (sigmoid scoring only; its
// values must be finite, which the host cannot check on the device). Batches of at most
// kRouteCtaMaxTokens tokens run one 256-thread CTA per token (lower latency), larger ones one
// warp per token (higher throughput); both give the same bits.
void route(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
           const RoutingConfig& cfg, int32_t* ids, float* weights, cudaStream_t stream);

inline constexpr int64_t kRouteCtaMaxTokens = 1024;

// True when route() takes the CTA-per-token kernels for this batch: tokens <= kRouteCtaMaxTokens,
// or sigmoid scoring keeping more than 32 (but not all) groups, which only they handle.
bool uses_cta_routing(int64_t tokens, const RoutingConfig& cfg);

// Device outputs of permute, E = num_experts, M = tokens * top_k; each map sized for the
// capacity (capacity_tokens * top_k entries), of which [0, M) are written.
struct PermuteOutputs {
  int32_t* counts = nullptr;           // [E]   rows per expert
  int32_t* off = nullptr;              // [E+1] expert row offsets, off[E] = M
  int32_t* sf_off = nullptr;           // [E+1] scale-row offsets (format/swizzle.h)
  int32_t* sorted_to_pair = nullptr;   // [M]   sorted row -> t * k + j
  int32_t* pair_to_sorted = nullptr;   // [M]   t * k + j -> sorted row
  int32_t* sorted_to_token = nullptr;  // [M]   sorted row -> t (the quantizer's gather map)
};

// Workspace bytes permute needs for any tokens <= capacity_tokens (0 when a single CTA
// handles every such size; then workspace may be nullptr).
size_t permute_workspace_bytes(int64_t capacity_tokens, int top_k, int num_experts);

// ids [tokens, k] in [0, E) -> the expert-sorted layout, identical to ref::permute: rows of
// an expert in (token, slot) order. An id outside [0, E) (device data, unchecked on the host)
// makes the kernel trap: a launch failure at the next synchronizing call, never a wrong layout.
// Requires 0 <= tokens <= capacity_tokens and workspace_bytes >= permute_workspace_bytes(
// capacity_tokens, top_k, num_experts); workspace 16-byte aligned.
void permute(const int32_t* ids, int64_t tokens, int top_k, int num_experts, int64_t capacity_tokens,
             const PermuteOutputs& out, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// route() then permute() in one launch when tokens * top_k <= 2048 (uses_fused_route_and_permute),
// else exactly those two calls; outputs identical to them (ids, weights and every map).
// One workspace serves both: workspace_bytes >= route_and_permute_workspace_bytes(capacity_tokens,
// cfg.top_k, cfg.num_experts), 16-byte aligned, and ZERO-FILLED ONCE before its first use
// (cudaMemset): its first 16 bytes hold a ticket counter that every call leaves zero again
// (a CUDA graph replays it as is). A non-zero counter on entry traps (launch failure), never
// a silent wrong layout. Same argument rules as route() and permute(); top_k = cfg.top_k,
// num_experts = cfg.num_experts. No host sync, capturable in a graph.
bool uses_fused_route_and_permute(int64_t tokens, int top_k);
size_t route_and_permute_workspace_bytes(int64_t capacity_tokens, int top_k, int num_experts);
void route_and_permute(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
                       const RoutingConfig& cfg, int64_t capacity_tokens, int32_t* ids, float* weights,
                       const PermuteOutputs& out, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// The MoE front end of the smallest batches in one launch: route_and_permute, then
// quantize_experts(x, gather = sorted_to_token, values only) of the tokens * top_k routed rows
// with the per-expert encode scales g [E]: values [tokens * top_k, hidden] bf16, rows in
// expert-sorted order (e2m1 * e4m3 without the global scale, the grouped decode GEMM's
// operand). For uses_route_permute_values(tokens, top_k, hidden): 1 <= tokens <= 4,
// tokens * top_k <= 32, hidden % 16 == 0 and hidden <= 2^24. Outputs identical to those calls
// (ids, weights, the six maps, values); no workspace. x [tokens, hidden] (bf16 or fp16) and
// values 16-byte aligned. The next kernel of the stream may launch (PDL) once the offsets are
// written.
bool uses_route_permute_values(int64_t tokens, int top_k, int64_t hidden);
void route_permute_values(const void* logits, LogitsDType logits_dtype, const float* correction_bias, int64_t tokens,
                          const RoutingConfig& cfg, int32_t* ids, float* weights, const PermuteOutputs& out,
                          const void* x, ActDType x_dtype, int64_t hidden, const float* g, void* values,
                          cudaStream_t stream);

enum class CombineOutDType : int { kBF16 = 0, kFP16 = 1, kFloat32 = 2 };

// out[t, :] = sum_j weights[t, j] * rows[pair_to_sorted[t * k + j], :] (+ shared[t, :]) in
// float32 in that order (ref::combine), rounded to out_dtype. rows: [tokens * k, hidden] and
// shared: [tokens, hidden] or nullptr, both of rows_dtype; out: [tokens, hidden].
// hidden % 8 == 0; rows, shared and out 16-byte aligned. A pair_to_sorted entry outside
// [0, tokens * k) makes the kernel trap.
void combine(const void* rows, ActDType rows_dtype, const float* weights, const int32_t* pair_to_sorted,
             int64_t tokens, int top_k, int64_t hidden, const void* shared, void* out,
             CombineOutDType out_dtype, cudaStream_t stream);

}  // namespace nvfp4moe::cuda
