// ModelOpt NVFP4 naming, scale swizzle/unswizzle, linear views, and the offline quantizer
// end to end on a tiny generated bf16 MoE checkpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "cpu/temp_dir.h"
#include "nvfp4moe/checkpoint/checkpoint.h"
#include "nvfp4moe/checkpoint/model_config.h"
#include "nvfp4moe/checkpoint/modelopt.h"
#include "nvfp4moe/checkpoint/quantize_checkpoint.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/format/swizzle.h"

namespace nvfp4moe::checkpoint {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

template <typename T>
std::span<const std::byte> raw(const std::vector<T>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)};
}

// Expects `fn` to throw nvfp4moe::Error whose message contains `needle`.
template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

TEST(ModelOpt, TensorNames) {
  MoeNaming n;
  EXPECT_EQ(n.moe_prefix(3), "model.layers.3.mlp");
  EXPECT_EQ(n.expert_linear(3, 7, Proj::kUp), "model.layers.3.mlp.experts.7.up_proj");
  EXPECT_EQ(n.expert_tensor(3, 7, Proj::kGate, QuantField::kWeight), "model.layers.3.mlp.experts.7.gate_proj.weight");
  EXPECT_EQ(n.expert_tensor(0, 255, Proj::kDown, QuantField::kWeightScale),
            "model.layers.0.mlp.experts.255.down_proj.weight_scale");
  EXPECT_EQ(n.expert_tensor(60, 0, Proj::kUp, QuantField::kWeightScale2),
            "model.layers.60.mlp.experts.0.up_proj.weight_scale_2");
  EXPECT_EQ(n.expert_tensor(3, 1, Proj::kDown, QuantField::kInputScale),
            "model.layers.3.mlp.experts.1.down_proj.input_scale");
  EXPECT_EQ(n.shared_tensor(3, Proj::kDown, QuantField::kWeight), "model.layers.3.mlp.shared_experts.down_proj.weight");
  EXPECT_EQ(n.router_weight(3), "model.layers.3.mlp.gate.weight");
  EXPECT_EQ(n.router_correction_bias(3), "model.layers.3.mlp.gate.e_score_correction_bias");
  MoeNaming q;
  q.layers_prefix = "language_model.model.layers";
  q.shared_experts = "shared_expert";
  EXPECT_EQ(q.shared_linear(2, Proj::kGate), "language_model.model.layers.2.mlp.shared_expert.gate_proj");
  EXPECT_EQ(tensor_name("x.up_proj", QuantField::kWeightScale2), "x.up_proj.weight_scale_2");
  EXPECT_THROW(n.moe_prefix(-1), Error);
  EXPECT_THROW(n.expert_linear(0, -1, Proj::kUp), Error);
}

TEST(ModelOpt, SwizzleRoundTripAndLayout) {
  const unsigned seed = 424242u;
  std::mt19937 rng(seed);
  // The offset formula by hand: rows 256, k 128 (8 scale columns): (r=33, c=5) is in tile
  // (0, 1) -> 512 + (33 % 32) * 16 + (33 / 32) * 4 + 5 % 4 = 533.
  EXPECT_EQ(swizzled_scale_offset(33, 5, padded_scale_cols(128)), 533);
  for (std::int64_t rows : {1, 19, 128, 129, 300}) {
    for (std::int64_t k : {16, 48, 64, 80, 272}) {
      SCOPED_TRACE("rows " + std::to_string(rows) + " k " + std::to_string(k) + " seed " + std::to_string(seed));
      const std::int64_t cols = k / 16;
      std::vector<std::uint8_t> rm(std::size_t(rows * cols));
      for (auto& b : rm) b = std::uint8_t(1 + rng() % 255);  // nonzero, so padding is visible
      std::vector<std::uint8_t> sw(std::size_t(swizzled_scale_bytes(rows, k)), 0xAA);
      swizzle_scales(rm, rows, k, sw);
      std::int64_t mismatches = 0, first = -1;
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
          if (sw[std::size_t(swizzled_scale_offset(r, c, padded_scale_cols(k)))] != rm[std::size_t(r * cols + c)]) {
            if (first < 0) first = r * cols + c;
            ++mismatches;
          }
        }
      }
      EXPECT_EQ(mismatches, 0) << "first mismatch at row-major index " << first;
      std::int64_t nonzero = 0;
      for (auto b : sw) nonzero += b != 0;
      EXPECT_EQ(nonzero, rows * cols) << "padding bytes must be zero";
      std::vector<std::uint8_t> back(rm.size(), 0);
      unswizzle_scales(sw, rows, k, back);
      EXPECT_EQ(back, rm);
    }
  }
  std::vector<std::uint8_t> rm(19 * 3), sw(std::size_t(swizzled_scale_bytes(19, 48)));
  EXPECT_THROW(swizzle_scales(rm, 19, 40, sw), Error);
  EXPECT_THROW(swizzle_scales(std::span<const std::uint8_t>(rm).first(10), 19, 48, sw), Error);
  EXPECT_THROW(swizzle_scales(rm, 19, 48, std::span<std::uint8_t>(sw).first(100)), Error);
  EXPECT_THROW(unswizzle_scales(std::span<const std::uint8_t>(sw).first(100), 19, 48, rm), Error);
}

