// The GPU MoE layer (cuda/moe.h) against the CPU golden model (ref::moe_forward) of the same
// quantized math, stage by stage and end to end.
//
// Exactness and tolerances:
//   routing ids, permutation maps, the gathered+quantized A1 (codes and scale bytes) and the
//   final combine (given the GPU's GEMM2 rows) are bit-exact;
//   routing weights within 1e-6 relative;
//   GEMM outputs: the GPU sums in fp32 in its own order and rounds to bf16; the CPU sums in
//   float64. Each GPU bf16 value must be within 1 bf16 ulp (2^-8 relative) of the CPU fp32 sum
//   (plus 1e-5 of the row's scale for cancellation);
//   the fused SiLU*Mul+quantize uses the device expf, so its codes are compared with the CPU
//   model fed the GPU's GEMM1 output ("teacher forcing"): mismatches must be rare (< 1e-3)
//   and are printed;
//   end to end (free running) the layer output is within 1e-3 relative (L2) of the CPU model:
//   a one-ulp GEMM difference can flip one FP4 code downstream, so elementwise bit equality
//   is not expected; the max normalized error is printed.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/moe.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/model/builtin_model.h"
#include "nvfp4moe/ref/gemm.h"
#include "nvfp4moe/ref/moe.h"
#include "nvfp4moe/ref/permute.h"
#include "nvfp4moe/ref/quantize.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

struct Case {
  int64_t tokens;
  int experts;
  int top_k;
  int shared;             // n_shared_experts
  bool grouped_sigmoid;   // DeepSeek-V3 routing, else softmax
  bool skewed;            // every token's first choice is expert 0
  MoeMode mode = MoeMode::kW4A4;
  int64_t hidden = 256;
  int64_t inter = 128;
  std::optional<float> limit = std::nullopt;
};

std::string name(const Case& c) {
  char b[200];
  std::snprintf(b, sizeof b, "T=%lld E=%d k=%d shared=%d %s%s %s H=%lld I=%lld%s", (long long)c.tokens, c.experts,
                c.top_k, c.shared, c.grouped_sigmoid ? "grouped-sigmoid" : "softmax", c.skewed ? " skewed" : "",
                to_string(c.mode), (long long)c.hidden, (long long)c.inter, c.limit ? " clamp" : "");
  return b;
}

struct Layer {
  MoeConfig cfg;
  MoeWeights weights;
  std::vector<float> bias;
};

Layer make_layer(const Case& c, uint64_t seed) {
  model::BuiltinModelSpec spec;
  spec.hidden = c.hidden;
  spec.intermediate = c.inter;
  spec.num_experts = c.experts;
  spec.top_k = c.top_k;
  spec.n_group = c.grouped_sigmoid ? 8 : 1;
  spec.topk_group = c.grouped_sigmoid ? 4 : 1;
  if (c.grouped_sigmoid && c.experts < 64) { spec.n_group = 4; spec.topk_group = 2; }
  spec.n_shared_experts = c.shared;
  spec.seed = seed;
  model::FloatMoeLayer fl = model::make_builtin_layer(spec);
  Layer l;
  l.cfg = fl.cfg;
  l.cfg.mode = c.mode;
  l.cfg.swiglu_limit = c.limit;
  if (!c.grouped_sigmoid) {
    l.cfg.routing.scoring = ScoringFunc::kSoftmax;
    l.cfg.routing.n_group = l.cfg.routing.topk_group = 1;
    l.cfg.routing.routed_scaling_factor = 1.0f;
    fl.weights.e_score_correction_bias.clear();
  }
  l.weights = ref::quantize_weights(l.cfg, fl.weights);
  const int64_t calib = 128;
  std::vector<uint16_t> hidden = model::random_hidden(calib, c.hidden, ActDType::kBF16, seed + 1);
  std::vector<float> logits = model::router_logits(hidden, ActDType::kBF16, calib, fl.router, c.experts, c.hidden);
  ref::apply_activation_scales(ref::calibrate_activation_scales(l.cfg, l.weights, hidden, calib, logits), l.weights);
  return l;
}

std::vector<float> make_logits(const Case& c, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> logits(size_t(c.tokens * c.experts));
  for (auto& x : logits) x = normal(rng);
  if (c.skewed) {
    for (int64_t t = 0; t < c.tokens; ++t) logits[size_t(t * c.experts)] = 40.0f;
  }
  return logits;
}

float bf(uint16_t b) { return bf16_to_float(b); }

