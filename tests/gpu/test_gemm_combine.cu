// The MoE combine fused into the grouped decode GEMM (cuda::grouped_gemm_w4a16_combine; the ring
// kernel fuses, calls on the register and wide-CTA kernels run the two launches): the GEMM rows
// and the combined outputs equal grouped_gemm_w4a16 followed by cuda::combine bit for bit, on
// the ring, register and wide-CTA decode kernels, at T = 1..16 tokens, top-k 1, 2 and 8,
// with and without the shared-expert term, N on and off the 64-column block edge; two calls in
// a row on one workspace (the block counters return to zero) and graph replays give the same
// bits; bad arguments throw before any launch.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp

#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/cuda/weights.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/ref/permute.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

struct Shape {
  int64_t n, k;  // GEMM2: N = hidden, K = intermediate
  int experts;
};

// E random experts in the prepared layout: codes any byte, scales e4m3 in [2^-3, 2^2).
DeviceBuffer<uint8_t> random_experts(const Shape& s, std::mt19937& rng) {
  const int64_t wb = cuda::prepared_weight_bytes(s.n, s.k);
  std::vector<uint8_t> all(size_t(wb * s.experts));
  std::vector<uint8_t> codes(size_t(s.n * s.k / 2)), scales(size_t(s.n * s.k / 16));
  for (int e = 0; e < s.experts; ++e) {
    for (auto& c : codes) c = uint8_t(rng());
    for (auto& c : scales) c = uint8_t(0x20 + rng() % 0x28);
    cuda::prepare_weight(codes, scales, s.n, s.k, std::span<uint8_t>(all.data() + size_t(e) * size_t(wb), size_t(wb)));
  }
  return DeviceBuffer<uint8_t>(all);
}

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = act_from_float(normal(rng), ActDType::kBF16);
  return v;
}

// Distinct experts per token, as top-k gives them (one expert taking every token when hot).
std::vector<int32_t> topk_ids(int64_t tokens, int k, int e, bool hot, std::mt19937& rng) {
  std::vector<int32_t> ids(size_t(tokens * k)), perm(static_cast<size_t>(e));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < e; ++i) perm[size_t(i)] = i;
    for (int j = 0; j < k; ++j) {
      std::swap(perm[size_t(j)], perm[size_t(j + int(rng() % uint32_t(e - j)))]);
      if (hot && j == 0) {  // expert 0 in slot 0 of every token
        for (int i = 1; i < e; ++i) {
          if (perm[size_t(i)] == 0) std::swap(perm[size_t(i)], perm[0]);
        }
      }
      ids[size_t(t * k + j)] = perm[size_t(j)];
    }
  }
  return ids;
}

struct Kernel {
  const char* name;
  int ring, k_warps;  // set_gemm_decode_ring, set_gemm_decode_k_warps (-1: heuristics)
  bool fuses;         // the ring kernel: the call must take the fused path
};

