// Timing of GPU work as a serving engine sees it: the host queues work ahead of the GPU, so
// launch latency on the host is hidden, but the weights of one forward are not in L2 when it
// starts (the layers before it streamed their own). Each timed call is preceded by a kernel
// that reads a buffer of 4x the L2 size (clean lines: nothing dirty is left to write back
// during the timed call), and the calls are queued without host synchronization in between,
// so the start event fires when the GPU reaches the call, not when the host submitted it.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <vector>

#include "nvfp4moe/cuda/device_memory.h"

namespace nvfp4moe::tool {

class ColdQueuedTimer {
 public:
  ColdQueuedTimer();
  ~ColdQueuedTimer();
  ColdQueuedTimer(const ColdQueuedTimer&) = delete;
  ColdQueuedTimer& operator=(const ColdQueuedTimer&) = delete;

  // Median milliseconds of `iters` calls of fn on `stream` (after 2 untimed calls), each
  // after an L2 flush; all queued, one synchronization at the end.
  double median_ms(cudaStream_t stream, int iters, const std::function<void()>& fn);

 private:
  void flush_l2(cudaStream_t stream);
  cuda::DeviceMemory flush_buf_, sink_;
  std::vector<cudaEvent_t> start_, stop_;
};

}  // namespace nvfp4moe::tool
