// `nvfp4-moe bench`: the MoE layer table. For each model shape and token count: latency (CUDA
// graph replay and eager), the weight-stream floor (bytes of the experts actually hit / device
// copy bandwidth measured in this run), the bf16 tensor-core floor (FLOPs / cuBLAS bf16 rate
// measured in this run), the ratio to the same layer with bf16 weights on cuBLAS, and the gain
// of the fused SiLU*Mul+quantize over silu_and_mul followed by quantize_experts.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cold_timer.h"
#include "commands.h"
#include "gpu_runner.h"
#include "moe_bf16_baseline.h"
#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/quantize.h"
#include "plot_script.h"
#include "progress.h"

namespace nvfp4moe::tool {
namespace {

struct BenchOptions {
  std::vector<std::string> models{"deepseek-v3", "qwen3-30b-a3b"};
  std::vector<int64_t> tokens{1, 4, 16, 64, 256, 1024, 4096, 16384};
  std::string mode = "w4a4";
  std::string json;
  std::string plot;
  bool baseline = true;
  int iters = 20;
  std::vector<std::string> paths_off;  // forward paths turned off / on (A/B runs)
  std::vector<std::string> paths_on;
};

// Sets the forward path `name` of p (cuda/moe.h MoeForwardPaths; "none": nothing).
void set_forward_path(cuda::MoeForwardPaths& p, const std::string& name, bool value, const char* option) {
  if (name == "none") return;
  if (name == "values_only") p.values_only = value;
  else if (name == "tiny_front_end") p.tiny_front_end = value;
  else if (name == "shared_values") p.shared_values = value;
  else if (name == "fused_combine") p.fused_combine = value;
  else if (name == "gemm_order_values") p.gemm_order_values = value;
  else if (name == "gemm_order_bf16") p.gemm_order_bf16 = value;
  else if (name == "quantize_once") p.quantize_once = value;
  else NVFP4MOE_CHECK(false, option, ": unknown forward path '", name, "'");
}

// The default forward paths with the named ones off, then on.
cuda::MoeForwardPaths forward_paths(const std::vector<std::string>& off, const std::vector<std::string>& on) {
  cuda::MoeForwardPaths p;
  for (const auto& name : off) set_forward_path(p, name, false, "--paths-off");
  for (const auto& name : on) set_forward_path(p, name, true, "--paths-on");
  return p;
}

MoeConfig model_config(const std::string& name, MoeMode mode) {
  MoeConfig c;
  c.act = ActDType::kBF16;
  c.mode = mode;
  if (name == "deepseek-v3") {
    c.hidden = 7168;
    c.intermediate = 2048;
    c.routing = {256, 8, ScoringFunc::kSigmoid, true, 8, 4, 2.5f};
    c.n_shared_experts = 1;
  } else if (name == "qwen3-30b-a3b") {
    c.hidden = 2048;
    c.intermediate = 768;
    c.routing = {128, 8, ScoringFunc::kSoftmax, true, 1, 1, 1.0f};
    c.n_shared_experts = 0;
  } else {
    throw Error("--model: expected deepseek-v3, qwen3-30b-a3b or all, got '" + name + "'");
  }
  return c;
}

std::string today() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d", std::gmtime(&t));
  return b;
}

int bench(const BenchOptions& o) {
  const MoeMode mode = o.mode == "w4a16" ? MoeMode::kW4A16 : MoeMode::kW4A4;
  std::vector<std::string> models;
  for (const auto& m : o.models) {
    if (m == "all") {
      models.insert(models.end(), {"deepseek-v3", "qwen3-30b-a3b"});
    } else {
      model_config(m, mode);  // validates the name
      models.push_back(m);
    }
  }
  for (int64_t t : o.tokens) NVFP4MOE_CHECK(t >= 1, "--tokens: expected values >= 1, got ", t);
  // The forward paths of every workspace below: the defaults (cuda/moe.h), less --paths-off.
  const cuda::MoeForwardPaths paths = forward_paths(o.paths_off, o.paths_on);
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::fprintf(stderr, "nvfp4-moe bench: needs a Hopper GPU (none present)\n");
    return 2;
  }
  const int64_t t_max = *std::max_element(o.tokens.begin(), o.tokens.end());

