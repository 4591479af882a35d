// config.json / hf_quant_config.json parsing: real-shaped DeepSeek-V3, Qwen3-MoE, Mixtral and
// Qwen2-MoE configs, defaults, and errors that name the offending key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "nvfp4moe/checkpoint/model_config.h"
#include "nvfp4moe/common/error.h"

namespace nvfp4moe::checkpoint {
namespace {

// Trimmed from deepseek-ai/DeepSeek-V3's config.json (MoE-relevant keys kept verbatim) plus
// the quantization_config block a ModelOpt NVFP4 export carries.
const char* kDeepSeekV3 = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "model_type": "deepseek_v3",
  "hidden_size": 7168,
  "intermediate_size": 18432,
  "moe_intermediate_size": 2048,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "num_experts_per_tok": 8,
  "n_group": 8,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "routed_scaling_factor": 2.5,
  "norm_topk_prob": true,
  "scoring_func": "sigmoid",
  "first_k_dense_replace": 3,
  "moe_layer_freq": 1,
  "num_hidden_layers": 61,
  "hidden_act": "silu",
  "rope_scaling": {"factor": 40, "type": "yarn"},
  "quantization_config": {
    "quant_method": "modelopt",
    "quant_algo": "NVFP4",
    "group_size": 16,
    "kv_cache_quant_algo": null,
    "exclude_modules": ["lm_head", "model.layers.*.self_attn*", "model.layers.*.mlp.gate"]
  }
})";

// Trimmed from Qwen/Qwen3-30B-A3B's config.json.
const char* kQwen3Moe = R"({
  "architectures": ["Qwen3MoeForCausalLM"],
  "model_type": "qwen3_moe",
  "hidden_size": 2048,
  "intermediate_size": 6144,
  "moe_intermediate_size": 768,
  "num_experts": 128,
  "num_experts_per_tok": 8,
  "norm_topk_prob": true,
  "decoder_sparse_step": 1,
  "mlp_only_layers": [],
  "num_hidden_layers": 48,
  "hidden_act": "silu",
  "rope_scaling": null
})";

void expect_error(const std::string& json, const std::string& needle) {
  try {
    parse_model_config(json, "test-config.json");
    ADD_FAILURE() << "accepted; expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find("test-config.json"), std::string::npos) << "message: " << msg;
  }
}

TEST(ModelConfig, DeepSeekV3) {
  MoeModelConfig c = parse_model_config(kDeepSeekV3);
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.routing.num_experts, 256);
  EXPECT_EQ(c.routing.top_k, 8);
  EXPECT_EQ(c.routing.scoring, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c.routing.renormalize);
  EXPECT_EQ(c.routing.n_group, 8);
  EXPECT_EQ(c.routing.topk_group, 4);
  EXPECT_FLOAT_EQ(c.routing.routed_scaling_factor, 2.5f);
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.shared_intermediate_size, 2048);
  EXPECT_FALSE(c.shared_expert_gated);
  EXPECT_FALSE(c.swiglu_limit.has_value());
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(60));
  EXPECT_FALSE(c.is_moe_layer(61));
  EXPECT_FALSE(c.is_moe_layer(-1));
  ASSERT_TRUE(c.quantization.has_value());
  EXPECT_TRUE(c.quantization->is_nvfp4());
  EXPECT_EQ(c.quantization->quant_method, "modelopt");
  EXPECT_EQ(c.quantization->group_size, 16);
  EXPECT_FALSE(c.quantization->kv_cache_quant_algo.has_value());
  EXPECT_TRUE(c.quantization->excludes("lm_head"));
  EXPECT_TRUE(c.quantization->excludes("model.layers.12.self_attn.q_a_proj"));
  EXPECT_TRUE(c.quantization->excludes("model.layers.3.mlp.gate"));
  EXPECT_FALSE(c.quantization->excludes("model.layers.3.mlp.gate_proj"));
  EXPECT_FALSE(c.quantization->excludes("model.layers.3.mlp.experts.7.down_proj"));
  EXPECT_FALSE(c.quantization->excludes("lm_head2"));
}

TEST(ModelConfig, Qwen3Moe) {
  MoeModelConfig c = parse_model_config(kQwen3Moe);
  EXPECT_EQ(c.model_type, "qwen3_moe");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.moe_intermediate_size, 768);  // not intermediate_size (the dense MLP width)
  EXPECT_EQ(c.routing.num_experts, 128);
  EXPECT_EQ(c.routing.top_k, 8);
  EXPECT_EQ(c.routing.scoring, ScoringFunc::kSoftmax);
  EXPECT_TRUE(c.routing.renormalize);
  EXPECT_EQ(c.routing.n_group, 1);
  EXPECT_EQ(c.routing.topk_group, 1);
  EXPECT_FLOAT_EQ(c.routing.routed_scaling_factor, 1.0f);
  EXPECT_EQ(c.n_shared_experts, 0);
  EXPECT_EQ(c.shared_intermediate_size, 0);
  EXPECT_FALSE(c.quantization.has_value());
  for (int l = 0; l < 48; ++l) EXPECT_TRUE(c.is_moe_layer(l)) << l;
}

