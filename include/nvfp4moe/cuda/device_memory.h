// Owning device allocations for the library's long-lived objects (weights, workspaces).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "nvfp4moe/common/cuda_check.h"

namespace nvfp4moe::cuda {

// cudaMalloc'd bytes, freed on destruction; movable, not copyable.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    if (bytes_) NVFP4MOE_CUDA_CHECK(cudaMalloc(&ptr_, bytes_));
  }
  ~DeviceMemory() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory(DeviceMemory&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

  // Synchronous upload of `n` bytes at `offset` (set-up time only, never in a forward). The
  // device synchronization is needed: cudaMemcpy from pageable memory may return once the bytes
  // are staged, before the DMA lands, and a kernel on a non-blocking stream is not ordered
  // after the legacy stream's copy.
  void upload(const void* host, size_t n, size_t offset = 0) {
    NVFP4MOE_CHECK(offset + n <= bytes_, "upload: ", n, " bytes at ", offset, " exceed the allocation of ", bytes_);
    if (n == 0) return;
    NVFP4MOE_CUDA_CHECK(cudaMemcpy(static_cast<char*>(ptr_) + offset, host, n, cudaMemcpyHostToDevice));
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace nvfp4moe::cuda