  cudaDeviceProp prop{};
  NVFP4MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::fprintf(stderr, "measuring ceilings (device copy, cuBLAS bf16 8192^3)...\n");
  const double copy_gbs = measure_copy_gbs();
  const double peak_tflops = measure_cublas_bf16_tflops(8192, 8192, 8192, 10);
  std::printf("device %s, %d SMs, driver %d.%d, CUDA runtime %d.%d, %s\n", prop.name, prop.multiProcessorCount,
              driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10, today().c_str());
  std::printf("ceilings measured now: copy %.0f GB/s (read + write), cuBLAS bf16 %.0f TFLOP/s (8192^3)\n", copy_gbs,
              peak_tflops);
  const bool fused_combine = paths.fused_combine && cuda::gemm_fused_combine_on();
  std::printf("forward paths: values_only=%d tiny_front_end=%d shared_values=%d fused_combine=%d "
              "gemm_order_values=%d gemm_order_bf16=%d quantize_once=%d\n\n",
              paths.values_only, paths.tiny_front_end, paths.shared_values, fused_combine, paths.gemm_order_values,
              paths.gemm_order_bf16, paths.quantize_once);

  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  ProgressBar progress("bench", int64_t(models.size() * o.tokens.size()));
  int64_t done = 0;
  std::ostringstream table;
  char line[512];
  std::snprintf(line, sizeof line, "%-14s %6s %4s %10s %10s %10s %10s %7s %10s %8s %7s %10s %7s %9s %9s %6s\n", "model",
                "T", "hit", "graph_us", "idle_us", "eager_us", "wfloor_us", "x_wfl", "tcfloor_us", "x_floor", "%bf16TC",
                "bf16_us", "speedup", "fused_us", "unfus_us", "gain");
  table << line;

  for (const auto& name : models) {
    MoeConfig cfg = model_config(name, mode);
    const int64_t h = cfg.hidden, inter = cfg.intermediate, k = cfg.routing.top_k, e = cfg.routing.num_experts;
    const int64_t is = int64_t(cfg.n_shared_experts) * inter;
    GpuLayerRunner runner(cuda::MoeLayerWeights::synthetic(cfg, 42), t_max);
    runner.workspace().set_paths(paths);
    fill_random_bf16(runner.device_hidden(), t_max * h, -2.0f, 2.0f, 7, runner.stream());
    fill_random_f32(runner.device_logits(), t_max * e, -4.0f, 4.0f, 8, runner.stream());
    std::unique_ptr<Bf16MoeBaseline> baseline;
    cuda::DeviceMemory base_out(size_t(t_max * h) * 2), unfused_tmp(size_t(t_max * k * inter) * 2);
    if (o.baseline) baseline = std::make_unique<Bf16MoeBaseline>(cfg, t_max, 43);
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(runner.stream()));
    ColdQueuedTimer timer;
    const double expert_bytes = 3.0 * double(inter) * double(h) * 0.5625;  // 4 bits + e4m3 per 16
    const double shared_bytes = 3.0 * double(is) * double(h) * 0.5625;