TEST(ModelConfig, DefaultsAndFamilies) {
  // Qwen-style without norm_topk_prob: HF's default is false.
  MoeModelConfig q = parse_model_config(
      R"({"model_type":"qwen3_moe","hidden_size":64,"moe_intermediate_size":32,"num_experts":8,
          "num_experts_per_tok":2,"decoder_sparse_step":2,"mlp_only_layers":[3],"num_hidden_layers":8})");
  EXPECT_FALSE(q.routing.renormalize);
  EXPECT_FALSE(q.is_moe_layer(0));
  EXPECT_TRUE(q.is_moe_layer(1));
  EXPECT_FALSE(q.is_moe_layer(3));  // in mlp_only_layers
  EXPECT_TRUE(q.is_moe_layer(5));
  // Mixtral: num_local_experts, experts sized by intermediate_size, always renormalized.
  MoeModelConfig m = parse_model_config(
      R"({"model_type":"mixtral","hidden_size":4096,"intermediate_size":14336,
          "num_local_experts":8,"num_experts_per_tok":2})");
  EXPECT_EQ(m.moe_intermediate_size, 14336);
  EXPECT_EQ(m.routing.num_experts, 8);
  EXPECT_TRUE(m.routing.renormalize);
  EXPECT_EQ(m.routing.scoring, ScoringFunc::kSoftmax);
  // DeepSeek-V3 without scoring_func (HF's transformers config has none): sigmoid.
  MoeModelConfig d = parse_model_config(
      R"({"model_type":"deepseek_v3","hidden_size":64,"moe_intermediate_size":32,
          "n_routed_experts":16,"num_experts_per_tok":4,"n_group":4,"topk_group":2})");
  EXPECT_EQ(d.routing.scoring, ScoringFunc::kSigmoid);
  EXPECT_TRUE(d.routing.renormalize);
  // Qwen2-MoE: one gated shared expert with its own width; null counts as absent.
  MoeModelConfig s = parse_model_config(
      R"({"model_type":"qwen2_moe","hidden_size":64,"moe_intermediate_size":32,"num_experts":8,
          "num_experts_per_tok":2,"shared_expert_intermediate_size":96,"n_group":null,
          "swiglu_limit":7.0})");
  EXPECT_EQ(s.n_shared_experts, 1);
  EXPECT_EQ(s.shared_intermediate_size, 96);
  EXPECT_TRUE(s.shared_expert_gated);
  ASSERT_TRUE(s.swiglu_limit.has_value());
  EXPECT_FLOAT_EQ(*s.swiglu_limit, 7.0f);
  // Multimodal wrapper: MoE keys under text_config, quantization at the top level.
  MoeModelConfig t = parse_model_config(
      R"({"model_type":"wrapper","text_config":{"model_type":"qwen3_moe","hidden_size":64,
          "moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2},
          "quantization_config":{"quant_algo":"NVFP4"}})");
  EXPECT_EQ(t.model_type, "qwen3_moe");
  EXPECT_EQ(t.hidden_size, 64);
  ASSERT_TRUE(t.quantization.has_value());
  EXPECT_EQ(t.quantization->group_size, 16);
}

