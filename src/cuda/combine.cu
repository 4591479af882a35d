// Launcher of the combine kernel (include/nvfp4moe/kernels/combine_sm90.cuh).
#include "nvfp4moe/cuda/routing.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <limits>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/pdl_launch.h"
#include "nvfp4moe/kernels/combine_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

template <typename RowT, typename OutT>
void launch_combine(const void* rows, const float* weights, const int32_t* pair_to_sorted, int64_t tokens,
                    int top_k, int64_t hidden, const void* shared, void* out, cudaStream_t stream) {
  const int64_t vectors = hidden / kernels::kCombineVec;
  const dim3 grid(unsigned(tokens), unsigned((vectors + kernels::kCombineThreads - 1) / kernels::kCombineThreads));
  const int m = int(tokens * top_k);
  const auto* r = static_cast<const RowT*>(rows);
  auto* o = static_cast<OutT*>(out);
  if (shared) {
    launch_pdl(kernels::combine_sm90<RowT, OutT, true>, grid, dim3(kernels::kCombineThreads), 0, stream, r, weights,
               pair_to_sorted, m, top_k, int(hidden), static_cast<const RowT*>(shared), o);
  } else {
    launch_pdl(kernels::combine_sm90<RowT, OutT, false>, grid, dim3(kernels::kCombineThreads), 0, stream, r, weights,
               pair_to_sorted, m, top_k, int(hidden), static_cast<const RowT*>(nullptr), o);
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

template <typename RowT>
void dispatch_out(CombineOutDType out_dtype, const void* rows, const float* weights,
                  const int32_t* pair_to_sorted, int64_t tokens, int top_k, int64_t hidden,
                  const void* shared, void* out, cudaStream_t stream) {
  switch (out_dtype) {
    case CombineOutDType::kBF16:
      launch_combine<RowT, __nv_bfloat16>(rows, weights, pair_to_sorted, tokens, top_k, hidden, shared, out, stream);
      break;
    case CombineOutDType::kFP16:
      launch_combine<RowT, __half>(rows, weights, pair_to_sorted, tokens, top_k, hidden, shared, out, stream);
      break;
    case CombineOutDType::kFloat32:
      launch_combine<RowT, float>(rows, weights, pair_to_sorted, tokens, top_k, hidden, shared, out, stream);
      break;
  }
}

}  // namespace

void combine(const void* rows, ActDType rows_dtype, const float* weights, const int32_t* pair_to_sorted,
             int64_t tokens, int top_k, int64_t hidden, const void* shared, void* out,
             CombineOutDType out_dtype, cudaStream_t stream) {
  NVFP4MOE_CHECK(rows_dtype == ActDType::kBF16 || rows_dtype == ActDType::kFP16,
                 "rows_dtype: expected kBF16 or kFP16, got ", int(rows_dtype));
  NVFP4MOE_CHECK(out_dtype == CombineOutDType::kBF16 || out_dtype == CombineOutDType::kFP16 ||
                     out_dtype == CombineOutDType::kFloat32,
                 "out_dtype: expected kBF16, kFP16 or kFloat32, got ", int(out_dtype));
  NVFP4MOE_CHECK(top_k >= 1 && top_k <= kernels::kCombineMaxTopK, "top_k: expected 1..",
                 kernels::kCombineMaxTopK, ", got ", top_k);
  NVFP4MOE_CHECK(hidden >= kernels::kCombineVec && hidden % kernels::kCombineVec == 0,
                 "hidden: expected a positive multiple of 8 (16-byte vectors), got ", hidden);
  const int64_t max_hidden = int64_t(65535) * kernels::kCombineThreads * kernels::kCombineVec;
  NVFP4MOE_CHECK(hidden <= max_hidden, "hidden: expected <= ", max_hidden, ", got ", hidden);
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= std::numeric_limits<int32_t>::max(),
                 "tokens: expected 0..2^31-1, got ", tokens);
  NVFP4MOE_CHECK(tokens * top_k <= std::numeric_limits<int32_t>::max(),
                 "tokens: tokens * top_k = ", tokens * top_k, " exceeds the int32 row range");
  NVFP4MOE_CHECK(shared == nullptr || is_aligned(shared, 16), "shared: expected a 16-byte aligned pointer");
  if (tokens == 0) return;
  NVFP4MOE_CHECK(rows != nullptr, "rows: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(rows, 16), "rows: expected a 16-byte aligned pointer");
  NVFP4MOE_CHECK(weights != nullptr, "weights: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(weights, 4), "weights: expected a 4-byte aligned pointer");
  NVFP4MOE_CHECK(pair_to_sorted != nullptr, "pair_to_sorted: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(pair_to_sorted, 4), "pair_to_sorted: expected a 4-byte aligned pointer");
  NVFP4MOE_CHECK(out != nullptr, "out: expected a device pointer, got nullptr");
  NVFP4MOE_CHECK(is_aligned(out, 16), "out: expected a 16-byte aligned pointer");

  if (rows_dtype == ActDType::kBF16) {
    dispatch_out<__nv_bfloat16>(out_dtype, rows, weights, pair_to_sorted, tokens, top_k, hidden, shared, out, stream);
  } else {
    dispatch_out<__half>(out_dtype, rows, weights, pair_to_sorted, tokens, top_k, hidden, shared, out, stream);
  }
}

}  // namespace nvfp4moe::cuda
