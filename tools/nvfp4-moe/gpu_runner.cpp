#include "gpu_runner.h"

#include <algorithm>

#include "nvfp4moe/common/cuda_check.h"

namespace nvfp4moe::tool {

GpuLayerRunner::GpuLayerRunner(const MoeConfig& cfg, const MoeWeights& w, int64_t max_tokens)
    : GpuLayerRunner(cuda::MoeLayerWeights::upload(cfg, w), max_tokens) {}

GpuLayerRunner::GpuLayerRunner(cuda::MoeLayerWeights&& w, int64_t max_tokens)
    : weights_(std::make_unique<cuda::MoeLayerWeights>(std::move(w))),
      ws_(std::make_unique<cuda::MoeWorkspace>(weights_->config(), std::max<int64_t>(max_tokens, 1))),
      hidden_(size_t(std::max<int64_t>(max_tokens, 1) * weights_->config().hidden * 2)),
      logits_(size_t(std::max<int64_t>(max_tokens, 1) * weights_->config().routing.num_experts * 4)),
      out_(size_t(std::max<int64_t>(max_tokens, 1) * weights_->config().hidden * 2)),
      hidden_size_(weights_->config().hidden) {
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  NVFP4MOE_CUDA_CHECK(cudaEventCreate(&start_));
  NVFP4MOE_CUDA_CHECK(cudaEventCreate(&stop_));
}

GpuLayerRunner::~GpuLayerRunner() {
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
  cudaStreamDestroy(stream_);
}

void GpuLayerRunner::set_inputs(std::span<const uint16_t> hidden, std::span<const float> logits, int64_t tokens) {
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= ws_->max_tokens(), "tokens: expected 0..", ws_->max_tokens(), ", got ", tokens);
  tokens_ = tokens;
  hidden_.upload(hidden.data(), hidden.size_bytes());
  logits_.upload(logits.data(), logits.size_bytes());
}

void GpuLayerRunner::set_tokens(int64_t tokens) {
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= ws_->max_tokens(), "tokens: expected 0..", ws_->max_tokens(), ", got ", tokens);
  tokens_ = tokens;
}

void GpuLayerRunner::forward() {
  cuda::moe_forward(*weights_, *ws_, hidden_.get(), logits_.as<float>(), tokens_, out_.get(), stream_);
}

std::vector<uint16_t> GpuLayerRunner::forward_and_download() {
  forward();
  std::vector<uint16_t> out(size_t(tokens_ * hidden_size_));
  NVFP4MOE_CUDA_CHECK(cudaMemcpyAsync(out.data(), out_.get(), out.size() * 2, cudaMemcpyDeviceToHost, stream_));
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  uint32_t flags = 0;
  NVFP4MOE_CUDA_CHECK(cudaMemcpy(&flags, ws_->error_flags(), 4, cudaMemcpyDeviceToHost));
  NVFP4MOE_CHECK(flags == 0, "GPU forward: device-side validation flagged 0x", std::hex, flags);
  return out;
}

namespace {
double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}
}  // namespace

double GpuLayerRunner::time_eager_ms(int iters, ColdQueuedTimer* cold) {
  if (cold) return cold->median_ms(stream_, iters, [&] { forward(); });
  for (int i = 0; i < 3; ++i) forward();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(start_, stream_));
    forward();
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(stop_, stream_));
    NVFP4MOE_CUDA_CHECK(cudaEventSynchronize(stop_));
    float t = 0;
    NVFP4MOE_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
    ms.push_back(t);
  }
  return median(ms);
}

double GpuLayerRunner::time_graph_ms(int iters, ColdQueuedTimer* cold) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  forward();
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  double result = 0;
  if (cold) {
    result = cold->median_ms(stream_, iters, [&] { NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream_)); });
  } else {
    std::vector<float> ms;
    for (int i = 0; i < iters; ++i) {
      NVFP4MOE_CUDA_CHECK(cudaEventRecord(start_, stream_));
      NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
      NVFP4MOE_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      NVFP4MOE_CUDA_CHECK(cudaEventSynchronize(stop_));
      float t = 0;
      NVFP4MOE_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
    }
    result = median(ms);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return result;
}

}  // namespace nvfp4moe::tool