// Writes one NVFP4 linear's tensors (with the given overrides) and reads it back.
TEST(ModelOpt, ReadNvfp4LinearChecksLayouts) {
  TempDir dir;
  const std::string L = "model.layers.1.mlp.experts.0.up_proj";
  auto write = [&](DType wdt, std::vector<std::int64_t> wshape, DType sdt, std::vector<std::int64_t> sshape,
                   std::vector<std::int64_t> g2shape, float g2, std::optional<float> in_scale,
                   std::byte last_scale = std::byte{0x38}) {
    SafetensorsWriter w;
    std::int64_t wn = 1, sn = 1;
    for (auto d : wshape) wn *= d;
    for (auto d : sshape) sn *= d;
    w.add(L + ".weight", wdt, wshape, std::vector<std::byte>(std::size_t(wn) * dtype_size(wdt), std::byte{0x21}));
    std::vector<std::byte> scales(std::size_t(sn) * dtype_size(sdt), std::byte{0x38});
    scales.back() = last_scale;  // the last block of the last row
    w.add(L + ".weight_scale", sdt, sshape, scales);
    std::vector<float> g(std::size_t(g2shape.empty() ? 1 : g2shape[0]), g2);
    w.add(L + ".weight_scale_2", DType::kF32, g2shape, raw(g));
    if (in_scale) w.add(L + ".input_scale", DType::kF32, {}, raw(std::vector<float>{*in_scale}));
    const std::string path = dir.file("lin.safetensors");
    w.write(path);
    return Checkpoint::open(path);
  };
  {
    Checkpoint c = write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, 0.25f, 0.5f);
    Nvfp4Linear v = read_nvfp4_linear(c, L);
    EXPECT_EQ(v.n, 19);
    EXPECT_EQ(v.k, 48);
    EXPECT_EQ(v.weight.size(), 19u * 24u);
    EXPECT_EQ(v.weight_scale.size(), 19u * 3u);
    EXPECT_EQ(v.weight[0], 0x21);
    EXPECT_EQ(v.weight_scale[0], 0x38);
    EXPECT_EQ(v.weight_scale_2, 0.25f);
    EXPECT_EQ(v.input_scale.value_or(-1.0f), 0.5f);
  }
  {
    Checkpoint c = write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {1}, 0.25f, std::nullopt);
    Nvfp4Linear v = read_nvfp4_linear(c, L);
    EXPECT_FALSE(v.input_scale.has_value());
  }
  expect_error([&] { read_nvfp4_linear(write(DType::kBF16, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, 1, {}), L); },
               L + ".weight");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 20}, DType::kF8_E4M3, {19, 2}, {}, 1, {}), L); },
               "multiple of 16");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kU8, {19, 3}, {}, 1, {}), L); },
               L + ".weight_scale");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {3, 19}, {}, 1, {}), L); },
               "F8_E4M3 [19, 3]");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {2}, 1, {}), L); },
               L + ".weight_scale_2");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, -1, {}), L); },
               "finite positive");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, 1, 0.0f), L); },
               L + ".input_scale");
  expect_error([&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, 1, {}), "nope"); },
               "nope.weight");
  // Block scale bytes: NaN (0x7f, 0xff) and negative are refused with the tensor, row and block;
  // -0 (0x80) is a zero scale.
  for (std::byte bad : {std::byte{0x7f}, std::byte{0xff}, std::byte{0xb8}}) {
    expect_error(
        [&] { read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, 1, {}, bad), L); },
        L + ".weight_scale': block scale at row 18, block 2");
  }
  EXPECT_NO_THROW(read_nvfp4_linear(write(DType::kU8, {19, 24}, DType::kF8_E4M3, {19, 3}, {}, 1, {}, std::byte{0x80}), L));
}

