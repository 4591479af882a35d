// Offline NVFP4 quantizer for MoE checkpoints (see quantize_checkpoint.h for the contract).
#include "nvfp4moe/checkpoint/quantize_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "nvfp4moe/checkpoint/checkpoint.h"
#include "nvfp4moe/checkpoint/modelopt.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/block_quant.h"
#include "nvfp4moe/format/halfs.h"

namespace nvfp4moe::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kProjs[] = {"gate_proj", "up_proj", "down_proj"};

bool is_float_dtype(DType t) { return t == DType::kBF16 || t == DType::kF16 || t == DType::kF32; }

// Element i of a float tensor's raw bytes (which may be unaligned) as float32.
float load_as_float(const std::byte* base, DType t, std::int64_t i) {
  if (t == DType::kF32) {
    float v;
    std::memcpy(&v, base + 4 * i, 4);
    return v;
  }
  std::uint16_t h;
  std::memcpy(&h, base + 2 * i, 2);
  return t == DType::kBF16 ? bf16_to_float(h) : fp16_to_float(h);
}

// Runs fn(begin, end) over [0, n) split across hardware threads (n small: inline).
template <typename Fn>
void parallel_rows(std::int64_t n, Fn fn) {
  const std::int64_t threads =
      std::min<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()), std::max<std::int64_t>(1, n / 64));
  if (threads <= 1) {
    fn(std::int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  for (std::int64_t t = 0; t < threads; ++t) {
    pool.emplace_back(fn, n * t / threads, n * (t + 1) / threads);
  }
  for (auto& th : pool) th.join();
}

// amax(|x|) over a float tensor, NaN ignored.
float tensor_amax(std::span<const std::byte> bytes, DType t, std::int64_t numel) {
  const std::int64_t chunks = std::max<std::int64_t>(1, numel / 4096);
  std::vector<float> partial(std::size_t(chunks), 0.0f);
  parallel_rows(chunks, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      float a = 0.0f;
      for (std::int64_t i = numel * c / chunks; i < numel * (c + 1) / chunks; ++i) {
        a = abs_max_ignore_nan(a, load_as_float(bytes.data(), t, i));
      }
      partial[std::size_t(c)] = a;
    }
  });
  float a = 0.0f;
  for (float p : partial) a = abs_max_ignore_nan(a, p);
  return a;
}

struct QuantizedLinear {
  std::vector<std::byte> weight;        // [N, K/2]
  std::vector<std::byte> weight_scale;  // [N, K/16]
  float weight_scale_2 = 1.0f;          // 1/g
};

// The block recipe of format/block_quant.h applied to every row of W [n, k].
QuantizedLinear quantize_weight(std::span<const std::byte> bytes, DType t, std::int64_t n, std::int64_t k) {
  QuantizedLinear q;
  const float g = global_scale_from_amax(tensor_amax(bytes, t, n * k));
  q.weight_scale_2 = reciprocal_rn(g);
  q.weight.resize(std::size_t(n * k / 2));
  q.weight_scale.resize(std::size_t(n * k / 16));
  parallel_rows(n, [&](std::int64_t r0, std::int64_t r1) {
    float block[16];
    for (std::int64_t r = r0; r < r1; ++r) {
      for (std::int64_t j = 0; j < k / 16; ++j) {
        for (int i = 0; i < 16; ++i) block[i] = load_as_float(bytes.data(), t, r * k + 16 * j + i);
        auto* packed = reinterpret_cast<std::uint8_t*>(q.weight.data()) + r * (k / 2) + 8 * j;
        auto* scale = reinterpret_cast<std::uint8_t*>(q.weight_scale.data()) + r * (k / 16) + j;
        quantize_block16(block, g, packed, scale);
      }
    }
  });
  return q;
}