// GPU bf16 vs CPU fp32 GEMM output: within one bf16 ulp, plus 1e-5 of the row's max.
void expect_gemm_close(const std::vector<uint16_t>& gpu, const std::vector<float>& cpu, int64_t rows, int64_t cols,
                       const std::string& what) {
  int64_t bad = 0, first = -1;
  for (int64_t r = 0; r < rows; ++r) {
    float row_max = 0;
    for (int64_t c = 0; c < cols; ++c) row_max = std::max(row_max, std::fabs(cpu[size_t(r * cols + c)]));
    for (int64_t c = 0; c < cols; ++c) {
      float want = cpu[size_t(r * cols + c)], got = bf(gpu[size_t(r * cols + c)]);
      if (!(std::fabs(got - want) <= std::fabs(want) * 0x1p-8f + 1e-5f * row_max)) {
        if (first < 0) first = r * cols + c;
        ++bad;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << rows * cols << " outside 1 bf16 ulp; first at row "
                    << first / std::max<int64_t>(cols, 1) << " col " << first % std::max<int64_t>(cols, 1) << " (got "
                    << bf(gpu[size_t(std::max<int64_t>(first, 0))]) << ", want " << cpu[size_t(std::max<int64_t>(first, 0))]
                    << ")";
}

template <typename T>
std::vector<T> download(const void* p, size_t n) {
  std::vector<T> h(n);
  if (n) NVFP4MOE_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// sf_off[E]: the per-expert scale rows quantize_experts writes (padded blocks of all experts).
int64_t written_scale_rows(const std::vector<int32_t>& off) {
  std::vector<int32_t> sf_off(off.size());
  expert_scale_offsets(off.data(), int(off.size()) - 1, sf_off.data());
  return sf_off.back();
}

void check_case(const Case& c) {
  SCOPED_TRACE(name(c));
  const uint64_t seed = 1000 + uint64_t(c.tokens) * 7 + uint64_t(c.experts) * 13 + uint64_t(c.top_k);
  Layer l = make_layer(c, seed);
  const MoeConfig& cfg = l.cfg;
  const int64_t t = c.tokens, h = cfg.hidden, inter = cfg.intermediate, k = cfg.routing.top_k, m = t * k;
  const int e = cfg.routing.num_experts;

  std::vector<uint16_t> hidden = model::random_hidden(t, h, ActDType::kBF16, seed + 2);
  std::vector<float> logits = make_logits(c, seed + 3);
  MoeTrace trace;
  std::vector<uint16_t> want(size_t(t * h));
  ref::moe_forward(cfg, l.weights, hidden, t, logits, want, &trace);

  cuda::MoeLayerWeights dw = cuda::MoeLayerWeights::upload(cfg, l.weights);
  cuda::MoeWorkspace ws(cfg, std::max<int64_t>(t, 1) + 5);  // capacity above T on purpose
  ws.set_paths(cuda::MoeForwardPaths::all_intermediates());  // this test reads the codes and
                                                              // scales the quantizers write
  DeviceBuffer<uint16_t> d_hidden(hidden.empty() ? std::vector<uint16_t>(8) : hidden);
  DeviceBuffer<float> d_logits(logits.empty() ? std::vector<float>(8) : logits);
  DeviceBuffer<uint16_t> d_out(std::max<size_t>(want.size(), 8));
  d_out.fill_bytes(0xFF);
  cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), t, d_out.get(), nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint16_t> got = d_out.download();
  got.resize(want.size());
  if (t == 0) return;
  const auto& v = ws.views();
  EXPECT_EQ(download<uint32_t>(ws.error_flags(), 1)[0], 0u) << "device validation flagged an error";

  // 1-2. Routing and permutation: exact.
  EXPECT_EQ(download<int32_t>(v.ids, size_t(m)), trace.ids);
  std::vector<float> gw = download<float>(v.weights, size_t(m));
  for (size_t i = 0; i < gw.size(); ++i) {
    ASSERT_NEAR(gw[i], trace.weights[i], 1e-6f * std::fabs(trace.weights[i]) + 1e-12f) << "routing weight " << i;
  }
  EXPECT_EQ(download<int32_t>(v.off, size_t(e + 1)), trace.perm.off);
  EXPECT_EQ(download<int32_t>(v.sorted_to_token, size_t(m)), trace.perm.sorted_to_token);
  std::vector<int32_t> p2s = download<int32_t>(v.pair_to_sorted, size_t(m));
  EXPECT_EQ(p2s, trace.perm.pair_to_sorted);

  // 3. GEMM1 input: exact (W4A4 codes + scales; W4A16 the gathered rows).
  if (c.mode == MoeMode::kW4A4) {
    EXPECT_TRUE(test::bytes_equal(download<uint8_t>(v.a1_codes, size_t(m * h / 2)), trace.a1_codes, "A1 codes"));
    // Per-expert scales are written only up to scale row sf_off[E] (cuda/quantize.h).
    const size_t a1_written = size_t(written_scale_rows(trace.perm.off) * padded_scale_cols(h));
    EXPECT_TRUE(test::bytes_equal(download<uint8_t>(v.a1_scales, a1_written),
                                  std::vector<uint8_t>(trace.a1_scales.begin(), trace.a1_scales.begin() + a1_written),
                                  "A1 scales"));
  }

  // 4. GEMM1 within one bf16 ulp of the CPU's fp32 result.
  std::vector<uint16_t> g1 = download<uint16_t>(v.gemm1, size_t(m * 2 * inter));
  expect_gemm_close(g1, trace.gemm1_f32, m, 2 * inter, "GEMM1");

  // 5-6. Teacher forcing: the CPU model's next stages on the GPU's GEMM1 output.
  std::vector<uint16_t> g2 = download<uint16_t>(v.gemm2, size_t(m * h));
  std::vector<float> g2_want(size_t(m * h));
  std::vector<ref::Nvfp4View> w2v;
  std::vector<ref::HalfAlpha> a2;
  for (int x = 0; x < e; ++x) {
    w2v.push_back(l.weights.w2[size_t(x)].view());
    float gA2 = c.mode == MoeMode::kW4A4 ? l.weights.gA2[size_t(x)] : 1.0f;
    float al = c.mode == MoeMode::kW4A4 ? 1.0f / (gA2 * l.weights.w2[size_t(x)].g_lo) : 1.0f / l.weights.w2[size_t(x)].g_lo;
    a2.push_back({al, al});
  }
  if (c.mode == MoeMode::kW4A4) {
    const int64_t scale_rows = trace.scale_rows;
    std::vector<uint8_t> codes(size_t(m * inter / 2)), scales(size_t(scale_rows * padded_scale_cols(inter)));
    ref::silu_and_mul_quantize_experts(g1, ActDType::kBF16, m, inter, cfg.swiglu_limit, trace.perm.off, l.weights.gA2,
                                       codes, scales, scale_rows);
    std::vector<uint8_t> gpu_codes = download<uint8_t>(v.a2_codes, codes.size());
    std::vector<uint8_t> gpu_scales = download<uint8_t>(v.a2_scales, scales.size());
    // Only scale rows [0, sf_off[E]) are written; the GEMM reads nothing past them.
    const size_t a2_written = size_t(written_scale_rows(trace.perm.off) * padded_scale_cols(inter));
    std::copy(scales.begin() + a2_written, scales.end(), gpu_scales.begin() + a2_written);
    int64_t diff = 0;
    for (size_t i = 0; i < codes.size(); ++i) diff += gpu_codes[i] != codes[i];
    for (size_t i = 0; i < a2_written; ++i) diff += gpu_scales[i] != scales[i];
    std::printf("  [%s] fused SiLU*Mul+quant vs CPU on the GPU's GEMM1: %lld of %zu bytes differ (device expf)\n",
                name(c).c_str(), (long long)diff, codes.size() + scales.size());
    EXPECT_LE(double(diff), 1e-3 * double(codes.size() + scales.size()) + 1);
    ref::grouped_gemm_w4a4(gpu_codes, gpu_scales, scale_rows, inter, trace.perm.off, w2v, a2, g2_want);
  } else {
    std::vector<uint16_t> act(size_t(m * inter));
    ref::silu_and_mul(g1, ActDType::kBF16, m, inter, cfg.swiglu_limit, act);
    std::vector<uint16_t> gpu_act = download<uint16_t>(v.a2_bf16, act.size());
    int64_t diff = 0;
    for (size_t i = 0; i < act.size(); ++i) diff += gpu_act[i] != act[i];
    std::printf("  [%s] silu_and_mul vs CPU on the GPU's GEMM1: %lld of %zu differ (device expf)\n", name(c).c_str(),
                (long long)diff, act.size());
    EXPECT_LE(double(diff), 1e-3 * double(act.size()) + 1);
    ref::grouped_gemm_w4a16(gpu_act, ActDType::kBF16, inter, trace.perm.off, w2v, a2, g2_want);
  }
  expect_gemm_close(g2, g2_want, m, h, "GEMM2 (teacher-forced)");

  // 7. Combine on the GPU's GEMM2 rows and shared output: exact.
  std::vector<float> rows(g2.size());
  for (size_t i = 0; i < g2.size(); ++i) rows[i] = bf(g2[i]);
  std::vector<float> shared;
  if (c.shared) {
    std::vector<uint16_t> so = download<uint16_t>(v.shared_out, size_t(t * h));
    shared.resize(so.size());
    for (size_t i = 0; i < so.size(); ++i) shared[i] = bf(so[i]);
    std::vector<float> so_want(so.size());
    for (size_t i = 0; i < so.size(); ++i) so_want[i] = bf(trace.shared_out[i]);
    expect_gemm_close(so, so_want, t, h, "shared expert output (vs CPU, after its own bf16 rounding)");
  }
  std::vector<float> combined(size_t(t * h));
  ref::combine(rows, gw, p2s, t, int(k), h, shared, combined);
  std::vector<uint16_t> forced(combined.size());
  ref::round_to_act(combined, ActDType::kBF16, forced);
  EXPECT_TRUE(test::bytes_equal(got, forced, "output vs CPU combine of the GPU's rows"));

  // End to end, free running.
  double num = 0, den = 0, max_err = 0, max_ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double d = double(bf(got[i])) - bf(want[i]);
    num += d * d;
    den += double(bf(want[i])) * bf(want[i]);
    max_err = std::max(max_err, std::fabs(d));
    max_ref = std::max(max_ref, double(std::fabs(bf(want[i]))));
  }
  double rel = std::sqrt(num / std::max(den, 1e-30));
  std::printf("  [%s] end to end vs CPU model: rel L2 %.3e, max |err| / max |ref| %.3e\n", name(c).c_str(), rel,
              max_err / std::max(max_ref, 1e-30));
  EXPECT_LE(rel, 1e-3);
}

TEST(MoeGpu, SmallW4A4WithSharedExpert) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({3, 8, 2, 1, true, false});
}
// At T = 1 both shared-expert GEMMs split K (H = 512, I = 256) and share one workspace: the
// second call's split-K counters must not fall on the first call's partial sums (docs/GEMM.md
// v7: they did, and the shared expert's output was never written).
TEST(MoeGpu, OneTokenSharedExpertBothGemmsSplitK) {
  NVFP4MOE_REQUIRE_GPU();
  for (MoeMode mode : {MoeMode::kW4A4, MoeMode::kW4A16}) {
    Case c{1, 8, 2, 1, true, false, mode};
    c.hidden = 512;
    c.inter = 256;
    check_case(c);
    c.tokens = 3;
    check_case(c);
  }
}
TEST(MoeGpu, SmallW4A16) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({5, 8, 2, 1, false, false, MoeMode::kW4A16});
}
TEST(MoeGpu, ZeroTokens) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({0, 8, 2, 1, true, false});
}
TEST(MoeGpu, OneTokenTopOneNoShared) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({1, 8, 1, 0, false, false});
}
TEST(MoeGpu, Softmax128ExpertsTop8) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({16, 128, 8, 1, false, false});
}
TEST(MoeGpu, DeepSeekRouting256Experts) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({255, 256, 8, 1, true, false});
}
TEST(MoeGpu, AllTokensToOneExpert) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({255, 8, 1, 0, false, true});
  check_case({64, 128, 2, 1, false, true});
}
TEST(MoeGpu, ClampAndOffTileShapes) {
  NVFP4MOE_REQUIRE_GPU();
  Case c{19, 8, 2, 1, true, false};
  c.hidden = 320;
  c.inter = 96;
  c.limit = 7.0f;
  check_case(c);
}
TEST(MoeGpu, Large4096TokensDeepSeek) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({4096, 256, 8, 1, true, false});
}
TEST(MoeGpu, Large4096TokensW4A16Softmax) {
  NVFP4MOE_REQUIRE_GPU();
  check_case({4096, 128, 8, 0, false, false, MoeMode::kW4A16});
}