// ---- The quantizer end to end ---------------------------------------------------------------

constexpr std::int64_t kH = 32, kI = 48, kE = 3;
const std::string kP = "model.layers.1.mlp";

// A float tensor [n, k] with rows of different magnitudes (one all-zero row, one tiny row,
// so e4m3 subnormal and zero block scales occur), stored as bf16 (or f32).
struct SourceTensor {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;
};

SourceTensor make_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::mt19937& rng) {
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  const std::int64_t cols = shape.empty() ? 1 : shape.back();
  std::normal_distribution<float> nd(0.0f, 1.0f);
  SourceTensor t{name, dtype, shape, std::vector<std::byte>(std::size_t(numel) * dtype_size(dtype))};
  for (std::int64_t i = 0; i < numel; ++i) {
    const std::int64_t row = i / cols;
    const float mag = row == 1 ? 0.0f : row == 2 ? 1e-4f : std::ldexp(1.0f, int(row % 7) - 3);
    float v = nd(rng) * mag;
    if (dtype == DType::kF32) {
      std::memcpy(t.bytes.data() + 4 * i, &v, 4);
    } else {
      std::uint16_t b = bf16_from_float(v);
      std::memcpy(t.bytes.data() + 2 * i, &b, 2);
    }
  }
  return t;
}

float element(const SourceTensor& t, std::int64_t i) {
  if (t.dtype == DType::kF32) {
    float v;
    std::memcpy(&v, t.bytes.data() + 4 * i, 4);
    return v;
  }
  std::uint16_t b;
  std::memcpy(&b, t.bytes.data() + 2 * i, 2);
  return bf16_to_float(b);
}

struct TinyCheckpoint {
  std::vector<SourceTensor> shard_a, shard_b;  // a: dense layer + attention; b: the MoE layer
  std::vector<std::string> paths;
};

TinyCheckpoint make_tiny_checkpoint(const TempDir& dir, std::mt19937& rng, std::int64_t bad_k = 0) {
  TinyCheckpoint c;
  c.shard_a.push_back(make_tensor("model.embed_tokens.weight", DType::kBF16, {10, kH}, rng));
  for (const char* p : {"gate_proj", "up_proj"}) {
    c.shard_a.push_back(make_tensor(std::string("model.layers.0.mlp.") + p + ".weight", DType::kBF16, {64, kH}, rng));
  }
  c.shard_a.push_back(make_tensor("model.layers.0.mlp.down_proj.weight", DType::kBF16, {kH, 64}, rng));
  c.shard_a.push_back(make_tensor("model.layers.1.self_attn.q_proj.weight", DType::kBF16, {kH, kH}, rng));
  c.shard_a.push_back(make_tensor("model.norm.weight", DType::kBF16, {kH}, rng));
  c.shard_b.push_back(make_tensor(kP + ".gate.weight", DType::kBF16, {kE, kH}, rng));
  c.shard_b.push_back(make_tensor(kP + ".gate.e_score_correction_bias", DType::kF32, {kE}, rng));
  for (int e = 0; e < kE; ++e) {
    DType dt = e == 2 ? DType::kF32 : DType::kBF16;  // one expert in fp32
    std::string base = kP + ".experts." + std::to_string(e) + ".";
    c.shard_b.push_back(make_tensor(base + "gate_proj.weight", dt, {kI, kH}, rng));
    c.shard_b.push_back(make_tensor(base + "up_proj.weight", dt, {kI, kH}, rng));
    c.shard_b.push_back(make_tensor(base + "down_proj.weight", dt, {kH, bad_k && e == 1 ? bad_k : kI}, rng));
  }
  for (const char* p : {"gate_proj", "up_proj"}) {
    c.shard_b.push_back(make_tensor(kP + ".shared_experts." + p + ".weight", DType::kBF16, {kI, kH}, rng));
  }
  c.shard_b.push_back(make_tensor(kP + ".shared_experts.down_proj.weight", DType::kBF16, {kH, kI}, rng));
  int i = 0;
  for (auto* shard : {&c.shard_a, &c.shard_b}) {
    SafetensorsWriter w;
    for (const auto& t : *shard) w.add(t.name, t.dtype, t.shape, std::span<const std::byte>(t.bytes));
    w.set_metadata("format", "pt");
    c.paths.push_back(dir.file("model-0000" + std::to_string(++i) + "-of-00002.safetensors"));
    w.write(c.paths.back());
  }
  return c;
}

