// Shared helpers of the benchmarks: CUDA-event timing (warm-up, median of N), rotating input
// buffers larger than L2, the device copy-bandwidth ceiling, device/driver/CUDA info, a small
// aligned table printer and a tiny JSON writer. Header-only; every bench/*.cu includes it.
//
// Timing method (time_median_us): a spin kernel first holds the stream for a few ms so that
// all N timed calls, each between its own pair of events, are enqueued before the GPU
// reaches them; the GPU then runs them back to back and each event pair measures device time
// only (no host launch latency). The reported number is the median over the N calls.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "nvfp4moe/common/cuda_check.h"

namespace nvfp4moe::bench {

// ---------------------------------------------------------------------------------------------
// Device information
// ---------------------------------------------------------------------------------------------

struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  int driver_version = 0;   // e.g. 13000 = 13.0
  int runtime_version = 0;
  int64_t l2_bytes = 0;
  int64_t global_mem_bytes = 0;
};

// Runs a benchmark's body after checking that a CUDA device is there; a missing GPU or any
// error ends the program with a message naming the benchmark and exit status 1 (never an
// uncaught exception and abort). Use: int main(int c, char** v) { return guarded_main(
// "nvfp4moe_bench_x", c, v, run); }.
inline int guarded_main(const char* program, int argc, char** argv, int (*body)(int, char**)) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::fprintf(stderr, "%s: no CUDA GPU available (%s): nothing to benchmark\n", program,
                 status != cudaSuccess ? cudaGetErrorString(status) : "no device");
    return 1;
  }
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

inline std::string cuda_version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

inline DeviceInfo device_info(int device = 0) {
  DeviceInfo d;
  cudaDeviceProp p{};
  NVFP4MOE_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  d.name = p.name;
  d.sm_count = p.multiProcessorCount;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.l2_bytes = p.l2CacheSize;
  d.global_mem_bytes = int64_t(p.totalGlobalMem);
  NVFP4MOE_CUDA_CHECK(cudaDriverGetVersion(&d.driver_version));
  NVFP4MOE_CUDA_CHECK(cudaRuntimeGetVersion(&d.runtime_version));
  return d;
}

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, L2 50 MB), driver CUDA 13.0, runtime 13.0"
inline std::string describe(const DeviceInfo& d) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %d SMs, L2 %lld MB, %.1f GB), driver CUDA %s, runtime %s",
                d.name.c_str(), d.cc_major, d.cc_minor, d.sm_count,
                static_cast<long long>(d.l2_bytes >> 20), double(d.global_mem_bytes) / 1e9,
                cuda_version_string(d.driver_version).c_str(),
                cuda_version_string(d.runtime_version).c_str());
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

namespace detail {
// Holds the stream for `ns` nanoseconds of device time (globaltimer), so that the host can
// enqueue the timed calls before the device starts on them.
__global__ void spin_kernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}
}  // namespace detail

struct Timing {
  double median_us = 0;
  double min_us = 0;
  double mean_us = 0;
  int iterations = 0;
};

// Median, minimum and mean of per-call samples (us, non-empty).
inline Timing summarize_us(std::vector<double> us, int iterations) {
  Timing t;
  t.iterations = iterations;
  for (double v : us) t.mean_us += v;
  t.mean_us /= double(us.size());
  std::sort(us.begin(), us.end());
  const size_t n = us.size();
  t.min_us = us.front();
  t.median_us = (n % 2) ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
  return t;
}

// Times fn(i) (which enqueues work on `stream`; i counts calls so the callable can rotate its
// buffers) with one pair of CUDA events per call: `warmup` untimed calls, then `iters` timed
// ones enqueued behind a spin kernel. Keep iters <= ~300 so the launch queue does not fill
// (the host would then block and the events would see launch gaps).
template <typename Fn>
Timing time_median_us(cudaStream_t stream, Fn&& fn, int warmup = 10, int iters = 200) {
  int call = 0;
  for (int i = 0; i < warmup; ++i) fn(call++);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));

  std::vector<cudaEvent_t> ev(2 * size_t(iters));
  for (auto& e : ev) NVFP4MOE_CUDA_CHECK(cudaEventCreate(&e));
  detail::spin_kernel<<<1, 1, 0, stream>>>(uint64_t(5'000'000));  // 5 ms head start
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  for (int i = 0; i < iters; ++i) {
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(ev[2 * i], stream));
    fn(call++);
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], stream));
  }
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));

  std::vector<double> us(iters);
  for (int i = 0; i < iters; ++i) {
    float ms = 0;
    NVFP4MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    us[i] = double(ms) * 1e3;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  return summarize_us(std::move(us), iters);
}

