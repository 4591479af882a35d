// config.json / hf_quant_config.json readers (see model_config.h for every key and default).
#include "nvfp4moe/checkpoint/model_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nvfp4moe/common/error.h"
#include "json_input.h"

namespace nvfp4moe::checkpoint {

using nlohmann::json;

namespace {

// Typed access to one JSON object's keys; every error names the source and the key.
class Keys {
 public:
  Keys(const json& obj, std::string label) : obj_(obj), label_(std::move(label)) {}

  // The value of `key`, or nullptr when it is absent or null.
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }

  std::optional<std::int64_t> opt_int(const char* key, std::int64_t lo, std::int64_t hi) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    NVFP4MOE_CHECK(v->is_number_integer(), label_, ": key '", key, "': expected an integer, got ",
                   checkpoint_json::brief(*v));
    NVFP4MOE_CHECK(!v->is_number_unsigned() || v->get<std::uint64_t>() <= std::uint64_t(hi),
                   label_, ": key '", key, "': expected ", lo, "..", hi, ", got ", checkpoint_json::brief(*v));
    std::int64_t x = v->get<std::int64_t>();
    NVFP4MOE_CHECK(x >= lo && x <= hi, label_, ": key '", key, "': expected ", lo, "..", hi,
                   ", got ", x);
    return x;
  }
  std::int64_t req_int(const char* key, std::int64_t lo, std::int64_t hi) const {
    auto x = opt_int(key, lo, hi);
    NVFP4MOE_CHECK(x.has_value(), label_, ": missing key '", key, "'");
    return *x;
  }
  std::optional<double> opt_number(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    NVFP4MOE_CHECK(v->is_number(), label_, ": key '", key, "': expected a number, got ", checkpoint_json::brief(*v));
    return v->get<double>();
  }
  std::optional<bool> opt_bool(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    NVFP4MOE_CHECK(v->is_boolean(), label_, ": key '", key, "': expected true or false, got ",
                   checkpoint_json::brief(*v));
    return v->get<bool>();
  }
  std::optional<std::string> opt_string(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    NVFP4MOE_CHECK(v->is_string(), label_, ": key '", key, "': expected a string, got ", checkpoint_json::brief(*v));
    return v->get<std::string>();
  }
  std::vector<std::string> opt_string_list(const char* key) const {
    std::vector<std::string> out;
    const json* v = find(key);
    if (!v) return out;
    NVFP4MOE_CHECK(v->is_array(), label_, ": key '", key, "': expected a list of strings, got ",
                   v->type_name());
    for (const json& s : *v) {
      NVFP4MOE_CHECK(s.is_string(), label_, ": key '", key, "': expected strings, got ", checkpoint_json::brief(s));
      out.push_back(s.get<std::string>());
    }
    return out;
  }
  std::vector<int> opt_int_list(const char* key) const {
    std::vector<int> out;
    const json* v = find(key);
    if (!v) return out;
    NVFP4MOE_CHECK(v->is_array(), label_, ": key '", key, "': expected a list of integers, got ",
                   v->type_name());
    for (const json& s : *v) {
      NVFP4MOE_CHECK(s.is_number_integer() && s.get<std::int64_t>() >= 0 &&
                         s.get<std::int64_t>() <= std::numeric_limits<int>::max(),
                     label_, ": key '", key, "': expected non-negative integers, got ", checkpoint_json::brief(s));
      out.push_back(int(s.get<std::int64_t>()));
    }
    return out;
  }
  const std::string& label() const { return label_; }

 private:
  const json& obj_;
  std::string label_;
};

json parse_json_object(std::string_view text, const std::string& label) {
  const json j = checkpoint_json::parse_bounded(text.begin(), text.end(), label);
  NVFP4MOE_CHECK(j.is_object(), label, ": expected a JSON object at the top level, got ", j.type_name());
  return j;
}

QuantizationConfig parse_quant_object(const json& q, const std::string& label) {
  NVFP4MOE_CHECK(q.is_object(), label, ": expected an object, got ", q.type_name());
  Keys k(q, label);
  QuantizationConfig c;
  c.quant_method = k.opt_string("quant_method").value_or("");
  c.quant_algo = k.opt_string("quant_algo").value_or("");
  NVFP4MOE_CHECK(!c.quant_algo.empty() || (!c.quant_method.empty() && c.quant_method != "modelopt"),
                 label, ": missing key 'quant_algo'");
  if (auto g = k.opt_int("group_size", 1, 1 << 20)) c.group_size = int(*g);
  if (c.is_nvfp4()) {
    NVFP4MOE_CHECK(c.group_size == 16, label, ": key 'group_size': NVFP4 uses 16-element blocks, got ",
                   c.group_size);
  }
  c.exclude_modules = k.has("exclude_modules") ? k.opt_string_list("exclude_modules")
                                                : k.opt_string_list("ignore");
  c.kv_cache_quant_algo = k.opt_string("kv_cache_quant_algo");
  return c;
}