// w: random_experts(s) (made once per shape: the largest is ~240 MB).
void check_fused(const Shape& s, const DeviceBuffer<uint8_t>& w, int64_t tokens, int k, bool shared, bool hot,
                 const Kernel& kern, uint32_t seed) {
  const std::string what = std::string(kern.name) + " N=" + std::to_string(s.n) + " K=" + std::to_string(s.k) +
                           " E=" + std::to_string(s.experts) + " T=" + std::to_string(tokens) + " k=" +
                           std::to_string(k) + (shared ? " +shared" : "") + (hot ? " hot" : "") +
                           " seed=" + std::to_string(seed);
  SCOPED_TRACE(what);
  const int64_t m = tokens * k;
  // The combine is fused into the decode ring kernel only. Where the default token-tile steps
  // leave the decode tiles (more than 4 rows per expert, e.g. T=16 k=8 over 16 experts), the ring
  // case forces tile 16 so the fused kernel still meets that many rows per expert.
  const bool force_decode = kern.fuses && cuda::plan_grouped_gemm(m, s.n, s.k, s.experts).tok_tile > 16;
  struct Overrides {  // restored on every exit (an ASSERT returns early)
    Overrides(const Kernel& k, bool force_decode) {
      cuda::set_gemm_decode_ring(k.ring);
      cuda::set_gemm_decode_k_warps(k.k_warps);
      cuda::set_gemm_fused_combine(1);
      if (force_decode) cuda::set_gemm_plan_override(16, 0);
    }
    ~Overrides() {
      cuda::set_gemm_decode_ring(-1);
      cuda::set_gemm_decode_k_warps(-1);
      cuda::set_gemm_fused_combine(-1);
      cuda::set_gemm_plan_override(0, 0, -1, 0);
    }
  } overrides(kern, force_decode);
  ASSERT_EQ(cuda::grouped_gemm_fuses_combine(m, s.n, s.k, s.experts), kern.fuses) << "fused path expected: " << kern.fuses;
  std::mt19937 rng(seed);
  const cuda::PreparedWeights pw{w.get(), s.n, s.k, s.experts};
  std::vector<float> alpha(size_t(2 * s.experts));
  for (auto& a : alpha) a = 0.25f + float(rng() % 100) * 0.01f;
  const auto ids = topk_ids(tokens, k, s.experts, hot, rng);
  const ref::Permutation perm = ref::permute(ids, tokens, k, s.experts);
  std::vector<float> weights(static_cast<size_t>(m));
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  for (auto& x : weights) x = uni(rng);
  DeviceBuffer<uint16_t> a(random_bf16(size_t(m * s.k), rng)), sh(random_bf16(size_t(tokens * s.n), rng));
  DeviceBuffer<float> d_alpha(alpha), d_w(weights);
  DeviceBuffer<int32_t> off(perm.off), p2s(perm.pair_to_sorted);
  const size_t ws_bytes = cuda::grouped_gemm_w4a16_workspace_bytes(m, s.n, s.k, s.experts);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  ws.fill_bytes(0);
  const auto* a_bf = reinterpret_cast<const __nv_bfloat16*>(a.get());
  const auto* sh_bf = shared ? reinterpret_cast<const __nv_bfloat16*>(sh.get()) : nullptr;
  cudaStream_t st;
  NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

  // The two launches.
  DeviceBuffer<uint16_t> rows_ref(size_t(m * s.n)), out_ref(size_t(tokens * s.n));
  rows_ref.fill_bytes(0xff);
  out_ref.fill_bytes(0xff);
  cuda::grouped_gemm_w4a16(a_bf, m, off.get(), pw, d_alpha.get(), rows_ref.get(), cuda::OutDType::kBF16, ws.get(),
                           ws_bytes, st);
  cuda::combine(rows_ref.get(), ActDType::kBF16, d_w.get(), p2s.get(), tokens, k, s.n, sh_bf, out_ref.get(),
                cuda::CombineOutDType::kBF16, st);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(st));
  const auto want_rows = rows_ref.download(), want_out = out_ref.download();

  cuda::GroupedCombine c;
  c.weights = d_w.get();
  c.pair_to_sorted = p2s.get();
  c.tokens = tokens;
  c.top_k = k;
  c.shared = sh_bf;
  DeviceBuffer<uint16_t> rows1(size_t(m * s.n)), out1(size_t(tokens * s.n)), rows2(rows1.size()), out2(out1.size());
  auto fused = [&](DeviceBuffer<uint16_t>& rows, DeviceBuffer<uint16_t>& out) {
    c.out = reinterpret_cast<__nv_bfloat16*>(out.get());
    cuda::grouped_gemm_w4a16_combine(a_bf, m, off.get(), pw, d_alpha.get(), reinterpret_cast<__nv_bfloat16*>(rows.get()),
                                     c, ws.get(), ws_bytes, st);
  };
  // Two calls back to back, no host sync between them: the second finds the counters at zero.
  for (auto* b : {&rows1, &out1, &rows2, &out2}) b->fill_bytes(0xff);
  fused(rows1, out1);
  fused(rows2, out2);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(st));
  EXPECT_TRUE(test::bytes_equal(rows1.download(), want_rows, what + " GEMM rows, first call"));
  EXPECT_TRUE(test::bytes_equal(out1.download(), want_out, what + " combined, first call"));
  EXPECT_TRUE(test::bytes_equal(rows2.download(), want_rows, what + " GEMM rows, second call"));
  EXPECT_TRUE(test::bytes_equal(out2.download(), want_out, what + " combined, second call"));

  // Captured once, replayed twice.
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  fused(rows1, out1);
  NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
  NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int rep = 0; rep < 2; ++rep) {
    out1.fill_bytes(0xff);
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec, st));
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(st));
    EXPECT_TRUE(test::bytes_equal(out1.download(), want_out, what + " combined, graph replay " + std::to_string(rep)));
  }
  NVFP4MOE_CUDA_CHECK(cudaGraphExecDestroy(exec));
  NVFP4MOE_CUDA_CHECK(cudaGraphDestroy(graph));
  NVFP4MOE_CUDA_CHECK(cudaStreamDestroy(st));
}

