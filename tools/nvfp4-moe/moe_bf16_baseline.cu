#include "moe_bf16_baseline.h"

#include <cuda_bf16.h>

#include <algorithm>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/cuda/moe.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/cuda/routing.h"

namespace nvfp4moe::tool {
namespace {

#define NVFP4MOE_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                         \
    cublasStatus_t st_ = (expr);                                                               \
    NVFP4MOE_CHECK(st_ == CUBLAS_STATUS_SUCCESS, #expr " failed with cuBLAS status ", int(st_)); \
  } while (0)

__device__ uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void fill_bf16_kernel(__nv_bfloat16* p, int64_t n, float lo, float hi, uint64_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float u = float(mix(seed ^ uint64_t(i)) >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2bfloat16(lo + (hi - lo) * u);
  }
}

__global__ void fill_f32_kernel(float* p, int64_t n, float lo, float hi, uint64_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float u = float(mix(seed ^ uint64_t(i)) >> 40) * (1.0f / 16777216.0f);
    p[i] = lo + (hi - lo) * u;
  }
}

constexpr size_t kAlign = 256;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

}  // namespace

void fill_random_bf16(void* p, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t stream) {
  if (n == 0) return;
  fill_bf16_kernel<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(p), n, lo, hi, seed);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void fill_random_f32(float* p, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t stream) {
  if (n == 0) return;
  fill_f32_kernel<<<1024, 256, 0, stream>>>(p, n, lo, hi, seed);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

Bf16MoeBaseline::Bf16MoeBaseline(const MoeConfig& cfg, int64_t max_tokens, uint64_t seed)
    : cfg_(cfg), max_tokens_(max_tokens) {
  const int64_t e = cfg.routing.num_experts, k = cfg.routing.top_k, h = cfg.hidden, inter = cfg.intermediate;
  const int64_t is = int64_t(cfg.n_shared_experts) * inter, m = max_tokens * k, t = max_tokens;
  const int64_t w_elems = e * (2 * inter * h + h * inter) + (2 * is * h + h * is);
  weights_ = cuda::DeviceMemory(size_t(w_elems) * 2);
  // Weights uniform in +-sqrt(3/K)-ish: the values do not matter for timing, only that they
  // are not zeros.
  fill_random_bf16(weights_.get(), w_elems, -0.03f, 0.03f, seed, nullptr);

  permute_ws_bytes_ = cuda::permute_workspace_bytes(t, int(k), int(e));
  size_t sizes[] = {size_t(m) * 4, size_t(m) * 4, size_t(e) * 4, size_t(e + 1) * 4, size_t(e + 1) * 4,
                    size_t(m) * 4, size_t(m) * 4, size_t(m) * 4, permute_ws_bytes_, size_t(m * h) * 2,
                    size_t(m * 2 * inter) * 2, size_t(m * inter) * 2, size_t(m * h) * 2, size_t(t * 2 * is) * 2,
                    size_t(t * is) * 2, size_t(t * h) * 2};
  size_t total = 0;
  for (size_t s : sizes) total += align_up(std::max<size_t>(s, 16));
  work_ = cuda::DeviceMemory(total);
  char* p = work_.as<char>();
  void* views[16];
  for (int i = 0; i < 16; ++i) {
    views[i] = p;
    p += align_up(std::max<size_t>(sizes[i], 16));
  }
  ids_ = static_cast<int32_t*>(views[0]);
  weights_rt_ = static_cast<float*>(views[1]);
  counts_ = static_cast<int32_t*>(views[2]);
  off_ = static_cast<int32_t*>(views[3]);
  sf_off_ = static_cast<int32_t*>(views[4]);
  sorted_to_pair_ = static_cast<int32_t*>(views[5]);
  pair_to_sorted_ = static_cast<int32_t*>(views[6]);
  sorted_to_token_ = static_cast<int32_t*>(views[7]);
  permute_ws_ = views[8];
  a1_ = views[9];
  g1_ = views[10];
  a2_ = views[11];
  g2_ = views[12];
  s1_ = views[13];
  s2_ = views[14];
  so_ = views[15];
  NVFP4MOE_CUDA_CHECK(cudaMemset(work_.get(), 0, work_.bytes()));
  NVFP4MOE_CUBLAS_CHECK(cublasCreate(&handle_));
  host_off_.resize(size_t(e + 1));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
}

Bf16MoeBaseline::~Bf16MoeBaseline() {
  if (handle_) cublasDestroy(handle_);
}

// c [m, n] = a [m, k] x w [n, k]^T, all row-major bf16, fp32 accumulation. cuBLAS is column
// major: c^T [n, m] = w [n, k] (op T of the col-major [k, n]) x a^T [k, m].
void Bf16MoeBaseline::gemm(const void* a, int64_t m, const void* w, int64_t n, int64_t k, void* c,
                           cudaStream_t stream) {
  if (m == 0) return;
  const float one = 1.0f, zero = 0.0f;
  NVFP4MOE_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  NVFP4MOE_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, w, CUDA_R_16BF,
                                     int(k), a, CUDA_R_16BF, int(k), &zero, c, CUDA_R_16BF, int(n),
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void Bf16MoeBaseline::forward(const void* hidden, const float* logits, int64_t tokens, void* out, cudaStream_t stream) {
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= max_tokens_, "tokens: expected 0..", max_tokens_);
  if (tokens == 0) return;
  const int e = cfg_.routing.num_experts, k = cfg_.routing.top_k;
  const int64_t h = cfg_.hidden, inter = cfg_.intermediate, is = int64_t(cfg_.n_shared_experts) * inter;
  const int64_t m = tokens * k;
  const auto* w13 = weights_.as<__nv_bfloat16>();
  const auto* w2 = w13 + e * 2 * inter * h;
  const auto* sw13 = w2 + e * h * inter;
  const auto* sw2 = sw13 + 2 * is * h;

  // No correction bias: the synthetic NVFP4 layer it is compared with has a zero bias, which
  // selects the same experts.
  cuda::route(logits, cuda::LogitsDType::kFloat32, nullptr, tokens, cfg_.routing, ids_, weights_rt_, stream);
  cuda::PermuteOutputs po{counts_, off_, sf_off_, sorted_to_pair_, pair_to_sorted_, sorted_to_token_};
  cuda::permute(ids_, tokens, k, e, max_tokens_, po, permute_ws_, permute_ws_bytes_, stream);
  NVFP4MOE_CUDA_CHECK(cudaMemcpyAsync(host_off_.data(), off_, size_t(e + 1) * 4, cudaMemcpyDeviceToHost, stream));
  cuda::gather_rows(hidden, tokens, h, sorted_to_token_, m, a1_, stream);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // the per-expert row counts, on the host
  for (int x = 0; x < e; ++x) {
    int64_t rows = host_off_[size_t(x + 1)] - host_off_[size_t(x)];
    gemm(static_cast<const __nv_bfloat16*>(a1_) + host_off_[size_t(x)] * h, rows, w13 + x * 2 * inter * h, 2 * inter,
         h, static_cast<__nv_bfloat16*>(g1_) + host_off_[size_t(x)] * 2 * inter, stream);
  }
  cuda::silu_and_mul(g1_, ActDType::kBF16, m, inter, cfg_.swiglu_limit, a2_, stream);
  for (int x = 0; x < e; ++x) {
    int64_t rows = host_off_[size_t(x + 1)] - host_off_[size_t(x)];
    gemm(static_cast<const __nv_bfloat16*>(a2_) + host_off_[size_t(x)] * inter, rows, w2 + x * h * inter, h, inter,
         static_cast<__nv_bfloat16*>(g2_) + host_off_[size_t(x)] * h, stream);
  }
  if (is) {
    gemm(hidden, tokens, sw13, 2 * is, h, s1_, stream);
    cuda::silu_and_mul(s1_, ActDType::kBF16, tokens, is, cfg_.swiglu_limit, s2_, stream);
    gemm(s2_, tokens, sw2, h, is, so_, stream);
  }
  cuda::combine(g2_, ActDType::kBF16, weights_rt_, pair_to_sorted_, tokens, k, h, is ? so_ : nullptr, out,
                cuda::CombineOutDType::kBF16, stream);
}

double measure_cublas_bf16_tflops(int64_t m, int64_t n, int64_t k, int iters) {
  cuda::DeviceMemory a(size_t(m * k) * 2), b(size_t(n * k) * 2), c(size_t(m * n) * 2);
  fill_random_bf16(a.get(), m * k, -1, 1, 1, nullptr);
  fill_random_bf16(b.get(), n * k, -1, 1, 2, nullptr);
  cublasHandle_t h;
  NVFP4MOE_CUBLAS_CHECK(cublasCreate(&h));
  const float one = 1.0f, zero = 0.0f;
  auto run = [&] {
    NVFP4MOE_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, b.get(), CUDA_R_16BF,
                                       int(k), a.get(), CUDA_R_16BF, int(k), &zero, c.get(), CUDA_R_16BF, int(n),
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t s, t;
  cudaEventCreate(&s);
  cudaEventCreate(&t);
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(s);
    run();
    cudaEventRecord(t);
    cudaEventSynchronize(t);
    float x;
    cudaEventElapsedTime(&x, s, t);
    ms.push_back(x);
  }
  cudaEventDestroy(s);
  cudaEventDestroy(t);
  cublasDestroy(h);
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(m) * double(n) * double(k) / (double(ms[ms.size() / 2]) * 1e-3) / 1e12;
}

double measure_copy_gbs(size_t bytes, int iters) {
  cuda::DeviceMemory src(bytes), dst(bytes);
  NVFP4MOE_CUDA_CHECK(cudaMemset(src.get(), 1, bytes));
  cudaEvent_t s, t;
  cudaEventCreate(&s);
  cudaEventCreate(&t);
  std::vector<float> ms;
  for (int i = 0; i < iters + 2; ++i) {
    cudaEventRecord(s);
    NVFP4MOE_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));
    cudaEventRecord(t);
    cudaEventSynchronize(t);
    float x;
    cudaEventElapsedTime(&x, s, t);
    if (i >= 2) ms.push_back(x);
  }
  cudaEventDestroy(s);
  cudaEventDestroy(t);
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(bytes) / (double(ms[ms.size() / 2]) * 1e-3) / 1e9;
}

}  // namespace nvfp4moe::tool
