// libFuzzer target: parse_model_config / parse_hf_quant_config on arbitrary text. Any
// outcome but a config or nvfp4moe::Error (a leaked JSON exception, a crash) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nvfp4moe/checkpoint/model_config.h"
#include "nvfp4moe/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nvfp4moe::checkpoint;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    MoeModelConfig c = parse_model_config(text, "fuzz-config.json");
    for (int l = -1; l < 4; ++l) (void)c.is_moe_layer(l);
    if (c.quantization) (void)c.quantization->excludes("model.layers.0.mlp.experts.0.up_proj");
  } catch (const nvfp4moe::Error&) {
  }
  try {
    QuantizationConfig q = parse_hf_quant_config(text, "fuzz-hf_quant_config.json");
    (void)q.excludes("lm_head");
  } catch (const nvfp4moe::Error&) {
  }
  return 0;
}
