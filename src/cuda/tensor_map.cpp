// TMA tensor maps (src/cuda/tensor_map.h).
#include "tensor_map.h"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/error.h"

namespace nvfp4moe::cuda {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult status{};
    NVFP4MOE_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                                         &status));
    NVFP4MOE_CHECK(status == cudaDriverEntryPointSuccess && p != nullptr,
                   "cuTensorMapEncodeTiled: not provided by this driver (status ", int(status), ")");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

}  // namespace

namespace {

// A 2D row-major map [rows, cols] of `elem_bytes`-byte elements read in boxes of box_cols x box_rows
// elements (the checks on the shapes are the callers').
CUtensorMap encode_2d(const void* base, CUtensorMapDataType type, int elem_bytes, int64_t rows, int64_t cols,
                      int box_cols, int box_rows, CUtensorMapSwizzle swizzle, CUtensorMapL2promotion promotion) {
  NVFP4MOE_CHECK(base != nullptr && reinterpret_cast<uintptr_t>(base) % 16 == 0,
                 "tensor map base: expected a 16-byte aligned device pointer");
  CUtensorMap map{};
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(cols) * cuuint64_t(elem_bytes)};  // bytes between rows
  const cuuint32_t box[2] = {cuuint32_t(box_cols), cuuint32_t(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = encoder()(&map, type, 2, const_cast<void*>(base), dims, strides, box, element_strides,
                               CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, promotion, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  NVFP4MOE_CHECK(r == CUDA_SUCCESS, "cuTensorMapEncodeTiled: failed with CUresult ", int(r), " (rows ", rows,
                 ", cols ", cols, ", box ", box_cols, " x ", box_rows, ")");
  return map;
}

}  // namespace

CUtensorMap bf16_tile_map_swizzle128(const void* base, int64_t rows, int64_t cols, int box_cols, int box_rows) {
  NVFP4MOE_CHECK(rows >= 1 && cols >= 1 && (cols * 2) % 16 == 0, "tensor map: expected rows >= 1 and cols * 2 a "
                 "multiple of 16, got rows ", rows, ", cols ", cols);
  NVFP4MOE_CHECK(box_cols * 2 == 128 && box_rows >= 1 && box_rows <= 256,
                 "tensor map box: expected 64 columns (128 bytes) and 1..256 rows, got ", box_cols, " x ", box_rows);
  return encode_2d(base, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, rows, cols, box_cols, box_rows,
                   CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
}

}  // namespace nvfp4moe::cuda
