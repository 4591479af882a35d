// Size limits every entry point shares, so that no size product can wrap: tokens * top_k rows
// index int32 maps and offsets on the GPU (the CPU model keeps the same bound), and layer widths
// stay below 2^20 (real models: hidden <= 16384, expert widths <= a few thousand). Together
// they keep tokens * hidden, tokens * num_experts and tokens * top_k * width inside int64.
#pragma once

#include <cstdint>
#include <limits>

#include "nvfp4moe/common/error.h"

namespace nvfp4moe {

inline constexpr int64_t kMaxLayerWidth = int64_t(1) << 20;

// tokens in 0..INT32_MAX / top_k (top_k >= 1), else Error naming `name`.
inline void check_token_count(int64_t tokens, int top_k, const char* name = "tokens") {
  const int64_t max_tokens = int64_t(std::numeric_limits<int32_t>::max()) / (top_k >= 1 ? top_k : 1);
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= max_tokens, name, ": expected 0..", max_tokens, " (tokens x top_k ",
                 top_k, " must fit int32), got ", tokens);
}

}  // namespace nvfp4moe
