// Benchmark of the MoE layer's routing, permutation and combine on the GPU:
// DeepSeek-V3 (E=256, k=8, H=7168, grouped sigmoid 8/4, bias) and Qwen3-MoE (E=128, k=8, H=2048,
// softmax renormalized) at T in {1, 16, 256, 4096, 16384}.
//
// Each step is timed alone (median over many calls, CUDA events, bench_util.h) and the three
// back to back ("total"); "fused r+p" is cuda::route_and_permute (one launch while T * k <= 2048,
// else route + permute) and "fused total" that plus combine, what the MoE layer pays.
// Inputs rotate through copies whose total exceeds 4x L2, so no call
// finds its logits / ids / expert rows in L2. The combine reads T*k*H bf16 rows (+ T*H shared)
// and writes T*H bf16: its bandwidth is reported against a device-to-device copy measured in
// the same run. The issue names no baseline for these steps; the total is what the layer pays
// outside its GEMMs and quantizers.
//
// Usage: nvfp4moe_bench_routing [--json FILE]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/kernels/routing_cta_sm90.cuh"

using namespace nvfp4moe;

namespace {

struct Model {
  const char* name;
  RoutingConfig cfg;
  int64_t hidden;
};

Model deepseek_v3() {
  Model m{"DeepSeek-V3", {}, 7168};
  m.cfg.num_experts = 256;
  m.cfg.top_k = 8;
  m.cfg.scoring = ScoringFunc::kSigmoid;
  m.cfg.n_group = 8;
  m.cfg.topk_group = 4;
  m.cfg.renormalize = true;
  m.cfg.routed_scaling_factor = 2.5f;
  return m;
}

Model qwen3() {
  Model m{"Qwen3-MoE", {}, 2048};
  m.cfg.num_experts = 128;
  m.cfg.top_k = 8;
  m.cfg.scoring = ScoringFunc::kSoftmax;
  m.cfg.renormalize = true;
  return m;
}

}  // namespace