    for (int64_t t : o.tokens) {
      progress.update(done, name + " T=" + std::to_string(t));
      runner.set_tokens(t);
      const double graph_ms = runner.time_graph_ms(o.iters, &timer);
      const double idle_ms = runner.time_graph_ms(o.iters);
      const double eager_ms = runner.time_eager_ms(std::max(5, o.iters / 2), &timer);
      const auto& v = runner.workspace().views();
      std::vector<int32_t> counts(static_cast<size_t>(e));
      NVFP4MOE_CUDA_CHECK(cudaMemcpy(counts.data(), v.counts, size_t(e) * 4, cudaMemcpyDeviceToHost));
      const int64_t hit = std::count_if(counts.begin(), counts.end(), [](int32_t c) { return c > 0; });
      const double w_bytes = double(hit) * expert_bytes + shared_bytes;
      const double w_floor_ms = w_bytes / (copy_gbs * 1e9) * 1e3;
      const double flops = 2.0 * double(t * k) * 3.0 * double(inter) * double(h) + 2.0 * double(t) * 3.0 * double(is) * double(h);
      const double tc_floor_ms = flops / (peak_tflops * 1e12) * 1e3;
      const double floor_ms = std::max(w_floor_ms, tc_floor_ms);

      nlohmann::ordered_json r = {{"model", name},
                                  {"mode", to_string(mode)},
                                  {"tokens", t},
                                  {"experts_hit", hit},
                                  {"latency_us", graph_ms * 1e3},
                                  {"latency_idle_launch_us", idle_ms * 1e3},
                                  {"eager_us", eager_ms * 1e3},
                                  {"weight_bytes", w_bytes},
                                  {"weight_floor_us", w_floor_ms * 1e3},
                                  {"tensor_core_floor_us", tc_floor_ms * 1e3},
                                  {"x_weight_floor", graph_ms / w_floor_ms},
                                  {"x_max_floor", graph_ms / floor_ms},
                                  {"effective_tflops", flops / (graph_ms * 1e-3) / 1e12},
                                  {"fraction_of_bf16_tc", flops / (graph_ms * 1e-3) / 1e12 / peak_tflops}};
      double base_ms = 0, fused_ms = 0, unfused_ms = 0;
      if (baseline) {
        base_ms = timer.median_ms(runner.stream(), std::max(5, o.iters / 2), [&] {
          baseline->forward(runner.device_hidden(), runner.device_logits(), t, base_out.get(), runner.stream());
        });
        r["bf16_baseline_us"] = base_ms * 1e3;
        r["speedup_vs_bf16"] = base_ms / graph_ms;
      }
      if (mode == MoeMode::kW4A4) {
        const int64_t m = t * k;
        const auto& w = runner.weights();
        uint32_t* flags = const_cast<uint32_t*>(runner.workspace().error_flags());
        fused_ms = timer.median_ms(runner.stream(), o.iters, [&] {
          cuda::silu_and_mul_quantize_experts(v.gemm1, ActDType::kBF16, m, inter, cfg.swiglu_limit, v.off, int(e),
                                              w.gA2(), v.a2_codes, v.a2_scales, v.scale_rows, flags, runner.stream());
        });
        unfused_ms = timer.median_ms(runner.stream(), o.iters, [&] {
          cuda::silu_and_mul(v.gemm1, ActDType::kBF16, m, inter, cfg.swiglu_limit, unfused_tmp.get(), runner.stream());
          cuda::quantize_experts(unfused_tmp.get(), ActDType::kBF16, m, inter, v.off, int(e), w.gA2(), nullptr, m,
                                 v.a2_codes, v.a2_scales, v.scale_rows, flags, runner.stream());
        });
        r["fused_silu_quant_us"] = fused_ms * 1e3;
        r["unfused_silu_quant_us"] = unfused_ms * 1e3;
        r["fused_gain"] = unfused_ms / fused_ms;
      }
      std::snprintf(line, sizeof line,
                    "%-14s %6lld %4lld %10.1f %10.1f %10.1f %10.1f %7.2f %10.1f %8.2f %6.1f%% %10.1f %7.2f %9.1f %9.1f %6.2f\n",
                    name.c_str(), (long long)t, (long long)hit, graph_ms * 1e3, idle_ms * 1e3, eager_ms * 1e3, w_floor_ms * 1e3,
                    graph_ms / w_floor_ms, tc_floor_ms * 1e3, graph_ms / floor_ms,
                    100.0 * flops / (graph_ms * 1e-3) / 1e12 / peak_tflops, base_ms * 1e3,
                    base_ms > 0 ? base_ms / graph_ms : 0.0, fused_ms * 1e3, unfused_ms * 1e3,
                    fused_ms > 0 ? unfused_ms / fused_ms : 0.0);
      table << line;
      rows.push_back(r);
      progress.update(++done, name + " T=" + std::to_string(t));
    }
  }
  std::printf("%s", table.str().c_str());
  std::printf("\ngraph_us: CUDA-graph replay queued behind an L2 flush (weights cold, host launch hidden), the\n"
              "latency every ratio uses; idle_us: one replay launched on an idle stream (host launch latency in,\n"
              "weights of the previous replay maybe in L2); eager_us: eager launches, likewise queued and flushed.\n"
              "hit: experts that received tokens; wfloor: their NVFP4 bytes (+ shared expert) / copy bandwidth;\n"
              "tcfloor: FLOPs at the cuBLAS bf16 rate; x_floor: latency / max(floors); %%bf16TC: effective FLOP rate /\n"
              "cuBLAS bf16 rate; bf16_us: same layer with bf16 weights on cuBLAS (per-expert GEMMs, one host sync);\n"
              "fused/unfus: SiLU*Mul+quantize fused vs silu_and_mul then quantize_experts on the GEMM1 output.\n");

  nlohmann::ordered_json doc = {
      {"meta",
       {{"device", prop.name}, {"sms", prop.multiProcessorCount}, {"driver", driver}, {"cuda_runtime", runtime},
        {"date", today()}, {"copy_gbs", copy_gbs}, {"cublas_bf16_tflops", peak_tflops},
        {"commit", std::getenv("NVFP4MOE_COMMIT") ? std::getenv("NVFP4MOE_COMMIT") : ""},
        {"forward_paths",
         {{"values_only", paths.values_only}, {"tiny_front_end", paths.tiny_front_end},
          {"shared_values", paths.shared_values}, {"fused_combine", fused_combine},
          {"gemm_order_values", paths.gemm_order_values}, {"gemm_order_bf16", paths.gemm_order_bf16},
          {"quantize_once", paths.quantize_once}}}}},
      {"rows", rows}};
  if (!o.json.empty()) {
    std::ofstream(o.json) << doc.dump(2) << "\n";
    std::printf("wrote %s\n", o.json.c_str());
  }
  if (!o.plot.empty()) {
    std::string json_path = o.json.empty() ? o.plot + ".json" : o.json;
    if (o.json.empty()) std::ofstream(json_path) << doc.dump(2) << "\n";
    std::string script_path = o.plot + ".py";
    std::ofstream(script_path) << kPlotScript;
    std::string cmd = "python3 '" + script_path + "' '" + json_path + "' '" + o.plot + "'";
    int rc = std::system(cmd.c_str());
    std::remove(script_path.c_str());
    if (rc != 0) std::fprintf(stderr, "nvfp4-moe bench: plotting failed (needs python3 with matplotlib): %s\n", cmd.c_str());
  }
  return 0;
}

}  // namespace