TEST(GemmCombineGpu, FusedEqualsGemmThenCombine) {
  NVFP4MOE_REQUIRE_GPU();
  // Qwen3's GEMM2, a small N off the 64-column edge, DeepSeek-V3's GEMM2 (32 of its experts).
  const Shape shapes[] = {{2048, 768, 128}, {136, 256, 16}, {7168, 2048, 32}};
  const Kernel kernels[] = {{"ring", 1, 2, true}, {"register", 0, 2, false}};
  uint32_t seed = 11;
  for (const Shape& s : shapes) {
    std::mt19937 rng(seed);
    const DeviceBuffer<uint8_t> w = random_experts(s, rng);
    for (const Kernel& kern : kernels) {
      for (int64_t tokens : {1, 2, 3, 4, 16}) {
        for (int k : {1, 8}) check_fused(s, w, tokens, k, /*shared=*/tokens % 2 == 1, /*hot=*/false, kern, seed++);
      }
    }
  }
}

// The wide decode CTA (4 K warps, K / 128 even; not fused), top-k 2, and one expert in every
// token's first slot (its tiles then hold every token).
TEST(GemmCombineGpu, WideCtaAndHotExpert) {
  NVFP4MOE_REQUIRE_GPU();
  const Kernel wide{"wide", 0, 4, false};
  std::mt19937 rng(100);
  const Shape qwen{2048, 768, 128}, small{1024, 512, 32};
  const DeviceBuffer<uint8_t> w_qwen = random_experts(qwen, rng), w_small = random_experts(small, rng);
  check_fused(qwen, w_qwen, 1, 8, true, false, wide, 101);
  check_fused(small, w_small, 4, 2, false, true, wide, 102);
  check_fused(small, w_small, 16, 8, true, true, {"ring", 1, 2, true}, 103);
}

TEST(GemmCombineGpu, BadArgumentsThrowBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  const Shape s{256, 256, 4};
  std::mt19937 rng(5);
  DeviceBuffer<uint8_t> w = random_experts(s, rng);
  const cuda::PreparedWeights pw{w.get(), s.n, s.k, s.experts};
  DeviceBuffer<float> alpha(size_t(2 * s.experts)), weights(16);
  DeviceBuffer<int32_t> off(size_t(s.experts + 1)), p2s(16);
  DeviceBuffer<uint16_t> a(size_t(16 * s.k)), rows(size_t(16 * s.n)), out(size_t(2 * s.n));
  const size_t ws_bytes = cuda::grouped_gemm_w4a16_workspace_bytes(16, s.n, s.k, s.experts);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  cuda::GroupedCombine c;
  c.weights = weights.get();
  c.pair_to_sorted = p2s.get();
  c.tokens = 2;
  c.top_k = 8;
  c.out = reinterpret_cast<__nv_bfloat16*>(out.get());
  const auto* a_bf = reinterpret_cast<const __nv_bfloat16*>(a.get());
  auto* rows_bf = reinterpret_cast<__nv_bfloat16*>(rows.get());
  auto call = [&](int64_t m, const cuda::GroupedCombine& cc) {
    cuda::grouped_gemm_w4a16_combine(a_bf, m, off.get(), pw, alpha.get(), rows_bf, cc, ws.get(), ws_bytes, nullptr);
  };
  auto expect_error = [&](int64_t m, const cuda::GroupedCombine& cc, const char* needle) {
    try {
      call(m, cc);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(15, c, "c.tokens");  // 2 x 8 != 15
  cuda::GroupedCombine bad = c;
  bad.top_k = 17;
  bad.tokens = 1;
  expect_error(17, bad, "c.top_k");
  bad = c;
  bad.out = nullptr;
  expect_error(16, bad, "c.out");
  bad = c;
  bad.pair_to_sorted = nullptr;
  expect_error(16, bad, "c.pair_to_sorted");
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nvfp4moe