// Every element of the dequantized weight is within the NVFP4 rounding bound of the source:
// with S = e4m3(scale) * weight_scale_2 (one e2m1 step unit of the block), |d - x| <= S when
// |x| <= 6 S (the largest half gap of the e2m1 grid is 1 unit), else |d - x| <= |x| - 6 S
// (saturation), plus float slop. Also pins the block-scale recipe of the spec.
void check_dequantized(const SourceTensor& src, const Nvfp4Linear& q, float g) {
  SCOPED_TRACE(src.name);
  const std::int64_t n = src.shape[0], k = src.shape[1];
  ASSERT_EQ(q.n, n);
  ASSERT_EQ(q.k, k);
  std::int64_t bad = 0, first = -1, bad_scales = 0, first_scale = -1;
  double err2 = 0, ref2 = 0;
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t j = 0; j < k / 16; ++j) {
      float amax_b = 0;
      for (int i = 0; i < 16; ++i) amax_b = std::max(amax_b, std::fabs(element(src, r * k + 16 * j + i)));
      const std::uint8_t s = q.weight_scale[std::size_t(r * (k / 16) + j)];
      if (s != e4m3_from_float(g * (amax_b * kOneSixth))) {
        if (first_scale < 0) first_scale = r * (k / 16) + j;
        ++bad_scales;
      }
      const float unit = e4m3_to_float(s) * q.weight_scale_2;
      for (int i = 0; i < 16; ++i) {
        const std::int64_t c = 16 * j + i;
        const float x = element(src, r * k + c);
        const float d = e2m1_to_float(e2m1_code_at(q.weight.data() + r * (k / 2), c)) * unit;
        const float bound = (std::fabs(x) <= 6 * unit ? unit : std::fabs(x) - 6 * unit) +
                            1e-5f * std::fabs(x) + 1e-30f;
        if (!(std::fabs(d - x) <= bound)) {
          if (first < 0) first = r * k + c;
          ++bad;
        }
        err2 += double(d - x) * double(d - x);
        ref2 += double(x) * double(x);
      }
    }
  }
  EXPECT_EQ(bad, 0) << "first element out of bound at flat index " << first << " (row " << first / k << ", col "
                    << first % k << ")";
  EXPECT_EQ(bad_scales, 0) << "first block scale off the recipe at " << first_scale;
  EXPECT_LT(std::sqrt(err2 / ref2), 0.15) << "relative RMS error of NVFP4 on Gaussian rows";
}

