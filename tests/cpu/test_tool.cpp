// End-to-end tests of the nvfp4-moe tool and the model layer: generate -> quantize (with and
// without calibration) -> load -> run, the built-in default, and errors for bad input.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "cpu/temp_dir.h"
#include "nvfp4moe/checkpoint/checkpoint.h"
#include "nvfp4moe/checkpoint/safetensors.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/model/builtin_model.h"
#include "nvfp4moe/model/moe_layer_loader.h"
#include "nvfp4moe/ref/moe.h"

namespace fs = std::filesystem;
using namespace nvfp4moe;
using nvfp4moe::test::TempDir;

namespace {

struct Result {
  int rc;
  std::string out;  // stdout and stderr
};

Result run_tool(const std::string& args) {
  std::string cmd = std::string(NVFP4MOE_TOOL_PATH) + " " + args + " 2>&1";
  Result r{-1, {}};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (fgets(buf.data(), int(buf.size()), p)) r.out += buf.data();
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}


std::string line_with(const std::string& text, const std::string& key) {
  size_t p = text.find(key);
  if (p == std::string::npos) return {};
  return text.substr(p, text.find('\n', p) - p);
}

}  // namespace

TEST(Tool, RunBuiltinDefaultPrintsBackendChecksumErrorAndTime) {
  Result r = run_tool("run --tokens 16");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("backend:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksum:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rel L2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("time:"), std::string::npos) << r.out;
  // Deterministic: the same seed gives the same checksum, another seed another one.
  Result again = run_tool("run --tokens 16 --cpu");
  EXPECT_EQ(line_with(r.out, "checksum:"), line_with(again.out, "checksum:"));
  Result other = run_tool("run --tokens 16 --cpu --seed 2");
  EXPECT_NE(line_with(r.out, "checksum:"), line_with(other.out, "checksum:"));
}

// --one-act-scale: the W4A4 layer with one activation scale per GEMM input (a note says so);
// refused for W4A16, which has no activation scale.
TEST(Tool, RunWithOneActivationScale) {
  Result r = run_tool("run --tokens 8 --cpu --one-act-scale");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("one activation scale"), std::string::npos) << r.out;
  EXPECT_NE(line_with(r.out, "checksum:"), line_with(run_tool("run --tokens 8 --cpu").out, "checksum:"))
      << "the scales changed, so should the output";
  Result bad = run_tool("run --tokens 8 --cpu --one-act-scale --mode w4a16");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.out.find("--one-act-scale"), std::string::npos) << bad.out;
}

TEST(Tool, BadArgumentsGiveAClearErrorAndNonZeroExit) {
  Result r = run_tool("run --tokens -3");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--tokens"), std::string::npos) << r.out;
  r = run_tool("run --mode w8a8");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--mode"), std::string::npos) << r.out;
  r = run_tool("run --checkpoint /nonexistent/dir");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("/nonexistent/dir"), std::string::npos) << r.out;
  r = run_tool("frobnicate");
  EXPECT_NE(r.rc, 0);
  // 2^59 tokens: tokens * hidden wraps int64; a clear error, not a crash.
  r = run_tool("run --cpu --tokens 576460752303423488");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("--tokens"), std::string::npos) << r.out;
}

TEST(Tool, GenerateQuantizeRunRoundTrip) {
  TempDir dir;
  Result g = run_tool("generate -o " + dir.str());
  ASSERT_EQ(g.rc, 0) << g.out;
  Result q = run_tool("quantize -i " + dir.str() + "/bf16 -o " + dir.str() + "/nvfp4 --calibration " +
                      dir.str() + "/calibration.safetensors");
  ASSERT_EQ(q.rc, 0) << q.out;
  EXPECT_NE(q.out.find("99 linears (99 with input_scale)"), std::string::npos) << q.out;
  Result info = run_tool("info " + dir.str() + "/nvfp4");
  ASSERT_EQ(info.rc, 0) << info.out;
  EXPECT_NE(info.out.find("NVFP4"), std::string::npos) << info.out;
  Result r = run_tool("run --tokens 8 --checkpoint " + dir.str() + "/nvfp4");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.find("calibrated"), std::string::npos) << "input_scale should come from the checkpoint\n" << r.out;
  // A bf16 checkpoint is not NVFP4: the loader names the tensor.
  Result bad = run_tool("run --checkpoint " + dir.str() + "/bf16");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.out.find("gate_proj.weight"), std::string::npos) << bad.out;
}