// '*' matches any run of characters (dots included), everything else literally.
bool glob_match(std::string_view pattern, std::string_view s) {
  std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NVFP4MOE_CHECK(in.good(), "path: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  NVFP4MOE_CHECK(!in.bad(), "path: cannot read '", path, "'");
  return ss.str();
}

}  // namespace

bool QuantizationConfig::excludes(std::string_view module) const {
  return std::any_of(exclude_modules.begin(), exclude_modules.end(),
                     [&](const std::string& p) { return glob_match(p, module); });
}

bool MoeModelConfig::is_moe_layer(int layer) const {
  if (layer < 0 || (num_hidden_layers > 0 && layer >= num_hidden_layers)) return false;
  if (layer < first_k_dense_replace || layer % moe_layer_freq != 0) return false;
  if ((layer + 1) % decoder_sparse_step != 0) return false;
  return std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) == mlp_only_layers.end();
}

MoeModelConfig parse_model_config(std::string_view json_text, const std::string& label) {
  const json top = parse_json_object(json_text, label);
  const json* model = &top;
  std::string mlabel = label;
  if (!top.contains("hidden_size") && top.contains("text_config") && top["text_config"].is_object()) {
    model = &top["text_config"];
    mlabel = label + " (text_config)";
  }
  Keys k(*model, mlabel);
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

  MoeModelConfig c;
  c.model_type = k.opt_string("model_type").value_or(Keys(top, label).opt_string("model_type").value_or(""));
  c.hidden_size = k.req_int("hidden_size", 1, std::int64_t(1) << 32);

  // Expert count: the first spelling present, the others must agree.
  const char* expert_key = nullptr;
  std::int64_t experts = 0;
  for (const char* key : {"n_routed_experts", "num_experts", "num_local_experts"}) {
    auto e = k.opt_int(key, 1, 512);
    if (!e) continue;
    if (!expert_key) {
      expert_key = key;
      experts = *e;
    } else {
      NVFP4MOE_CHECK(*e == experts, mlabel, ": key '", key, "' = ", *e, " disagrees with '",
                     expert_key, "' = ", experts);
    }
  }
  NVFP4MOE_CHECK(expert_key, mlabel,
                 ": missing key 'n_routed_experts' (or 'num_experts' / 'num_local_experts')");
  if (k.has("moe_intermediate_size") || std::string_view(expert_key) != "num_local_experts") {
    c.moe_intermediate_size = k.req_int("moe_intermediate_size", 1, std::int64_t(1) << 32);
  } else {
    c.moe_intermediate_size = k.req_int("intermediate_size", 1, std::int64_t(1) << 32);
  }

  RoutingConfig& r = c.routing;
  r.num_experts = int(experts);
  r.top_k = int(k.req_int("num_experts_per_tok", 1, 16));
  NVFP4MOE_CHECK(r.top_k <= r.num_experts, mlabel, ": key 'num_experts_per_tok' = ", r.top_k,
                 " exceeds the ", r.num_experts, " experts");
  const bool deepseek_v3 = c.model_type == "deepseek_v3";
  const std::string scoring = k.opt_string("scoring_func").value_or(deepseek_v3 ? "sigmoid" : "softmax");
  NVFP4MOE_CHECK(scoring == "softmax" || scoring == "sigmoid", mlabel,
                 ": key 'scoring_func': expected \"softmax\" or \"sigmoid\", got \"", scoring, "\"");
  r.scoring = scoring == "sigmoid" ? ScoringFunc::kSigmoid : ScoringFunc::kSoftmax;
  const bool renorm_default = deepseek_v3 || c.model_type == "mixtral" || c.model_type == "gpt_oss";
  r.renormalize = k.opt_bool("norm_topk_prob").value_or(renorm_default);
  c.topk_method = k.opt_string("topk_method").value_or("");
  int n_group = int(k.opt_int("n_group", 1, kIntMax).value_or(1));
  int topk_group = int(k.opt_int("topk_group", 1, kIntMax).value_or(1));
  if (r.scoring == ScoringFunc::kSigmoid) {
    NVFP4MOE_CHECK(r.num_experts % n_group == 0, mlabel, ": key 'n_group' = ", n_group,
                   " does not divide the ", r.num_experts, " experts");
    NVFP4MOE_CHECK(topk_group <= n_group, mlabel, ": key 'topk_group' = ", topk_group,
                   " exceeds n_group = ", n_group);
    NVFP4MOE_CHECK(r.top_k <= topk_group * (r.num_experts / n_group), mlabel,
                   ": key 'num_experts_per_tok' = ", r.top_k, " exceeds the ",
                   topk_group * (r.num_experts / n_group), " experts of the topk_group = ", topk_group,
                   " kept groups");
    NVFP4MOE_CHECK(c.topk_method.empty() || c.topk_method == "noaux_tc" || c.topk_method == "greedy",
                   mlabel, ": key 'topk_method': \"", c.topk_method,
                   "\" is not supported with sigmoid scoring (expected \"noaux_tc\")");
    r.n_group = n_group;
    r.topk_group = topk_group;
  } else {
    NVFP4MOE_CHECK(n_group == 1 || c.topk_method == "greedy", mlabel, ": key 'n_group' = ", n_group,
                   ": grouped softmax routing (topk_method \"", c.topk_method,
                   "\", DeepSeek-V2 style) is not supported");
    r.n_group = 1;
    r.topk_group = 1;
  }
  const double scale = k.opt_number("routed_scaling_factor").value_or(1.0);
  NVFP4MOE_CHECK(std::isfinite(scale) && scale > 0.0 && scale <= std::numeric_limits<float>::max(),
                 mlabel, ": key 'routed_scaling_factor': expected a finite positive number, got ", scale);
  r.routed_scaling_factor = float(scale);
  try {
    validate(r);
  } catch (const Error& e) {
    NVFP4MOE_CHECK(false, mlabel, ": routing keys give an unsupported configuration: ", e.what());
  }

  // Shared experts.
  c.n_shared_experts = int(k.opt_int("n_shared_experts", 0, 64).value_or(0));
  if (auto w = k.opt_int("shared_expert_intermediate_size", 0, std::int64_t(1) << 32); w && *w > 0) {
    NVFP4MOE_CHECK(c.n_shared_experts <= 1, mlabel,
                   ": keys 'shared_expert_intermediate_size' and 'n_shared_experts' = ",
                   c.n_shared_experts, " describe different shared experts");
    c.n_shared_experts = 1;
    c.shared_intermediate_size = *w;
    c.shared_expert_gated = true;
  } else {
    c.shared_intermediate_size = c.n_shared_experts * c.moe_intermediate_size;
  }

  if (auto lim = k.opt_number("swiglu_limit")) {
    NVFP4MOE_CHECK(std::isfinite(*lim) && *lim > 0.0, mlabel,
                   ": key 'swiglu_limit': expected a finite positive number, got ", *lim);
    c.swiglu_limit = float(*lim);
  }
  c.hidden_act = k.opt_string("hidden_act").value_or("silu");
  NVFP4MOE_CHECK(c.hidden_act == "silu" || c.hidden_act == "swish", label, ": key 'hidden_act': expected \"silu\" "
                 "(the experts' SwiGLU activation), got \"", c.hidden_act, "\"");
  c.num_hidden_layers = int(k.opt_int("num_hidden_layers", 0, 100000).value_or(0));
  c.first_k_dense_replace = int(k.opt_int("first_k_dense_replace", 0, kIntMax).value_or(0));
  c.moe_layer_freq = int(k.opt_int("moe_layer_freq", 1, kIntMax).value_or(1));
  c.decoder_sparse_step = int(k.opt_int("decoder_sparse_step", 1, kIntMax).value_or(1));
  c.mlp_only_layers = k.opt_int_list("mlp_only_layers");

  // The quantization block lives at the top level even for multimodal wrappers.
  if (auto q = top.find("quantization_config"); q != top.end() && !q->is_null()) {
    c.quantization = parse_quant_object(*q, label + ": quantization_config");
  }
  return c;
}

QuantizationConfig parse_hf_quant_config(std::string_view json_text, const std::string& label) {
  const json top = parse_json_object(json_text, label);
  auto q = top.find("quantization");
  NVFP4MOE_CHECK(q != top.end() && !q->is_null(), label, ": missing key 'quantization'");
  return parse_quant_object(*q, label + ": quantization");
}

MoeModelConfig load_model_config(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) p /= "config.json";
  MoeModelConfig c = parse_model_config(read_text_file(p.string()), p.string());
  if (!c.quantization) {
    fs::path hq = p.parent_path() / "hf_quant_config.json";
    if (fs::exists(hq, ec)) c.quantization = parse_hf_quant_config(read_text_file(hq.string()), hq.string());
  }
  return c;
}

}  // namespace nvfp4moe::checkpoint
