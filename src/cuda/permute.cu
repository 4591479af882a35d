// Launcher of the permutation kernels (include/nvfp4moe/kernels/permute_sm90.cuh).
#include "nvfp4moe/cuda/routing.h"

#include <cstdint>
#include <limits>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/permute_sm90.cuh"
#include "routing_checks.h"

namespace nvfp4moe::cuda {
namespace {

int64_t permute_tiles(int64_t pairs) {
  return (pairs + kernels::kPermuteTilePairs - 1) / kernels::kPermuteTilePairs;
}

// Bytes of tile_counts [tiles, E] int32 for `pairs` pairs; 0 on the single-CTA path.
size_t workspace_for_pairs(int64_t pairs, int num_experts) {
  if (pairs <= kernels::kPermuteSingleCtaMaxPairs) return 0;
  return size_t(round_up(permute_tiles(pairs) * num_experts * int64_t(sizeof(int32_t)), 16));
}

void check_shape(int64_t tokens_or_capacity, const char* name, int top_k, int num_experts) {
  NVFP4MOE_CHECK(num_experts >= 1 && num_experts <= kernels::kPermuteMaxExperts,
                 "num_experts: expected 1..", kernels::kPermuteMaxExperts, ", got ", num_experts);
  NVFP4MOE_CHECK(top_k >= 1 && top_k <= 16 && top_k <= num_experts,
                 "top_k: expected 1..min(16, num_experts), got ", top_k);
  NVFP4MOE_CHECK(tokens_or_capacity >= 0, name, ": expected >= 0, got ", tokens_or_capacity);
  // Rows and scale rows (M + 127 E) must fit the int32 maps and offsets (the first test keeps
  // the product below from wrapping).
  NVFP4MOE_CHECK(tokens_or_capacity <= std::numeric_limits<int32_t>::max() / top_k &&
                     expert_scale_rows_capacity(tokens_or_capacity * top_k, num_experts) <=
                     std::numeric_limits<int32_t>::max(),
                 name, ": ", tokens_or_capacity, " tokens x top_k = ", top_k,
                 " rows exceed the int32 offset range");
}

void check_map(const int32_t* p, const char* name) {
  NVFP4MOE_CHECK(p != nullptr, name, ": expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(p, 4), name, ": expected a 4-byte aligned pointer");
}

}  // namespace

size_t permute_workspace_bytes(int64_t capacity_tokens, int top_k, int num_experts) {
  check_shape(capacity_tokens, "capacity_tokens", top_k, num_experts);
  return workspace_for_pairs(capacity_tokens * top_k, num_experts);
}

void check_permute_args(const int32_t* ids, int64_t tokens, int top_k, int num_experts, int64_t capacity_tokens,
                        const PermuteOutputs& out, const void* workspace, size_t workspace_bytes) {
  check_shape(capacity_tokens, "capacity_tokens", top_k, num_experts);
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= capacity_tokens, "tokens: expected 0..capacity_tokens = ",
                 capacity_tokens, ", got ", tokens);
  check_map(out.counts, "out.counts");
  check_map(out.off, "out.off");
  check_map(out.sf_off, "out.sf_off");
  const int64_t m = tokens * top_k;
  if (m > 0) {
    check_map(ids, "ids");
    check_map(out.sorted_to_pair, "out.sorted_to_pair");
    check_map(out.pair_to_sorted, "out.pair_to_sorted");
    check_map(out.sorted_to_token, "out.sorted_to_token");
  }
  const size_t need = workspace_for_pairs(capacity_tokens * top_k, num_experts);
  NVFP4MOE_CHECK(workspace_bytes >= need, "workspace_bytes: expected >= permute_workspace_bytes(",
                 capacity_tokens, ", ", top_k, ", ", num_experts, ") = ", need, ", got ", workspace_bytes);
  if (need > 0) {
    NVFP4MOE_CHECK(workspace != nullptr, "workspace: expected a device pointer, got nullptr");
    NVFP4MOE_CHECK(is_aligned(workspace, 16), "workspace: expected a 16-byte aligned pointer");
  }
}

void permute(const int32_t* ids, int64_t tokens, int top_k, int num_experts, int64_t capacity_tokens,
             const PermuteOutputs& out, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  check_permute_args(ids, tokens, top_k, num_experts, capacity_tokens, out, workspace, workspace_bytes);
  const int64_t m = tokens * top_k;
  const int mi = int(m);
  if (m <= kernels::kPermuteSingleCtaMaxPairs) {
    kernels::permute_single_cta_sm90<<<1, kernels::kPermuteThreads, 0, stream>>>(
        ids, mi, top_k, num_experts, out.counts, out.off, out.sf_off, out.sorted_to_pair,
        out.pair_to_sorted, out.sorted_to_token);
    NVFP4MOE_CUDA_CHECK_LAUNCH();
    return;
  }
  const int tiles = int(permute_tiles(m));
  int32_t* tile_counts = static_cast<int32_t*>(workspace);  // [tiles, E]
  kernels::permute_count_sm90<<<tiles, kernels::kPermuteThreads, 0, stream>>>(ids, mi, num_experts,
                                                                              tile_counts);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  kernels::permute_scan_sm90<<<1, kernels::kPermuteThreads, 0, stream>>>(tile_counts, tiles, num_experts,
                                                                         out.counts, out.off, out.sf_off);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  kernels::permute_scatter_sm90<<<tiles, kernels::kPermuteThreads, 0, stream>>>(
      ids, mi, top_k, num_experts, out.off, tile_counts, out.sorted_to_pair, out.pair_to_sorted,
      out.sorted_to_token);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace nvfp4moe::cuda
