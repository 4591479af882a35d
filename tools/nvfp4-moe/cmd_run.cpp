// `nvfp4-moe run`: one MoE layer forward on random tokens; prints the backend, an output
// checksum, the error against the unquantized layer, and the time.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "commands.h"
#include "gpu_runner.h"
#include "layer_setup.h"
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/model/builtin_model.h"

namespace nvfp4moe::tool {
namespace {

struct RunOptions {
  std::string checkpoint;
  std::optional<int> layer;
  int64_t tokens = 128;
  uint64_t seed = 1;
  std::string mode = "w4a4";
  std::string dtype = "bf16";
  bool verify = false;
  bool cpu = false;
  bool one_act_scale = false;
  int iters = 1;
};

// FNV-1a over the output's bits: equal checksums mean bit-identical outputs.
uint64_t fnv1a(std::span<const uint16_t> v) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint16_t x : v) {
    h = (h ^ (x & 0xff)) * 0x100000001b3ull;
    h = (h ^ (x >> 8)) * 0x100000001b3ull;
  }
  return h;
}

int run(const RunOptions& o) {
  NVFP4MOE_CHECK(o.tokens >= 0, "--tokens: expected >= 0, got ", o.tokens);
  NVFP4MOE_CHECK(o.iters >= 1, "--iters: expected >= 1, got ", o.iters);
  LayerSetup setup = setup_layer(o.checkpoint, o.layer, parse_dtype(o.dtype), parse_mode(o.mode));
  if (o.one_act_scale) {
    NVFP4MOE_CHECK(setup.cfg.mode == MoeMode::kW4A4, "--one-act-scale: only for --mode w4a4 (W4A16 has no activation scale)");
    ref::share_activation_scales(setup.weights);
    setup.notes.push_back("one activation scale per GEMM input for all routed experts (the smallest gA: --one-act-scale)");
  }
  const MoeConfig& cfg = setup.cfg;
  check_token_count(o.tokens, cfg.routing.top_k, "--tokens");
  const int64_t t = o.tokens, h = cfg.hidden;

  std::printf("layer:    %s\n", setup.description.c_str());
  std::printf("shape:    H=%lld I=%lld E=%d top-%d %s shared=%d, %s %s, T=%lld tokens (seed %llu)\n",
              (long long)h, (long long)cfg.intermediate, cfg.routing.num_experts, cfg.routing.top_k,
              cfg.routing.scoring == ScoringFunc::kSigmoid ? "sigmoid-grouped" : "softmax",
              cfg.n_shared_experts, to_string(cfg.mode), to_string(cfg.act), (long long)t,
              (unsigned long long)o.seed);
  for (const auto& note : setup.notes) std::printf("note:     %s\n", note.c_str());

  std::vector<uint16_t> hidden = model::random_hidden(t, h, cfg.act, o.seed);
  std::vector<float> logits = model::router_logits(hidden, cfg.act, t, setup.router, cfg.routing.num_experts, h);
  std::vector<uint16_t> out(size_t(t * h));

  std::string backend_note;
  Backend backend = choose_backend(o.cpu, cfg.act, &backend_note);
  if (o.verify && backend != Backend::kGpu) {
    std::fprintf(stderr, "nvfp4-moe: --verify compares the GPU path with the CPU golden model: %s\n",
                 backend_note.c_str());
    return 2;
  }
  std::printf("backend:  %s (%s)\n", to_string(backend), backend_note.c_str());

  std::string timing;
  if (backend == Backend::kGpu) {
    GpuLayerRunner gpu(cfg, setup.weights, t);
    gpu.set_inputs(hidden, logits, t);
    out = gpu.forward_and_download();
    double graph_ms = gpu.time_graph_ms(std::max(o.iters, 20));
    double eager_ms = gpu.time_eager_ms(std::max(o.iters, 20));
    char b[160];
    std::snprintf(b, sizeof b, "%.4f ms CUDA-graph replay, %.4f ms eager (GPU, median of %d)", graph_ms, eager_ms,
                  std::max(o.iters, 20));
    timing = b;
  } else {
    double best_ms = 1e30;
    for (int it = 0; it < o.iters; ++it) {
      auto t0 = std::chrono::steady_clock::now();
      ref::moe_forward(cfg, setup.weights, hidden, t, logits, out);
      best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    char b[160];
    std::snprintf(b, sizeof b, "%.3f ms (CPU golden model, best of %d)", best_ms, o.iters);
    timing = b;
  }

  // Accuracy against the unquantized layer in float32.
  std::vector<float> hidden_f(hidden.size());
  for (size_t i = 0; i < hidden.size(); ++i) hidden_f[i] = act_to_float(hidden[i], cfg.act);
  std::vector<float> ref_out(size_t(t * h));
  ref::moe_forward_unquantized(cfg, setup.float_weights, hidden_f, t, logits, ref_out);
  double num = 0, den = 0, max_abs = 0, sum = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    double got = act_to_float(out[i], cfg.act), want = ref_out[i];
    num += (got - want) * (got - want);
    den += want * want;
    max_abs = std::max(max_abs, std::fabs(got - want));
    sum += got;
  }
  double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);

  std::printf("checksum: %016llx (sum %.6g)\n", (unsigned long long)fnv1a(out), sum);
  std::printf("error:    rel L2 %.4e, max abs %.4e  vs %s\n", rel, max_abs, setup.float_reference.c_str());
  std::printf("time:     %s\n", timing.c_str());

  if (o.verify) {
    std::vector<uint16_t> cpu_out(out.size());
    ref::moe_forward(cfg, setup.weights, hidden, t, logits, cpu_out);
    VerifyResult v = compare_outputs(out, cpu_out, cfg.act);
    std::printf("verify:   GPU vs CPU golden model: rel L2 %.3e (tolerance %.0e), max |err|/max|ref| %.3e, "
                "%lld of %zu elements differ in some bit\n",
                v.rel_l2, v.tolerance, v.max_norm_err, (long long)v.mismatches, out.size());
    std::printf("%s\n", v.passed ? "Passed" : "Failed");
    return v.passed ? 0 : 1;
  }
  return 0;
}

}  // namespace