TEST(ModelConfig, ErrorsNameTheKey) {
  const std::string base =
      R"("hidden_size":64,"moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2)";
  auto with = [&](const std::string& extra) { return "{" + base + "," + extra + "}"; };
  expect_error("not json", "not valid JSON");
  // Deep nesting: an error, not a stack overflow while quoting the value.
  expect_error("{\"hidden_size\":" + std::string(100000, '[') + std::string(100000, ']') + "}", "nested deeper");
  expect_error("[1,2]", "JSON object");
  expect_error(R"({"moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2})",
               "missing key 'hidden_size'");
  expect_error(R"({"hidden_size":64,"num_experts":8,"num_experts_per_tok":2})",
               "missing key 'moe_intermediate_size'");
  expect_error(R"({"hidden_size":64,"moe_intermediate_size":32,"num_experts_per_tok":2})",
               "missing key 'n_routed_experts'");
  expect_error(R"({"hidden_size":64,"moe_intermediate_size":32,"num_experts":8})",
               "missing key 'num_experts_per_tok'");
  expect_error(R"({"hidden_size":"64","moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2})",
               "key 'hidden_size': expected an integer");
  expect_error(R"({"hidden_size":64.5,"moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2})",
               "key 'hidden_size': expected an integer");
  expect_error(R"({"hidden_size":-1,"moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2})",
               "key 'hidden_size': expected 1..");
  expect_error(with(R"("n_routed_experts":16)"), "disagrees");
  expect_error(R"({"hidden_size":64,"moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":9})",
               "key 'num_experts_per_tok'");
  expect_error(R"({"hidden_size":64,"moe_intermediate_size":32,"num_experts":1000,"num_experts_per_tok":2})",
               "key 'num_experts'");
  expect_error(with(R"("scoring_func":"relu")"), "key 'scoring_func'");
  expect_error(with(R"("scoring_func":1)"), "key 'scoring_func': expected a string");
  expect_error(with(R"("norm_topk_prob":"yes")"), "key 'norm_topk_prob': expected true or false");
  expect_error(with(R"("scoring_func":"sigmoid","n_group":3)"), "key 'n_group'");
  expect_error(with(R"("scoring_func":"sigmoid","n_group":2,"topk_group":3)"), "key 'topk_group'");
  expect_error(with(R"("scoring_func":"sigmoid","n_group":4,"topk_group":0)"), "key 'topk_group'");
  expect_error(with(R"("scoring_func":"sigmoid","n_group":8,"topk_group":1,"num_experts_per_tok":2)"),
               "kept groups");
  expect_error(with(R"("n_group":2,"topk_group":1,"topk_method":"group_limited_greedy")"),
               "grouped softmax routing");
  expect_error(with(R"("routed_scaling_factor":0)"), "key 'routed_scaling_factor'");
  expect_error(with(R"("routed_scaling_factor":"2.5")"), "key 'routed_scaling_factor'");
  expect_error(with(R"("swiglu_limit":-1.0)"), "key 'swiglu_limit'");
  expect_error(with(R"("mlp_only_layers":[1,"2"])"), "key 'mlp_only_layers'");
  expect_error(with(R"("n_shared_experts":2,"shared_expert_intermediate_size":64)"),
               "describe different shared experts");
  expect_error(with(R"("quantization_config":{"quant_algo":"NVFP4","group_size":32})"),
               "key 'group_size'");
  expect_error(with(R"("quantization_config":{"quant_method":"modelopt"})"), "missing key 'quant_algo'");
  expect_error(with(R"("quantization_config":{"quant_algo":"NVFP4","exclude_modules":"lm_head"})"),
               "key 'exclude_modules'");
  expect_error(with(R"("quantization_config":[])"), "quantization_config: expected an object");
}

TEST(ModelConfig, HfQuantConfigAndLoadFromDirectory) {
  const char* hf_quant = R"({"producer":{"name":"modelopt","version":"0.29.0"},
    "quantization":{"quant_algo":"NVFP4","kv_cache_quant_algo":"FP8","group_size":16,
                    "exclude_modules":["lm_head","model.layers.0.mlp*"]}})";
  QuantizationConfig q = parse_hf_quant_config(hf_quant);
  EXPECT_TRUE(q.is_nvfp4());
  EXPECT_EQ(q.kv_cache_quant_algo.value_or(""), "FP8");
  EXPECT_TRUE(q.excludes("model.layers.0.mlp.experts.1.up_proj"));
  EXPECT_FALSE(q.excludes("model.layers.1.mlp.experts.1.up_proj"));
  EXPECT_THROW(parse_hf_quant_config(R"({"producer":{}})"), Error);

  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("nvfp4moe_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << kQwen3Moe;
  std::ofstream(dir / "hf_quant_config.json") << hf_quant;
  MoeModelConfig c = load_model_config(dir.string());
  EXPECT_EQ(c.routing.num_experts, 128);
  ASSERT_TRUE(c.quantization.has_value());
  EXPECT_EQ(c.quantization->kv_cache_quant_algo.value_or(""), "FP8");
  // config.json's own quantization_config takes precedence over hf_quant_config.json.
  std::ofstream(dir / "config.json") << kDeepSeekV3;
  MoeModelConfig d = load_model_config((dir / "config.json").string());
  ASSERT_TRUE(d.quantization.has_value());
  EXPECT_FALSE(d.quantization->kv_cache_quant_algo.has_value());
  fs::remove_all(dir);
  EXPECT_THROW(load_model_config((dir / "config.json").string()), Error);
}

}  // namespace
}  // namespace nvfp4moe::checkpoint