// Per-call device time of fn when calls run back to back, as in a CUDA graph or a stream of
// launches: `batch` calls between one pair of events, per call, median over `reps` batches
// (behind the same spin kernel head start). time_median_us puts an event pair around every
// call, which costs a few microseconds of its own (the "timing floor" the benches print); for
// calls that short this is the number that says what the call costs inside a forward pass.
// fn(i) rotates its buffers as for time_median_us.
template <typename Fn>
Timing time_batch_us(cudaStream_t stream, Fn&& fn, int batch = 20, int reps = 15, int warmup = 10) {
  int call = 0;
  for (int i = 0; i < warmup; ++i) fn(call++);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<cudaEvent_t> ev(2 * size_t(reps));
  for (auto& e : ev) NVFP4MOE_CUDA_CHECK(cudaEventCreate(&e));
  detail::spin_kernel<<<1, 1, 0, stream>>>(uint64_t(5'000'000));  // 5 ms head start
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  for (int r = 0; r < reps; ++r) {
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(ev[2 * r], stream));
    for (int i = 0; i < batch; ++i) fn(call++);
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1], stream));
  }
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> us(reps);
  for (int r = 0; r < reps; ++r) {
    float ms = 0;
    NVFP4MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[2 * r], ev[2 * r + 1]));
    us[r] = double(ms) * 1e3 / batch;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  return summarize_us(std::move(us), reps * batch);
}

// Iterations for a call that moves `bytes`: many for small calls, fewer (>= 20) for the
// multi-GB ones so a benchmark row stays well under a second of device time.
inline int iterations_for_bytes(double bytes, int max_iters = 200, int min_iters = 20) {
  double est_us = bytes / 3.0e6;  // ~3 TB/s = 3e6 bytes per us
  int n = int(200'000.0 / std::max(est_us, 1.0));  // ~0.2 s of device time
  return std::clamp(n, min_iters, max_iters);
}

// ---------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------

// An owning device allocation of raw bytes.
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    if (bytes) NVFP4MOE_CUDA_CHECK(cudaMalloc(&p_, bytes));
  }
  ~DeviceBytes() { if (p_) cudaFree(p_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  DeviceBytes(DeviceBytes&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBytes& operator=(DeviceBytes&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  template <typename T = void>
  T* get() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// `count` equally sized device buffers used round-robin so that successive timed calls touch
// different memory and no call finds its inputs in L2. count = rotation_count(...).
class RotatingBuffers {
 public:
  RotatingBuffers(size_t bytes_each, int count) {
    for (int i = 0; i < count; ++i) bufs_.emplace_back(std::max<size_t>(bytes_each, 256));
  }
  template <typename T = void>
  T* at(int call) const { return bufs_[size_t(call) % bufs_.size()].get<T>(); }
  int count() const { return int(bufs_.size()); }
  size_t bytes_each() const { return bufs_.empty() ? 0 : bufs_[0].bytes(); }
  // Fills every buffer with finite pseudo-random bf16 values (fill_random_act16), seeded.
  void fill_random(uint32_t seed, cudaStream_t stream);

 private:
  std::vector<DeviceBytes> bufs_;
};

// How many copies of a `bytes_per_call` working set make one rotation exceed `factor` x L2
// (capped at max_count; at least 1).
inline int rotation_count(double bytes_per_call, int64_t l2_bytes, double factor = 4.0, int max_count = 64) {
  double need = factor * double(l2_bytes);
  int n = int(std::ceil(need / std::max(bytes_per_call, 1.0)));
  return std::clamp(n, 1, max_count);
}

namespace detail {
// A random 16-bit pattern per element that decodes to a finite bf16 of moderate magnitude:
// sign and 7 mantissa bits random, magnitude in [2^-4, 2^3) (no Inf/NaN, no overflow in silu).
__global__ void fill_bf16_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 15; h *= 0x2C1B3C6Du; h ^= h >> 12; h *= 0x297A2D39u; h ^= h >> 15;
    uint32_t exp = 123u + (h >> 8) % 7u;  // 2^-4 .. 2^2
    p[i] = uint16_t(((h & 1u) << 15) | (exp << 7) | ((h >> 1) & 0x7fu));
  }
}
// The same for fp16: exponent field 11..17, magnitude in [2^-4, 2^3).
__global__ void fill_fp16_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 15; h *= 0x2C1B3C6Du; h ^= h >> 12; h *= 0x297A2D39u; h ^= h >> 15;
    uint32_t exp = 11u + (h >> 12) % 7u;
    p[i] = uint16_t(((h & 1u) << 15) | (exp << 10) | ((h >> 1) & 0x3ffu));
  }
}
}  // namespace detail