// Bitwise identical across repeated runs and between graph replay and eager, with a different
// routing at every replay.
TEST(MoeGpu, SmallDeterministicAndGraphReplayEqualsEager) {
  NVFP4MOE_REQUIRE_GPU();
  Case c{64, 32, 4, 1, true, false};
  Layer l = make_layer(c, 77);
  cuda::MoeLayerWeights dw = cuda::MoeLayerWeights::upload(l.cfg, l.weights);
  cuda::MoeWorkspace ws(l.cfg, c.tokens);
  const int64_t n_out = c.tokens * l.cfg.hidden;
  DeviceBuffer<uint16_t> d_hidden(model::random_hidden(c.tokens, l.cfg.hidden, ActDType::kBF16, 5));
  DeviceBuffer<float> d_logits(make_logits(c, 6));
  DeviceBuffer<uint16_t> d_out(static_cast<size_t>(n_out)), d_out2(static_cast<size_t>(n_out));
  cudaStream_t s;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), c.tokens, d_out.get(), s);
  cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), c.tokens, d_out2.get(), s);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
  EXPECT_TRUE(test::bytes_equal(d_out.download(), d_out2.download(), "repeated eager runs"));

  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), c.tokens, d_out2.get(), s);
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int round = 0; round < 3; ++round) {
    d_logits.upload(make_logits(c, 100 + uint64_t(round)));
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, s));
    cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), c.tokens, d_out.get(), s);
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    EXPECT_TRUE(test::bytes_equal(d_out2.download(), d_out.download(), "graph replay vs eager, round " + std::to_string(round)));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// The execution choices of MoeForwardPaths change no result bit: every combination against
// all of them off at the small batches where they apply (the one-launch front end at
// T <= 4, values only up to direct_rows, the shared expert on values up to 16 tokens, the
// combine in GEMM2 up to 16 tokens), with and
// without a shared expert, softmax and grouped sigmoid, all tokens on one expert: output,
// routing, permutation, both GEMMs' rows, the bf16 values the GEMMs read, the shared output.
TEST(MoeGpu, ForwardPathsGiveIdenticalResults) {
  NVFP4MOE_REQUIRE_GPU();
  // The combine in GEMM2 where MoeForwardPaths::fused_combine asks for it (off by default).
  struct FusedCombineOn {
    FusedCombineOn() { cuda::set_gemm_fused_combine(1); }
    ~FusedCombineOn() { cuda::set_gemm_fused_combine(-1); }
  } fused_combine_on;
  // I = 256 with a clamp: the default SiLU quantizer takes its row-step kernel, the values
  // paths the flat one. T = 20 (capacity 40): the shared expert falls back to W4A4.
  Case clamp{5, 16, 4, 1, true, false};
  clamp.inter = 256;
  clamp.limit = 7.0f;
  const struct {
    Case c;
    int64_t capacity;
  } cases[] = {{{1, 256, 8, 1, true, false}, 4},  {{3, 128, 8, 0, false, false}, 6}, {{4, 8, 2, 1, true, true}, 7},
               {{2, 16, 16, 1, false, false}, 5}, {{16, 32, 4, 1, true, false}, 19}, {clamp, 40},
               {{20, 32, 4, 1, true, false}, 40}};
  for (const auto& [c, capacity] : cases) {
    SCOPED_TRACE(name(c) + " capacity " + std::to_string(capacity));
    Layer l = make_layer(c, 500 + uint64_t(c.tokens));
    const MoeConfig& cfg = l.cfg;
    const int64_t t = c.tokens, h = cfg.hidden, inter = cfg.intermediate, m = t * c.top_k;
    cuda::MoeLayerWeights dw = cuda::MoeLayerWeights::upload(cfg, l.weights);
    cuda::MoeWorkspace ws(cfg, capacity);
    const auto& v = ws.views();
    ASSERT_GE(v.direct_rows, m) << "the case must take the direct (values) path";
    DeviceBuffer<uint16_t> d_hidden(model::random_hidden(t, h, ActDType::kBF16, 31 + uint64_t(t)));
    DeviceBuffer<float> d_logits(make_logits(c, 41 + uint64_t(t)));
    // Other inputs, run with the same paths before each checked run: a path that leaves one of
    // its private buffers (the shared expert's values, its GEMM1 rows) unwritten, or reads one
    // before it is written, then sees these inputs' data and fails.
    DeviceBuffer<uint16_t> d_hidden_other(model::random_hidden(t, h, ActDType::kBF16, 61 + uint64_t(t)));
    DeviceBuffer<float> d_logits_other(make_logits(c, 71 + uint64_t(t)));
    DeviceBuffer<uint16_t> d_out(size_t(t * h));
    cudaStream_t s;
    NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    struct Snapshot {
      std::vector<uint16_t> out, gemm1, gemm2, a1, a2, shared;
      std::vector<int32_t> ids, counts, off, sf_off, s2p, p2s, s2t;
      std::vector<float> weights;
      uint32_t flags;
    };
    auto run = [&](const cuda::MoeForwardPaths& paths) {
      ws.set_paths(paths);
      cuda::moe_forward(dw, ws, d_hidden_other.get(), d_logits_other.get(), t, d_out.get(), s);
      NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
      d_out.fill_bytes(0xff);
      // Poisoned, so that a path that leaves one of them unwritten cannot pass on stale data.
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.gemm1, 0xff, size_t(m * 2 * inter) * 2));
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.gemm2, 0xff, size_t(m * h) * 2));
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.a1_bf16, 0xff, size_t(m * h) * 2));
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.a2_bf16, 0xff, size_t(m * inter) * 2));
      if (c.shared) NVFP4MOE_CUDA_CHECK(cudaMemset(v.shared_out, 0xff, size_t(t * h) * 2));
      for (int32_t* b : {v.ids, v.sorted_to_pair, v.pair_to_sorted, v.sorted_to_token}) {
        NVFP4MOE_CUDA_CHECK(cudaMemset(b, 0xff, size_t(m) * 4));
      }
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.counts, 0xff, size_t(cfg.routing.num_experts) * 4));
      for (int32_t* b : {v.off, v.sf_off}) {
        NVFP4MOE_CUDA_CHECK(cudaMemset(b, 0xff, size_t(cfg.routing.num_experts + 1) * 4));
      }
      NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
      cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), t, d_out.get(), s);
      NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
      Snapshot r;
      r.out = d_out.download();
      r.gemm1 = download<uint16_t>(v.gemm1, size_t(m * 2 * inter));
      r.gemm2 = download<uint16_t>(v.gemm2, size_t(m * h));
      r.a1 = download<uint16_t>(v.a1_bf16, size_t(m * h));
      r.a2 = download<uint16_t>(v.a2_bf16, size_t(m * inter));
      if (c.shared) r.shared = download<uint16_t>(v.shared_out, size_t(t * h));
      r.ids = download<int32_t>(v.ids, size_t(m));
      r.weights = download<float>(v.weights, size_t(m));
      r.counts = download<int32_t>(v.counts, size_t(cfg.routing.num_experts));
      r.off = download<int32_t>(v.off, size_t(cfg.routing.num_experts + 1));
      r.sf_off = download<int32_t>(v.sf_off, size_t(cfg.routing.num_experts + 1));
      r.s2p = download<int32_t>(v.sorted_to_pair, size_t(m));
      r.p2s = download<int32_t>(v.pair_to_sorted, size_t(m));
      r.s2t = download<int32_t>(v.sorted_to_token, size_t(m));
      r.flags = download<uint32_t>(ws.error_flags(), 1)[0];
      return r;
    };
    const Snapshot base = run(cuda::MoeForwardPaths::all_intermediates());
    EXPECT_EQ(base.flags, 0u);
    for (int mask = 1; mask < 16; ++mask) {
      cuda::MoeForwardPaths p;
      p.values_only = mask & 1;
      p.tiny_front_end = mask & 2;
      p.shared_values = mask & 4;
      p.fused_combine = mask & 8;
      const std::string what = "paths values_only=" + std::to_string(p.values_only) + " tiny=" +
                               std::to_string(p.tiny_front_end) + " shared_values=" + std::to_string(p.shared_values) +
                               " fused_combine=" + std::to_string(p.fused_combine);
      const Snapshot got = run(p);
      EXPECT_EQ(got.flags, 0u) << what;
      EXPECT_TRUE(test::bytes_equal(got.out, base.out, what + " output"));
      EXPECT_TRUE(test::bytes_equal(got.ids, base.ids, what + " ids"));
      EXPECT_TRUE(test::bytes_equal(got.weights, base.weights, what + " weights"));
      EXPECT_TRUE(test::bytes_equal(got.counts, base.counts, what + " counts"));
      EXPECT_TRUE(test::bytes_equal(got.off, base.off, what + " off"));
      EXPECT_TRUE(test::bytes_equal(got.sf_off, base.sf_off, what + " sf_off"));
      EXPECT_TRUE(test::bytes_equal(got.s2p, base.s2p, what + " sorted_to_pair"));
      EXPECT_TRUE(test::bytes_equal(got.p2s, base.p2s, what + " pair_to_sorted"));
      EXPECT_TRUE(test::bytes_equal(got.s2t, base.s2t, what + " sorted_to_token"));
      EXPECT_TRUE(test::bytes_equal(got.a1, base.a1, what + " GEMM1 input values"));
      EXPECT_TRUE(test::bytes_equal(got.gemm1, base.gemm1, what + " GEMM1 rows"));
      EXPECT_TRUE(test::bytes_equal(got.a2, base.a2, what + " GEMM2 input values"));
      EXPECT_TRUE(test::bytes_equal(got.gemm2, base.gemm2, what + " GEMM2 rows"));
      EXPECT_TRUE(test::bytes_equal(got.shared, base.shared, what + " shared expert output"));
    }
    // The default (all on) in a CUDA graph: replay == the all-off eager output.
    ws.set_paths(cuda::MoeForwardPaths{});
    DeviceBuffer<uint16_t> d_graph_out(size_t(t * h));
    d_graph_out.fill_bytes(0xff);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), t, d_graph_out.get(), s);
    NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int round = 0; round < 2; ++round) {
      NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, s));
      NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
      EXPECT_TRUE(test::bytes_equal(d_graph_out.download(), base.out, "all paths, graph replay " + std::to_string(round)));
    }
    NVFP4MOE_CUDA_CHECK(cudaGraphExecDestroy(exec));
    NVFP4MOE_CUDA_CHECK(cudaGraphDestroy(graph));
    NVFP4MOE_CUDA_CHECK(cudaStreamDestroy(s));
  }
}