Action add_run_command(CLI::App& app) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* sub = app.add_subcommand(
      "run", "Run one MoE layer forward on random tokens (default: the built-in DeepSeek-style layer)");
  sub->add_option("--checkpoint", opts->checkpoint, "ModelOpt NVFP4 checkpoint directory (config.json + safetensors)");
  sub->add_option("--layer", opts->layer, "MoE layer index (default: the first MoE layer)");
  sub->add_option("--tokens,-t", opts->tokens, "tokens in the batch")->capture_default_str();
  sub->add_option("--seed", opts->seed, "seed of the random tokens")->capture_default_str();
  sub->add_option("--mode", opts->mode, "w4a4 (NVFP4 activations) or w4a16")
      ->check(CLI::IsMember({"w4a4", "w4a16"}))->capture_default_str();
  sub->add_option("--dtype", opts->dtype, "activation dtype")
      ->check(CLI::IsMember({"bf16", "fp16"}))->capture_default_str();
  sub->add_option("--iters", opts->iters, "forward passes to time (best is printed)")->capture_default_str();
  sub->add_flag("--cpu", opts->cpu, "use the CPU golden model even when a GPU is present");
  sub->add_flag("--verify", opts->verify, "compare the GPU result with the CPU golden model; prints Passed/Failed");
  sub->add_flag("--one-act-scale", opts->one_act_scale,
                "W4A4: one activation scale per GEMM input for all routed experts (the largest input_scale), as "
                "inference engines use them");
  return [opts] { return run(*opts); };
}

}  // namespace nvfp4moe::tool
