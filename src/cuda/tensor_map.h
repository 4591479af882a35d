// TMA tensor maps for the GEMM's bf16 activation tiles (host side). The encoder is a driver API
// function: it is fetched once through the runtime's driver entry point, so the library does
// not link libcuda itself.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace nvfp4moe::cuda {

// The map of a row-major bf16 matrix [rows, cols] at `base` (16-byte aligned, cols * 2 a
// multiple of 16) read in boxes of box_cols x box_rows elements (box_cols * 2 == 128 bytes)
// and written to shared memory with the 128-byte swizzle that wgmma's K-major descriptors
// expect (ptx::smem_desc_k128b). Elements past the matrix read as zeros. Throws
// nvfp4moe::Error when the driver rejects the description.
CUtensorMap bf16_tile_map_swizzle128(const void* base, int64_t rows, int64_t cols, int box_cols, int box_rows);

}  // namespace nvfp4moe::cuda