// Prefill batches of the path-equivalence tests (W4A4; set mode for W4A16): a wide layer with a
// shared expert; a clamp, skewed routing and K = 384 for GEMM2; top-8 over 8 experts.
struct PrefillCases {
  Case wide{256, 8, 2, 1, true, false};
  Case clamp_skewed{300, 16, 4, 0, false, true};
  Case top8{200, 8, 8, 1, false, false};
  PrefillCases() {
    wide.hidden = 512;
    wide.inter = 256;
    clamp_skewed.inter = 384;
    clamp_skewed.limit = 7.0f;
    top8.hidden = 768;
    top8.inter = 512;
  }
};

// The harness of the path-equivalence tests: one layer, workspace, batch and stream; each run
// poisons the GEMM rows and the output (and what `poison_more` adds), runs the forward under the
// given paths and reads them back; with `graph`, the eager run is also captured and replayed
// twice, each replay checked against it (expect_graph_replays_equal_eager).
class PathProbe {
 public:
  struct Snapshot {
    std::vector<uint8_t> out, gemm1, gemm2;
  };
  PathProbe(const cuda::MoeLayerWeights& w, cuda::MoeWorkspace& ws, const Case& c, uint64_t seed)
      : w_(w), ws_(ws), t_(c.tokens), h_(w.config().hidden), inter_(w.config().intermediate), m_(c.tokens * c.top_k),
        hidden_(model::random_hidden(t_, h_, ActDType::kBF16, seed)), logits_(make_logits(c, seed + 10)),
        out_(size_t(t_ * h_)) {
    NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
  }
  ~PathProbe() { cudaStreamDestroy(s_); }
  PathProbe(const PathProbe&) = delete;
  PathProbe& operator=(const PathProbe&) = delete;

