// Upload of one MoE layer's NVFP4 weights into the GEMM's prepared layout (cuda/moe.h).
#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "nvfp4moe/checkpoint/modelopt.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/moe.h"
#include "nvfp4moe/kernels/synthetic_weights_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

// Float32 scalars of a layer, in this order in MoeLayerWeights::scalars_.
struct ScalarLayout {
  int64_t e;
  int64_t alpha1() const { return 0; }
  int64_t alpha2() const { return 2 * e; }
  int64_t gA1() const { return 4 * e; }
  int64_t gA2() const { return 5 * e; }
  int64_t shared_alpha1() const { return 6 * e; }
  int64_t shared_alpha2() const { return 6 * e + 2; }
  int64_t shared_gA1() const { return 6 * e + 4; }
  int64_t shared_gA2() const { return 6 * e + 5; }
  int64_t bias() const { return 6 * e + 6; }
  int64_t count() const { return 7 * e + 6; }
};

// Prepared bytes of one Nvfp4Weight (codes + swizzled scales -> row-major -> GEMM layout).
std::vector<uint8_t> prepare(const Nvfp4Weight& w) {
  std::vector<uint8_t> row_major(size_t(w.rows * (w.k / 16)));
  checkpoint::unswizzle_scales(w.scales, w.rows, w.k, row_major);
  std::vector<uint8_t> out(size_t(prepared_weight_bytes(w.rows, w.k)));
  prepare_weight(w.codes, row_major, w.rows, w.k, out);
  return out;
}

// Prepare `count` weights (host threads) and upload them back to back at dst_offset.
void prepare_and_upload(const std::vector<const Nvfp4Weight*>& ws, int64_t each_bytes, DeviceMemory& dst,
                        int64_t dst_offset) {
  const int64_t n = int64_t(ws.size());
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n, std::thread::hardware_concurrency()));
  const int64_t chunk = 16;  // weights per batch held on the host at once, per worker
  for (int64_t base = 0; base < n; base += workers * chunk) {
    int64_t end = std::min(n, base + workers * chunk);
    std::vector<std::vector<uint8_t>> prepared(size_t(end - base));
    std::vector<std::thread> threads;
    std::exception_ptr failure;
    std::mutex failure_mutex;
    for (int64_t t = 0; t < workers; ++t) {
      threads.emplace_back([&, t] {
        try {
          for (int64_t i = base + t; i < end; i += workers) prepared[size_t(i - base)] = prepare(*ws[size_t(i)]);
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          failure = std::current_exception();
        }
      });
    }
    for (auto& th : threads) th.join();
    if (failure) std::rethrow_exception(failure);
    for (int64_t i = base; i < end; ++i) {
      dst.upload(prepared[size_t(i - base)].data(), size_t(each_bytes), size_t(dst_offset + i * each_bytes));
    }
  }
}

float alpha_of(MoeMode mode, float g_act, float g_weight) {
  return mode == MoeMode::kW4A4 ? 1.0f / (g_act * g_weight) : 1.0f / g_weight;
}

}  // namespace