float amax_of(const SourceTensor& t) {
  float a = 0;
  std::int64_t numel = std::int64_t(t.bytes.size() / dtype_size(t.dtype));
  for (std::int64_t i = 0; i < numel; ++i) a = std::max(a, std::fabs(element(t, i)));
  return a;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(QuantizeCheckpoint, TinyMoeEndToEnd) {
  const unsigned seed = 77001u;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  TempDir dir;
  TinyCheckpoint src = make_tiny_checkpoint(dir, rng);

  // Calibration: expert 0's gate input (serves up too), expert 0's down input, and a scalar
  // amax for the shared up_proj (serves the shared gate too).
  SafetensorsWriter cal;
  SourceTensor x0 = make_tensor(kP + ".experts.0.gate_proj.input", DType::kBF16, {5, kH}, rng);
  SourceTensor h0 = make_tensor(kP + ".experts.0.down_proj.input", DType::kF32, {5, kI}, rng);
  for (const auto* t : {&x0, &h0}) cal.add(t->name, t->dtype, t->shape, std::span<const std::byte>(t->bytes));
  cal.add(kP + ".shared_experts.up_proj.input", DType::kF32, {}, raw(std::vector<float>{3.0f}));
  const std::string cal_path = dir.file("calib.safetensors");
  cal.write(cal_path);

  QuantizeCheckpointOptions opt;
  opt.calibration_path = cal_path;
  std::vector<std::pair<std::int64_t, std::int64_t>> progress;
  opt.progress = [&](std::int64_t done, std::int64_t total) { progress.emplace_back(done, total); };
  const std::string out = dir.file("out");
  QuantizeCheckpointReport rep = quantize_checkpoint(src.paths, out, opt);

  EXPECT_EQ(rep.moe_prefixes, std::vector<std::string>{kP});
  EXPECT_EQ(rep.quantized_linears, kE * 3 + 3);
  EXPECT_EQ(rep.calibrated_linears, 3 + 2);
  EXPECT_EQ(rep.copied_tensors, std::int64_t(src.shard_a.size() + 2));
  ASSERT_EQ(rep.output_files.size(), 2u);
  const std::int64_t total = std::int64_t(src.shard_a.size() + src.shard_b.size());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front(), std::make_pair(std::int64_t(0), total));
  EXPECT_EQ(progress.back(), std::make_pair(total, total));
  for (std::size_t i = 1; i < progress.size(); ++i) EXPECT_EQ(progress[i].first, progress[i - 1].first + 1);

  // The index makes the output directory a checkpoint; Checkpoint::open checks it.
  ASSERT_TRUE(fs::exists(fs::path(out) / "model.safetensors.index.json"));
  Checkpoint q = Checkpoint::open(out);
  for (const auto& t : src.shard_a) {  // copied through untouched
    ASSERT_TRUE(q.contains(t.name)) << t.name;
    EXPECT_EQ(q.info(t.name).dtype, t.dtype);
    EXPECT_EQ(q.info(t.name).shape, t.shape);
    auto b = q.bytes(t.name);
    EXPECT_TRUE(std::equal(b.begin(), b.end(), t.bytes.begin(), t.bytes.end())) << t.name;
  }
  for (const auto& t : src.shard_b) {
    const bool quantized = t.name.find(".experts.") != std::string::npos || t.name.find(".shared_experts.") != std::string::npos;
    if (!quantized) {
      EXPECT_EQ(q.info(t.name).dtype, t.dtype) << t.name;
      auto b = q.bytes(t.name);
      EXPECT_TRUE(std::equal(b.begin(), b.end(), t.bytes.begin(), t.bytes.end())) << t.name;
      continue;
    }
    const std::string linear = t.name.substr(0, t.name.size() - 7);
    Nvfp4Linear v = read_nvfp4_linear(q, linear);  // dtypes and shapes checked here
    EXPECT_EQ(q.info(linear + ".weight_scale_2").shape, std::vector<std::int64_t>{});
    const float g = global_scale_from_amax(amax_of(t));
    EXPECT_EQ(v.weight_scale_2, reciprocal_rn(g)) << linear;
    check_dequantized(t, v, g);
  }
  // input_scale: calibrated linears only, = 1 / g(amax of the activations).
  MoeNaming names;
  const float in0 = reciprocal_rn(global_scale_from_amax(amax_of(x0)));
  EXPECT_EQ(read_nvfp4_linear(q, names.expert_linear(1, 0, Proj::kGate)).input_scale.value_or(-1), in0);
  EXPECT_EQ(read_nvfp4_linear(q, names.expert_linear(1, 0, Proj::kUp)).input_scale.value_or(-1), in0);
  EXPECT_EQ(read_nvfp4_linear(q, names.expert_linear(1, 0, Proj::kDown)).input_scale.value_or(-1),
            reciprocal_rn(global_scale_from_amax(amax_of(h0))));
  EXPECT_FALSE(read_nvfp4_linear(q, names.expert_linear(1, 1, Proj::kGate)).input_scale.has_value());
  EXPECT_FALSE(read_nvfp4_linear(q, names.expert_linear(1, 2, Proj::kDown)).input_scale.has_value());
  const float in_shared = reciprocal_rn(global_scale_from_amax(3.0f));
  EXPECT_EQ(read_nvfp4_linear(q, names.shared_linear(1, Proj::kGate)).input_scale.value_or(-1), in_shared);
  EXPECT_EQ(read_nvfp4_linear(q, names.shared_linear(1, Proj::kUp)).input_scale.value_or(-1), in_shared);
  EXPECT_FALSE(read_nvfp4_linear(q, names.shared_linear(1, Proj::kDown)).input_scale.has_value());

  QuantizationConfig hq = parse_hf_quant_config(slurp((fs::path(out) / "hf_quant_config.json").string()));
  EXPECT_TRUE(hq.is_nvfp4());
  EXPECT_EQ(hq.group_size, 16);
  EXPECT_TRUE(hq.excludes("model.layers.1.mlp.gate"));
  EXPECT_TRUE(hq.excludes("model.layers.0.mlp.down_proj"));
  EXPECT_TRUE(hq.excludes("model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(hq.excludes("model.norm"));  // 1-D: not a linear
  EXPECT_FALSE(hq.excludes("model.layers.1.mlp.experts.0.up_proj"));

  // Given prefixes, a directory input, no calibration: same codes, no input_scale.
  QuantizeCheckpointOptions opt2;
  opt2.moe_prefixes = {kP};
  opt2.quantize_shared_experts = false;
  fs::create_directories(dir.path / "in");
  for (const auto& p : src.paths) fs::copy_file(p, dir.path / "in" / fs::path(p).filename());
  QuantizeCheckpointReport rep2 = quantize_checkpoint({(dir.path / "in").string()}, dir.file("out2"), opt2);
  EXPECT_EQ(rep2.quantized_linears, kE * 3);
  EXPECT_EQ(rep2.calibrated_linears, 0);
  Checkpoint q2 = Checkpoint::open(dir.file("out2"));
  EXPECT_FALSE(q2.contains(names.expert_tensor(1, 0, Proj::kGate, QuantField::kInputScale)));
  EXPECT_EQ(q2.info(names.shared_tensor(1, Proj::kUp, QuantField::kWeight)).dtype, DType::kBF16);
  auto a = q.bytes(names.expert_tensor(1, 2, Proj::kDown, QuantField::kWeight));
  auto b = q2.bytes(names.expert_tensor(1, 2, Proj::kDown, QuantField::kWeight));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
}

TEST(QuantizeCheckpoint, BadInputsFailBeforeWriting) {
  const unsigned seed = 77002u;
  std::mt19937 rng(seed);
  TempDir dir;
  auto no_output = [&](const std::string& out) {
    std::error_code ec;
    if (!fs::exists(out, ec)) return true;
    return fs::is_empty(out, ec);
  };
  {
    TempDir bad_dir;
    TinyCheckpoint bad = make_tiny_checkpoint(bad_dir, rng, /*bad_k=*/40);
    expect_error([&] { quantize_checkpoint(bad.paths, dir.file("o1")); },
                 kP + ".experts.1.down_proj.weight");
    EXPECT_TRUE(no_output(dir.file("o1")));
  }
  TinyCheckpoint src = make_tiny_checkpoint(dir, rng);
  QuantizeCheckpointOptions opt;
  opt.moe_prefixes = {"model.layers.7.mlp"};
  expect_error([&] { quantize_checkpoint(src.paths, dir.file("o2"), opt); }, "model.layers.7.mlp");
  EXPECT_TRUE(no_output(dir.file("o2")));

  SafetensorsWriter cal;
  cal.add(kP + ".experts.9.up_proj.input", DType::kF32, {1}, raw(std::vector<float>{1.0f}));
  cal.write(dir.file("cal.safetensors"));
  QuantizeCheckpointOptions opt3;
  opt3.calibration_path = dir.file("cal.safetensors");
  expect_error([&] { quantize_checkpoint(src.paths, dir.file("o3"), opt3); }, "names no quantized linear");
  EXPECT_TRUE(no_output(dir.file("o3")));

  expect_error([&] { quantize_checkpoint(src.paths, dir.path.string()); }, "is the directory of input");
  expect_error([&] { quantize_checkpoint({dir.file("missing.safetensors")}, dir.file("o4")); }, "missing.safetensors");
  expect_error([&] { quantize_checkpoint({src.paths[0]}, dir.file("o5")); }, "no MoE expert weights");

  quantize_checkpoint(src.paths, dir.file("o6"));
  expect_error([&] { quantize_checkpoint({dir.file("o6")}, dir.file("o7")); }, "quantized already");
}

}  // namespace
}  // namespace nvfp4moe::checkpoint