  std::function<void()> poison_more;  // the caller's extra buffers, poisoned with the others

  Snapshot run(const cuda::MoeForwardPaths& paths, bool graph = false) {
    const auto& v = ws_.views();
    ws_.set_paths(paths);
    auto poison = [&] {
      out_.fill_bytes(0xff);
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.gemm1, 0xff, size_t(m_ * 2 * inter_) * 2));
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.gemm2, 0xff, size_t(m_ * h_) * 2));
      if (poison_more) poison_more();
      NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    };
    auto forward = [&] { cuda::moe_forward(w_, ws_, hidden_.get(), logits_.get(), t_, out_.get(), s_); };
    auto snapshot = [&] {
      return std::vector<std::vector<uint8_t>>{download<uint8_t>(out_.get(), size_t(t_ * h_) * 2),
                                               download<uint8_t>(v.gemm1, size_t(m_ * 2 * inter_) * 2),
                                               download<uint8_t>(v.gemm2, size_t(m_ * h_) * 2)};
    };
    std::vector<std::vector<uint8_t>> got;
    if (graph) {
      got = test::expect_graph_replays_equal_eager(s_, poison, forward, snapshot);
    } else {
      poison();
      forward();
      NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s_));
      got = snapshot();
    }
    EXPECT_EQ(download<uint32_t>(ws_.error_flags(), 1)[0], 0u);
    return Snapshot{std::move(got[0]), std::move(got[1]), std::move(got[2])};
  }

 private:
  const cuda::MoeLayerWeights& w_;
  cuda::MoeWorkspace& ws_;
  int64_t t_, h_, inter_, m_;
  DeviceBuffer<uint16_t> hidden_;
  DeviceBuffer<float> logits_;
  DeviceBuffer<uint16_t> out_;
  cudaStream_t s_ = nullptr;
};