static int run_benchmark(int argc, char** argv) {
  const char* json_path = bench::arg_value(argc, argv, "--json");
  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const bench::DeviceInfo dev = bench::device_info();
  std::printf("%s\n", bench::describe(dev).c_str());
  const double copy_gbs = bench::measure_copy_bandwidth_gbs(stream);
  std::printf("device copy bandwidth (read + write): %.0f GB/s\n\n", copy_gbs);

  bench::JsonWriter json;
  bench::add_device_meta(json.meta(), dev, copy_gbs);
  bench::Table table({"model", "T", "route us", "route CTA us", "permute us", "combine us", "total us", "fused r+p us",
                      "fused total us", "combine GB/s", "% copy BW"});

  for (const Model& model : {deepseek_v3(), qwen3()}) {
    const int e = model.cfg.num_experts, k = model.cfg.top_k;
    const int64_t h = model.hidden;
    for (int64_t t : {1, 16, 256, 4096, 16384}) {
      const int64_t m = t * k;
      // Working set of one call: logits, ids/weights, maps, rows, shared, out.
      const double combine_bytes = double(m * h * 2 + t * h * 2 + t * h * 2) + double(m) * 8;
      const double call_bytes = double(t * e * 4) + double(m) * 8 * 4 + combine_bytes;
      const int copies = bench::rotation_count(call_bytes, dev.l2_bytes);

      // Per-copy inputs and outputs.
      std::mt19937 rng(uint32_t(t * 131 + e));
      std::normal_distribution<float> normal(0.0f, 2.0f);
      std::vector<float> logits(size_t(t * e)), bias(static_cast<size_t>(e));
      for (auto& x : logits) x = normal(rng);
      for (auto& x : bias) x = normal(rng) * 0.05f;
      const bool use_bias = model.cfg.scoring == ScoringFunc::kSigmoid;
      bench::DeviceBytes d_bias(bias.size() * 4);
      NVFP4MOE_CUDA_CHECK(cudaMemcpy(d_bias.get(), bias.data(), bias.size() * 4, cudaMemcpyHostToDevice));
      std::vector<bench::DeviceBytes> d_logits, d_ids, d_w, d_rows, d_shared, d_out, d_maps;
      const size_t ws_bytes = cuda::permute_workspace_bytes(t, k, e);
      bench::DeviceBytes ws(ws_bytes);
      const size_t fused_ws_bytes = cuda::route_and_permute_workspace_bytes(t, k, e);
      bench::DeviceBytes fused_ws(fused_ws_bytes);
      NVFP4MOE_CUDA_CHECK(cudaMemset(fused_ws.get(), 0, fused_ws_bytes));  // the API's one-time zero fill
      const size_t map_ints = size_t(3 * m + e + 2 * (e + 1));
      for (int c = 0; c < copies; ++c) {
        d_logits.emplace_back(logits.size() * 4);
        NVFP4MOE_CUDA_CHECK(cudaMemcpy(d_logits.back().get(), logits.data(), logits.size() * 4,
                                       cudaMemcpyHostToDevice));
        d_ids.emplace_back(size_t(m) * 4);
        d_w.emplace_back(size_t(m) * 4);
        d_maps.emplace_back(map_ints * 4 + 64);
        d_rows.emplace_back(size_t(m * h) * 2);
        bench::fill_random_act16(d_rows.back().get<uint16_t>(), size_t(m * h), false, uint32_t(c), stream);
        d_shared.emplace_back(size_t(t * h) * 2);
        bench::fill_random_act16(d_shared.back().get<uint16_t>(), size_t(t * h), false, uint32_t(c + 99), stream);
        d_out.emplace_back(size_t(t * h) * 2);
      }
      NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());  // pageable copies may land after cudaMemcpy returns
      auto outputs = [&](int c) {
        int32_t* base = d_maps[size_t(c)].get<int32_t>();
        cuda::PermuteOutputs o;
        o.counts = base;
        o.off = base + e;
        o.sf_off = base + 2 * e + 1;
        o.sorted_to_pair = base + 3 * e + 2;
        o.pair_to_sorted = o.sorted_to_pair + m;
        o.sorted_to_token = o.pair_to_sorted + m;
        return o;
      };
      auto do_route = [&](int c) {
        cuda::route(d_logits[size_t(c)].get(), cuda::LogitsDType::kFloat32,
                    use_bias ? d_bias.get<float>() : nullptr, t, model.cfg, d_ids[size_t(c)].get<int32_t>(),
                    d_w[size_t(c)].get<float>(), stream);
      };
      auto do_permute = [&](int c) {
        cuda::permute(d_ids[size_t(c)].get<int32_t>(), t, k, e, t, outputs(c), ws.get(), ws_bytes, stream);
      };
      auto do_combine = [&](int c) {
        cuda::combine(d_rows[size_t(c)].get(), ActDType::kBF16, d_w[size_t(c)].get<float>(),
                      outputs(c).pair_to_sorted, t, k, h, d_shared[size_t(c)].get(), d_out[size_t(c)].get(),
                      cuda::CombineOutDType::kBF16, stream);
      };
      // The CTA-per-token kernel at every T (route() takes it up to kRouteCtaMaxTokens only):
      // the data for that threshold. float32 logits; E = 256 or 128: one expert a thread.
      auto do_route_cta = [&](int c) {
        const unsigned blocks = unsigned(std::min<int64_t>(t, 65536));
        const float* lg = d_logits[size_t(c)].get<float>();
        if (use_bias) {
          kernels::route_sigmoid_cta_sm90<float, 1><<<blocks, kernels::kRouteCtaThreads, 0, stream>>>(
              lg, d_bias.get<float>(), e, k, model.cfg.n_group, model.cfg.topk_group, model.cfg.renormalize,
              model.cfg.routed_scaling_factor, t, d_ids[size_t(c)].get<int32_t>(), d_w[size_t(c)].get<float>());
        } else {
          kernels::route_softmax_cta_sm90<float, 1><<<blocks, kernels::kRouteCtaThreads, 0, stream>>>(
              lg, t, e, k, model.cfg.renormalize, model.cfg.routed_scaling_factor, d_ids[size_t(c)].get<int32_t>(),
              d_w[size_t(c)].get<float>());
        }
        NVFP4MOE_CUDA_CHECK_LAUNCH();
      };
      auto do_fused = [&](int c) {
        cuda::route_and_permute(d_logits[size_t(c)].get(), cuda::LogitsDType::kFloat32,
                                use_bias ? d_bias.get<float>() : nullptr, t, model.cfg, t,
                                d_ids[size_t(c)].get<int32_t>(), d_w[size_t(c)].get<float>(), outputs(c),
                                fused_ws.get(), fused_ws_bytes, stream);
      };
      // Valid ids and maps in every copy before the steps are timed alone.
      for (int c = 0; c < copies; ++c) {
        do_route(c);
        do_permute(c);
      }
      NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));

      const int iters = bench::iterations_for_bytes(call_bytes);
      const auto rot = [&](int call) { return call % copies; };
      const bench::Timing tr = bench::time_median_us(stream, [&](int call) { do_route(rot(call)); }, 10, iters);
      // Several launches a call: fewer calls, so the launch queue never fills behind the spin.
      const int iters_multi = std::min(iters, 60);
      const bench::Timing tp =
          bench::time_median_us(stream, [&](int call) { do_permute(rot(call)); }, 10, iters_multi);
      const bench::Timing tc = bench::time_median_us(stream, [&](int call) { do_combine(rot(call)); }, 10, iters);
      const bench::Timing tt = bench::time_median_us(stream, [&](int call) {
        do_route(rot(call));
        do_permute(rot(call));
        do_combine(rot(call));
      }, 10, iters_multi);
      const bench::Timing tcta =
          bench::time_median_us(stream, [&](int call) { do_route_cta(rot(call)); }, 10, iters);
      const bench::Timing tf =
          bench::time_median_us(stream, [&](int call) { do_fused(rot(call)); }, 10, iters_multi);
      const bench::Timing tft = bench::time_median_us(stream, [&](int call) {
        do_fused(rot(call));
        do_combine(rot(call));
      }, 10, iters_multi);
      const double gbs = combine_bytes / (tc.median_us * 1e-6) / 1e9;
      table.add_row({model.name, std::to_string(t), bench::fmt("%.2f", tr.median_us),
                     bench::fmt("%.2f", tcta.median_us), bench::fmt("%.2f", tp.median_us),
                     bench::fmt("%.2f", tc.median_us), bench::fmt("%.2f", tt.median_us),
                     bench::fmt("%.2f", tf.median_us), bench::fmt("%.2f", tft.median_us), bench::fmt("%.0f", gbs),
                     bench::fmt("%.1f", 100.0 * gbs / copy_gbs)});
      bench::JsonObject o;
      o.add("model", model.name)
          .add("tokens", t)
          .add("experts", e)
          .add("top_k", k)
          .add("hidden", h)
          .add("route_us", tr.median_us)
          .add("route_cta_us", tcta.median_us)
          .add("permute_us", tp.median_us)
          .add("combine_us", tc.median_us)
          .add("total_us", tt.median_us)
          .add("fused_route_permute_us", tf.median_us)
          .add("fused_total_us", tft.median_us)
          .add("combine_gbs", gbs)
          .add("combine_fraction_of_copy_bw", gbs / copy_gbs);
      json.add_result(o);
    }
  }
  table.print();
  if (json_path && !json.write(json_path)) return 1;
  NVFP4MOE_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}

int main(int argc, char** argv) { return bench::guarded_main("nvfp4moe_bench_routing", argc, argv, run_benchmark); }
