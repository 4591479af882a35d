#include "nvfp4moe/cuda/gemm_token_tiles.h"

#include <cstdlib>

#include "nvfp4moe/common/error.h"

namespace nvfp4moe::cuda {

std::vector<GroupedTokStep> default_grouped_tok_steps() { return {{4, 8}, {32, 64}}; }

std::vector<GroupedTokStep> parse_grouped_tok_steps(const char* spelling) {
  NVFP4MOE_CHECK(spelling != nullptr, "NVFP4MOE_GEMM_GROUPED_TOK: expected a spelling, got null");
  std::vector<GroupedTokStep> steps;
  for (const char* c = spelling; *c != 0;) {
    char* end = nullptr;
    const long long avg = std::strtoll(c, &end, 10);
    const bool colon = end != c && *end == ':';
    const char* t = colon ? end + 1 : end;
    const long tok = colon ? std::strtol(t, &end, 10) : 0;
    NVFP4MOE_CHECK(colon && end != t && (tok == 8 || tok == 16 || tok == 32 || tok == 64 || tok == 128) &&
                       avg >= 1 && (steps.empty() || avg > steps.back().max_avg) && (*end == ',' || *end == 0),
                   "NVFP4MOE_GEMM_GROUPED_TOK: expected increasing max_avg:tok pairs, max_avg >= 1, tok in "
                   "8/16/32/64/128 (e.g. \"4:8,32:64\"), got \"",
                   spelling, "\"");
    steps.push_back({avg, int(tok)});
    c = *end == ',' ? end + 1 : end;
  }
  NVFP4MOE_CHECK(!steps.empty(), "NVFP4MOE_GEMM_GROUPED_TOK: expected at least one max_avg:tok pair, got \"\"");
  return steps;
}

int grouped_tok_tile(int64_t rows, int num_experts, const std::vector<GroupedTokStep>& steps) {
  const int64_t avg = (rows + num_experts - 1) / num_experts;
  for (const GroupedTokStep& st : steps) {
    if (avg <= st.max_avg) return st.tok;
  }
  return 128;
}

}  // namespace nvfp4moe::cuda