// A and B equal bit for bit in the layer output and both GEMMs' rows (`what` names B).
void expect_same_run(const PathProbe::Snapshot& got, const PathProbe::Snapshot& want, const std::string& what) {
  EXPECT_TRUE(test::bytes_equal(got.gemm1, want.gemm1, "GEMM1 rows, " + what));
  EXPECT_TRUE(test::bytes_equal(got.gemm2, want.gemm2, "GEMM2 rows, " + what));
  EXPECT_TRUE(test::bytes_equal(got.out, want.out, "layer output, " + what));
}

// W4A4 prefill (MoeForwardPaths::gemm_order_values): the quantizers write the GEMMs' operand,
// bf16 values in the GEMM's K order, and the GEMMs read it, instead of codes + scales and the
// GEMM's own dequantize launch. The same GEMM rows and layer output bit for bit as the path
// through codes and scales (which check_case compares with the CPU model), eager and in a graph
// replay; with the clamp, the shared expert, skewed routing, and a layer whose GEMM2 width
// (K = 384) keeps the old path while GEMM1 takes the new one. W4A16 likewise
// (MoeForwardPaths::gemm_order_bf16: the row gather and silu_and_mul write the GEMMs' operands
// in their K order; there K = 384 takes it too).
TEST(MoeGpu, GemmOrderValuesGiveIdenticalResults) {
  NVFP4MOE_REQUIRE_GPU();
  const auto [wide, clamp_skewed, top8] = PrefillCases{};
  // W4A16 (MoeForwardPaths::gemm_order_bf16): the gather and silu_and_mul in the GEMM's order.
  Case w4a16 = wide;
  w4a16.mode = MoeMode::kW4A16;
  Case w4a16_clamp = clamp_skewed;
  w4a16_clamp.mode = MoeMode::kW4A16;
  for (const Case& c : {wide, clamp_skewed, top8, w4a16, w4a16_clamp}) {
    SCOPED_TRACE(name(c));
    Layer l = make_layer(c, 900 + uint64_t(c.tokens));
    const MoeConfig& cfg = l.cfg;
    const int64_t t = c.tokens, h = cfg.hidden, inter = cfg.intermediate, m = t * c.top_k;
    // GEMM1 takes the new path; GEMM2 too where inter % 256 == 0 (the quantizers' requirement).
    ASSERT_TRUE(cuda::grouped_gemm_takes_gemm_order(m, 2 * inter, h, c.experts)) << "GEMM1 must take the new path";
    ASSERT_TRUE(cuda::grouped_gemm_takes_gemm_order(m, h, inter, c.experts));
    cuda::MoeLayerWeights dw = cuda::MoeLayerWeights::upload(cfg, l.weights);
    cuda::MoeWorkspace ws(cfg, t);
    PathProbe probe(dw, ws, c, 33 + uint64_t(t));
    const PathProbe::Snapshot base = probe.run(cuda::MoeForwardPaths::all_intermediates());
    const cuda::MoeForwardPaths paths;  // the defaults: GEMM-order operands for W4A4 and W4A16
    ASSERT_TRUE(paths.gemm_order_values && paths.gemm_order_bf16);
    expect_same_run(probe.run(paths), base, "default paths");
    expect_same_run(probe.run(paths, /*graph=*/true), base, "eager run of the replayed graph");
  }
}