std::vector<std::byte> f32_bytes(float v) {
  std::vector<std::byte> b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

// If `name` is P.experts.<int>.<proj>.weight, returns P.
std::optional<std::string> expert_weight_prefix(const std::string& name) {
  const std::string tail = ".weight";
  if (name.size() <= tail.size() || name.compare(name.size() - tail.size(), tail.size(), tail) != 0) {
    return std::nullopt;
  }
  std::string linear = name.substr(0, name.size() - tail.size());
  auto dot = linear.rfind('.');
  if (dot == std::string::npos) return std::nullopt;
  std::string proj = linear.substr(dot + 1);
  if (std::find(std::begin(kProjs), std::end(kProjs), proj) == std::end(kProjs)) return std::nullopt;
  std::string rest = linear.substr(0, dot);  // P.experts.<e>
  auto dot2 = rest.rfind('.');
  if (dot2 == std::string::npos) return std::nullopt;
  std::string e = rest.substr(dot2 + 1);
  if (e.empty() || !std::all_of(e.begin(), e.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const std::string experts = ".experts";
  std::string p = rest.substr(0, dot2);
  if (p.size() <= experts.size() || p.compare(p.size() - experts.size(), experts.size(), experts) != 0) {
    return std::nullopt;
  }
  return p.substr(0, p.size() - experts.size());
}

// "<P>...gate_proj" <-> "<P>...up_proj" (they read the same activations).
std::optional<std::string> gate_up_sibling(const std::string& linear) {
  auto swap_tail = [&](const std::string& from, const std::string& to) -> std::optional<std::string> {
    if (linear.size() > from.size() && linear.compare(linear.size() - from.size(), from.size(), from) == 0) {
      return linear.substr(0, linear.size() - from.size()) + to;
    }
    return std::nullopt;
  };
  if (auto s = swap_tail(".gate_proj", ".up_proj")) return s;
  return swap_tail(".up_proj", ".gate_proj");
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    NVFP4MOE_CHECK(out.good(), "output_dir: cannot create '", tmp.string(), "'");
    out << text;
    out.flush();
    NVFP4MOE_CHECK(out.good(), "output_dir: cannot write '", tmp.string(), "'");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fs::remove(tmp);
  NVFP4MOE_CHECK(!ec, "output_dir: cannot rename '", tmp.string(), "' to '", path.string(), "': ", ec.message());
}

}  // namespace

QuantizeCheckpointReport quantize_checkpoint(const std::vector<std::string>& inputs,
                                             const std::string& output_dir,
                                             const QuantizeCheckpointOptions& options) {
  NVFP4MOE_CHECK(!inputs.empty(), "inputs: expected at least one safetensors file or a directory");
  NVFP4MOE_CHECK(!output_dir.empty(), "output_dir: must not be empty");
  std::error_code ec;
  std::vector<std::string> files = inputs;
  if (inputs.size() == 1 && fs::is_directory(inputs[0], ec)) files = list_safetensors_shards(inputs[0]);

  // ---- Validate everything before writing -----------------------------------------------
  std::set<std::string> basenames;
  for (const auto& f : files) {
    NVFP4MOE_CHECK(basenames.insert(fs::path(f).filename().string()).second, "inputs: two shards are named '",
                   fs::path(f).filename().string(), "'; outputs keep shard file names");
  }
  Checkpoint ckpt = Checkpoint::open_files(files);

  QuantizeCheckpointReport report;
  std::set<std::string> prefixes(options.moe_prefixes.begin(), options.moe_prefixes.end());
  std::set<std::string> detected;
  for (const auto& name : ckpt.names()) {
    if (auto p = expert_weight_prefix(name)) detected.insert(*p);
  }
  if (prefixes.empty()) {
    prefixes = detected;
    NVFP4MOE_CHECK(!prefixes.empty(), "inputs: no MoE expert weights found (no tensor named "
                                      "<prefix>.experts.<e>.{gate,up,down}_proj.weight)");
  }
  for (const auto& p : prefixes) {
    NVFP4MOE_CHECK(detected.count(p), "options.moe_prefixes: '", p, "' has no tensor named '", p,
                   ".experts.<e>.{gate,up,down}_proj.weight'");
  }
  report.moe_prefixes.assign(prefixes.begin(), prefixes.end());

  // The linears to quantize (by name prefix, without ".weight").
  std::set<std::string> linears;
  for (const auto& name : ckpt.names()) {
    auto p = expert_weight_prefix(name);
    if (p && prefixes.count(*p)) linears.insert(name.substr(0, name.size() - 7));
  }
  if (options.quantize_shared_experts) {
    for (const auto& p : prefixes) {
      for (const char* proj : kProjs) {
        std::string linear = p + "." + options.shared_experts_name + "." + proj;
        if (ckpt.contains(linear + ".weight")) linears.insert(linear);
      }
    }
  }
  for (const auto& linear : linears) {
    const std::string w = linear + ".weight";
    for (QuantField f : {QuantField::kWeightScale, QuantField::kWeightScale2, QuantField::kInputScale}) {
      NVFP4MOE_CHECK(!ckpt.contains(tensor_name(linear, f)), "tensor '", tensor_name(linear, f),
                     "' already exists: the input looks quantized already");
    }
    const TensorInfo& t = ckpt.info(w);
    NVFP4MOE_CHECK(is_float_dtype(t.dtype), "tensor '", w, "': expected BF16, F16 or F32 to quantize, got ",
                   to_string(t.dtype));
    NVFP4MOE_CHECK(t.shape.size() == 2 && t.shape[0] > 0 && t.shape[1] > 0 && t.shape[1] % 16 == 0,
                   "tensor '", w, "': expected a 2-D [N, K] weight with K a positive multiple of 16, got ",
                   t.shape.size(), " dims", (t.shape.size() == 2 ? ", K = " + std::to_string(t.shape[1]) : ""));
  }

  // Calibration amax per linear.
  std::map<std::string, float> calib_amax;
  if (!options.calibration_path.empty()) {
    SafetensorsFile cal = SafetensorsFile::open(options.calibration_path);
    for (const auto& name : cal.names()) {
      const std::string tail = ".input";
      NVFP4MOE_CHECK(name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0,
                     "calibration '", options.calibration_path, "': tensor '", name,
                     "': expected names '<linear>.input'");
      std::string linear = name.substr(0, name.size() - tail.size());
      NVFP4MOE_CHECK(linears.count(linear), "calibration '", options.calibration_path, "': tensor '", name,
                     "' names no quantized linear ('", linear, ".weight' is not being quantized)");
      const TensorInfo& t = cal.info(name);
      NVFP4MOE_CHECK(is_float_dtype(t.dtype), "calibration '", options.calibration_path, "': tensor '", name,
                     "': expected BF16, F16 or F32, got ", to_string(t.dtype));
      NVFP4MOE_CHECK(t.numel > 0, "calibration '", options.calibration_path, "': tensor '", name,
                     "' is empty");
      calib_amax[linear] = tensor_amax(cal.bytes(name), t.dtype, t.numel);
    }
  }
  auto input_amax_of = [&](const std::string& linear) -> std::optional<float> {
    if (auto it = calib_amax.find(linear); it != calib_amax.end()) return it->second;
    if (auto sib = gate_up_sibling(linear)) {
      if (auto it = calib_amax.find(*sib); it != calib_amax.end()) return it->second;
    }
    return std::nullopt;
  };

  for (const auto& f : files) {
    NVFP4MOE_CHECK(!fs::equivalent(fs::path(f).parent_path().empty() ? fs::path(".") : fs::path(f).parent_path(),
                                   output_dir, ec),
                   "output_dir: '", output_dir, "' is the directory of input '", f,
                   "'; write the quantized checkpoint elsewhere");
  }
  fs::create_directories(output_dir, ec);
  NVFP4MOE_CHECK(fs::is_directory(output_dir, ec), "output_dir: cannot create directory '", output_dir, "'");

  // ---- Write ------------------------------------------------------------------------------
  std::int64_t total = 0;
  for (const auto& file : ckpt.files()) {
    for (const auto& name : file.names()) {
      (void)name;
      ++total;
    }
  }
  std::int64_t done = 0;
  if (options.progress) options.progress(0, total);
  std::set<std::string> exclude_modules;
  std::map<std::string, std::string> weight_map;
  std::uint64_t total_size = 0;
  for (const auto& file : ckpt.files()) {
    SafetensorsWriter w;
    for (const auto& [k, v] : file.metadata()) w.set_metadata(k, v);
    w.set_metadata("format", "pt");
    const std::string out_name = fs::path(file.path()).filename().string();
    for (const auto& name : file.names()) {
      const TensorInfo& t = file.info(name);
      const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
      const std::string linear = is_weight ? name.substr(0, name.size() - 7) : std::string();
      if (is_weight && linears.count(linear)) {
        const std::int64_t n = t.shape[0], k = t.shape[1];
        QuantizedLinear q = quantize_weight(file.bytes(name), t.dtype, n, k);
        w.add(tensor_name(linear, QuantField::kWeight), DType::kU8, {n, k / 2}, std::move(q.weight));
        w.add(tensor_name(linear, QuantField::kWeightScale), DType::kF8_E4M3, {n, k / 16},
              std::move(q.weight_scale));
        w.add(tensor_name(linear, QuantField::kWeightScale2), DType::kF32, {}, f32_bytes(q.weight_scale_2));
        if (auto amax = input_amax_of(linear)) {
          w.add(tensor_name(linear, QuantField::kInputScale), DType::kF32, {},
                f32_bytes(reciprocal_rn(global_scale_from_amax(*amax))));
          ++report.calibrated_linears;
        }
        ++report.quantized_linears;
      } else {
        w.add_borrowed(name, t.dtype, t.shape, file.bytes(name));
        if (is_weight && t.shape.size() == 2) exclude_modules.insert(linear);
        ++report.copied_tensors;
      }
      ++done;
      if (options.progress) options.progress(done, total);
    }
    const fs::path out_path = fs::path(output_dir) / out_name;
    w.write(out_path.string());
    report.output_files.push_back(out_path.string());
    SafetensorsFile written = SafetensorsFile::open(out_path.string());
    for (const auto& name : written.names()) weight_map[name] = out_name;
    total_size += written.data_bytes();
  }

  if (ckpt.files().size() > 1) {
    json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
    write_text_atomically(fs::path(output_dir) / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  json hf_quant = {
      {"producer", {{"name", "nvfp4moe"}, {"version", "0.1.0"}}},
      {"quantization",
       {{"quant_algo", "NVFP4"},
        {"kv_cache_quant_algo", nullptr},
        {"group_size", 16},
        {"exclude_modules", std::vector<std::string>(exclude_modules.begin(), exclude_modules.end())}}}};
  write_text_atomically(fs::path(output_dir) / "hf_quant_config.json", hf_quant.dump(2) + "\n");
  return report;
}

}  // namespace nvfp4moe::checkpoint
