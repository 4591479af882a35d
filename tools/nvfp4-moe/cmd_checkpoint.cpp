// `nvfp4-moe generate`, `quantize` and `info`: checkpoints on disk.
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "commands.h"
#include "nvfp4moe/checkpoint/checkpoint.h"
#include "nvfp4moe/checkpoint/model_config.h"
#include "nvfp4moe/checkpoint/quantize_checkpoint.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/model/builtin_model.h"
#include "progress.h"

namespace nvfp4moe::tool {
namespace fs = std::filesystem;

Action add_generate_command(CLI::App& app) {
  struct Opts {
    std::string output;
    uint64_t seed = model::BuiltinModelSpec{}.seed;
    int64_t calib_tokens = 256;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "generate", "Write the built-in layer as a bf16 HuggingFace checkpoint (OUT/bf16) plus a calibration file "
                  "(OUT/calibration.safetensors)");
  sub->add_option("--output,-o", o->output, "output directory")->required();
  sub->add_option("--seed", o->seed, "weights seed")->capture_default_str();
  sub->add_option("--calibration-tokens", o->calib_tokens, "tokens routed to measure activation amaxes")
      ->capture_default_str();
  return [o] {
    model::BuiltinModelSpec spec;
    spec.seed = o->seed;
    model::FloatMoeLayer layer = model::make_builtin_layer(spec);
    fs::path bf16 = fs::path(o->output) / "bf16";
    model::write_hf_checkpoint(layer, bf16.string());
    fs::path calib = fs::path(o->output) / "calibration.safetensors";
    model::write_calibration(layer, calib.string(), o->calib_tokens);
    std::printf("wrote %s (config.json, model.safetensors) and %s\n", bf16.c_str(), calib.c_str());
    return 0;
  };
}

Action add_quantize_command(CLI::App& app) {
  struct Opts {
    std::vector<std::string> inputs;
    std::string output;
    std::string calibration;
    bool no_shared = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "quantize", "Quantize the MoE expert weights of a bf16 safetensors checkpoint to ModelOpt NVFP4");
  sub->add_option("--input,-i", o->inputs, "checkpoint directory, or safetensors shard files")->required();
  sub->add_option("--output,-o", o->output, "output directory")->required();
  sub->add_option("--calibration", o->calibration,
                  "safetensors of sample activations '<linear>.input' -> input_scale (without it no input_scale "
                  "is written and the runtime calibrates or computes the activation scale)");
  sub->add_flag("--no-shared-experts", o->no_shared, "leave shared experts in bf16");
  return [o] {
    checkpoint::QuantizeCheckpointOptions opts;
    opts.calibration_path = o->calibration;
    opts.quantize_shared_experts = !o->no_shared;
    std::unique_ptr<ProgressBar> progress;
    opts.progress = [&](int64_t done, int64_t total) {
      if (!progress) progress = std::make_unique<ProgressBar>("quantize", total);
      progress->update(done);
    };
    checkpoint::QuantizeCheckpointReport r = checkpoint::quantize_checkpoint(o->inputs, o->output, opts);
    // The loader reads config.json next to the shards: carry it over from a directory input.
    if (o->inputs.size() == 1 && fs::is_directory(o->inputs[0])) {
      fs::path cfg = fs::path(o->inputs[0]) / "config.json";
      if (fs::exists(cfg)) fs::copy_file(cfg, fs::path(o->output) / "config.json", fs::copy_options::overwrite_existing);
    }
    std::printf("quantized %lld linears (%lld with input_scale), copied %lld tensors; MoE blocks:",
                (long long)r.quantized_linears, (long long)r.calibrated_linears, (long long)r.copied_tensors);
    for (const auto& p : r.moe_prefixes) std::printf(" %s", p.c_str());
    std::printf("\n");
    for (const auto& f : r.output_files) std::printf("wrote %s\n", f.c_str());
    return 0;
  };
}

Action add_info_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand("info", "Print a checkpoint's MoE configuration and tensors by dtype");
  sub->add_option("checkpoint", *path, "checkpoint directory")->required();
  return [path] {
    checkpoint::MoeModelConfig mc = checkpoint::load_model_config(*path);
    checkpoint::Checkpoint ckpt = checkpoint::Checkpoint::open(*path);
    std::printf("model_type %s: hidden %lld, moe_intermediate %lld, experts %d, top-%d, scoring %s, groups %d/%d, "
                "scaling %g, renormalize %d, shared experts %d\n",
                mc.model_type.c_str(), (long long)mc.hidden_size, (long long)mc.moe_intermediate_size,
                mc.routing.num_experts, mc.routing.top_k,
                mc.routing.scoring == ScoringFunc::kSigmoid ? "sigmoid" : "softmax", mc.routing.topk_group,
                mc.routing.n_group, mc.routing.routed_scaling_factor, int(mc.routing.renormalize),
                mc.n_shared_experts);
    if (mc.quantization) std::printf("quantization: %s, group %d\n", mc.quantization->quant_algo.c_str(), mc.quantization->group_size);
    std::map<std::string, std::pair<int64_t, uint64_t>> by_dtype;
    for (const auto& n : ckpt.names()) {
      const auto& info = ckpt.info(n);
      auto& [count, bytes] = by_dtype[checkpoint::to_string(info.dtype)];
      ++count;
      bytes += info.nbytes();
    }
    std::printf("%zu tensors in %zu file(s):\n", ckpt.names().size(), ckpt.files().size());
    for (const auto& [dt, cb] : by_dtype) {
      std::printf("  %-8s %6lld tensors %12.3f MB\n", dt.c_str(), (long long)cb.first, double(cb.second) / 1e6);
    }
    return 0;
  };
}

}  // namespace nvfp4moe::tool
