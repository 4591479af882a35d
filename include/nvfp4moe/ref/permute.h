// CPU golden model: permutation of routed (token, slot) pairs into expert-sorted rows, and
// the weighted combine back to tokens.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace nvfp4moe::ref {

// Expert-sorted layout of T tokens x k slots (M = T * k rows).
// Rows of expert e are [off[e], off[e+1]), ordered by (token, slot) ascending: the order is
// fixed by the ids alone (stable by token index), never by the order of atomic operations.
struct Permutation {
  std::vector<int32_t> counts;          // [E] rows per expert
  std::vector<int32_t> off;             // [E+1] expert offsets, off[0] = 0, off[E] = M
  std::vector<int32_t> sf_off;          // [E+1] scale-row offsets (format/swizzle.h)
  std::vector<int32_t> sorted_to_pair;  // [M] sorted row -> t * k + j
  std::vector<int32_t> pair_to_sorted;  // [M] t * k + j -> sorted row
  std::vector<int32_t> sorted_to_token; // [M] sorted row -> t (the gather map of the quantizer)
};

// ids: [T, k] in [0, E). Throws nvfp4moe::Error on an id out of range.
Permutation permute(std::span<const int32_t> ids, int64_t tokens, int top_k, int num_experts);

// out[t, :] = sum_{j=0..k-1} weights[t, j] * rows[pair_to_sorted[t*k + j], :]  (+ shared[t, :])
// accumulated in float32 in that order (j ascending, the shared term last):
//   acc = 0.0f; acc = acc + w_j * row_j (a float multiply, then a float add: no FMA); acc += shared.
// Errors: sizes, pair_to_sorted entries outside [0, M).
// rows: [M, hidden] float32; shared: [T, hidden] or empty; out: [T, hidden] float32.
void combine(std::span<const float> rows, std::span<const float> weights,
             std::span<const int32_t> pair_to_sorted, int64_t tokens, int top_k, int64_t hidden,
             std::span<const float> shared, std::span<float> out);

}  // namespace nvfp4moe::ref
