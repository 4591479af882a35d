// Benchmark of the Hopper NVFP4 quantization kernels (cuda/quantize.h), bf16 input:
//   quantize        [M, K], g from device memory
//   runtime         amax + quantize: up to nvfp4moe::cuda::kQuantRuntimeSingleLaunchMaxElems
//                   elements one launch reading the input once (bytes count one read), above
//                   that an amax pass and a quantize pass (bytes count both reads)
//   experts         per-expert quantize, E = 256, skewed split (half the rows on expert 0)
//   experts+gather  the same reading rows through a random gather map
//   silu_and_mul    [M, 2K] -> [M, K] bf16
//   unfused         silu_and_mul + experts on its output (two kernels, intermediate in HBM)
//   fused           silu_and_mul_quantize_experts (one pass); ratio = unfused / fused time
// for M in {1, 16, 128, 1024, 8192, 65536} and K in {2048, 7168}. Time: median of many calls
// (CUDA events, bench_util.h), every call on another rotation of buffers so inputs are not in
// L2. Bandwidth: bytes read + written per call / time (per expert: the scale rows up to
// sf_off[E], the ones written); "%copy" relative to a 1 GiB device-to-device cudaMemcpy
// measured in the same run (read + written as well). The timing floor (an empty kernel
// between the same events) is printed with the device. "b2b us" (M <= 1024): the per-call time
// of 20 calls back to back between one event pair (bench_util.h time_batch_us), i.e. without
// the per-call event overhead: what a call costs inside a captured forward pass, and the
// measure of the "M <= 16 under 5 us" target.
//
//   nvfp4moe_bench_quantize [--json FILE] [--quick] [--m M] [--k K] [--bulk 0|1|2|3]
// (--m / --k: only that row count / width, e.g. to profile one shape.)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/format/swizzle.h"

namespace nb = nvfp4moe::bench;
namespace nc = nvfp4moe::cuda;
using nvfp4moe::ActDType;

namespace {

constexpr int kExperts = 256;

// Skewed split of m rows over E experts: half on expert 0, the rest uniform over the others.
std::vector<int32_t> skewed_offsets(int64_t m, int experts, uint32_t seed) {
  std::vector<int32_t> counts(size_t(experts), 0);
  counts[0] = int32_t(m / 2);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(1, experts - 1);
  for (int64_t i = m / 2; i < m; ++i) counts[size_t(pick(rng))] += 1;
  std::vector<int32_t> off(size_t(experts) + 1, 0);
  for (int e = 0; e < experts; ++e) off[size_t(e) + 1] = off[size_t(e)] + counts[size_t(e)];
  return off;
}

template <typename T>
nb::DeviceBytes upload(const std::vector<T>& v) {
  nb::DeviceBytes d(v.size() * sizeof(T));
  NVFP4MOE_CUDA_CHECK(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());  // pageable copies may land after cudaMemcpy returns
  return d;
}

__global__ void empty_kernel() {}

struct Row {
  std::string kernel;
  int64_t m, k;
  int experts;
  double bytes;
  nb::Timing t;
  double ratio = 0;  // fused only: unfused time / fused time
  double b2b_us = 0;  // small calls (M <= 1024): per-call time back to back (time_batch_us)
};

}  // namespace