MoeLayerWeights MoeLayerWeights::upload(const MoeConfig& cfg, const MoeWeights& w) {
  validate(cfg, w);
  NVFP4MOE_CHECK(cfg.act == ActDType::kBF16, "cfg.act: the GPU MoE layer takes bf16 activations, got ",
                 to_string(cfg.act));
  MoeLayerWeights out;
  out.cfg_ = cfg;
  const int64_t e_count = cfg.routing.num_experts, h = cfg.hidden, inter = cfg.intermediate;
  out.w13_bytes_ = prepared_weight_bytes(2 * inter, h);
  out.w2_bytes_ = prepared_weight_bytes(h, inter);
  out.shared_inter_ = w.shared ? w.shared->w2.k : 0;
  out.shared_w13_bytes_ = w.shared ? prepared_weight_bytes(2 * out.shared_inter_, h) : 0;
  const int64_t shared_w2_bytes = w.shared ? prepared_weight_bytes(h, out.shared_inter_) : 0;
  out.weights_ = DeviceMemory(size_t(e_count * (out.w13_bytes_ + out.w2_bytes_) + out.shared_w13_bytes_ + shared_w2_bytes));

  std::vector<const Nvfp4Weight*> w13s, w2s;
  for (int64_t e = 0; e < e_count; ++e) {
    w13s.push_back(&w.w13[size_t(e)]);
    w2s.push_back(&w.w2[size_t(e)]);
  }
  prepare_and_upload(w13s, out.w13_bytes_, out.weights_, 0);
  prepare_and_upload(w2s, out.w2_bytes_, out.weights_, e_count * out.w13_bytes_);
  if (w.shared) {
    const int64_t base = e_count * (out.w13_bytes_ + out.w2_bytes_);
    prepare_and_upload({&w.shared->w13}, out.shared_w13_bytes_, out.weights_, base);
    prepare_and_upload({&w.shared->w2}, shared_w2_bytes, out.weights_, base + out.shared_w13_bytes_);
  }

  ScalarLayout L{e_count};
  std::vector<float> s(size_t(L.count()), 1.0f);
  const bool w4a4 = cfg.mode == MoeMode::kW4A4;
  for (int64_t e = 0; e < e_count; ++e) {
    float ga1 = w4a4 ? w.gA1[size_t(e)] : 1.0f, ga2 = w4a4 ? w.gA2[size_t(e)] : 1.0f;
    s[size_t(L.alpha1() + 2 * e)] = alpha_of(cfg.mode, ga1, w.w13[size_t(e)].g_lo);
    s[size_t(L.alpha1() + 2 * e + 1)] = alpha_of(cfg.mode, ga1, w.w13[size_t(e)].g_hi);
    s[size_t(L.alpha2() + 2 * e)] = alpha_of(cfg.mode, ga2, w.w2[size_t(e)].g_lo);
    s[size_t(L.alpha2() + 2 * e + 1)] = alpha_of(cfg.mode, ga2, w.w2[size_t(e)].g_hi);
    s[size_t(L.gA1() + e)] = ga1;
    s[size_t(L.gA2() + e)] = ga2;
  }
  if (w.shared) {
    const auto& sh = *w.shared;
    float ga1 = w4a4 ? sh.gA1 : 1.0f, ga2 = w4a4 ? sh.gA2 : 1.0f;
    s[size_t(L.shared_alpha1())] = alpha_of(cfg.mode, ga1, sh.w13.g_lo);
    s[size_t(L.shared_alpha1() + 1)] = alpha_of(cfg.mode, ga1, sh.w13.g_hi);
    s[size_t(L.shared_alpha2())] = alpha_of(cfg.mode, ga2, sh.w2.g_lo);
    s[size_t(L.shared_alpha2() + 1)] = alpha_of(cfg.mode, ga2, sh.w2.g_hi);
    s[size_t(L.shared_gA1())] = ga1;
    s[size_t(L.shared_gA2())] = ga2;
  }
  out.uniform_gA1_ = w4a4 && std::all_of(w.gA1.begin(), w.gA1.end(), [&](float g) {
    return std::memcmp(&g, &w.gA1[0], sizeof g) == 0;
  });
  out.has_bias_ = !w.e_score_correction_bias.empty();
  for (int64_t e = 0; out.has_bias_ && e < e_count; ++e) s[size_t(L.bias() + e)] = w.e_score_correction_bias[size_t(e)];
  out.scalars_ = DeviceMemory(s.size() * sizeof(float));
  out.scalars_.upload(s.data(), s.size() * sizeof(float));
  return out;
}

