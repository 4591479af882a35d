// Small kernels of the MoE forward that belong to no other stage: the one-expert offsets of
// the shared expert (the row gather of the W4A16 path: gather_rows_sm90.cuh).
#pragma once

#include <cstdint>

#include "nvfp4moe/kernels/gather_rows_sm90.cuh"

namespace nvfp4moe::kernels {

// off = {0, tokens}: the shared expert is quantized as one "expert" owning every token row.
__global__ void write_single_expert_offsets_kernel(int32_t* off, int32_t tokens) {
  off[0] = 0;
  off[1] = tokens;
}

}  // namespace nvfp4moe::kernels
