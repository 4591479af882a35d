// GPU combine (cuda::combine) against ref::combine, bit for bit (the order of the float32
// operations is fixed), for bf16/fp16 rows, bf16/fp16/float32 outputs, with and without the
// shared-expert term; the route -> permute -> combine pipeline captured in a CUDA graph equals
// its eager run; bad arguments.
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp

#include <random>
#include <span>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/ref/permute.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

std::vector<uint16_t> random_act(size_t n, ActDType dt, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = act_from_float(normal(rng), dt);
  return v;
}

// Distinct experts per token (what top-k yields) and weights in (0, 1].
std::vector<int32_t> random_topk_ids(int64_t tokens, int k, int e, std::mt19937& rng) {
  std::vector<int32_t> ids(size_t(tokens * k));
  std::vector<int32_t> perm(static_cast<size_t>(e));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < e; ++i) perm[size_t(i)] = i;
    for (int j = 0; j < k; ++j) {
      std::swap(perm[size_t(j)], perm[size_t(j + int(rng() % uint32_t(e - j)))]);
      ids[size_t(t * k + j)] = perm[size_t(j)];
    }
  }
  return ids;
}

const char* out_name(cuda::CombineOutDType d) {
  return d == cuda::CombineOutDType::kBF16 ? "bf16" : d == cuda::CombineOutDType::kFP16 ? "fp16" : "f32";
}

void check_combine(int64_t tokens, int k, int64_t hidden, ActDType rows_dt, cuda::CombineOutDType out_dt,
                   bool with_shared, uint32_t seed) {
  const std::string what = "T=" + std::to_string(tokens) + " k=" + std::to_string(k) + " H=" +
                           std::to_string(hidden) + " rows=" + to_string(rows_dt) + " out=" + out_name(out_dt) +
                           (with_shared ? " +shared" : "") + " seed=" + std::to_string(seed);
  SCOPED_TRACE(what);
  const int e = 32;
  std::mt19937 rng(seed);
  const int64_t m = tokens * k;
  const auto ids = random_topk_ids(tokens, k, e, rng);
  const auto perm = ref::permute(ids, tokens, k, e);
  std::vector<float> w(static_cast<size_t>(m));
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  for (auto& x : w) x = uni(rng);
  const auto rows = random_act(size_t(m * hidden), rows_dt, seed + 1);
  const auto shared = with_shared ? random_act(size_t(tokens * hidden), rows_dt, seed + 2) : std::vector<uint16_t>{};

  // Reference in float32 on the exactly widened inputs.
  std::vector<float> rows_f(rows.size()), shared_f(shared.size()), want_f(size_t(tokens * hidden));
  for (size_t i = 0; i < rows.size(); ++i) rows_f[i] = act_to_float(rows[i], rows_dt);
  for (size_t i = 0; i < shared.size(); ++i) shared_f[i] = act_to_float(shared[i], rows_dt);
  ref::combine(rows_f, w, perm.pair_to_sorted, tokens, k, hidden, shared_f, want_f);

  DeviceBuffer<uint16_t> d_rows(rows), d_shared(shared);
  DeviceBuffer<float> d_w(w);
  DeviceBuffer<int32_t> d_p2s(perm.pair_to_sorted);
  const size_t out_elems = size_t(tokens * hidden);
  if (out_dt == cuda::CombineOutDType::kFloat32) {
    DeviceBuffer<float> d_out(out_elems);
    d_out.fill_bytes(0xff);
    cuda::combine(d_rows.get(), rows_dt, d_w.get(), d_p2s.get(), tokens, k, hidden,
                  with_shared ? d_shared.get() : nullptr, d_out.get(), out_dt, nullptr);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(test::bytes_equal(d_out.download(), want_f, what));
  } else {
    const ActDType act = out_dt == cuda::CombineOutDType::kBF16 ? ActDType::kBF16 : ActDType::kFP16;
    std::vector<uint16_t> want(out_elems);
    for (size_t i = 0; i < out_elems; ++i) want[i] = act_from_float(want_f[i], act);
    DeviceBuffer<uint16_t> d_out(out_elems);
    d_out.fill_bytes(0xff);
    cuda::combine(d_rows.get(), rows_dt, d_w.get(), d_p2s.get(), tokens, k, hidden,
                  with_shared ? d_shared.get() : nullptr, d_out.get(), out_dt, nullptr);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(test::bytes_equal(d_out.download(), want, what));
  }
}

