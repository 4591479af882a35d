// ModelOpt NVFP4 naming, linear views, scale (un)swizzle (see modelopt.h).
#include "nvfp4moe/checkpoint/modelopt.h"

#include <algorithm>
#include <cmath>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe::checkpoint {

const char* to_string(Proj p) {
  switch (p) {
    case Proj::kGate: return "gate_proj";
    case Proj::kUp: return "up_proj";
    case Proj::kDown: return "down_proj";
  }
  return "?";
}

const char* to_string(QuantField f) {
  switch (f) {
    case QuantField::kWeight: return "weight";
    case QuantField::kWeightScale: return "weight_scale";
    case QuantField::kWeightScale2: return "weight_scale_2";
    case QuantField::kInputScale: return "input_scale";
  }
  return "?";
}

std::string tensor_name(const std::string& linear, QuantField f) { return linear + "." + to_string(f); }

std::string MoeNaming::moe_prefix(int layer) const {
  NVFP4MOE_CHECK(layer >= 0, "layer: expected >= 0, got ", layer);
  return layers_prefix + "." + std::to_string(layer) + "." + mlp;
}
std::string MoeNaming::expert_linear(int layer, int expert, Proj p) const {
  NVFP4MOE_CHECK(expert >= 0, "expert: expected >= 0, got ", expert);
  return moe_prefix(layer) + "." + experts + "." + std::to_string(expert) + "." + to_string(p);
}
std::string MoeNaming::expert_tensor(int layer, int expert, Proj p, QuantField f) const {
  return tensor_name(expert_linear(layer, expert, p), f);
}
std::string MoeNaming::shared_linear(int layer, Proj p) const {
  return moe_prefix(layer) + "." + shared_experts + "." + to_string(p);
}
std::string MoeNaming::shared_tensor(int layer, Proj p, QuantField f) const {
  return tensor_name(shared_linear(layer, p), f);
}
std::string MoeNaming::router_weight(int layer) const { return moe_prefix(layer) + "." + router + ".weight"; }
std::string MoeNaming::router_correction_bias(int layer) const {
  return moe_prefix(layer) + "." + router + ".e_score_correction_bias";
}