// W4A4 prefill with one gA1 for every expert (MoeForwardPaths::quantize_once): the tokens
// quantized once and copied into expert order give GEMM1 the same codes and scales as
// quantize_experts, so the same GEMM rows and layer output, bit for bit, eagerly and in graph
// replay.
TEST(MoeGpu, QuantizeOnceGivesIdenticalResults) {
  NVFP4MOE_REQUIRE_GPU();
  const auto [wide, clamp_skewed, top8] = PrefillCases{};
  for (const Case& c : {wide, clamp_skewed, top8}) {
    SCOPED_TRACE(name(c));
    Layer l = make_layer(c, 950 + uint64_t(c.tokens));
    ref::share_activation_scales(l.weights);  // one input scale per GEMM, as engines use them
    const MoeConfig& cfg = l.cfg;
    const int64_t t = c.tokens, h = cfg.hidden, m = t * c.top_k;
    cuda::MoeLayerWeights dw = cuda::MoeLayerWeights::upload(cfg, l.weights);
    ASSERT_TRUE(dw.uniform_gA1());
    cuda::MoeWorkspace ws(cfg, t);
    const auto& v = ws.views();
    ASSERT_LT(v.direct_rows, m) << "the case must take the prefill path";
    cuda::MoeForwardPaths once;
    once.quantize_once = true;
    ws.set_paths(once);
    ASSERT_TRUE(ws.quantizes_tokens_once(dw, t)) << "the forward must take the quantize-once path";
    // GEMM1's input codes and scales too (poisoned alike: scale bytes past sf_off[E] stay so).
    const size_t code_bytes = size_t(m * h / 2), scale_bytes = size_t(v.scale_rows * padded_scale_cols(h));
    PathProbe probe(dw, ws, c, 35 + uint64_t(t));
    probe.poison_more = [&] {
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.a1_codes, 0xab, code_bytes));
      NVFP4MOE_CUDA_CHECK(cudaMemset(v.a1_scales, 0xab, scale_bytes));
    };
    auto a1 = [&] {
      return std::make_pair(download<uint8_t>(v.a1_codes, code_bytes), download<uint8_t>(v.a1_scales, scale_bytes));
    };
    const PathProbe::Snapshot base = probe.run(cuda::MoeForwardPaths::all_intermediates());  // quantize_experts
    const auto base_a1 = a1();
    ASSERT_FALSE(ws.quantizes_tokens_once(dw, t));
    const PathProbe::Snapshot got = probe.run(once);
    const auto got_a1 = a1();
    EXPECT_TRUE(test::bytes_equal(got_a1.first, base_a1.first, "GEMM1 input codes"));
    EXPECT_TRUE(test::bytes_equal(got_a1.second, base_a1.second, "GEMM1 input scales"));
    expect_same_run(got, base, "tokens quantized once");
    expect_same_run(probe.run(once, /*graph=*/true), base, "eager run of the replayed graph");
  }
}