// The built-in layer at a size the loader tests quantize in a moment (shared expert included).
model::BuiltinModelSpec small_spec() {
  model::BuiltinModelSpec spec;
  spec.hidden = 64;
  spec.intermediate = 32;
  spec.num_experts = 8;
  spec.top_k = 2;
  spec.n_group = 4;
  spec.topk_group = 2;
  return spec;
}

TEST(ModelLoader, QuantizedCheckpointEqualsInMemoryQuantization) {
  TempDir dir;
  const model::BuiltinModelSpec spec = small_spec();
  model::FloatMoeLayer layer = model::make_builtin_layer(spec);
  model::write_hf_checkpoint(layer, dir.str() + "/bf16");
  Result q = run_tool("quantize -i " + dir.str() + "/bf16 -o " + dir.str() + "/nvfp4");
  ASSERT_EQ(q.rc, 0) << q.out;

  model::LoadedMoeLayer loaded = model::load_moe_layer(dir.str() + "/nvfp4", std::nullopt, ActDType::kBF16, MoeMode::kW4A16);
  EXPECT_EQ(loaded.layer, 0);
  EXPECT_FALSE(loaded.has_activation_scales);
  EXPECT_EQ(loaded.cfg.hidden, 64);
  EXPECT_EQ(loaded.cfg.intermediate, 32);
  EXPECT_EQ(loaded.cfg.routing.num_experts, 8);
  EXPECT_EQ(loaded.cfg.n_shared_experts, 1);
  EXPECT_EQ(loaded.router, layer.router);
  EXPECT_EQ(loaded.weights.e_score_correction_bias, layer.weights.e_score_correction_bias);

  MoeWeights direct = ref::quantize_weights(layer.cfg, layer.weights);
  for (int e = 0; e < spec.num_experts; ++e) {
    const auto& a = loaded.weights.w13[size_t(e)];
    const auto& b = direct.w13[size_t(e)];
    EXPECT_EQ(a.codes, b.codes) << "expert " << e;
    EXPECT_EQ(a.scales, b.scales) << "expert " << e;
    // The checkpoint stores 1/g; reading it back inverts once more (within 1 ulp).
    EXPECT_NEAR(a.g_lo, b.g_lo, b.g_lo * 1.2e-7f) << "expert " << e;
    EXPECT_NEAR(a.g_hi, b.g_hi, b.g_hi * 1.2e-7f) << "expert " << e;
    EXPECT_EQ(loaded.weights.w2[size_t(e)].codes, direct.w2[size_t(e)].codes) << "expert " << e;
    EXPECT_EQ(loaded.weights.w2[size_t(e)].scales, direct.w2[size_t(e)].scales) << "expert " << e;
  }
  ASSERT_TRUE(loaded.weights.shared.has_value());
  EXPECT_EQ(loaded.weights.shared->w13.codes, direct.shared->w13.codes);
  EXPECT_EQ(loaded.weights.shared->w2.scales, direct.shared->w2.scales);

  EXPECT_THROW(model::load_moe_layer(dir.str() + "/nvfp4", 3, ActDType::kBF16, MoeMode::kW4A16), Error);
}

