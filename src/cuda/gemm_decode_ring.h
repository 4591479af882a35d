// Launcher of the ring decode kernel (kernels/gemm_w4a16_decode_ring_sm90.cuh), for gemm.cu:
// its own translation unit, so its instantiations compile beside the others.
#pragma once

#include <cuda_runtime.h>

#include "nvfp4moe/kernels/gemm_decode_store_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"

namespace nvfp4moe::cuda {

// CTAs per SM of the ring kernel for token tile 8 or 16 (occupancy of its registers and
// shared memory; 1 at least).
int decode_ring_ctas_per_sm(int tok);

// Launches it (PDL) on `grid` CTAs; p as for the register decode kernel with p.n_blocks in
// 64-row blocks. claim: p.claim is set and tiles after each CTA's first are claimed from it.
// combine: the fused MoE combine (grouped, no split), or {} (out == nullptr) for none.
void launch_decode_ring(int tok, const kernels::GemmW4A16Params& p, const kernels::DecodeCombineParams& combine,
                        int grid, cudaStream_t stream);

}  // namespace nvfp4moe::cuda