// Fills `n` 16-bit activations at p with finite random values (fp16 when is_fp16).
inline void fill_random_act16(uint16_t* p, size_t n, bool is_fp16, uint32_t seed, cudaStream_t stream) {
  if (n == 0) return;
  if (is_fp16) detail::fill_fp16_kernel<<<1024, 256, 0, stream>>>(p, n, seed);
  else detail::fill_bf16_kernel<<<1024, 256, 0, stream>>>(p, n, seed);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

inline void RotatingBuffers::fill_random(uint32_t seed, cudaStream_t stream) {
  for (size_t i = 0; i < bufs_.size(); ++i) {
    fill_random_act16(bufs_[i].get<uint16_t>(), bufs_[i].bytes() / 2, false, seed + uint32_t(i), stream);
  }
}

// ---------------------------------------------------------------------------------------------
// Ceiling: device copy bandwidth
// ---------------------------------------------------------------------------------------------

// Device-to-device cudaMemcpyAsync of `bytes` (default 1 GiB): median bandwidth in GB/s
// counting bytes read + written (2 x bytes), the same accounting as the kernels' numbers.
inline double measure_copy_bandwidth_gbs(cudaStream_t stream, size_t bytes = size_t(1) << 30, int iters = 20) {
  DeviceBytes src(bytes), dst(bytes);
  NVFP4MOE_CUDA_CHECK(cudaMemsetAsync(src.get(), 1, bytes, stream));
  Timing t = time_median_us(stream, [&](int) {
    NVFP4MOE_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream));
  }, 3, iters);
  return 2.0 * double(bytes) / (t.median_us * 1e-6) / 1e9;
}

// ---------------------------------------------------------------------------------------------
// Output: an aligned text table and a tiny JSON writer
// ---------------------------------------------------------------------------------------------

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// Columns right-aligned to their widest cell; print() writes header, rule and rows.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add_row(std::vector<std::string> row) {
    row.resize(header_.size());
    rows_.push_back(std::move(row));
  }
  void print(FILE* f = stdout) const {
    std::vector<size_t> w(header_.size());
    for (size_t c = 0; c < header_.size(); ++c) {
      w[c] = header_[c].size();
      for (const auto& r : rows_) w[c] = std::max(w[c], r[c].size());
    }
    auto line = [&](const std::vector<std::string>& r) {
      for (size_t c = 0; c < r.size(); ++c) std::fprintf(f, "%s%*s", c ? "  " : "", int(w[c]), r[c].c_str());
      std::fprintf(f, "\n");
    };
    line(header_);
    size_t total = 0;
    for (size_t c = 0; c < w.size(); ++c) total += w[c] + (c ? 2 : 0);
    std::fprintf(f, "%s\n", std::string(total, '-').c_str());
    for (const auto& r : rows_) line(r);
    std::fflush(f);
  }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// One flat JSON object of string and number fields; JsonWriter collects them into
// {"meta": {...}, "results": [{...}, ...]}.
class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& value) {
    fields_.emplace_back(key, "\"" + escape(value) + "\"");
    return *this;
  }
  JsonObject& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonObject& add(const std::string& key, double value) {
    char buf[64];
    if (std::isfinite(value)) std::snprintf(buf, sizeof(buf), "%.9g", value);
    else std::snprintf(buf, sizeof(buf), "null");
    fields_.emplace_back(key, buf);
    return *this;
  }
  JsonObject& add(const std::string& key, int64_t value) {
    fields_.emplace_back(key, std::to_string(value));
    return *this;
  }
  JsonObject& add(const std::string& key, int value) { return add(key, int64_t(value)); }
  JsonObject& add(const std::string& key, bool value) {
    fields_.emplace_back(key, value ? "true" : "false");
    return *this;
  }
  std::string str() const {
    std::string s = "{";
    for (size_t i = 0; i < fields_.size(); ++i) {
      s += (i ? ", \"" : "\"") + escape(fields_[i].first) + "\": " + fields_[i].second;
    }
    return s + "}";
  }

 private:
  static std::string escape(const std::string& in) {
    std::string out;
    for (char ch : in) {
      if (ch == '"' || ch == '\\') { out += '\\'; out += ch; }
      else if (static_cast<unsigned char>(ch) < 0x20) { out += ' '; }
      else out += ch;
    }
    return out;
  }
  std::vector<std::pair<std::string, std::string>> fields_;
};

class JsonWriter {
 public:
  JsonObject& meta() { return meta_; }
  void add_result(JsonObject o) { results_.push_back(std::move(o)); }
  // Writes the file; returns false (after a message on stderr) when it cannot be opened.
  bool write(const std::string& path) const {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return false;
    }
    std::fprintf(f, "{\n  \"meta\": %s,\n  \"results\": [\n", meta_.str().c_str());
    for (size_t i = 0; i < results_.size(); ++i) {
      std::fprintf(f, "    %s%s\n", results_[i].str().c_str(), i + 1 < results_.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    return true;
  }

 private:
  JsonObject meta_;
  std::vector<JsonObject> results_;
};

// Device info as JSON meta fields (call once per benchmark).
inline void add_device_meta(JsonObject& meta, const DeviceInfo& d, double copy_gbs) {
  meta.add("device", d.name)
      .add("sm_count", d.sm_count)
      .add("driver_cuda", cuda_version_string(d.driver_version))
      .add("runtime_cuda", cuda_version_string(d.runtime_version))
      .add("l2_bytes", d.l2_bytes)
      .add("copy_bandwidth_gbs", copy_gbs);
}

// Returns the value after `--name` in argv (or nullptr).
inline const char* arg_value(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == name) return argv[i + 1];
  }
  return nullptr;
}
inline bool has_flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == name) return true;
  }
  return false;
}

}  // namespace nvfp4moe::bench
