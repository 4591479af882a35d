#include "cold_timer.h"

#include <algorithm>

#include "nvfp4moe/common/cuda_check.h"

namespace nvfp4moe::tool {
namespace {

// Reads every 16 bytes of buf; the sum is stored only if it equals a value the buffer never
// sums to (all zeros), so the loads cannot be removed and nothing is written.
__global__ void read_to_evict_l2_kernel(const uint4* buf, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = buf[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}

size_t flush_bytes() {
  int dev = 0, l2 = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return std::max<size_t>(size_t(l2) * 4, size_t(64) << 20);
}

}  // namespace

ColdQueuedTimer::ColdQueuedTimer() : flush_buf_(flush_bytes()), sink_(4) {
  NVFP4MOE_CUDA_CHECK(cudaMemset(flush_buf_.get(), 0, flush_buf_.bytes()));
}

ColdQueuedTimer::~ColdQueuedTimer() {
  for (cudaEvent_t e : start_) cudaEventDestroy(e);
  for (cudaEvent_t e : stop_) cudaEventDestroy(e);
}

void ColdQueuedTimer::flush_l2(cudaStream_t stream) {
  int dev = 0, sms = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  read_to_evict_l2_kernel<<<sms * 4, 512, 0, stream>>>(flush_buf_.as<uint4>(), flush_buf_.bytes() / 16,
                                                      sink_.as<unsigned>());
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

double ColdQueuedTimer::median_ms(cudaStream_t stream, int iters, const std::function<void()>& fn) {
  NVFP4MOE_CHECK(iters >= 1, "iters: expected >= 1, got ", iters);
  while (int(start_.size()) < iters) {
    cudaEvent_t a, b;
    NVFP4MOE_CUDA_CHECK(cudaEventCreate(&a));
    NVFP4MOE_CUDA_CHECK(cudaEventCreate(&b));
    start_.push_back(a);
    stop_.push_back(b);
  }
  for (int i = 0; i < 2; ++i) fn();
  for (int i = 0; i < iters; ++i) {
    flush_l2(stream);
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(start_[i], stream));
    fn();
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(stop_[i], stream));
  }
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(size_t(iters), 0.0f);
  for (int i = 0; i < iters; ++i) NVFP4MOE_CUDA_CHECK(cudaEventElapsedTime(&ms[size_t(i)], start_[i], stop_[i]));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace nvfp4moe::tool