Action add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* sub = app.add_subcommand("bench", "Benchmark the GPU MoE layer against floors and a bf16 cuBLAS baseline");
  sub->add_option("--model", o->models, "deepseek-v3, qwen3-30b-a3b or all")->capture_default_str();
  sub->add_option("--tokens", o->tokens, "token counts")->capture_default_str()->delimiter(',');
  sub->add_option("--mode", o->mode, "w4a4 or w4a16")->check(CLI::IsMember({"w4a4", "w4a16"}))->capture_default_str();
  sub->add_option("--iters", o->iters, "timed iterations per point (median)")->capture_default_str();
  sub->add_option("--json", o->json, "write the results as JSON");
  sub->add_option("--plot", o->plot, "write a PNG of latency vs tokens against the floors (python3 + matplotlib)");
  sub->add_flag("!--no-baseline", o->baseline, "skip the bf16 cuBLAS baseline");
  sub->add_option("--paths-off", o->paths_off,
                  "forward paths to turn off for an A/B (none, values_only, tiny_front_end, shared_values, "
                  "fused_combine, gemm_order_values, gemm_order_bf16, quantize_once)")
      ->delimiter(',');
  sub->add_option("--paths-on", o->paths_on, "forward paths to turn on (the same names)")->delimiter(',');
  return [o] { return bench(*o); };
}

}  // namespace nvfp4moe::tool
