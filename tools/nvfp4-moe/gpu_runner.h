// The GPU side of `nvfp4-moe run`/`bench`: a layer uploaded once, a workspace, device inputs,
// and timed forwards (CUDA events; eager and CUDA-graph replay).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <span>
#include <vector>

#include "cold_timer.h"
#include "nvfp4moe/cuda/moe.h"

namespace nvfp4moe::tool {

class GpuLayerRunner {
 public:
  GpuLayerRunner(const MoeConfig& cfg, const MoeWeights& w, int64_t max_tokens);
  GpuLayerRunner(cuda::MoeLayerWeights&& w, int64_t max_tokens);
  ~GpuLayerRunner();
  GpuLayerRunner(const GpuLayerRunner&) = delete;
  GpuLayerRunner& operator=(const GpuLayerRunner&) = delete;

  // Upload hidden [T, H] bf16 bits and logits [T, E] float32 (T <= max_tokens).
  void set_inputs(std::span<const uint16_t> hidden, std::span<const float> logits, int64_t tokens);
  // Use the first `tokens` rows of inputs already on the device (device_hidden/device_logits).
  void set_tokens(int64_t tokens);
  void* device_hidden() const { return hidden_.get(); }
  float* device_logits() const { return logits_.as<float>(); }
  cuda::MoeWorkspace& workspace() { return *ws_; }
  cudaStream_t stream() const { return stream_; }
  // One forward on the runner's stream, then the output [T, H] bf16 bits.
  std::vector<uint16_t> forward_and_download();
  // Median milliseconds of `iters` forwards: eager launches, or replays of a captured graph.
  // Without `cold`, each replay starts on an idle stream (the host's launch latency inside the
  // time, the weights of the previous replay maybe still in L2); with it, replays are queued
  // behind an L2 flush (cold_timer.h: how a serving engine's forward runs).
  double time_eager_ms(int iters, ColdQueuedTimer* cold = nullptr);
  double time_graph_ms(int iters, ColdQueuedTimer* cold = nullptr);

  const cuda::MoeLayerWeights& weights() const { return *weights_; }

 private:
  void forward();
  std::unique_ptr<cuda::MoeLayerWeights> weights_;
  std::unique_ptr<cuda::MoeWorkspace> ws_;
  cuda::DeviceMemory hidden_, logits_, out_;
  int64_t tokens_ = 0, hidden_size_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace nvfp4moe::tool