// A copy of checkpoint `from` in `to` with config.json edited by `edit_config` and each tensor
// passed through `edit_tensor` (name, shape; may change the shape, not the byte count; false
// leaves the tensor out).
void copy_checkpoint(const std::string& from, const std::string& to,
                     const std::function<void(std::string&)>& edit_config,
                     const std::function<bool(const std::string&, std::vector<int64_t>&)>& edit_tensor) {
  fs::create_directories(to);
  for (const auto& entry : fs::directory_iterator(from)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".json") && name != "model.safetensors.index.json") fs::copy_file(entry.path(), fs::path(to) / name);
  }
  std::string cfg;
  {
    std::ifstream in(fs::path(to) / "config.json");
    cfg.assign(std::istreambuf_iterator<char>(in), {});
  }
  edit_config(cfg);
  std::ofstream(fs::path(to) / "config.json") << cfg;
  checkpoint::Checkpoint src = checkpoint::Checkpoint::open(from);
  checkpoint::SafetensorsWriter w;
  for (const std::string& n : src.names()) {
    std::vector<int64_t> shape = src.info(n).shape;
    if (edit_tensor(n, shape)) w.add(n, src.info(n).dtype, shape, src.bytes(n));
  }
  w.write((fs::path(to) / "model.safetensors").string());
}

void replace(std::string& s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
}

void expect_load_error(const std::string& dir, const std::string& needle) {
  try {
    model::load_moe_layer(dir, std::nullopt, ActDType::kBF16, MoeMode::kW4A16);
    ADD_FAILURE() << "loaded; expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// What a loader must not do silently: drop a declared shared expert, ignore undeclared shared
// tensors, route by a transposed router weight, or run another activation than SiLU.
TEST(ModelLoader, ConfigAndTensorsMustAgree) {
  TempDir dir;
  const model::BuiltinModelSpec spec = small_spec();
  model::write_hf_checkpoint(model::make_builtin_layer(spec), dir.str() + "/bf16");
  Result q = run_tool("quantize -i " + dir.str() + "/bf16 -o " + dir.str() + "/nvfp4");
  ASSERT_EQ(q.rc, 0) << q.out;
  const std::string src = dir.str() + "/nvfp4";
  auto keep_cfg = [](std::string&) {};
  auto keep_tensor = [](const std::string&, std::vector<int64_t>&) { return true; };

  copy_checkpoint(src, dir.str() + "/same", keep_cfg, keep_tensor);
  EXPECT_NO_THROW(model::load_moe_layer(dir.str() + "/same", std::nullopt, ActDType::kBF16, MoeMode::kW4A16));

  copy_checkpoint(src, dir.str() + "/undeclared", [](std::string& c) { replace(c, "\"n_shared_experts\": 1", "\"n_shared_experts\": 0"); },
                  keep_tensor);
  expect_load_error(dir.str() + "/undeclared", "is present");

  copy_checkpoint(src, dir.str() + "/no_shared_tensors", keep_cfg, [](const std::string& n, std::vector<int64_t>&) {
    return n.find("shared_experts") == std::string::npos;
  });
  expect_load_error(dir.str() + "/no_shared_tensors", "is missing");

  copy_checkpoint(src, dir.str() + "/transposed", keep_cfg, [](const std::string& n, std::vector<int64_t>& shape) {
    if (n.ends_with("mlp.gate.weight")) std::swap(shape[0], shape[1]);
    return true;
  });
  expect_load_error(dir.str() + "/transposed", "gate.weight: expected shape [8, 64], got [64, 8]");

  copy_checkpoint(src, dir.str() + "/gelu", [](std::string& c) { replace(c, "\"silu\"", "\"gelu\""); }, keep_tensor);
  expect_load_error(dir.str() + "/gelu", "hidden_act");
}

TEST(BuiltinModel, IsDeterministicAndBf16Valued) {
  model::BuiltinModelSpec spec;
  spec.hidden = 32;
  spec.intermediate = 16;
  spec.num_experts = 8;
  spec.top_k = 2;
  spec.n_group = 2;
  spec.topk_group = 1;
  model::FloatMoeLayer a = model::make_builtin_layer(spec), b = model::make_builtin_layer(spec);
  EXPECT_EQ(a.weights.w13, b.weights.w13);
  EXPECT_EQ(a.router, b.router);
  for (float v : a.weights.w2[0]) EXPECT_EQ(v, bf16_to_float(bf16_from_float(v)));
  spec.seed += 1;
  model::FloatMoeLayer c = model::make_builtin_layer(spec);
  EXPECT_NE(a.weights.w13, c.weights.w13);
  spec.hidden = 40;
  EXPECT_THROW(model::make_builtin_layer(spec), Error);
}
