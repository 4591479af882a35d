// CPU golden model of the expert permutation and the weighted combine
// (include/nvfp4moe/ref/permute.h).
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/ref/permute.h"

#include <limits>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe::ref {

Permutation permute(std::span<const int32_t> ids, int64_t tokens, int top_k, int num_experts) {
  NVFP4MOE_CHECK(top_k >= 1, "top_k: expected >= 1, got ", top_k);
  check_token_count(tokens, top_k);
  NVFP4MOE_CHECK(num_experts >= 1, "num_experts: expected >= 1, got ", num_experts);
  const int64_t m = tokens * top_k;
  // Scale rows (M + 127 E) must fit the int32 offsets the GPU keeps too.
  NVFP4MOE_CHECK(expert_scale_rows_capacity(m, num_experts) <= std::numeric_limits<int32_t>::max(),
                 "tokens: tokens*top_k = ", m, " rows exceed the int32 offset range");
  NVFP4MOE_CHECK(int64_t(ids.size()) == m, "ids: expected tokens*top_k = ", m, " entries, got ",
                 ids.size());
  for (int64_t p = 0; p < m; ++p) {
    NVFP4MOE_CHECK(ids[size_t(p)] >= 0 && ids[size_t(p)] < num_experts, "ids: expected ids in [0, ",
                   num_experts, "), got ", ids[size_t(p)], " at token ", p / top_k, " slot ",
                   p % top_k);
  }

  Permutation perm;
  perm.counts.assign(size_t(num_experts), 0);
  for (int64_t p = 0; p < m; ++p) ++perm.counts[size_t(ids[size_t(p)])];
  perm.off.assign(size_t(num_experts + 1), 0);
  for (int e = 0; e < num_experts; ++e)
    perm.off[size_t(e + 1)] = perm.off[size_t(e)] + perm.counts[size_t(e)];
  perm.sf_off.assign(size_t(num_experts + 1), 0);
  expert_scale_offsets(perm.off.data(), num_experts, perm.sf_off.data());

  // Pairs visited in (token, slot) order, so each expert's rows are sorted by (token, slot).
  std::vector<int32_t> cursor(perm.off.begin(), perm.off.end() - 1);
  perm.sorted_to_pair.assign(size_t(m), 0);
  perm.pair_to_sorted.assign(size_t(m), 0);
  perm.sorted_to_token.assign(size_t(m), 0);
  for (int64_t p = 0; p < m; ++p) {
    int32_t row = cursor[size_t(ids[size_t(p)])]++;
    perm.sorted_to_pair[size_t(row)] = int32_t(p);
    perm.pair_to_sorted[size_t(p)] = row;
    perm.sorted_to_token[size_t(row)] = int32_t(p / top_k);
  }
  return perm;
}

void combine(std::span<const float> rows, std::span<const float> weights,
             std::span<const int32_t> pair_to_sorted, int64_t tokens, int top_k, int64_t hidden,
             std::span<const float> shared, std::span<float> out) {
  NVFP4MOE_CHECK(top_k >= 1, "top_k: expected >= 1, got ", top_k);
  check_token_count(tokens, top_k);
  NVFP4MOE_CHECK(hidden >= 1 && hidden <= kMaxLayerWidth, "hidden: expected 1..", kMaxLayerWidth, ", got ", hidden);
  const int64_t m = tokens * top_k;
  NVFP4MOE_CHECK(int64_t(rows.size()) == m * hidden,
                 "rows: expected tokens*top_k*hidden = ", m * hidden, " floats, got ", rows.size());
  NVFP4MOE_CHECK(int64_t(weights.size()) == m, "weights: expected tokens*top_k = ", m,
                 " floats, got ", weights.size());
  NVFP4MOE_CHECK(int64_t(pair_to_sorted.size()) == m, "pair_to_sorted: expected tokens*top_k = ", m,
                 " entries, got ", pair_to_sorted.size());
  for (int64_t p = 0; p < m; ++p) {
    NVFP4MOE_CHECK(pair_to_sorted[size_t(p)] >= 0 && pair_to_sorted[size_t(p)] < m,
                   "pair_to_sorted: expected rows in [0, ", m, "), got ", pair_to_sorted[size_t(p)],
                   " at pair ", p);
  }
  NVFP4MOE_CHECK(shared.empty() || int64_t(shared.size()) == tokens * hidden,
                 "shared: expected empty or tokens*hidden = ", tokens * hidden, " floats, got ",
                 shared.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == tokens * hidden,
                 "out: expected tokens*hidden = ", tokens * hidden, " floats, got ", out.size());

  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < hidden; ++h) {
      // acc = 0; acc += w_j * row_j for j = 0..k-1; acc += shared: separate multiply and add
      // (the build forbids FMA contraction), the order a GPU kernel must follow.
      float acc = 0.0f;
      for (int j = 0; j < top_k; ++j) {
        int64_t p = t * top_k + j;
        acc = acc +
              weights[size_t(p)] * rows[size_t(int64_t(pair_to_sorted[size_t(p)]) * hidden + h)];
      }
      if (!shared.empty()) acc = acc + shared[size_t(t * hidden + h)];
      out[size_t(t * hidden + h)] = acc;
    }
  }
}

}  // namespace nvfp4moe::ref