static int run_benchmark(int argc, char** argv) {
  const char* json_path = nb::arg_value(argc, argv, "--json");
  const bool quick = nb::has_flag(argc, argv, "--quick");
  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const nb::DeviceInfo dev = nb::device_info();
  const double copy_gbs = nb::measure_copy_bandwidth_gbs(stream);
  std::printf("device: %s\n", nb::describe(dev).c_str());
  std::printf("copy bandwidth (1 GiB D2D, read + write): %.0f GB/s\n", copy_gbs);
  const nb::Timing empty = nb::time_median_us(stream, [&](int) { empty_kernel<<<1, 32, 0, stream>>>(); }, 10, 200);
  std::printf("timing floor (empty kernel, median): %.2f us\n", empty.median_us);
  // Large calls on the bulk-copy kernel or the register kernels (cuda/quantize.h
  // set_quantize_bulk): --bulk 0|1|2|3, else NVFP4MOE_QUANT_BULK, else the library's default.
  const char* bulk_arg = nb::arg_value(argc, argv, "--bulk");
  if (bulk_arg != nullptr) nvfp4moe::cuda::set_quantize_bulk(std::atoi(bulk_arg));
  const char* bulk_env = std::getenv("NVFP4MOE_QUANT_BULK");
  const std::string bulk = bulk_arg != nullptr ? bulk_arg : bulk_env != nullptr ? bulk_env : "default";
  std::printf("bulk-copy kernel for large calls: %s (0 none, 1 all, 2 per-expert calls, 3 quantize_experts only; "
              "default 3)\n\n", bulk.c_str());
  std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 1024} : std::vector<int64_t>{1, 16, 128, 1024, 8192, 65536};
  std::vector<int64_t> ks = {2048, 7168};
  if (const char* only_m = nb::arg_value(argc, argv, "--m")) ms = {std::atoll(only_m)};
  if (const char* only_k = nb::arg_value(argc, argv, "--k")) ks = {std::atoll(only_k)};
  std::vector<Row> rows;

  for (int64_t k : ks) {
    for (int64_t m : ms) {
      const int64_t pcols = nvfp4moe::padded_scale_cols(k);
      const int64_t plain_scale_bytes = nvfp4moe::swizzled_scale_bytes(m, k);
      const int64_t ex_scale_rows = nvfp4moe::expert_scale_rows_capacity(m, kExperts);
      const int64_t ex_scale_bytes = ex_scale_rows * pcols;
      const size_t x_bytes = size_t(m * k * 2), xs_bytes = 2 * x_bytes, code_bytes = size_t(m * k / 2);

      // One rotation set: SiLU input [m, 2k] (its first half doubles as the [m, k] input of
      // the plain kernels), the bf16 intermediate [m, k], codes and the largest scale buffer.
      const size_t set_bytes = xs_bytes + x_bytes + code_bytes + size_t(ex_scale_bytes);
      const int sets = nb::rotation_count(double(set_bytes), dev.l2_bytes);
      nb::RotatingBuffers xs(xs_bytes, sets), act(x_bytes, sets), codes(code_bytes, sets), scales(size_t(ex_scale_bytes), sets);
      xs.fill_random(1234, stream);

      const auto off = skewed_offsets(m, kExperts, 77);
      std::vector<int32_t> gather(static_cast<size_t>(m));
      std::mt19937 rng(5);
      for (int64_t i = 0; i < m; ++i) gather[size_t(i)] = int32_t(i);
      std::shuffle(gather.begin(), gather.end(), rng);
      std::vector<float> g(kExperts, 1.0f);
      for (int e = 0; e < kExperts; ++e) g[size_t(e)] = 0.5f + 0.01f * float(e);
      nb::DeviceBytes d_off = upload(off), d_gather = upload(gather), d_g = upload(g), d_floats(64), d_err(64);
      NVFP4MOE_CUDA_CHECK(cudaMemsetAsync(d_err.get(), 0, 64, stream));
      float* amax = d_floats.get<float>();

      // The plain kernels read rows of width k out of the [m, 2k] buffer's first half with
      // stride k: use the buffer as a contiguous [m, k] matrix (its first m*k elements).
      auto run = [&](const std::string& name, double bytes, int experts, auto&& fn) {
        const nb::Timing t = nb::time_median_us(stream, fn, 10, nb::iterations_for_bytes(bytes));
        rows.push_back(Row{name, m, k, experts, bytes, t});
        if (m <= 1024) rows.back().b2b_us = nb::time_batch_us(stream, fn).median_us;
        return t;
      };
      const double data_rows = double(off.back());
      // The per-expert kernels write scale rows [0, sf_off[E]) only (cuda/quantize.h).
      std::vector<int32_t> sf_off(off.size());
      nvfp4moe::expert_scale_offsets(off.data(), kExperts, sf_off.data());
      const double ex_written_scale_bytes = double(sf_off.back()) * double(pcols);
      run("quantize", double(x_bytes + code_bytes + plain_scale_bytes), 1, [&](int i) {
        nc::quantize(xs.at(i), ActDType::kBF16, m, k, d_g.get<float>(), codes.at<uint8_t>(i), scales.at<uint8_t>(i), stream);
      });
      const int reads = m * k <= nc::kQuantRuntimeSingleLaunchMaxElems ? 1 : 2;
      run("runtime", double(reads * x_bytes + code_bytes + plain_scale_bytes), 1, [&](int i) {
        nc::quantize_runtime_scale(xs.at(i), ActDType::kBF16, m, k, codes.at<uint8_t>(i), scales.at<uint8_t>(i), amax,
                                   amax + 1, amax + 2, stream);
      });
      const double ex_bytes = data_rows * double(k) * 2 + double(code_bytes) + ex_written_scale_bytes + 4.0 * (kExperts + 1);
      run("experts", ex_bytes, kExperts, [&](int i) {
        nc::quantize_experts(xs.at(i), ActDType::kBF16, m, k, d_off.get<int32_t>(), kExperts, d_g.get<float>(), nullptr, m,
                             codes.at<uint8_t>(i), scales.at<uint8_t>(i), ex_scale_rows, d_err.get<uint32_t>(), stream);
      });
      run("experts+gather", ex_bytes + 4.0 * data_rows, kExperts, [&](int i) {
        nc::quantize_experts(xs.at(i), ActDType::kBF16, m, k, d_off.get<int32_t>(), kExperts, d_g.get<float>(),
                             d_gather.get<int32_t>(), m, codes.at<uint8_t>(i), scales.at<uint8_t>(i), ex_scale_rows,
                             d_err.get<uint32_t>(), stream);
      });
      run("silu_and_mul", double(xs_bytes + x_bytes), 1, [&](int i) {
        nc::silu_and_mul(xs.at(i), ActDType::kBF16, m, k, 7.0f, act.at(i), stream);
      });
      const nb::Timing unfused = run("unfused", double(xs_bytes + x_bytes) + ex_bytes, kExperts, [&](int i) {
        nc::silu_and_mul(xs.at(i), ActDType::kBF16, m, k, 7.0f, act.at(i), stream);
        nc::quantize_experts(act.at(i), ActDType::kBF16, m, k, d_off.get<int32_t>(), kExperts, d_g.get<float>(), nullptr, m,
                             codes.at<uint8_t>(i), scales.at<uint8_t>(i), ex_scale_rows, d_err.get<uint32_t>(), stream);
      });
      const double fused_bytes = data_rows * double(2 * k) * 2 + double(code_bytes) + ex_written_scale_bytes + 4.0 * (kExperts + 1);
      const nb::Timing fused = run("fused", fused_bytes, kExperts, [&](int i) {
        nc::silu_and_mul_quantize_experts(xs.at(i), ActDType::kBF16, m, k, 7.0f, d_off.get<int32_t>(), kExperts,
                                          d_g.get<float>(), codes.at<uint8_t>(i), scales.at<uint8_t>(i), ex_scale_rows,
                                          d_err.get<uint32_t>(), stream);
      });
      rows.back().ratio = unfused.median_us / fused.median_us;
      uint32_t err = 0;
      NVFP4MOE_CUDA_CHECK(cudaMemcpy(&err, d_err.get(), 4, cudaMemcpyDeviceToHost));
      if (err != 0) std::fprintf(stderr, "error flags set: %u (m=%lld k=%lld)\n", err, (long long)m, (long long)k);
      std::fprintf(stderr, "done k=%lld m=%lld\n", (long long)k, (long long)m);
    }
  }

  nb::Table table({"kernel", "M", "K", "E", "MB moved", "median us", "min us", "b2b us", "GB/s", "%copy", "fused/unfused",
                   "target"});
  nb::JsonWriter json;
  nb::add_device_meta(json.meta(), dev, copy_gbs);
  json.meta().add("empty_kernel_us", empty.median_us);
  json.meta().add("benchmark", "bench_quantize").add("dtype", "bf16").add("quant_bulk", bulk);
  for (const Row& r : rows) {
    const double gbs = r.bytes / (r.t.median_us * 1e-6) / 1e9;
    const double pct = 100.0 * gbs / copy_gbs;
    std::string target;
    if (r.kernel == "fused") target = r.ratio >= 1.6 ? "ratio>=1.6 ok" : "ratio<1.6";
    else if (r.bytes >= 64e6) target = pct >= 90.0 ? ">=90% ok" : "<90%";
    // M <= 16: under 5 us per call back to back (the event pair around a single call adds the
    // timing floor printed above); the single-call median is in its own column.
    if (r.m <= 16) target += std::string(target.empty() ? "" : ", ") + (r.b2b_us < 5.0 ? "b2b<5us ok" : "b2b>=5us");
    table.add_row({r.kernel, std::to_string(r.m), std::to_string(r.k), std::to_string(r.experts), nb::fmt("%.2f", r.bytes / 1e6),
                   nb::fmt("%.2f", r.t.median_us), nb::fmt("%.2f", r.t.min_us),
                   r.b2b_us > 0 ? nb::fmt("%.2f", r.b2b_us) : "", nb::fmt("%.0f", gbs), nb::fmt("%.1f", pct),
                   r.ratio > 0 ? nb::fmt("%.2fx", r.ratio) : "", target});
    nb::JsonObject o;
    o.add("kernel", r.kernel).add("m", r.m).add("k", r.k).add("experts", r.experts).add("bytes", r.bytes)
        .add("median_us", r.t.median_us).add("min_us", r.t.min_us).add("gbs", gbs).add("pct_copy", pct)
        .add("iterations", r.t.iterations);
    if (r.b2b_us > 0) o.add("b2b_us", r.b2b_us);
    if (r.ratio > 0) o.add("unfused_over_fused", r.ratio);
    json.add_result(o);
  }
  table.print();
  if (json_path != nullptr && !json.write(json_path)) return 1;
  cudaStreamDestroy(stream);
  return 0;
}

int main(int argc, char** argv) { return nb::guarded_main("nvfp4moe_bench_quantize", argc, argv, run_benchmark); }
