// The baseline of `nvfp4-moe bench`: the same MoE layer with bf16 weights on cuBLAS, with the
// project's routing, permutation, gather, silu_and_mul and combine kernels. cuBLAS needs each
// expert's row count on the host, so a forward copies the counts back and synchronizes once
// (inside the timed region: that is the price of per-expert launches).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <vector>

#include "nvfp4moe/cuda/device_memory.h"
#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::tool {

class Bf16MoeBaseline {
 public:
  // Random bf16 weights (device-generated) for cfg, buffers for up to max_tokens.
  Bf16MoeBaseline(const MoeConfig& cfg, int64_t max_tokens, uint64_t seed);
  ~Bf16MoeBaseline();
  Bf16MoeBaseline(const Bf16MoeBaseline&) = delete;
  Bf16MoeBaseline& operator=(const Bf16MoeBaseline&) = delete;

  // hidden [T, H] bf16, logits [T, E] float32, out [T, H] bf16 (device).
  void forward(const void* hidden, const float* logits, int64_t tokens, void* out, cudaStream_t stream);
  int64_t weight_bytes() const { return weights_.bytes(); }

 private:
  void gemm(const void* a, int64_t m, const void* w, int64_t n, int64_t k, void* c, cudaStream_t stream);
  MoeConfig cfg_;
  int64_t max_tokens_;
  cuda::DeviceMemory weights_, work_;
  cublasHandle_t handle_ = nullptr;
  std::vector<int32_t> host_off_;
  // views into work_
  int32_t *ids_, *counts_, *off_, *sf_off_, *sorted_to_pair_, *pair_to_sorted_, *sorted_to_token_;
  float* weights_rt_;
  void *permute_ws_, *a1_, *g1_, *a2_, *g2_, *s1_, *s2_, *so_;
  size_t permute_ws_bytes_ = 0;
};

// Fill device memory with random bf16 in [lo, hi) / float32 in [lo, hi) (splitmix per element).
void fill_random_bf16(void* p, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t stream);
void fill_random_f32(float* p, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t stream);

// Dense bf16 GEMM rate of cuBLAS (8192^3 unless given), TFLOP/s, median of `iters`.
double measure_cublas_bf16_tflops(int64_t m, int64_t n, int64_t k, int iters);
// Device copy bandwidth (cudaMemcpy D2D, bytes read + written), GB/s.
double measure_copy_gbs(size_t bytes = size_t(1) << 30, int iters = 20);

}  // namespace nvfp4moe::tool