TEST(CombineGpu, MatchesRefBitwise) {
  NVFP4MOE_REQUIRE_GPU();
  struct Shape { int64_t t; int k; int64_t h; };
  const Shape shapes[] = {{0, 8, 64}, {1, 8, 7168}, {3, 2, 24}, {255, 8, 2048}, {19, 16, 8}, {64, 1, 136}, {37, 6, 1032}};
  uint32_t seed = 1;
  for (const Shape& s : shapes) {
    for (ActDType rows_dt : {ActDType::kBF16, ActDType::kFP16}) {
      for (auto out_dt : {cuda::CombineOutDType::kBF16, cuda::CombineOutDType::kFP16, cuda::CombineOutDType::kFloat32}) {
        for (bool shared : {false, true}) check_combine(s.t, s.k, s.h, rows_dt, out_dt, shared, seed++);
      }
    }
  }
}

TEST(CombineGpu, LargeMatchesRefBitwise) {
  NVFP4MOE_REQUIRE_GPU();
  check_combine(4096, 8, 2048, ActDType::kBF16, cuda::CombineOutDType::kBF16, true, 777);
}

// route -> permute -> combine (DeepSeek-V3 routing, multi-CTA permute) captured in a graph on
// a capacity-sized set of buffers; two replays equal the eager run bit for bit.
TEST(MoePipelineGpu, GraphCaptureMatchesEager) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t capacity = 512, tokens = 300, hidden = 256;
  RoutingConfig cfg;
  cfg.num_experts = 256;
  cfg.top_k = 8;
  cfg.scoring = ScoringFunc::kSigmoid;
  cfg.n_group = 8;
  cfg.topk_group = 4;
  cfg.renormalize = true;
  cfg.routed_scaling_factor = 2.5f;
  const int k = cfg.top_k, e = cfg.num_experts;
  const uint32_t seed = 2024;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(size_t(capacity * e)), bias(static_cast<size_t>(e));
  for (auto& x : logits) x = normal(rng);
  for (auto& x : bias) x = normal(rng) * 0.05f;
  const auto rows = random_act(size_t(capacity * k * hidden), ActDType::kBF16, seed + 1);
  const auto shared = random_act(size_t(capacity * hidden), ActDType::kBF16, seed + 2);

  DeviceBuffer<float> d_logits(logits), d_bias(bias), d_w(size_t(capacity * k));
  DeviceBuffer<uint16_t> d_rows(rows), d_shared(shared), d_out(size_t(capacity * hidden));
  DeviceBuffer<int32_t> d_ids(size_t(capacity * k)), counts(e), off(e + 1), sf_off(e + 1),
      s2p(size_t(capacity * k)), p2s(size_t(capacity * k)), s2t(size_t(capacity * k));
  const size_t ws_bytes = cuda::permute_workspace_bytes(capacity, k, e);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  cuda::PermuteOutputs po;
  po.counts = counts.get();
  po.off = off.get();
  po.sf_off = sf_off.get();
  po.sorted_to_pair = s2p.get();
  po.pair_to_sorted = p2s.get();
  po.sorted_to_token = s2t.get();

  cudaStream_t stream;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto forward = [&] {
    cuda::route(d_logits.get(), cuda::LogitsDType::kFloat32, d_bias.get(), tokens, cfg, d_ids.get(), d_w.get(),
                stream);
    cuda::permute(d_ids.get(), tokens, k, e, capacity, po, ws.get(), ws_bytes, stream);
    cuda::combine(d_rows.get(), ActDType::kBF16, d_w.get(), p2s.get(), tokens, k, hidden, d_shared.get(),
                  d_out.get(), cuda::CombineOutDType::kBF16, stream);
  };
  auto poison = [&] {
    for (auto* b : {&d_ids, &counts, &off, &sf_off, &s2p, &p2s, &s2t}) b->fill_bytes(0xff);
    d_w.fill_bytes(0xff);
    d_out.fill_bytes(0xff);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());  // memsets run on the legacy stream
  };
  struct Snapshot {
    std::vector<int32_t> ids, counts, off, sf_off, s2p, p2s, s2t;
    std::vector<float> w;
    std::vector<uint16_t> out;
  };
  auto snapshot = [&] {
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    return Snapshot{d_ids.download(), counts.download(), off.download(), sf_off.download(), s2p.download(),
                    p2s.download(), s2t.download(), d_w.download(), d_out.download()};
  };
  auto expect_same = [](const Snapshot& a, const Snapshot& b, const std::string& what) {
    EXPECT_TRUE(test::bytes_equal(a.ids, b.ids, what + " ids"));
    EXPECT_TRUE(test::bytes_equal(a.w, b.w, what + " weights"));
    EXPECT_TRUE(test::bytes_equal(a.counts, b.counts, what + " counts"));
    EXPECT_TRUE(test::bytes_equal(a.off, b.off, what + " off"));
    EXPECT_TRUE(test::bytes_equal(a.sf_off, b.sf_off, what + " sf_off"));
    EXPECT_TRUE(test::bytes_equal(a.s2p, b.s2p, what + " sorted_to_pair"));
    EXPECT_TRUE(test::bytes_equal(a.p2s, b.p2s, what + " pair_to_sorted"));
    EXPECT_TRUE(test::bytes_equal(a.s2t, b.s2t, what + " sorted_to_token"));
    EXPECT_TRUE(test::bytes_equal(a.out, b.out, what + " out"));
  };

  poison();
  forward();
  const Snapshot eager = snapshot();

  // The eager result also equals the CPU model end to end.
  std::vector<int32_t> ref_ids(size_t(tokens * k));
  std::vector<float> ref_w(size_t(tokens * k));
  ref::route(std::span<const float>(logits.data(), size_t(tokens * e)), bias, tokens, cfg, ref_ids, ref_w);
  EXPECT_TRUE(test::bytes_equal(std::vector<int32_t>(eager.ids.begin(), eager.ids.begin() + tokens * k), ref_ids,
                                "eager ids vs ref"));

  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  poison();
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  forward();
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    expect_same(snapshot(), eager, "graph replay " + std::to_string(replay));
    poison();
  }
  NVFP4MOE_CUDA_CHECK(cudaGraphExecDestroy(exec));
  NVFP4MOE_CUDA_CHECK(cudaGraphDestroy(graph));
  NVFP4MOE_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(CombineBadArgs, ThrowsBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t t = 4, h = 64;
  const int k = 2;
  DeviceBuffer<uint16_t> rows(size_t(t * k * h) + 16), shared(size_t(t * h) + 16), out(size_t(t * h) + 16);
  DeviceBuffer<float> w(size_t(t * k));
  DeviceBuffer<int32_t> p2s(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  w.fill_bytes(0);
  const auto bf = ActDType::kBF16;
  const auto ob = cuda::CombineOutDType::kBF16;
  EXPECT_NO_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, h, shared.get(), out.get(), ob, nullptr));
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, 12, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, 0, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, 0, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, 17, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), -1, k, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get() + 4, bf, w.get(), p2s.get(), t, k, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, h, shared.get() + 4, out.get(), ob, nullptr),
               Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, h, nullptr, out.get() + 4, ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(nullptr, bf, w.get(), p2s.get(), t, k, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, nullptr, p2s.get(), t, k, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), nullptr, t, k, h, nullptr, out.get(), ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, h, nullptr, nullptr, ob, nullptr), Error);
  EXPECT_THROW(cuda::combine(rows.get(), static_cast<ActDType>(5), w.get(), p2s.get(), t, k, h, nullptr, out.get(),
                             ob, nullptr),
               Error);
  EXPECT_THROW(cuda::combine(rows.get(), bf, w.get(), p2s.get(), t, k, h, nullptr, out.get(),
                             static_cast<cuda::CombineOutDType>(9), nullptr),
               Error);
  EXPECT_NO_THROW(cuda::combine(nullptr, bf, nullptr, nullptr, 0, k, h, nullptr, nullptr, ob, nullptr));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nvfp4moe
