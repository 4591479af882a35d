// The grouped GEMM's token tile from the routing's balanced rows per expert: the steps the
// heuristics use (cuda/gemm.h plan_grouped_gemm), host only, so they can be checked without a GPU.
#pragma once

#include <cstdint>
#include <vector>

namespace nvfp4moe::cuda {

// Up to max_avg rows per expert (ceil(rows / E)), the token tile `tok`; past the last step, 128.
struct GroupedTokStep {
  int64_t max_avg;
  int tok;
};

// The default: tile 8 (the decode kernel) up to 4 rows per expert, 64 (the warp-specialized
// kernel) up to 32, then 128 (measured on the H100, docs/GEMM.md v32).
std::vector<GroupedTokStep> default_grouped_tok_steps();

// The spelling of NVFP4MOE_GEMM_GROUPED_TOK, "max_avg:tok,..." (e.g. "4:8,32:64"): max_avg >= 1
// and increasing, tok one of 8, 16, 32, 64, 128. Anything else throws an Error naming the
// variable and quoting the value.
std::vector<GroupedTokStep> parse_grouped_tok_steps(const char* spelling);

// The token tile of a grouped call of `rows` rows over `num_experts` experts under `steps`.
int grouped_tok_tile(int64_t rows, int num_experts, const std::vector<GroupedTokStep>& steps);

}  // namespace nvfp4moe::cuda