MoeLayerWeights MoeLayerWeights::synthetic(const MoeConfig& cfg, uint64_t seed) {
  validate(cfg);
  NVFP4MOE_CHECK(cfg.act == ActDType::kBF16, "cfg.act: the GPU MoE layer takes bf16 activations");
  const int64_t e_count = cfg.routing.num_experts, h = cfg.hidden, inter = cfg.intermediate;
  const int64_t is = int64_t(cfg.n_shared_experts) * inter;
  NVFP4MOE_CHECK(h % 128 == 0 && inter % 128 == 0, "cfg: synthetic weights need hidden and intermediate multiples of 128, got ",
                 h, " and ", inter);
  MoeLayerWeights out;
  out.cfg_ = cfg;
  out.w13_bytes_ = prepared_weight_bytes(2 * inter, h);
  out.w2_bytes_ = prepared_weight_bytes(h, inter);
  out.shared_inter_ = is;
  out.shared_w13_bytes_ = is ? prepared_weight_bytes(2 * is, h) : 0;
  const int64_t shared_w2_bytes = is ? prepared_weight_bytes(h, is) : 0;
  const int64_t total = e_count * (out.w13_bytes_ + out.w2_bytes_) + out.shared_w13_bytes_ + shared_w2_bytes;
  out.weights_ = DeviceMemory(size_t(total));
  kernels::fill_synthetic_prepared_kernel<<<1024, 256>>>(out.weights_.as<uint8_t>(), total, seed);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());

  ScalarLayout L{e_count};
  std::vector<float> s(size_t(L.count()), 1.0f);
  for (int64_t i = 0; i < 4 * e_count; ++i) s[size_t(i)] = 1.0f / 1024.0f;  // alpha1, alpha2
  for (int64_t i = 0; i < 4; ++i) s[size_t(L.shared_alpha1() + i)] = 1.0f / 1024.0f;
  out.uniform_gA1_ = cfg.mode == MoeMode::kW4A4;  // every activation scale 1
  out.has_bias_ = cfg.routing.scoring == ScoringFunc::kSigmoid;
  for (int64_t e = 0; out.has_bias_ && e < e_count; ++e) s[size_t(L.bias() + e)] = 0.0f;
  out.scalars_ = DeviceMemory(s.size() * sizeof(float));
  out.scalars_.upload(s.data(), s.size() * sizeof(float));
  return out;
}

PreparedWeights MoeLayerWeights::w13() const {
  return {weights_.as<uint8_t>(), 2 * cfg_.intermediate, cfg_.hidden, cfg_.routing.num_experts};
}
PreparedWeights MoeLayerWeights::w2() const {
  return {weights_.as<uint8_t>() + cfg_.routing.num_experts * w13_bytes_, cfg_.hidden, cfg_.intermediate,
          cfg_.routing.num_experts};
}
PreparedWeights MoeLayerWeights::shared_w13() const {
  if (shared_inter_ == 0) return {};
  return {weights_.as<uint8_t>() + cfg_.routing.num_experts * (w13_bytes_ + w2_bytes_), 2 * shared_inter_,
          cfg_.hidden, 1};
}
PreparedWeights MoeLayerWeights::shared_w2() const {
  if (shared_inter_ == 0) return {};
  return {weights_.as<uint8_t>() + cfg_.routing.num_experts * (w13_bytes_ + w2_bytes_) + shared_w13_bytes_,
          cfg_.hidden, shared_inter_, 1};
}

#define NVFP4MOE_SCALAR(name) \
  const float* MoeLayerWeights::name() const { return scalars_.as<float>() + ScalarLayout{cfg_.routing.num_experts}.name(); }
NVFP4MOE_SCALAR(alpha1)
NVFP4MOE_SCALAR(alpha2)
NVFP4MOE_SCALAR(gA1)
NVFP4MOE_SCALAR(gA2)
NVFP4MOE_SCALAR(shared_alpha1)
NVFP4MOE_SCALAR(shared_alpha2)
NVFP4MOE_SCALAR(shared_gA1)
NVFP4MOE_SCALAR(shared_gA2)
#undef NVFP4MOE_SCALAR

const float* MoeLayerWeights::correction_bias() const {
  return has_bias_ ? scalars_.as<float>() + ScalarLayout{cfg_.routing.num_experts}.bias() : nullptr;
}

}  // namespace nvfp4moe::cuda