// Host-only (no GPU needed): a capacity whose tokens x top_k rows cannot be indexed is refused
// by name before anything is allocated.
TEST(MoeGpu, WorkspaceRejectsHugeMaxTokens) {
  Case c{4, 8, 2, 1, false, false};
  Layer l = make_layer(c, 3);
  for (int64_t bad : {int64_t(1) << 61, int64_t(1) << 30}) {
    try {
      cuda::MoeWorkspace ws(l.cfg, bad);
      ADD_FAILURE() << "max_tokens " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("max_tokens"), std::string::npos) << e.what();
    }
  }
}

// Host-only (no GPU needed): each bad argument of gather_rows is named before any launch.
TEST(MoeGpu, GatherRowsBadArgumentsThrowBeforeLaunch) {
  alignas(16) static uint8_t buf[1024];
  const auto* index = reinterpret_cast<const int32_t*>(buf);
  auto expect_named = [](auto&& call, const char* name) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected an error naming " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("gather_rows: ") + name), std::string::npos) << e.what();
    }
  };
  expect_named([&] { cuda::gather_rows(buf, 4, 12, index, 2, buf, nullptr); }, "hidden:");
  expect_named([&] { cuda::gather_rows(buf, 4, 16, index, -1, buf, nullptr); }, "rows:");
  expect_named([&] { cuda::gather_rows(buf, -4, 16, index, 2, buf, nullptr); }, "rows_in:");
  expect_named([&] { cuda::gather_rows(buf + 8, 4, 16, index, 2, buf, nullptr); }, "x:");
  expect_named([&] { cuda::gather_rows(buf, 4, 16, reinterpret_cast<const int32_t*>(buf + 2), 2, buf, nullptr); },
               "index:");
  expect_named([&] { cuda::gather_rows(buf, 4, 16, index, 2, nullptr, nullptr); }, "out:");
}

TEST(MoeGpu, BadArgumentsThrowBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  Case c{4, 8, 2, 0, false, false};
  Layer l = make_layer(c, 3);
  cuda::MoeLayerWeights dw = cuda::MoeLayerWeights::upload(l.cfg, l.weights);
  cuda::MoeWorkspace ws(l.cfg, 4);
  DeviceBuffer<uint16_t> d_hidden(size_t(8 * 256)), d_out(size_t(8 * 256));
  DeviceBuffer<float> d_logits(size_t(8 * 8));
  EXPECT_THROW(cuda::moe_forward(dw, ws, d_hidden.get(), d_logits.get(), 5, d_out.get(), nullptr), Error);
  EXPECT_THROW(cuda::moe_forward(dw, ws, nullptr, d_logits.get(), 2, d_out.get(), nullptr), Error);
  EXPECT_THROW(cuda::moe_forward(dw, ws, reinterpret_cast<char*>(d_hidden.get()) + 2, d_logits.get(), 2, d_out.get(),
                                 nullptr),
               Error);
  MoeConfig other = l.cfg;
  other.intermediate = 64;
  cuda::MoeWorkspace ws_other(other, 4);
  EXPECT_THROW(cuda::moe_forward(dw, ws_other, d_hidden.get(), d_logits.get(), 2, d_out.get(), nullptr), Error);
  MoeConfig fp16 = l.cfg;
  fp16.act = ActDType::kFP16;
  EXPECT_THROW(cuda::MoeLayerWeights::upload(fp16, l.weights), Error);
  EXPECT_THROW(cuda::MoeWorkspace(l.cfg, 0), Error);
}

}  // namespace
}  // namespace nvfp4moe