namespace {

std::span<const std::uint8_t> as_u8(std::span<const std::byte> b) {
  return {reinterpret_cast<const std::uint8_t*>(b.data()), b.size()};
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

Nvfp4Linear read_nvfp4_linear(const Checkpoint& ckpt, const std::string& linear) {
  Nvfp4Linear v;
  v.linear = linear;
  const std::string w_name = tensor_name(linear, QuantField::kWeight);
  const std::string s_name = tensor_name(linear, QuantField::kWeightScale);
  const std::string g_name = tensor_name(linear, QuantField::kWeightScale2);
  const std::string a_name = tensor_name(linear, QuantField::kInputScale);
  const TensorInfo& w = ckpt.info(w_name);
  NVFP4MOE_CHECK(w.dtype == DType::kU8 && w.shape.size() == 2, "tensor '", w_name,
                 "': expected U8 [N, K/2] (packed e2m1), got ", to_string(w.dtype), " ", shape_str(w.shape));
  v.n = w.shape[0];
  v.k = w.shape[1] * 2;
  NVFP4MOE_CHECK(v.n > 0 && v.k > 0 && v.k % 16 == 0, "tensor '", w_name, "': shape ", shape_str(w.shape),
                 " gives N = ", v.n, ", K = ", v.k, "; expected N > 0 and K a positive multiple of 16");
  const TensorInfo& s = ckpt.info(s_name);
  NVFP4MOE_CHECK(s.dtype == DType::kF8_E4M3 && s.shape == std::vector<std::int64_t>({v.n, v.k / 16}),
                 "tensor '", s_name, "': expected F8_E4M3 [", v.n, ", ", v.k / 16, "] (row-major), got ",
                 to_string(s.dtype), " ", shape_str(s.shape));
  v.weight = as_u8(ckpt.bytes(w_name));
  v.weight_scale = as_u8(ckpt.bytes(s_name));
  // Block scales are non-negative e4m3 (0x80, -0, counts as zero): a NaN or negative byte is a
  // corrupt checkpoint, refused here rather than computed through.
  for (std::size_t i = 0; i < v.weight_scale.size(); ++i) {
    const std::uint8_t b = v.weight_scale[i];
    NVFP4MOE_CHECK((b & 0x7f) != 0x7f && (b == 0x80 || (b & 0x80) == 0), "tensor '", s_name,
                   "': block scale at row ", i / std::size_t(v.k / 16), ", block ", i % std::size_t(v.k / 16),
                   " is ", (b & 0x7f) == 0x7f ? "NaN" : "negative", " (byte 0x", std::hex, int(b), std::dec,
                   "); expected a non-negative e4m3 scale");
  }
  v.weight_scale_2 = ckpt.scalar_f32(g_name);
  NVFP4MOE_CHECK(std::isfinite(v.weight_scale_2) && v.weight_scale_2 > 0.0f, "tensor '", g_name,
                 "': expected a finite positive scale, got ", v.weight_scale_2);
  if (ckpt.contains(a_name)) {
    float a = ckpt.scalar_f32(a_name);
    NVFP4MOE_CHECK(std::isfinite(a) && a > 0.0f, "tensor '", a_name,
                   "': expected a finite positive scale, got ", a);
    v.input_scale = a;
  }
  return v;
}

void swizzle_scales(std::span<const std::uint8_t> row_major, std::int64_t rows, std::int64_t k,
                    std::span<std::uint8_t> swizzled) {
  NVFP4MOE_CHECK(rows >= 0, "rows: expected >= 0, got ", rows);
  NVFP4MOE_CHECK(k > 0 && k % kBlockSize == 0, "k: expected a positive multiple of 16, got ", k);
  const std::int64_t cols = scale_cols(k), pcols = padded_scale_cols(k);
  NVFP4MOE_CHECK(std::int64_t(row_major.size()) == rows * cols, "row_major: expected rows * k/16 = ",
                 rows * cols, " bytes, got ", row_major.size());
  NVFP4MOE_CHECK(std::int64_t(swizzled.size()) == swizzled_scale_bytes(rows, k),
                 "swizzled: expected swizzled_scale_bytes(rows, k) = ", swizzled_scale_bytes(rows, k),
                 " bytes, got ", swizzled.size());
  std::fill(swizzled.begin(), swizzled.end(), std::uint8_t{0});
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      swizzled[std::size_t(swizzled_scale_offset(r, c, pcols))] = row_major[std::size_t(r * cols + c)];
    }
  }
}

void unswizzle_scales(std::span<const std::uint8_t> swizzled, std::int64_t rows, std::int64_t k,
                      std::span<std::uint8_t> row_major) {
  NVFP4MOE_CHECK(rows >= 0, "rows: expected >= 0, got ", rows);
  NVFP4MOE_CHECK(k > 0 && k % kBlockSize == 0, "k: expected a positive multiple of 16, got ", k);
  const std::int64_t cols = scale_cols(k), pcols = padded_scale_cols(k);
  NVFP4MOE_CHECK(std::int64_t(swizzled.size()) == swizzled_scale_bytes(rows, k),
                 "swizzled: expected swizzled_scale_bytes(rows, k) = ", swizzled_scale_bytes(rows, k),
                 " bytes, got ", swizzled.size());
  NVFP4MOE_CHECK(std::int64_t(row_major.size()) == rows * cols, "row_major: expected rows * k/16 = ",
                 rows * cols, " bytes, got ", row_major.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      row_major[std::size_t(r * cols + c)] = swizzled[std::size_t(swizzled_scale_offset(r, c, pcols))];
    }
  }
}

}  // namespace nvfp4moe::checkpoint
