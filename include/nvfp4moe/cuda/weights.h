// Preparation of NVFP4 weights for the Hopper GEMM (cuda/gemm.h), done once at load.
//
// Input: the ModelOpt checkpoint layout of one expert's weight B [N, K]:
//   codes  [N, K/2] uint8 (e2m1 pairs, element 2i in the low nibble)
//   scales [N, K/16] e4m3, row-major (NOT swizzled)
// Output: prepared_weight_bytes(N, K) bytes in the GEMM's layout (kernels/gemm_layout_sm90.cuh):
// rows padded to 128 and K to 128 with zeros, 64x64 atoms whose codes are reordered so each
// thread's 32-bit load is exactly its wgmma A fragment, and scales re-encoded so a pair
// expands to bf16 with one integer multiply-add. The global scale (weight_scale_2) is not part
// of the prepared weight: it enters the GEMM through alpha.
//
// The preparation runs on the host (plain loops, deterministic). NaN (0x7F/0xFF) and negative
// scales are rejected (Error naming the coordinate): the quantizer never writes them into
// weights; -0 is read as 0. A zero scale zeroes its 16 codes (their values are 0 either way).
#pragma once

#include <cstdint>
#include <span>

namespace nvfp4moe::cuda {

// Bytes of one prepared [n, k] weight (n >= 1, k >= 16, k % 16 == 0).
int64_t prepared_weight_bytes(int64_t n, int64_t k);

// Prepare one weight. codes: n*k/2 bytes; scales: n*k/16 bytes row-major; out:
// prepared_weight_bytes(n, k) bytes (every byte written).
void prepare_weight(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int64_t n,
                    int64_t k, std::span<uint8_t> out);

// E prepared weights of one shape, expert e at data + e * prepared_weight_bytes(n, k) (device
// memory, 16-byte aligned). A view: not owned.
struct PreparedWeights {
  const uint8_t* data = nullptr;
  int64_t n = 0;
  int64_t k = 0;
  int num_experts = 1;
};

}  // namespace nvfp4moe::cuda
