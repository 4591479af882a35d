// Shared helpers of the GPU test suites: skip without a GPU, device buffers, first-mismatch
// reports.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "nvfp4moe/common/cuda_check.h"

namespace nvfp4moe::test {

// True when a CUDA device of compute capability 9.x is usable.
inline bool have_hopper_gpu() {
  static int cached = -1;
  if (cached < 0) {
    int n = 0;
    cached = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, 0) == cudaSuccess && p.major == 9) cached = 1;
    }
    cudaGetLastError();  // clear the error a missing driver leaves behind
  }
  return cached == 1;
}

// First statement of every GPU test.
#define NVFP4MOE_REQUIRE_GPU()                                                  \
  do {                                                                          \
    if (!::nvfp4moe::test::have_hopper_gpu()) {                                 \
      GTEST_SKIP() << "no Hopper (sm_90) GPU present: GPU test skipped";        \
    }                                                                           \
  } while (0)

// A typed device buffer that frees itself.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n) NVFP4MOE_CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { if (p_) cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_); std::swap(n_, o.n_); return *this;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  // Complete on return: cudaMemcpy from pageable memory may return before the DMA lands, and
  // the tests' non-blocking streams are not ordered after it (a graph replay once read stale
  // router logits that way).
  void upload(const std::vector<T>& host) {
    if (n_ == 0) return;
    NVFP4MOE_CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) NVFP4MOE_CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  // Fill with a byte pattern (poison before a run to catch unwritten outputs). Complete on
  // return, as upload: the memset runs on the legacy stream, which the tests' non-blocking
  // streams are not ordered after.
  void fill_bytes(int byte) {
    if (n_ == 0) return;
    NVFP4MOE_CUDA_CHECK(cudaMemset(p_, byte, n_ * sizeof(T)));
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Bitwise comparison naming the first mismatching index and the mismatch count.
template <typename T>
::testing::AssertionResult bytes_equal(const std::vector<T>& got, const std::vector<T>& want,
                                       const std::string& what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != " << want.size();
  }
  size_t first = got.size(), count = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if (first == got.size()) first = i;
      ++count;
    }
  }
  if (count == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << count << " of " << got.size()
                                       << " differ; first at index " << first << " (got "
                                       << +got[first] << ", want " << +want[first] << ")";
}

// CUDA-graph replay against eager launches: poison(), enqueue() on `stream` eagerly and take
// snapshot(); then capture enqueue() in a graph and replay it twice, each time after poison():
// every buffer of each replay's snapshot must equal the eager one. Returns the eager snapshot
// (for checks of its own). poison() must finish before the stream runs (a non-blocking stream
// does not wait for memsets on the legacy default stream).
template <class Poison, class Enqueue, class Snapshot>
std::vector<std::vector<uint8_t>> expect_graph_replays_equal_eager(cudaStream_t stream, Poison poison,
                                                                   Enqueue enqueue, Snapshot snapshot) {
  poison();
  enqueue();
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<std::vector<uint8_t>> eager = snapshot();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  enqueue();
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    poison();
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<std::vector<uint8_t>> got = snapshot();
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(bytes_equal(got[i], eager[i], "graph replay " + std::to_string(replay) + " buffer " + std::to_string(i)));
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return eager;
}

}  // namespace nvfp4moe::test
