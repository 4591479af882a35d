// NVFP4 GEMMs on Hopper (cuda/gemm.h) against the CPU golden model (ref/gemm.h) on the same
// quantized inputs: a tolerance mode (random data, fp32 output, global relative error <= 1e-5:
// only the fp32 summation order differs) and an exact mode (small-integer activations,
// power-of-two scales, every partial sum exact) that must match bit for bit in bf16 and fp32.
// Shapes sweep M over {0,1,2,3,16,19,127,128,1000,4096,16384}, N and K on and off the 128
// tile edges, grouped with 1/8/128/256 experts, empty experts, one expert taking every row.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/weights.h"
#include "nvfp4moe/format/e4m3.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/ref/gemm.h"
#include "test_quantize_util.h"  // to_gemm_k_order

namespace nvfp4moe::test {
namespace {

using cuda::OutDType;

enum class Mode { kRandom, kExact };

// A block-scale byte: exact mode -> powers of two 2^-2..2^1; random -> mostly normal values
// around 1 with some zeros and subnormals.
uint8_t random_scale(std::mt19937& rng, Mode mode) {
  if (mode == Mode::kExact) return uint8_t((5 + rng() % 4) << 3);  // 2^-2 .. 2^1
  uint32_t r = rng() % 64;
  if (r == 0) return 0;
  if (r == 1) return uint8_t(1 + rng() % 7);  // subnormal
  return uint8_t(0x28 + rng() % 0x28);        // 2^-2 .. ~2^3
}

uint16_t random_act(std::mt19937& rng, Mode mode) {
  if (mode == Mode::kExact) return bf16_from_float(float(int(rng() % 9) - 4));
  return bf16_from_float(std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng));
}

// One expert's weight in the checkpoint layout plus its swizzled copy for the golden model.
struct HostWeight {
  std::vector<uint8_t> codes, scales_rm, scales_sw;
};

HostWeight make_weight(std::mt19937& rng, int64_t n, int64_t k, Mode mode) {
  HostWeight w;
  w.codes.resize(size_t(n * k / 2));
  for (size_t i = 0; i < w.codes.size(); i += 4) {  // 4 code bytes per draw: the host work of the
    const uint32_t v = rng();                        // 256-expert cases is mostly this loop
    for (size_t b = 0; b < 4 && i + b < w.codes.size(); ++b) w.codes[i + b] = uint8_t(v >> (8 * b));
  }
  w.scales_rm.resize(size_t(n * k / 16));
  for (auto& s : w.scales_rm) s = random_scale(rng, mode);
  w.scales_sw.assign(size_t(swizzled_scale_bytes(n, k)), 0);
  int64_t pc = padded_scale_cols(k);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k / 16; ++c)
      w.scales_sw[size_t(swizzled_scale_offset(r, c, pc))] = w.scales_rm[size_t(r * (k / 16) + c)];
  return w;
}

// Everything one case needs on the host and device.
struct Case {
  bool w4a4 = false, grouped = false;
  int64_t rows = 0, n = 0, k = 0;
  int experts = 1;
  std::vector<int32_t> off;  // grouped
  Mode mode = Mode::kRandom;
  OutDType out_dtype = OutDType::kFP32;
  uint32_t seed = 1;
  bool prefetch_before_wait = false;  // grouped W4A16: the early L2 prefetch hint
};

std::string describe(const Case& c) {
  return detail::concat(c.w4a4 ? "W4A4" : "W4A16", c.grouped ? " grouped" : " single", " rows=", c.rows,
                        " N=", c.n, " K=", c.k, " E=", c.experts,
                        c.mode == Mode::kExact ? " exact" : " random",
                        c.out_dtype == OutDType::kFP32 ? " fp32" : " bf16", " seed=", c.seed);
}

struct Prepared {
  std::vector<float> want;            // golden, [off[E] or rows, N] float32
  int64_t valid_rows = 0;
  DeviceBuffer<uint16_t> a;           // W4A16 activations
  DeviceBuffer<uint8_t> a_codes, a_scales;
  int64_t scale_rows = 0;
  DeviceBuffer<uint8_t> w;
  DeviceBuffer<float> alpha;
  DeviceBuffer<int32_t> off;
  cuda::PreparedWeights pw;
};

Prepared prepare(const Case& c) {
  std::mt19937 rng(c.seed);
  Prepared p;
  const int64_t n = c.n, k = c.k, e_count = c.experts;
  std::vector<HostWeight> hw;
  std::vector<uint8_t> wbytes;
  int64_t wb = cuda::prepared_weight_bytes(n, k);
  wbytes.resize(size_t(wb * e_count));
  for (int64_t e = 0; e < e_count; ++e) {
    hw.push_back(make_weight(rng, n, k, c.mode));
    cuda::prepare_weight(hw.back().codes, hw.back().scales_rm, n, k,
                         std::span<uint8_t>(wbytes.data() + e * wb, size_t(wb)));
  }
  p.w = DeviceBuffer<uint8_t>(wbytes);
  p.pw = cuda::PreparedWeights{p.w.get(), n, k, int(e_count)};
  std::vector<ref::Nvfp4View> views;
  for (auto& h : hw) views.push_back(ref::Nvfp4View{h.codes, h.scales_sw, n, k});
  std::vector<ref::HalfAlpha> alphas;
  std::vector<float> alpha_flat;
  for (int64_t e = 0; e < e_count; ++e) {
    ref::HalfAlpha a;
    if (c.mode == Mode::kExact) { a.lo = e % 2 ? 0.5f : 2.0f; a.hi = e % 2 ? 4.0f : 0.25f; }
    else { a.lo = 0.37f + 0.01f * float(e); a.hi = 1.7f - 0.003f * float(e); }
    alphas.push_back(a);
    alpha_flat.push_back(a.lo);
    alpha_flat.push_back(a.hi);
  }
  p.alpha = DeviceBuffer<float>(alpha_flat);
  std::vector<int32_t> off = c.grouped ? c.off : std::vector<int32_t>{0, int32_t(c.rows)};
  if (c.grouped) p.off = DeviceBuffer<int32_t>(off);
  p.valid_rows = off.back();
  p.want.assign(size_t(p.valid_rows * n), 0.0f);
  if (!c.w4a4) {
    std::vector<uint16_t> a(size_t(c.rows * k));
    for (auto& v : a) v = random_act(rng, c.mode);
    p.a = DeviceBuffer<uint16_t>(a);
    if (p.valid_rows > 0) {
      if (c.grouped) ref::grouped_gemm_w4a16(a, ActDType::kBF16, k, off, views, alphas, p.want);
      else ref::gemm_w4a16(a, ActDType::kBF16, c.rows, views[0], alphas[0], p.want);
    }
  } else {
    std::vector<uint8_t> codes(size_t(c.rows * k / 2));
    for (auto& b : codes) b = uint8_t(rng());
    int64_t pc = padded_scale_cols(k);
    p.scale_rows = c.grouped ? expert_scale_rows_capacity(c.rows, e_count) : padded_scale_rows(c.rows);
    std::vector<uint8_t> scales(size_t(p.scale_rows * pc), 0);
    std::vector<int32_t> sf(size_t(off.size()));
    expert_scale_offsets(off.data(), int(off.size() - 1), sf.data());
    for (size_t e = 0; e + 1 < off.size(); ++e)
      for (int64_t r = off[e]; r < off[e + 1]; ++r)
        for (int64_t cc = 0; cc < k / 16; ++cc)
          scales[size_t(swizzled_scale_offset(sf[e] + (r - off[e]), cc, pc))] = random_scale(rng, c.mode);
    p.a_codes = DeviceBuffer<uint8_t>(codes);
    p.a_scales = DeviceBuffer<uint8_t>(scales);
    if (p.valid_rows > 0) {
      if (c.grouped) {
        ref::grouped_gemm_w4a4(codes, scales, p.scale_rows, k, off, views, alphas, p.want);
      } else {
        ref::Nvfp4View av{codes, std::span<const uint8_t>(scales.data(), size_t(swizzled_scale_bytes(c.rows, k))),
                          c.rows, k};
        ref::gemm_w4a4(av, views[0], alphas[0], p.want);
      }
    }
  }
  return p;
}

size_t workspace_for(const Case& c) {
  if (c.grouped) {
    return c.w4a4 ? cuda::grouped_gemm_w4a4_workspace_bytes(c.rows, c.n, c.k, c.experts)
                  : cuda::grouped_gemm_w4a16_workspace_bytes(c.rows, c.n, c.k, c.experts);
  }
  return c.w4a4 ? cuda::gemm_w4a4_workspace_bytes(c.rows, c.n, c.k)
                : cuda::gemm_w4a16_workspace_bytes(c.rows, c.n, c.k);
}

void launch(const Case& c, Prepared& p, void* out, void* ws, size_t ws_bytes, cudaStream_t s) {
  const auto* a = reinterpret_cast<const __nv_bfloat16*>(p.a.get());
  cuda::Nvfp4Act act{p.a_codes.get(), p.a_scales.get(), p.scale_rows};
  if (c.grouped) {
    if (c.w4a4) cuda::grouped_gemm_w4a4(act, c.rows, p.off.get(), p.pw, p.alpha.get(), out, c.out_dtype, ws, ws_bytes, s);
    else cuda::grouped_gemm_w4a16(a, c.rows, p.off.get(), p.pw, p.alpha.get(), out, c.out_dtype, ws, ws_bytes, s,
                                  c.prefetch_before_wait);
  } else {
    if (c.w4a4) cuda::gemm_w4a4(act, c.rows, p.pw, p.alpha.get(), out, c.out_dtype, ws, ws_bytes, s);
    else cuda::gemm_w4a16(a, c.rows, p.pw, p.alpha.get(), out, c.out_dtype, ws, ws_bytes, s);
  }
}

// One launch of c captured into an instantiated CUDA graph (destroyed with the object).
class CapturedLaunch {
 public:
  CapturedLaunch(const Case& c, Prepared& p, void* out, void* ws, size_t ws_bytes, cudaStream_t s) {
    NVFP4MOE_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    launch(c, p, out, ws, ws_bytes, s);
    NVFP4MOE_CUDA_CHECK(cudaStreamEndCapture(s, &graph_));
    NVFP4MOE_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  ~CapturedLaunch() {
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  CapturedLaunch(const CapturedLaunch&) = delete;
  CapturedLaunch& operator=(const CapturedLaunch&) = delete;
  // Replays the graph on s and waits for it.
  void replay(cudaStream_t s) {
    NVFP4MOE_CUDA_CHECK(cudaGraphLaunch(exec_, s));
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
  }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// Claimed tiles leave their counter at zero for the next call: two calls back to back on one
// stream and workspace with no host sync between them (the second one's claims start while the
// first may still be finishing, under PDL), then graph replays, each equal to `expected`.
void expect_chained_and_replayed(const Case& c, Prepared& p, DeviceBuffer<uint8_t>& out, void* ws, size_t ws_bytes,
                                 cudaStream_t s, const std::vector<uint8_t>& expected, const std::string& what,
                                 int replays) {
  DeviceBuffer<uint8_t> out2(out.size());
  out.fill_bytes(0xff);
  out2.fill_bytes(0xff);
  launch(c, p, out.get(), ws, ws_bytes, s);
  launch(c, p, out2.get(), ws, ws_bytes, s);
  NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
  EXPECT_TRUE(bytes_equal(out.download(), expected, describe(c) + " " + what + ", first of two chained calls"));
  EXPECT_TRUE(bytes_equal(out2.download(), expected, describe(c) + " " + what + ", second of two chained calls"));
  CapturedLaunch graph(c, p, out.get(), ws, ws_bytes, s);
  for (int rep = 0; rep < replays; ++rep) {
    out.fill_bytes(0xff);
    graph.replay(s);
    EXPECT_TRUE(bytes_equal(out.download(), expected, describe(c) + " " + what + ", graph replay " + std::to_string(rep)));
  }
}

// Output as float (from bf16 or fp32 bytes).
std::vector<float> to_float(const std::vector<uint8_t>& bytes, OutDType t) {
  size_t n = t == OutDType::kFP32 ? bytes.size() / 4 : bytes.size() / 2;
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == OutDType::kFP32) std::memcpy(&f[i], bytes.data() + 4 * i, 4);
    else { uint16_t b; std::memcpy(&b, bytes.data() + 2 * i, 2); f[i] = bf16_to_float(b); }
  }
  return f;
}

::testing::AssertionResult check(const Case& c, const Prepared& p, const std::vector<uint8_t>& got_bytes) {
  const size_t esz = c.out_dtype == OutDType::kFP32 ? 4 : 2;
  const size_t valid = size_t(p.valid_rows * c.n);
  // Rows past off[E] must be untouched (poisoned with 0xff).
  for (size_t i = valid * esz; i < got_bytes.size(); ++i) {
    if (got_bytes[i] != 0xff)
      return ::testing::AssertionFailure() << describe(c) << ": wrote row " << i / esz / c.n << " past off[E]";
  }
  std::vector<uint8_t> head(got_bytes.begin(), got_bytes.begin() + valid * esz);
  std::vector<float> got = to_float(head, c.out_dtype);
  if (c.mode == Mode::kExact) {
    if (c.out_dtype == OutDType::kFP32) return bytes_equal(got, p.want, describe(c));
    std::vector<uint16_t> want16(p.want.size()), got16(got.size());
    ref::round_to_act(p.want, ActDType::kBF16, want16);
    for (size_t i = 0; i < got.size(); ++i) got16[i] = bf16_from_float(got[i]);
    return bytes_equal(got16, want16, describe(c));
  }
  double max_ref = 0, max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(p.want[i])));
    double tol_bf16 = c.out_dtype == OutDType::kBF16 ? std::ldexp(std::fabs(double(p.want[i])), -8) : 0.0;
    double err = std::max(0.0, std::fabs(double(got[i]) - double(p.want[i])) - tol_bf16);
    if (!(err <= max_err)) { max_err = std::isnan(err) ? INFINITY : err; worst = i; }
  }
  if (max_err <= 1e-5 * max_ref) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << describe(c) << ": relative error " << max_err / max_ref
                                       << " > 1e-5 at (" << worst / c.n << ", " << worst % c.n << "): got "
                                       << got[worst] << ", want " << p.want[worst];
}

// Runs c with a given workspace (zeroed once by the caller, possibly used by earlier calls).
::testing::AssertionResult run_case_in(const Case& c, void* ws, size_t ws_bytes) {
  Prepared p = prepare(c);
  const size_t esz = c.out_dtype == OutDType::kFP32 ? 4 : 2;
  DeviceBuffer<uint8_t> out(std::max<size_t>(1, size_t(c.rows * c.n) * esz));
  out.fill_bytes(0xff);
  launch(c, p, out.get(), ws, ws_bytes, nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint8_t> got = out.download();
  got.resize(size_t(c.rows * c.n) * esz);
  return check(c, p, got);
}

// ws_rows > 0: size the workspace for that many rows instead of c.rows (the *_workspace_bytes
// functions promise enough for every batch up to their row count).
::testing::AssertionResult run_case(const Case& c, int64_t ws_rows = 0) {
  Case sized = c;
  if (ws_rows > 0) sized.rows = ws_rows;
  const size_t ws_bytes = workspace_for(sized);
  DeviceBuffer<uint8_t> ws(std::max<size_t>(ws_bytes, 16));
  ws.fill_bytes(0);
  return run_case_in(c, ws.get(), ws_bytes);
}

// Offsets over E experts for `rows` rows: balanced-random, with some experts empty.
std::vector<int32_t> random_offsets(std::mt19937& rng, int64_t rows, int experts, int empty_every) {
  std::vector<int64_t> cnt(size_t(experts), 0);
  std::vector<int> live;
  for (int e = 0; e < experts; ++e) if (empty_every == 0 || e % empty_every != 1) live.push_back(e);
  for (int64_t r = 0; r < rows; ++r) cnt[size_t(live[rng() % live.size()])]++;
  std::vector<int32_t> off(size_t(experts + 1), 0);
  for (int e = 0; e < experts; ++e) off[size_t(e + 1)] = off[size_t(e)] + int32_t(cnt[size_t(e)]);
  return off;
}

TEST(GemmSm90, SingleW4A16Sweep) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 100;
  for (int64_t m : {0, 1, 2, 3, 16, 19, 127, 128, 1000}) {
    for (auto nk : {std::pair<int64_t, int64_t>{128, 128}, {200, 144}, {256, 2048}, {1, 16}}) {
      for (Mode mode : {Mode::kRandom, Mode::kExact}) {
        for (OutDType od : {OutDType::kFP32, OutDType::kBF16}) {
          Case c{false, false, m, nk.first, nk.second, 1, {}, mode, od, seed++};
          EXPECT_TRUE(run_case(c));
        }
      }
    }
  }
}

// One workspace sized for the largest batch serves every smaller one, although smaller batches
// take other kernels (decode / wgmma), split counts and activation layouts.
TEST(GemmSm90, WorkspaceForMaxRowsServesSmallerBatches) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 300;
  std::mt19937 rng(77);
  for (int64_t m : {1, 5, 9, 17, 33, 65, 129, 300}) {
    for (bool w4a4 : {false, true}) {
      EXPECT_TRUE(run_case(Case{w4a4, false, m, 256, 2048, 1, {}, Mode::kRandom, OutDType::kBF16, seed++}, 300));
      EXPECT_TRUE(run_case(Case{w4a4, true, m, 192, 1024, 8, random_offsets(rng, m, 8, 3), Mode::kRandom,
                                OutDType::kBF16, seed++}, 300));
    }
  }
}

// As the MoE layer's two GEMMs share one workspace: calls of other shapes, row counts and split
// counts in sequence on one workspace, zeroed once. Split-K leaves partial sums behind, and the
// next call's split-K counters must not land on them.
TEST(GemmSm90, OneWorkspaceServesCallsOfDifferentShapes) {
  NVFP4MOE_REQUIRE_GPU();
  std::mt19937 rng(123);
  uint32_t seed = 700;
  std::vector<Case> cases;
  for (bool w4a4 : {false, true}) {
    cases.push_back(Case{w4a4, false, 1, 512, 7168, 1, {}, Mode::kRandom, OutDType::kBF16, seed++});  // many splits
    cases.push_back(Case{w4a4, false, 1, 256, 2048, 1, {}, Mode::kRandom, OutDType::kBF16, seed++});
    cases.push_back(Case{w4a4, false, 3, 520, 4112, 1, {}, Mode::kExact, OutDType::kFP32, seed++});
    cases.push_back(Case{w4a4, true, 2, 192, 2048, 8, random_offsets(rng, 2, 8, 0), Mode::kRandom, OutDType::kBF16, seed++});
    cases.push_back(Case{w4a4, false, 16, 136, 1024, 1, {}, Mode::kRandom, OutDType::kBF16, seed++});
    cases.push_back(Case{w4a4, true, 40, 256, 1024, 8, random_offsets(rng, 40, 8, 3), Mode::kRandom, OutDType::kBF16, seed++});
  }
  ASSERT_GT(cuda::plan_gemm(1, 512, 7168).splits, cuda::plan_gemm(1, 256, 2048).splits) << "the test needs split-K";
  size_t bytes = 16;
  for (const Case& c : cases) bytes = std::max(bytes, workspace_for(c));
  DeviceBuffer<uint8_t> ws(bytes);
  ws.fill_bytes(0);
  for (int round = 0; round < 2; ++round)
    for (const Case& c : cases) EXPECT_TRUE(run_case_in(c, ws.get(), bytes)) << "round " << round << ": " << describe(c);
}

// The tuning override selects paths the heuristics do not take today (grouped split-K in the
// decode kernel, token tiles forced against the row counts, L2 prefetch off or reaching past
// the tile's end). They must be exact all the same.
TEST(GemmSm90, TuningOverridesGroupedSplitK) {
  NVFP4MOE_REQUIRE_GPU();
  struct Reset { ~Reset() { cuda::set_gemm_plan_override(0, 0, -1, 0); } } reset;
  std::mt19937 rng(91);
  uint32_t seed = 400;
  for (auto o : {std::array<int, 3>{8, 3, -1}, {16, 2, 0}, {8, 1, 1000}, {64, 0, -1}, {8, 0, 0}, {16, 0, 3}}) {
    cuda::set_gemm_plan_override(o[0], o[1], o[2]);
    for (bool w4a4 : {false, true}) {
      EXPECT_TRUE(run_case(Case{w4a4, true, 40, 256, 1024, 8, random_offsets(rng, 40, 8, 3), Mode::kRandom,
                                OutDType::kBF16, seed++}));
      EXPECT_TRUE(run_case(Case{w4a4, true, 12, 136, 2048, 4, random_offsets(rng, 12, 4, 0), Mode::kExact,
                                OutDType::kFP32, seed++}));
    }
    EXPECT_TRUE(run_case(Case{false, false, 1, 256, 2048, 1, {}, Mode::kRandom, OutDType::kBF16, seed++}));
  }
}

// 256 weight rows per CTA (4 warpgroups), forced for every wgmma call: N with Np = 128 mod 256
// (the CTA's second row block lies past the weights and must be zero-filled and masked), N off
// the 128 edge, token tiles 64 and 128 with partial tiles, short and long K (tile boundaries of
// the persistent pipeline), single and grouped with empty experts, exact and random.
TEST(GemmSm90, WideTilesTwoHundredFiftySixRows) {
  NVFP4MOE_REQUIRE_GPU();
  struct Reset { ~Reset() { cuda::set_gemm_plan_override(0, 0, -1, 0); } } reset;
  std::mt19937 rng(77);
  uint32_t seed = 900;
  for (int tok : {64, 128}) {
    cuda::set_gemm_plan_override(tok, 0, -1, 256);
    ASSERT_EQ(cuda::plan_gemm(300, 384, 256).block_n, 256);
    for (bool w4a4 : {false, true}) {
      for (auto nk : {std::pair<int64_t, int64_t>{384, 256}, {136, 1024}, {520, 144}, {512, 2048}}) {
        EXPECT_TRUE(run_case(Case{w4a4, false, 300, nk.first, nk.second, 1, {}, Mode::kExact, OutDType::kBF16,
                                  seed++}));
        EXPECT_TRUE(run_case(Case{w4a4, false, 131, nk.first, nk.second, 1, {}, Mode::kRandom, OutDType::kFP32,
                                  seed++}));
      }
      EXPECT_TRUE(run_case(Case{w4a4, true, 1005, 384, 512, 8, random_offsets(rng, 1000, 8, 3), Mode::kExact,
                                OutDType::kBF16, seed++}));
      EXPECT_TRUE(run_case(Case{w4a4, true, 700, 136, 256, 128, random_offsets(rng, 700, 128, 5), Mode::kRandom,
                                OutDType::kFP32, seed++}));
    }
  }
}

// Runs c with select(0), then select(1) (two ways to run the same MMAs in the same order); checks
// the second against the model and both outputs equal byte for byte.
::testing::AssertionResult same_both_ways(const Case& c, void (*select)(int), const std::string& what) {
  Prepared p = prepare(c);
  const size_t esz = c.out_dtype == OutDType::kFP32 ? 4 : 2;
  std::vector<uint8_t> results[2];
  for (int mode : {0, 1}) {
    select(mode);
    const size_t ws_bytes = workspace_for(c);
    DeviceBuffer<uint8_t> ws(std::max<size_t>(ws_bytes, 16));
    ws.fill_bytes(0);
    DeviceBuffer<uint8_t> out(std::max<size_t>(1, size_t(c.rows * c.n) * esz));
    out.fill_bytes(0xff);
    launch(c, p, out.get(), ws.get(), ws_bytes, nullptr);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    results[mode] = out.download();
    results[mode].resize(size_t(c.rows * c.n) * esz);
  }
  auto model = check(c, p, results[1]);
  if (!model) return model << " (" << what << ")";
  return bytes_equal(results[1], results[0], describe(c) + ": " + what);
}

// The warp-specialized 256-row kernel against the 4-warpgroup cp.async kernel.
::testing::AssertionResult same_with_and_without_ws(const Case& c) {
  return same_both_ways(c, cuda::set_gemm_ws_pipeline, "warp-specialized vs cp.async kernel");
}

struct ResetPlanOverrides {
  ~ResetPlanOverrides() {
    cuda::set_gemm_plan_override(0, 0, -1, 0);
    cuda::set_gemm_ws_pipeline(-1);
    cuda::set_gemm_hot_expert_rows(-1);
    cuda::set_gemm_ws_width_step(0);
    cuda::set_gemm_ws_staged_epilogue(-1);
    cuda::set_gemm_ws_single_fit(-1);
    cuda::set_gemm_ws_single_persistent(-1);
    cuda::set_gemm_act_chunk_stores(-1);
    cuda::set_gemm_ws_consumers(0);
  }
};

// A few small cases of the cp.async wgmma kernel for compute-sanitizer (gpu-check runs *Small*
// there): a 256-row CTA with its second half past Np (the warp-specialized kernel off), a grouped
// call of one-stage tiles, split-K.
TEST(GemmSm90, CpAsyncKernelSmall) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(0);
  std::mt19937 rng(4343);
  cuda::set_gemm_plan_override(64, 0, -1, 256);
  EXPECT_TRUE(run_case(Case{true, false, 70, 384, 272, 1, {}, Mode::kExact, OutDType::kBF16, 1300}));
  cuda::set_gemm_plan_override(32, 0, -1, 0);
  EXPECT_TRUE(run_case(Case{false, true, 200, 256, 144, 8, random_offsets(rng, 190, 8, 3), Mode::kRandom,
                            OutDType::kFP32, 1301}));
  cuda::set_gemm_plan_override(0, 0, -1, 0);
  EXPECT_TRUE(run_case(Case{false, false, 20, 256, 1024, 1, {}, Mode::kRandom, OutDType::kBF16, 1302}));
}

// The cp.async wgmma kernel against the golden model (the warp-specialized kernel off, so the
// 256-row CTAs run it too): every token tile and CTA width, N with Np = 128 mod 256 (a 256-row
// CTA's second half zero-filled), K of one stage and of many (persistent CTAs crossing tile
// boundaries with the ring full), split-K, grouped with empty experts and one expert taking
// every row. (Until v36 these cases compared it with its TMA variant, removed.)
TEST(GemmSm90, CpAsyncKernelMatchesModel) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(0);
  std::mt19937 rng(4242);
  uint32_t seed = 1200;
  struct Tiles { int tok, block_n; };
  for (Tiles t : {Tiles{0, 0}, Tiles{32, 0}, Tiles{64, 128}, Tiles{64, 256}, Tiles{128, 128}, Tiles{128, 256}}) {
    cuda::set_gemm_plan_override(t.tok, 0, -1, t.block_n);
    for (bool w4a4 : {false, true}) {
      for (auto nk : {std::pair<int64_t, int64_t>{384, 256}, {136, 1024}, {520, 144}}) {
        EXPECT_TRUE(run_case(Case{w4a4, false, 300, nk.first, nk.second, 1, {}, Mode::kExact, OutDType::kBF16, seed++}));
        EXPECT_TRUE(run_case(Case{w4a4, false, 131, nk.first, nk.second, 1, {}, Mode::kRandom, OutDType::kFP32, seed++}));
      }
      EXPECT_TRUE(run_case(Case{w4a4, true, 1005, 384, 512, 8, random_offsets(rng, 1000, 8, 3), Mode::kExact,
                                OutDType::kBF16, seed++}));
      EXPECT_TRUE(run_case(Case{w4a4, true, 700, 136, 16, 64, random_offsets(rng, 690, 64, 9), Mode::kRandom,
                                OutDType::kFP32, seed++}));
    }
  }
  cuda::set_gemm_plan_override(0, 0, -1, 0);
  // Split-K of the 128-row CTA (few tiles, long K), and the heuristics' own grouped tiles.
  ASSERT_GT(cuda::plan_gemm(40, 512, 7168).splits, 1);
  EXPECT_TRUE(run_case(Case{false, false, 40, 512, 7168, 1, {}, Mode::kRandom, OutDType::kFP32, seed++}));
  EXPECT_TRUE(run_case(Case{true, false, 100, 520, 4112, 1, {}, Mode::kExact, OutDType::kBF16, seed++}));
  for (int experts : {8, 256}) {
    std::vector<int32_t> off(size_t(experts + 1), 0);
    for (int e = experts / 2 + 1; e <= experts; ++e) off[size_t(e)] = 700;  // expert E/2 owns all
    EXPECT_TRUE(run_case(Case{false, true, 700, 256, 512, experts, off, Mode::kRandom, OutDType::kBF16, seed++}));
  }
  EXPECT_TRUE(run_case(Case{true, true, 8192, 256, 1024, 256, random_offsets(rng, 8000, 256, 7), Mode::kRandom,
                            OutDType::kBF16, seed++}));
}

// A few small cases of the warp-specialized kernel for compute-sanitizer (gpu-check runs
// *Small* there): a CTA whose second 128 rows lie past Np; slots refilled (K longer than the
// ring: 8 stages through 6 slots at token tile 64, 4 through 3 at 160); a grouped call with
// empty experts whose CTAs run several tiles each (more tiles than SMs).
TEST(GemmSm90, WarpSpecializedSmall) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  std::mt19937 rng(4545);
  cuda::set_gemm_plan_override(64, 0, -1, 256);
  EXPECT_TRUE(same_with_and_without_ws(Case{true, false, 70, 384, 272, 1, {}, Mode::kExact, OutDType::kBF16, 1500}));
  EXPECT_TRUE(same_with_and_without_ws(Case{false, false, 100, 256, 1024, 1, {}, Mode::kRandom, OutDType::kBF16, 1501}));
  EXPECT_TRUE(same_with_and_without_ws(Case{false, true, 6400, 512, 256, 64, random_offsets(rng, 6400, 64, 5),
                                            Mode::kRandom, OutDType::kBF16, 1502}));
  cuda::set_gemm_plan_override(128, 0, -1, 256);
  EXPECT_TRUE(same_with_and_without_ws(Case{false, true, 300, 256, 512, 8, random_offsets(rng, 290, 8, 3),
                                            Mode::kRandom, OutDType::kFP32, 1503}));
  cuda::set_gemm_ws_width_step(16);  // MMA widths in steps of 16 (16..160)
  EXPECT_TRUE(same_with_and_without_ws(Case{false, true, 700, 256, 512, 16, random_offsets(rng, 690, 16, 4),
                                            Mode::kRandom, OutDType::kBF16, 1505}));
  cuda::set_gemm_ws_width_step(0);
  EXPECT_TRUE(same_with_and_without_ws(Case{false, false, 300, 520, 384, 1, {}, Mode::kRandom, OutDType::kBF16, 1504}));
}

// The same small cases at token tile 64 on 4 consumer warpgroups (set_gemm_ws_consumers(4), v34),
// for compute-sanitizer (gpu-quick's part `cons` runs racecheck over it): a CTA's last blocks past
// Np; 8 stages through 6 slots; a grouped call of 8-stage tiles, two for some CTAs (~192 tiles:
// the first tile's staged outputs sit in the slot its second tile's sixth stage refills); 2000
// rows over 128 experts (MMA width 32).
TEST(GemmSm90, WarpSpecializedFourConsumersSmall) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  std::mt19937 rng(4949);
  cuda::set_gemm_plan_override(64, 0, -1, 256);
  cuda::set_gemm_ws_consumers(4);
  EXPECT_TRUE(same_with_and_without_ws(Case{true, false, 70, 384, 272, 1, {}, Mode::kExact, OutDType::kBF16, 1506}));
  EXPECT_TRUE(same_with_and_without_ws(Case{false, false, 100, 256, 1024, 1, {}, Mode::kRandom, OutDType::kBF16, 1507}));
  EXPECT_TRUE(same_with_and_without_ws(Case{true, true, 3200, 768, 1024, 64, random_offsets(rng, 3200, 64, 0),
                                            Mode::kRandom, OutDType::kBF16, 1508}));
  EXPECT_TRUE(same_with_and_without_ws(Case{true, true, 2000, 256, 512, 128, random_offsets(rng, 2000, 128, 9),
                                            Mode::kRandom, OutDType::kBF16, 1509}));
}

// The staged epilogue of the warp-specialized kernel (stmatrix into the last stage's slot, 16-byte
// stores) writes the same bytes as the cp.async kernel: token tiles 64 (one pass), 128 (two) and
// 160 (grouped: passes of 64, 64, 32), tiles of every MMA width with partial rows, N off the
// 256-row block edge (the second consumer's columns masked by whole chunks), grouped calls with
// several tiles per CTA (a slot staged, released, refilled by TMA and staged again), and the calls
// it leaves to the direct epilogue (fp32 output, n % 8 != 0).
TEST(GemmSm90, WarpSpecializedStagedEpilogue) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(1);
  cuda::set_gemm_ws_staged_epilogue(1);
  std::mt19937 rng(4747);
  uint32_t seed = 1700;
  for (int tok : {64, 128}) {
    cuda::set_gemm_plan_override(tok, 0, -1, 256);
    for (bool w4a4 : {false, true}) {
      for (auto nk : {std::pair<int64_t, int64_t>{384, 256}, {136, 1024}, {520, 144}, {130, 512}}) {
        EXPECT_TRUE(same_with_and_without_ws(
            Case{w4a4, false, 300, nk.first, nk.second, 1, {}, Mode::kRandom, OutDType::kBF16, seed++}));
      }
      EXPECT_TRUE(same_with_and_without_ws(
          Case{w4a4, false, 131, 384, 256, 1, {}, Mode::kRandom, OutDType::kFP32, seed++}));
      EXPECT_TRUE(same_with_and_without_ws(Case{w4a4, true, 1005, 384, 512, 8, random_offsets(rng, 1000, 8, 3),
                                                Mode::kExact, OutDType::kBF16, seed++}));
    }
  }
  cuda::set_gemm_plan_override(128, 0, -1, 256);  // grouped: token tile 160
  const std::vector<int32_t> sizes{0, 1, 17, 33, 63, 64, 65, 97, 128, 129, 159, 160, 161, 250, 321};
  std::vector<int32_t> off{0};
  for (int32_t r : sizes) off.push_back(off.back() + r);
  for (bool w4a4 : {false, true}) {
    EXPECT_TRUE(same_with_and_without_ws(Case{w4a4, true, off.back(), 520, 512, int(sizes.size()), off,
                                              Mode::kRandom, OutDType::kBF16, seed++}));
  }
  EXPECT_TRUE(same_with_and_without_ws(Case{false, false, 17000, 256, 128, 1, {}, Mode::kRandom, OutDType::kBF16,
                                            seed++}));
  // K of 16 stages (every slot refilled several times within a tile) and more tiles than an
  // H100/H200 has SMs: a single call has one CTA per tile (32 x 5 = 160 CTAs), the persistent
  // grouped call (40 experts x 5 = 200 tiles at token tile 160 over at most one CTA per SM) makes
  // CTAs take a second tile after a staged epilogue, in a slot released and refilled by TMA.
  cuda::set_gemm_plan_override(128, 0, -1, 256);
  EXPECT_TRUE(same_with_and_without_ws(Case{false, false, 4000, 1040, 1024, 1, {}, Mode::kRandom, OutDType::kBF16,
                                            seed++}));
  EXPECT_TRUE(same_with_and_without_ws(Case{true, true, 4000, 1040, 1024, 40, random_offsets(rng, 4000, 40, 0),
                                            Mode::kRandom, OutDType::kBF16, seed++}));
}

// The warp-specialized kernel (GemmPlan::ws) equals the model and the cp.async kernel bit for
// bit: token tiles 64 and 128 (grouped: balanced tiles of up to 160 rows; narrow MMAs for thin
// tiles included, an element's sum does not depend on the MMA's width), W4A16 and W4A4, N at and
// off the 256-row block edge (Np = 128 mod 256: the second consumer's rows are masked), K of
// one to 56 stages (several rounds of every slot), grouped with empty experts, one expert
// taking every row, and 256 experts.
TEST(GemmSm90, WarpSpecializedMatchesModelAndCpAsync) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(1);
  ASSERT_TRUE(cuda::plan_gemm(4096, 4096, 7168).ws);
  ASSERT_EQ(cuda::plan_gemm(4096, 4096, 7168).block_n, 256);
  ASSERT_FALSE(cuda::plan_gemm(1, 384, 256).ws) << "the decode kernel has no warp-specialized variant";
  std::mt19937 rng(4646);
  uint32_t seed = 1600;
  struct Tiles { int tok, block_n; };
  for (Tiles t : {Tiles{64, 256}, Tiles{128, 256}}) {
    cuda::set_gemm_plan_override(t.tok, 0, -1, t.block_n);
    for (bool w4a4 : {false, true}) {
      for (auto nk : {std::pair<int64_t, int64_t>{384, 256}, {136, 1024}, {520, 144}, {256, 7168}}) {
        EXPECT_TRUE(same_with_and_without_ws(
            Case{w4a4, false, 300, nk.first, nk.second, 1, {}, Mode::kExact, OutDType::kBF16, seed++}));
        EXPECT_TRUE(same_with_and_without_ws(
            Case{w4a4, false, 131, nk.first, nk.second, 1, {}, Mode::kRandom, OutDType::kFP32, seed++}));
      }
      EXPECT_TRUE(same_with_and_without_ws(Case{w4a4, true, 1005, 384, 512, 8, random_offsets(rng, 1000, 8, 3),
                                                Mode::kExact, OutDType::kBF16, seed++}));
      EXPECT_TRUE(same_with_and_without_ws(Case{w4a4, true, 700, 136, 16, 64, random_offsets(rng, 690, 64, 9),
                                                Mode::kRandom, OutDType::kFP32, seed++}));
    }
  }
  // Grouped calls at token tile 128 run balanced tiles of up to 160 rows: experts on both sides
  // of every MMA width (16, 32, ..., 160; with steps of 32: 32, 64, ..., 160) and of the tile
  // counts (160 / 161, 320 / 321).
  {
    cuda::set_gemm_plan_override(128, 0, -1, 256);
    const std::vector<int32_t> sizes{0,  1,   15,  16,  17,  31,  33,  48,  49,  64,  65,  80,  81,  96,  97,  112, 113,
                                     128, 129, 140, 144, 145, 159, 160, 161, 250, 320, 321, 480, 500};
    std::vector<int32_t> off{0};
    for (int32_t r : sizes) off.push_back(off.back() + r);
    const int64_t rows = off.back();
    for (int step : {16, 32}) {
      cuda::set_gemm_ws_width_step(step);
      for (bool w4a4 : {false, true}) {
        EXPECT_TRUE(same_with_and_without_ws(Case{w4a4, true, rows, 384, 512, int(sizes.size()), off, Mode::kRandom,
                                                  OutDType::kFP32, seed++}));
        EXPECT_TRUE(same_with_and_without_ws(Case{w4a4, true, rows + 5, 136, 2048, int(sizes.size()), off,
                                                  Mode::kExact, OutDType::kBF16, seed++}));
      }
    }
    cuda::set_gemm_ws_width_step(0);
  }
  // One expert taking every row, at both token tiles (these small shapes would get 128-row
  // CTAs from the wave rule, hence the override).
  for (int tok : {64, 128}) {
    cuda::set_gemm_plan_override(tok, 0, -1, 256);
    for (int experts : {8, 256}) {
      std::vector<int32_t> off(size_t(experts + 1), 0);
      for (int e = experts / 2 + 1; e <= experts; ++e) off[size_t(e)] = 1500;  // expert E/2 owns all
      EXPECT_TRUE(same_with_and_without_ws(Case{false, true, 1500, 256, 512, experts, off, Mode::kRandom,
                                                OutDType::kBF16, seed++}));
    }
  }
  // A single GEMM of more tiles than SMs (133 balanced tiles of up to 128 rows: a second wave).
  cuda::set_gemm_plan_override(128, 0, -1, 256);
  EXPECT_TRUE(same_with_and_without_ws(Case{false, false, 17000, 256, 128, 1, {}, Mode::kRandom, OutDType::kBF16,
                                            seed++}));
  // The heuristics' own plan: 256-row CTAs at token tile 128, so balanced tiles of up to 160.
  cuda::set_gemm_plan_override(0, 0, -1, 0);
  ASSERT_EQ(cuda::plan_grouped_gemm(16384, 256, 512, 256).block_n, 256);
  ASSERT_EQ(cuda::plan_grouped_gemm(16384, 256, 512, 256).tok_tile, 128);
  EXPECT_TRUE(same_with_and_without_ws(Case{true, true, 16384, 256, 512, 256, random_offsets(rng, 16300, 256, 7),
                                            Mode::kRandom, OutDType::kBF16, seed++}));
}

// Token tile 64 on 4 consumer warpgroups of one 64-row block each (set_gemm_ws_consumers(4)) writes
// the same bytes as on 2 of two blocks each, and as the model: W4A16 and W4A4, N at and off the
// 256-row block edge (Np = 128 mod 256: consumers 2 and 3 compute on stale stages, masked; N = 136:
// consumer 2's chunks partly past N, consumer 3's all), K of one to 56 stages, every MMA width (32, 64) with
// partial tiles, the staged epilogue (two passes of 32 tokens) and the direct one (fp32, N % 8),
// grouped calls with empty experts, one expert taking every row, 256 experts, more tiles than SMs
// (CTAs taking further tiles after a staged epilogue).
void select_ws_consumers(int four) { cuda::set_gemm_ws_consumers(four ? 4 : 2); }

::testing::AssertionResult same_on_two_and_four_consumers(const Case& c) {
  // Both sides must run the warp-specialized kernel at token tile 64 in one launch, else the
  // comparison would compare a kernel with itself.
  const cuda::GemmPlan plan = c.grouped ? cuda::plan_grouped_gemm(c.rows, c.n, c.k, c.experts)
                                        : cuda::plan_gemm(c.rows, c.n, c.k);
  if (!plan.ws || plan.tok_tile != 64 || plan.block_n != 256 || plan.splits != 1 || plan.hot_rows != 0) {
    return ::testing::AssertionFailure() << describe(c) << ": the plan does not take the warp-specialized kernel at "
                                         << "token tile 64 (ws " << plan.ws << ", tok " << plan.tok_tile << ", bn "
                                         << plan.block_n << ", splits " << plan.splits << ", hot " << plan.hot_rows
                                         << ")";
  }
  return same_both_ways(c, select_ws_consumers, "4 vs 2 consumer warpgroups at token tile 64");
}

TEST(GemmSm90, WarpSpecializedFourConsumers) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(1);
  cuda::set_gemm_plan_override(64, 0, -1, 256);
  EXPECT_THROW(cuda::set_gemm_ws_consumers(3), std::exception);
  std::mt19937 rng(4848);
  uint32_t seed = 1900;
  for (bool w4a4 : {false, true}) {
    for (auto nk : {std::pair<int64_t, int64_t>{384, 256}, {136, 1024}, {520, 144}, {256, 7168}, {1040, 2048}}) {
      EXPECT_TRUE(same_on_two_and_four_consumers(
          Case{w4a4, false, 300, nk.first, nk.second, 1, {}, Mode::kRandom, OutDType::kBF16, seed++}));
      EXPECT_TRUE(same_on_two_and_four_consumers(
          Case{w4a4, false, 131, nk.first, nk.second, 1, {}, Mode::kExact, OutDType::kFP32, seed++}));
    }
    EXPECT_TRUE(same_on_two_and_four_consumers(
        Case{w4a4, false, 77, 132, 512, 1, {}, Mode::kRandom, OutDType::kBF16, seed++}));  // N % 8 != 0: direct
    EXPECT_TRUE(same_on_two_and_four_consumers(Case{w4a4, true, 1005, 384, 512, 8, random_offsets(rng, 1000, 8, 3),
                                                    Mode::kExact, OutDType::kBF16, seed++}));
    EXPECT_TRUE(same_on_two_and_four_consumers(Case{w4a4, true, 700, 136, 16, 64, random_offsets(rng, 690, 64, 9),
                                                    Mode::kRandom, OutDType::kFP32, seed++}));
    // 32 rows per expert over 256 experts (DeepSeek-V3 at T = 1024), several tiles per CTA.
    EXPECT_TRUE(same_on_two_and_four_consumers(Case{w4a4, true, 8192, 384, 512, 256,
                                                    random_offsets(rng, 8192, 256, 11), Mode::kRandom,
                                                    OutDType::kBF16, seed++}));
  }
  for (int experts : {8, 256}) {  // expert E/2 owns every row
    std::vector<int32_t> off(size_t(experts + 1), 0);
    for (int e = experts / 2 + 1; e <= experts; ++e) off[size_t(e)] = 1500;
    EXPECT_TRUE(same_on_two_and_four_consumers(
        Case{false, true, 1500, 256, 512, experts, off, Mode::kRandom, OutDType::kBF16, seed++}));
  }
  EXPECT_TRUE(same_on_two_and_four_consumers(
      Case{true, false, 17000, 256, 128, 1, {}, Mode::kRandom, OutDType::kBF16, seed++}));
}

// Single GEMMs with token-tile counts fitted to whole waves (set_gemm_ws_single_fit: balanced tiles
// of fewer than 128 rows, narrower MMAs) and on persistent CTAs (set_gemm_ws_single_persistent:
// one per SM, looping over tiles, the next tile's stages loaded during a staged epilogue) write
// the same bytes as without, and as the model: more 256-row tiles than SMs (fitting applies only
// then), N at and off the block edge, bf16 (staged) and fp32 (direct) output, W4A16 and W4A4.
TEST(GemmSm90, WarpSpecializedFittedPersistentSingles) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(1);
  int sms = 0;
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  // Qwen3 w13 at M = 4096: 6 row blocks x 32 tiles of 128 rows; on 132 SMs 43 tiles of 95-96
  // rows (MMA width 96) fill two waves (the fewest tiles of that cost). Fitted plans take 256-row
  // CTAs and never split K.
  cuda::set_gemm_ws_single_fit(0);
  EXPECT_EQ(cuda::plan_gemm(4096, 1536, 2048).tile_rows, 0);
  cuda::set_gemm_ws_single_fit(1);
  const cuda::GemmPlan fitted = cuda::plan_gemm(4096, 1536, 2048);
  EXPECT_EQ(fitted.splits, 1);
  if (fitted.block_n == 256) {
    EXPECT_GT(fitted.tile_rows, 0);
    EXPECT_LE(fitted.tile_rows, 128);
  }
  if (sms == 132) {
    EXPECT_EQ(fitted.block_n, 256);
    EXPECT_EQ(fitted.tile_rows, 96);
  }
  if (sms >= 96) EXPECT_EQ(cuda::plan_gemm(2048, 1536, 2048).tile_rows, 0) << "96 256-row tiles, one wave: not fitted";
  // Persistent plans launch one CTA per SM at most (else one per tile): the comparisons below
  // would otherwise run the same grid twice.
  {
    const int64_t tiles = 6 * ((4096 + fitted.tile_rows - 1) / fitted.tile_rows);
    if (fitted.block_n == 256 && fitted.tile_rows > 0) {
      cuda::set_gemm_ws_single_persistent(1);
      EXPECT_EQ(cuda::plan_gemm(4096, 1536, 2048).grid, std::min<int64_t>(tiles, sms));
      cuda::set_gemm_ws_single_persistent(0);
      EXPECT_EQ(cuda::plan_gemm(4096, 1536, 2048).grid, tiles);
    }
  }
  uint32_t seed = 1800;
  cuda::set_gemm_ws_single_persistent(0);
  for (bool w4a4 : {false, true}) {
    // fitted vs 128-row tiles (the unfitted plan may also pick the 128-row cp.async kernel)
    EXPECT_TRUE(same_both_ways(Case{w4a4, false, 4096, 1536, 256, 1, {}, Mode::kRandom, OutDType::kBF16, seed++},
                               cuda::set_gemm_ws_single_fit, "wave-fitted vs 128-row token tiles"));
    EXPECT_TRUE(same_both_ways(Case{w4a4, false, 4001, 1040, 384, 1, {}, Mode::kRandom, OutDType::kFP32, seed++},
                               cuda::set_gemm_ws_single_fit, "wave-fitted vs 128-row token tiles"));
  }
  cuda::set_gemm_plan_override(128, 0, -1, 256);  // 256-row CTAs on both sides
  for (int fit : {0, 1}) {
    cuda::set_gemm_ws_single_fit(fit);
    for (bool w4a4 : {false, true}) {
      EXPECT_TRUE(same_both_ways(Case{w4a4, false, 4096, 1536, 256, 1, {}, Mode::kRandom, OutDType::kBF16, seed++},
                                 cuda::set_gemm_ws_single_persistent, "persistent vs a CTA per tile"));
      EXPECT_TRUE(same_both_ways(Case{w4a4, false, 17000, 256, 1024, 1, {}, Mode::kRandom, OutDType::kBF16, seed++},
                                 cuda::set_gemm_ws_single_persistent, "persistent vs a CTA per tile"));
      EXPECT_TRUE(same_both_ways(Case{w4a4, false, 4001, 1040, 384, 1, {}, Mode::kExact, OutDType::kFP32, seed++},
                                 cuda::set_gemm_ws_single_persistent, "persistent vs a CTA per tile"));
    }
  }
}

// The activation front ends of the prefill kernels (act_permute for W4A16, act_dequant for W4A4)
// write the same bytes with 16-byte chunk stores after lane transposes as with 4-byte pieces, so
// the GEMM outputs agree bit for bit and with the model: K off the 128-column block (zero
// padding groups), row counts whose last warp is partly past the items, grouped calls with
// empty experts and rows past off[E] (not written), on both prefill kernels.
TEST(GemmSm90, ActivationFrontEndChunkStores) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  std::mt19937 rng(4848);
  uint32_t seed = 1900;
  for (int ws : {0, 1}) {
    cuda::set_gemm_ws_pipeline(ws);
    for (bool w4a4 : {false, true}) {
      EXPECT_TRUE(same_both_ways(Case{w4a4, false, 131, 384, 272, 1, {}, Mode::kRandom, OutDType::kBF16, seed++},
                                 cuda::set_gemm_act_chunk_stores, "chunk vs 4-byte front-end stores"));
      EXPECT_TRUE(same_both_ways(Case{w4a4, false, 4097, 520, 1024, 1, {}, Mode::kExact, OutDType::kFP32, seed++},
                                 cuda::set_gemm_act_chunk_stores, "chunk vs 4-byte front-end stores"));
      EXPECT_TRUE(same_both_ways(Case{w4a4, true, 1005, 384, 528, 8, random_offsets(rng, 1000, 8, 3), Mode::kRandom,
                                      OutDType::kBF16, seed++},
                                 cuda::set_gemm_act_chunk_stores, "chunk vs 4-byte front-end stores"));
    }
  }
}

// The same paths on small work for compute-sanitizer (gpu-check runs *Small* there): 133 tiles of
// 128 rows in one row block (one more than an H100's or H200's SMs), fitted (on 132 SMs 178 tiles
// of 95-96 rows, MMA width 96, 2 waves) and persistent (46 CTAs take a second tile after a staged
// epilogue), K of one and of 9 stages.
TEST(GemmSm90, WarpSpecializedFittedPersistentSmall) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  cuda::set_gemm_ws_pipeline(1);
  cuda::set_gemm_plan_override(128, 0, -1, 256);
  cuda::set_gemm_ws_single_fit(1);
  int sms = 0;
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  if (sms == 132) {
    cuda::set_gemm_ws_single_persistent(1);
    EXPECT_EQ(cuda::plan_gemm(17000, 256, 128).tile_rows, 96);
    EXPECT_EQ(cuda::plan_gemm(17000, 256, 128).grid, 132);
  }
  EXPECT_TRUE(same_both_ways(Case{false, false, 17000, 256, 128, 1, {}, Mode::kRandom, OutDType::kBF16, 1850},
                             cuda::set_gemm_ws_single_persistent, "persistent vs a CTA per tile"));
  cuda::set_gemm_ws_single_persistent(1);
  EXPECT_TRUE(same_both_ways(Case{true, false, 17000, 136, 1152, 1, {}, Mode::kExact, OutDType::kBF16, 1851},
                             cuda::set_gemm_ws_single_fit, "wave-fitted vs 128-row token tiles"));
}

// Zipf-skewed offsets (expert of rank i gets weight 1/(i+1), ranks in a random expert order):
// a few hot experts with hundreds of rows, a long tail of experts with a few.
std::vector<int32_t> zipf_offsets(std::mt19937& rng, int64_t rows, int experts) {
  std::vector<int> rank(static_cast<size_t>(experts));
  for (int e = 0; e < experts; ++e) rank[size_t(e)] = e;
  std::shuffle(rank.begin(), rank.end(), rng);
  std::vector<double> wgt(static_cast<size_t>(experts));
  for (int e = 0; e < experts; ++e) wgt[size_t(e)] = 1.0 / (rank[size_t(e)] + 1);
  std::discrete_distribution<int> pick(wgt.begin(), wgt.end());
  std::vector<int64_t> cnt(size_t(experts), 0);
  for (int64_t r = 0; r < rows; ++r) cnt[size_t(pick(rng))]++;
  std::vector<int32_t> off(size_t(experts + 1), 0);
  for (int e = 0; e < experts; ++e) off[size_t(e + 1)] = off[size_t(e)] + int32_t(cnt[size_t(e)]);
  return off;
}

// Large grouped calls whose token tile is 32 or 64 take a second launch for the hot experts
// (more rows than GemmPlan::hot_rows: token tile 128, 256-row CTAs), decided on the device
// from the offsets: skewed routings with hot experts, a balanced one with none (the second launch finds
// no tiles), one expert taking every row (the first finds none), on both 256-row kernels.
TEST(GemmSm90, GroupedHotExpertsSecondLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  ResetPlanOverrides reset;
  std::mt19937 rng(5150);
  uint32_t seed = 1400;
  // The heuristics split calls of >= 100 GFLOP (DeepSeek-V3 w13 at 4096 rows), not small ones.
  EXPECT_EQ(cuda::plan_grouped_gemm(4096, 4096, 7168, 256).hot_rows, 64);
  EXPECT_EQ(cuda::plan_grouped_gemm(8192, 4096, 7168, 256).hot_rows, 64);
  EXPECT_EQ(cuda::plan_grouped_gemm(2048, 1536, 2048, 128).hot_rows, 0);
  for (int64_t rows : {4096, 8192}) {
    const int tok = cuda::plan_grouped_gemm(rows, 256, 512, 256).tok_tile;
    ASSERT_TRUE(tok == 32 || tok == 64) << "rows " << rows;
    cuda::set_gemm_hot_expert_rows(tok);  // the default threshold, on these small shapes
    ASSERT_EQ(cuda::plan_grouped_gemm(rows, 256, 512, 256).hot_rows, tok) << "rows " << rows;
    std::vector<int32_t> all_to_one(257, 0);
    for (int e = 101; e <= 256; ++e) all_to_one[size_t(e)] = int32_t(rows);  // expert 100 owns all
    for (int pipe : {0, 1}) {  // cp.async, warp-specialized (the hot launch's 256-row CTAs)
      cuda::set_gemm_ws_pipeline(pipe);
      for (bool w4a4 : {false, true}) {
        EXPECT_TRUE(run_case(Case{w4a4, true, rows, 256, 512, 256, zipf_offsets(rng, rows, 256), Mode::kRandom,
                                  OutDType::kFP32, seed++}));
        EXPECT_TRUE(run_case(Case{w4a4, true, rows + 3, 136, 272, 256, zipf_offsets(rng, rows, 256), Mode::kExact,
                                  OutDType::kBF16, seed++}));
        EXPECT_TRUE(run_case(Case{w4a4, true, rows, 256, 512, 256, random_offsets(rng, rows, 256, 0),
                                  Mode::kExact, OutDType::kBF16, seed++}));
        EXPECT_TRUE(run_case(Case{w4a4, true, rows, 256, 512, 256, all_to_one, Mode::kRandom, OutDType::kBF16,
                                  seed++}));
      }
    }
  }
  // The threshold override: every expert with more than 8 rows hot (most of a balanced call),
  // and off (one launch, as before v9).
  for (int hot : {8, 0}) {
    cuda::set_gemm_hot_expert_rows(hot);
    EXPECT_EQ(cuda::plan_grouped_gemm(4096, 256, 512, 256).hot_rows, hot);
    EXPECT_TRUE(run_case(Case{false, true, 4096, 256, 512, 256, zipf_offsets(rng, 4096, 256), Mode::kExact,
                              OutDType::kBF16, seed++}));
  }
}

TEST(GemmSm90, SingleW4A16LargeM) {
  NVFP4MOE_REQUIRE_GPU();
  EXPECT_TRUE(run_case(Case{false, false, 4096, 384, 256, 1, {}, Mode::kRandom, OutDType::kFP32, 7}));
  EXPECT_TRUE(run_case(Case{false, false, 16384, 136, 128, 1, {}, Mode::kExact, OutDType::kBF16, 8}));
}

TEST(GemmSm90, SingleW4A16SplitKDecodeShapes) {
  NVFP4MOE_REQUIRE_GPU();
  // Few weight blocks and long K: the heuristic splits K across CTAs.
  for (int64_t m : {1, 3, 16}) {
    cuda::GemmPlan plan = cuda::plan_gemm(m, 512, 7168);
    EXPECT_GT(plan.splits, 1) << "expected split-K for M=" << m;
    EXPECT_TRUE(run_case(Case{false, false, m, 512, 7168, 1, {}, Mode::kRandom, OutDType::kFP32, uint32_t(20 + m)}));
    EXPECT_TRUE(run_case(Case{false, false, m, 520, 4112, 1, {}, Mode::kExact, OutDType::kBF16, uint32_t(30 + m)}));
  }
}

TEST(GemmSm90, SingleW4A4Sweep) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 300;
  for (int64_t m : {0, 1, 3, 19, 128, 1000}) {
    for (auto nk : {std::pair<int64_t, int64_t>{128, 128}, {200, 144}, {384, 2048}}) {
      for (Mode mode : {Mode::kRandom, Mode::kExact}) {
        Case c{true, false, m, nk.first, nk.second, 1, {}, mode,
               mode == Mode::kExact ? OutDType::kBF16 : OutDType::kFP32, seed++};
        EXPECT_TRUE(run_case(c));
      }
    }
  }
}

TEST(GemmSm90, GroupedSweep) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 500;
  struct G { int experts; int64_t rows; int empty_every; };
  for (G g : {G{1, 19, 0}, G{8, 0, 0}, G{8, 3, 0}, G{8, 300, 3}, G{128, 1000, 5}, G{256, 16, 0},
              G{256, 4096, 7}}) {
    for (bool w4a4 : {false, true}) {
      for (Mode mode : {Mode::kRandom, Mode::kExact}) {
        std::mt19937 rng(seed);
        Case c{w4a4, true, g.rows + 5, 136, 256, g.experts, random_offsets(rng, g.rows, g.experts, g.empty_every),
               mode, mode == Mode::kExact ? OutDType::kBF16 : OutDType::kFP32, seed++};
        EXPECT_TRUE(run_case(c));  // rows + 5 allocated: the last 5 rows must stay untouched
      }
    }
  }
}

TEST(GemmSm90, GroupedOneExpertTakesAll) {
  NVFP4MOE_REQUIRE_GPU();
  for (int experts : {8, 256}) {
    for (bool w4a4 : {false, true}) {
      std::vector<int32_t> off(size_t(experts + 1), 0);
      for (int e = experts / 2 + 1; e <= experts; ++e) off[size_t(e)] = 700;  // expert E/2 owns all
      EXPECT_TRUE(run_case(Case{w4a4, true, 700, 256, 512, experts, off, Mode::kExact, OutDType::kBF16,
                                uint32_t(600 + experts)}));
      EXPECT_TRUE(run_case(Case{w4a4, true, 700, 256, 512, experts, off, Mode::kRandom, OutDType::kFP32,
                                uint32_t(700 + experts)}));
    }
  }
}

// grouped_gemm_w4a16_gemm_order: activations handed in already in the GEMM's K order (the MoE
// layer's prefill operand, written by the quantizers) give the model's result and the same bits
// as grouped_gemm_w4a16 on the natural order, with empty experts, one expert taking every row
// and N off the tile edge; shapes where the prefill kernel does not run are refused by name.
TEST(GemmSm90, GroupedGemmOrderActivations) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 1300;
  struct G { int experts; int64_t rows; int64_t n, k; int empty_every; bool one_takes_all; };
  for (G g : {G{8, 1000, 256, 512, 3, false}, G{256, 4096, 136, 256, 7, false}, G{8, 700, 384, 1024, 0, true}}) {
    for (Mode mode : {Mode::kExact, Mode::kRandom}) {
      std::mt19937 rng(seed);
      std::vector<int32_t> off = random_offsets(rng, g.rows, g.experts, g.empty_every);
      if (g.one_takes_all) {
        std::fill(off.begin(), off.end(), 0);
        for (int e = g.experts / 2 + 1; e <= g.experts; ++e) off[size_t(e)] = int32_t(g.rows);
      }
      const Case c{false, true, g.rows + 5, g.n, g.k, g.experts, off, mode,
                   mode == Mode::kExact ? OutDType::kBF16 : OutDType::kFP32, seed++};
      ASSERT_TRUE(cuda::grouped_gemm_takes_gemm_order(c.rows, c.n, c.k, c.experts)) << describe(c);
      Prepared p = prepare(c);
      const size_t esz = c.out_dtype == OutDType::kFP32 ? 4 : 2, out_bytes = size_t(c.rows * c.n) * esz;
      DeviceBuffer<uint8_t> natural_out(out_bytes), ordered_out(out_bytes);
      natural_out.fill_bytes(0xff);
      ordered_out.fill_bytes(0xff);
      const size_t ws_natural = workspace_for(c);
      const size_t ws_ordered = cuda::grouped_gemm_w4a16_gemm_order_workspace_bytes(c.rows, c.n, c.k, c.experts);
      DeviceBuffer<uint8_t> ws(std::max<size_t>({ws_natural, ws_ordered, 16}));
      ws.fill_bytes(0);
      launch(c, p, natural_out.get(), ws.get(), ws_natural, nullptr);
      DeviceBuffer<uint16_t> ordered(to_gemm_k_order(p.a.download(), c.rows, c.k));
      cuda::grouped_gemm_w4a16_gemm_order(reinterpret_cast<const __nv_bfloat16*>(ordered.get()), c.rows, p.off.get(),
                                          p.pw, p.alpha.get(), ordered_out.get(), c.out_dtype, ws.get(), ws_ordered,
                                          nullptr);
      NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<uint8_t> got = ordered_out.download();
      EXPECT_TRUE(check(c, p, got));
      EXPECT_TRUE(bytes_equal(got, natural_out.download(), describe(c) + " GEMM order vs natural order"));
    }
  }
  // Refused: a decode-sized call (the decode kernel reads the natural order) and K % 128 != 0.
  std::mt19937 rng(seed);
  for (const auto& [rows, k] : {std::pair<int64_t, int64_t>{16, 512}, std::pair<int64_t, int64_t>{1000, 144}}) {
    const Case c{false, true, rows, 256, k, 8, random_offsets(rng, rows, 8, 0), Mode::kRandom, OutDType::kBF16, seed};
    EXPECT_FALSE(cuda::grouped_gemm_takes_gemm_order(c.rows, c.n, c.k, c.experts)) << describe(c);
    Prepared p = prepare(c);
    DeviceBuffer<uint8_t> out(size_t(rows * 256) * 2), ws(1 << 20);
    out.fill_bytes(0xff);
    EXPECT_THROW(cuda::grouped_gemm_w4a16_gemm_order(reinterpret_cast<const __nv_bfloat16*>(p.a.get()), rows,
                                                     p.off.get(), p.pw, p.alpha.get(), out.get(), OutDType::kBF16,
                                                     ws.get(), 1 << 20, nullptr),
                 Error)
        << describe(c);
    NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(bytes_equal(out.download(), std::vector<uint8_t>(out.size(), 0xff), describe(c) + " nothing written"));
  }
}

// One or two K stages per tile: the persistent CTAs' pipeline crosses a tile boundary at
// almost every stage.
TEST(GemmSm90, GroupedShortK) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 800;
  for (int64_t k : {16, 144}) {
    for (bool w4a4 : {false, true}) {
      std::mt19937 rng(seed);
      Case c{w4a4, true, 3000, 520, k, 64, random_offsets(rng, 2990, 64, 9), Mode::kExact, OutDType::kBF16, seed++};
      EXPECT_TRUE(run_case(c));
    }
  }
}

// The decode kernel's early L2 prefetch (prefetch_before_wait: the offsets read before the
// wait, the first tile's weights prefetched) changes no result: token tiles 8 and 16, a K
// ending inside an atom, empty experts, one expert taking every row, and a call sequence on one
// stream where the offsets change between calls (each call must use its own).
TEST(GemmSm90, GroupedDecodePrefetchBeforeWait) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 880;
  struct G { int experts; int64_t rows, n, k; };
  for (G g : {G{256, 8, 520, 7168}, G{256, 200, 256, 400}, G{64, 900, 520, 144}}) {
    for (Mode mode : {Mode::kRandom, Mode::kExact}) {
      std::mt19937 rng(seed);
      Case c{false, true, g.rows, g.n, g.k, g.experts, random_offsets(rng, g.rows, g.experts, 5), mode,
             mode == Mode::kExact ? OutDType::kBF16 : OutDType::kFP32, seed++, true};
      EXPECT_TRUE(run_case(c));
    }
  }
  std::vector<int32_t> one(257, 0);
  for (int e = 131; e <= 256; ++e) one[size_t(e)] = 16;  // expert 130 owns all 16 rows
  EXPECT_TRUE(run_case(Case{false, true, 16, 520, 2048, 256, one, Mode::kExact, OutDType::kBF16, seed++, true}));

  // Two routings on one stream and one workspace, the second call's offsets written just before
  // it (the first call's offsets are then what a too-early read would see).
  std::mt19937 rng(seed);
  Case a{false, true, 64, 520, 2048, 256, random_offsets(rng, 64, 256, 0), Mode::kExact, OutDType::kBF16, seed++, true};
  Case b = a;
  b.off = random_offsets(rng, 64, 256, 3);
  b.seed = seed++;
  Prepared pa = prepare(a), pb = prepare(b);
  const size_t ws_bytes = workspace_for(a);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  ws.fill_bytes(0);
  DeviceBuffer<int32_t> off(a.off);
  DeviceBuffer<uint8_t> out_a(size_t(a.rows * a.n) * 2), out_b(size_t(b.rows * b.n) * 2);
  out_a.fill_bytes(0xff);
  out_b.fill_bytes(0xff);
  const auto* act_a = reinterpret_cast<const __nv_bfloat16*>(pa.a.get());
  const auto* act_b = reinterpret_cast<const __nv_bfloat16*>(pb.a.get());
  cuda::grouped_gemm_w4a16(act_a, a.rows, off.get(), pa.pw, pa.alpha.get(), out_a.get(), OutDType::kBF16, ws.get(),
                           ws_bytes, nullptr, true);
  NVFP4MOE_CUDA_CHECK(cudaMemcpyAsync(off.get(), b.off.data(), b.off.size() * 4, cudaMemcpyHostToDevice, nullptr));
  cuda::grouped_gemm_w4a16(act_b, b.rows, off.get(), pb.pw, pb.alpha.get(), out_b.get(), OutDType::kBF16, ws.get(),
                           ws_bytes, nullptr, true);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(check(a, pa, out_a.download()));
  EXPECT_TRUE(check(b, pb, out_b.download()));
}

// The wide decode CTA (4 K warps, 512 threads; GemmPlan::k_warps = 4): chosen where a grouped
// call's tiles fit in one wave of it (Qwen3 at T = 1), never with an odd K stage count; forced
// here over K = 256 .. 7168, a K ending inside an atom (1248) and one at an atom edge inside a
// K stage (1216), N off the 64-row edge, W4A4, the early prefetch, empty experts, one expert
// taking every row, and claimed tiles.
TEST(GemmSm90, GroupedDecodeWideCtas) {
  NVFP4MOE_REQUIRE_GPU();
  struct Reset {
    ~Reset() {
      cuda::set_gemm_decode_k_warps(-1);
      cuda::set_gemm_decode_claiming(-1);
      cuda::set_gemm_plan_override(0, 0, -1, 0);
      cuda::set_gemm_decode_ring(-1);
    }
  } reset;
  cuda::set_gemm_decode_ring(0);  // the wide CTA is the register kernel's
  int sms = 0;
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  // Qwen3 w13 at T = 1: at most 8 experts x 24 blocks = 192 tiles.
  EXPECT_EQ(cuda::plan_grouped_gemm(8, 1536, 2048, 128).k_warps, 192 <= 2 * sms ? 4 : 2);
  EXPECT_EQ(cuda::plan_grouped_gemm(8, 4096, 7168, 256).k_warps, 2);  // 512 tiles: narrow
  EXPECT_EQ(cuda::plan_grouped_gemm(8, 520, 1088, 64).k_warps, 2);    // 9 K stages: narrow
  cuda::set_gemm_plan_override(16, 0, -1, 0);
  EXPECT_EQ(cuda::plan_grouped_gemm(40, 520, 1024, 4).k_warps, 2);  // token tile 16: narrow
  cuda::set_gemm_plan_override(0, 0, -1, 0);

  cuda::set_gemm_decode_k_warps(4);
  uint32_t seed = 9400;
  struct G { bool w4a4; int experts; int64_t rows, n, k; };
  int i = 0;
  // Few experts where N x K is large: the golden model's host work grows with E x N x K (with 128
  // and 256 experts this test took 50 s on the H100; the kernel path does not depend on E).
  for (G g : {G{false, 16, 8, 1536, 2048}, G{false, 16, 8, 2048, 768}, G{false, 64, 24, 520, 1248},
              G{true, 16, 30, 136, 256}, G{false, 8, 8, 520, 7168}, G{true, 32, 8, 264, 1216}}) {
    for (Mode mode : {Mode::kRandom, Mode::kExact}) {
      std::mt19937 rng(seed);
      Case c{g.w4a4, true, g.rows, g.n, g.k, g.experts, random_offsets(rng, g.rows, g.experts, 3), mode,
             mode == Mode::kExact ? OutDType::kBF16 : OutDType::kFP32, seed++, !g.w4a4 && i++ % 2 == 0};
      ASSERT_EQ(cuda::plan_grouped_gemm(c.rows, c.n, c.k, c.experts).k_warps, 4) << describe(c);
      EXPECT_TRUE(run_case(c)) << describe(c);
    }
  }
  std::vector<int32_t> one(17, 0);
  for (int e = 11; e <= 16; ++e) one[size_t(e)] = 8;  // expert 10 owns all 8 rows
  EXPECT_TRUE(run_case(Case{false, true, 8, 1536, 2048, 16, one, Mode::kExact, OutDType::kBF16, seed++, true}));
  EXPECT_TRUE(run_case(Case{true, true, 8, 520, 768, 16, one, Mode::kRandom, OutDType::kFP32, seed++}));

  // Claimed tiles in wide CTAs: token tile 8 forced on 900 rows (many tiles per CTA).
  cuda::set_gemm_plan_override(8, 0, -1, 0);
  cuda::set_gemm_decode_claiming(1);
  std::mt19937 rng(seed);
  Case c{false, true, 900, 520, 144, 64, random_offsets(rng, 890, 64, 5), Mode::kExact, OutDType::kBF16, seed++};
  const cuda::GemmPlan plan = cuda::plan_grouped_gemm(c.rows, c.n, c.k, c.experts);
  ASSERT_TRUE(plan.claim && plan.k_warps == 4) << describe(c);
  EXPECT_TRUE(run_case(c));
}

// Dynamic tile claiming in the grouped decode kernel (set_gemm_decode_claiming): the same bits
// as the static order and the golden model, with many tiles per CTA (so most tiles are
// claimed), split-K, the early and the in-tile prefetch, empty experts, one expert taking every row; three
// calls in a row on one workspace, two chained without a sync, and a captured graph replayed
// three times (each launch must leave the claim counter at zero for the next, or tiles would
// be skipped).
TEST(GemmSm90, GroupedDecodeClaimedTilesSameBits) {
  NVFP4MOE_REQUIRE_GPU();
  struct Reset { ~Reset() { cuda::set_gemm_plan_override(0, 0, -1, 0); cuda::set_gemm_decode_claiming(-1); } } reset;
  std::mt19937 rng(7100);
  uint32_t seed = 7100;
  std::vector<int32_t> one(65, 0);
  for (int e = 40; e <= 64; ++e) one[size_t(e)] = 300;  // expert 39 owns all 300 rows
  struct C { int tok, splits; bool prefetch_before_wait; Case c; };
  std::vector<C> cases = {
      {8, 0, false, Case{false, true, 400, 520, 144, 64, random_offsets(rng, 400, 64, 5), Mode::kExact, OutDType::kBF16}},
      {8, 0, true, Case{false, true, 2000, 1040, 256, 256, random_offsets(rng, 1990, 256, 7), Mode::kRandom, OutDType::kFP32}},
      {16, 0, true, Case{false, true, 700, 520, 400, 64, random_offsets(rng, 690, 64, 3), Mode::kRandom, OutDType::kBF16}},
      {8, 3, false, Case{false, true, 300, 256, 1024, 8, random_offsets(rng, 300, 8, 0), Mode::kExact, OutDType::kFP32}},
      {16, 2, true, Case{false, true, 120, 520, 2048, 64, random_offsets(rng, 120, 64, 4), Mode::kRandom, OutDType::kBF16}},
      {8, 0, false, Case{true, true, 500, 520, 272, 64, random_offsets(rng, 500, 64, 6), Mode::kRandom, OutDType::kBF16}},
      {8, 0, true, Case{false, true, 300, 520, 144, 64, one, Mode::kExact, OutDType::kBF16}},
      {8, 0, true, Case{false, true, 8, 520, 7168, 256, random_offsets(rng, 8, 256, 0), Mode::kRandom, OutDType::kFP32}},
  };
  for (C& t : cases) {
    t.c.seed = seed++;
    t.c.prefetch_before_wait = t.prefetch_before_wait;
    // Every other case with the in-tile L2 prefetch on (off by default since v13), so the
    // claimed tiles are also checked with it.
    cuda::set_gemm_plan_override(t.tok, t.splits, (&t - cases.data()) % 2 ? 16 : -1, 0);
    const Case& c = t.c;
    Prepared p = prepare(c);
    const size_t bytes = size_t(c.rows * c.n) * (c.out_dtype == OutDType::kFP32 ? 4 : 2);
    std::vector<uint8_t> got[2];
    for (int claim : {0, 1}) {
      cuda::set_gemm_decode_claiming(claim);
      const cuda::GemmPlan plan = cuda::plan_grouped_gemm(c.rows, c.n, c.k, c.experts);
      ASSERT_EQ(plan.claim, claim == 1) << describe(c);
      ASSERT_LE(plan.tok_tile, 16) << describe(c);
      const size_t ws_bytes = workspace_for(c);
      DeviceBuffer<uint8_t> ws(ws_bytes);
      ws.fill_bytes(0);
      DeviceBuffer<uint8_t> out(bytes);
      cudaStream_t s;
      NVFP4MOE_CUDA_CHECK(cudaStreamCreate(&s));
      for (int rep = 0; rep < 3; ++rep) {
        out.fill_bytes(0xff);
        launch(c, p, out.get(), ws.get(), ws_bytes, s);
        NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
        std::vector<uint8_t> r = out.download();
        if (rep == 0) got[claim] = r;
        else EXPECT_TRUE(bytes_equal(r, got[claim], describe(c) + " claim=" + std::to_string(claim) + " call " + std::to_string(rep)));
      }
      if (claim == 1) expect_chained_and_replayed(c, p, out, ws.get(), ws_bytes, s, got[1], "claimed", 3);
      cudaStreamDestroy(s);
    }
    EXPECT_TRUE(check(c, p, got[1])) << "claimed tiles";
    EXPECT_TRUE(bytes_equal(got[1], got[0], describe(c) + ": claimed vs static tiles"));
  }
}

// The ring decode kernel (set_gemm_decode_ring(1): weights and activations through a shared-
// memory ring filled by bulk copies) against the register decode kernel: the same bits, and
// the golden model. Single GEMMs with and without split-K (M = 1, 3, 13), grouped token tiles 8
// and 16, claimed tiles, W4A4, K ending inside an atom and inside a stage (144, 400, 1248), N
// off the 64-row block edge, empty experts, one expert taking every row; for the claimed case
// also two chained calls on one workspace and graph replays (the ring's producer claims).
TEST(GemmSm90, DecodeRingSameBitsAsRegisterKernel) {
  NVFP4MOE_REQUIRE_GPU();
  struct Reset {
    ~Reset() {
      cuda::set_gemm_decode_ring(-1);
      cuda::set_gemm_decode_claiming(-1);
      cuda::set_gemm_decode_k_warps(-1);
      cuda::set_gemm_plan_override(0, 0, -1, 0);
    }
  } reset;
  // The default (docs/GEMM.md v15): grouped decode calls on the ring unless the wide CTA is
  // chosen, single GEMMs on the register kernel (unless the environment forces a kernel, as
  // scripts/gpu-check.sh does for one pass).
  if (std::getenv("NVFP4MOE_GEMM_RING") == nullptr && std::getenv("NVFP4MOE_GEMM_KWARPS") == nullptr) {
    int sms = 0;
    NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    EXPECT_TRUE(cuda::plan_grouped_gemm(64, 4096, 7168, 256).ring);
    EXPECT_TRUE(cuda::plan_grouped_gemm(8, 7168, 2048, 256).ring);
    EXPECT_EQ(cuda::plan_grouped_gemm(8, 1536, 2048, 128).ring, 192 > 2 * sms);  // wide CTA: register
    EXPECT_FALSE(cuda::plan_gemm(1, 4096, 7168).ring);
    EXPECT_FALSE(cuda::plan_grouped_gemm(4096, 4096, 7168, 256).ring);  // wgmma kernel
  }
  // The same split of K and 2 K warps in both kernels (the heuristics would give each its own
  // split count from its CTAs per SM, and the register kernel the wide CTA at 8 Qwen3 rows:
  // other summation orders, so other bits in the last place).
  cuda::set_gemm_decode_k_warps(2);
  std::mt19937 rng(8800);
  uint32_t seed = 8800;
  std::vector<int32_t> one(17, 0);
  for (int e = 6; e <= 16; ++e) one[size_t(e)] = 40;  // expert 5 owns all 40 rows
  struct C { int tok, splits, claim; Case c; };
  std::vector<C> cases = {
      {0, 6, -1, Case{false, false, 1, 4096, 7168, 1, {}, Mode::kRandom, OutDType::kBF16}},
      {0, 1, -1, Case{false, false, 3, 520, 1248, 1, {}, Mode::kExact, OutDType::kFP32}},
      {0, 2, -1, Case{true, false, 13, 264, 400, 1, {}, Mode::kRandom, OutDType::kFP32}},
      {8, 0, 0, Case{false, true, 8, 1536, 2048, 16, random_offsets(rng, 8, 16, 3), Mode::kRandom, OutDType::kBF16}},
      {8, 0, 1, Case{false, true, 600, 520, 144, 64, random_offsets(rng, 590, 64, 5), Mode::kExact, OutDType::kBF16}},
      {16, 0, -1, Case{false, true, 200, 520, 400, 16, random_offsets(rng, 200, 16, 4), Mode::kRandom, OutDType::kFP32}},
      {8, 3, 0, Case{false, true, 64, 256, 1024, 8, random_offsets(rng, 64, 8, 0), Mode::kExact, OutDType::kFP32}},
      {16, 2, 1, Case{false, true, 120, 520, 2048, 16, random_offsets(rng, 120, 16, 4), Mode::kRandom, OutDType::kBF16}},
      {8, 0, -1, Case{true, true, 100, 520, 1248, 16, random_offsets(rng, 100, 16, 6), Mode::kRandom, OutDType::kBF16}},
      {16, 0, 1, Case{false, true, 40, 264, 2048, 16, one, Mode::kExact, OutDType::kBF16}},
  };
  for (C& t : cases) {
    t.c.seed = seed++;
    cuda::set_gemm_plan_override(t.tok, t.splits, -1, 0);
    cuda::set_gemm_decode_claiming(t.claim);
    const Case& c = t.c;
    Prepared p = prepare(c);
    const size_t bytes = size_t(c.rows * c.n) * (c.out_dtype == OutDType::kFP32 ? 4 : 2);
    std::vector<uint8_t> got[2];
    int splits[2] = {0, 0};
    for (int ring : {0, 1}) {
      cuda::set_gemm_decode_ring(ring);
      const cuda::GemmPlan plan =
          c.grouped ? cuda::plan_grouped_gemm(c.rows, c.n, c.k, c.experts) : cuda::plan_gemm(c.rows, c.n, c.k);
      ASSERT_LE(plan.tok_tile, 16) << describe(c);
      ASSERT_EQ(plan.ring, ring == 1) << describe(c);
      ASSERT_EQ(plan.k_warps, 2) << describe(c);
      splits[ring] = plan.splits;
      const size_t ws_bytes = workspace_for(c);
      DeviceBuffer<uint8_t> ws(ws_bytes);
      ws.fill_bytes(0);
      DeviceBuffer<uint8_t> out(bytes);
      cudaStream_t s;
      NVFP4MOE_CUDA_CHECK(cudaStreamCreate(&s));
      out.fill_bytes(0xff);
      launch(c, p, out.get(), ws.get(), ws_bytes, s);
      NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
      got[ring] = out.download();
      if (ring == 1 && plan.claim) expect_chained_and_replayed(c, p, out, ws.get(), ws_bytes, s, got[1], "ring", 2);
      cudaStreamDestroy(s);
    }
    EXPECT_TRUE(check(c, p, got[1])) << "ring kernel";
    ASSERT_EQ(splits[0], splits[1]) << describe(c);
    EXPECT_TRUE(bytes_equal(got[1], got[0], describe(c) + ": ring vs register kernel"));
  }
}

// Short K on the small-token paths (token tile 8: decode kernel; 16: wgmma kernel): one or two
// atoms per K warp and tile, persistent CTAs refill their register rings at almost every
// atom; K ending inside a 64-column atom (K = 16, 144, 400).
TEST(GemmSm90, GroupedDecodeShortK) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 850;
  struct G { int experts; int64_t rows; };
  for (G g : {G{256, 1000}, G{64, 900}}) {  // token tiles 8 and 16
    for (int64_t k : {16, 144, 400}) {
      for (Mode mode : {Mode::kRandom, Mode::kExact}) {
        std::mt19937 rng(seed);
        Case c{false, true, g.rows, 520, k, g.experts, random_offsets(rng, g.rows - 3, g.experts, 11), mode,
               mode == Mode::kExact ? OutDType::kBF16 : OutDType::kFP32, seed++};
        EXPECT_TRUE(run_case(c));
      }
    }
  }
}

// Single GEMMs with more weight tiles than resident CTAs (no split, persistent CTAs; M = 1
// runs on the decode kernel).
TEST(GemmSm90, SingleDecodePersistent) {
  NVFP4MOE_REQUIRE_GPU();
  for (int64_t m : {1, 2}) {
    EXPECT_TRUE(run_case(Case{false, false, m, 40000, 144, 1, {}, Mode::kExact, OutDType::kBF16, uint32_t(40 + m)}));
    EXPECT_TRUE(run_case(Case{false, false, m, 40000, 272, 1, {}, Mode::kRandom, OutDType::kFP32, uint32_t(50 + m)}));
  }
}

// Captured launches replay to the same bits as eager ones, and split-K is deterministic.
TEST(GemmSm90, GraphCaptureEqualsEagerAndDeterministic) {
  NVFP4MOE_REQUIRE_GPU();
  std::mt19937 rng(900);
  std::vector<Case> cases = {
      Case{false, false, 2, 512, 7168, 1, {}, Mode::kRandom, OutDType::kBF16, 901},       // split-K
      Case{false, false, 1, 512, 7168, 1, {}, Mode::kRandom, OutDType::kBF16, 905},       // decode split-K
      Case{true, false, 19, 256, 2048, 1, {}, Mode::kRandom, OutDType::kFP32, 902},
      Case{false, true, 300, 256, 512, 8, random_offsets(rng, 290, 8, 3), Mode::kRandom, OutDType::kBF16, 903},
      Case{true, true, 300, 256, 512, 8, random_offsets(rng, 290, 8, 3), Mode::kRandom, OutDType::kFP32, 904},
      Case{false, true, 40, 256, 512, 8, random_offsets(rng, 38, 8, 3), Mode::kRandom, OutDType::kBF16, 906}};  // decode
  for (const Case& c : cases) {
    Prepared p = prepare(c);
    size_t bytes = size_t(c.rows * c.n) * (c.out_dtype == OutDType::kFP32 ? 4 : 2);
    DeviceBuffer<uint8_t> eager(bytes), graph_out(bytes);
    size_t ws_bytes = workspace_for(c);
    DeviceBuffer<uint8_t> ws(std::max<size_t>(ws_bytes, 16));
    ws.fill_bytes(0);
    eager.fill_bytes(0xff);
    graph_out.fill_bytes(0xff);
    cudaStream_t s;
    NVFP4MOE_CUDA_CHECK(cudaStreamCreate(&s));
    launch(c, p, eager.get(), ws.get(), ws_bytes, s);
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<uint8_t> first = eager.download();
    {
      CapturedLaunch graph(c, p, graph_out.get(), ws.get(), ws_bytes, s);
      for (int rep = 0; rep < 3; ++rep) {
        graph.replay(s);
        EXPECT_TRUE(bytes_equal(graph_out.download(), first, describe(c) + " graph replay"));
      }
    }
    launch(c, p, eager.get(), ws.get(), ws_bytes, s);
    NVFP4MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    EXPECT_TRUE(bytes_equal(eager.download(), first, describe(c) + " second eager run"));
    EXPECT_TRUE(check(c, p, first));
    cudaStreamDestroy(s);
  }
}

TEST(GemmSm90, BadArgumentsThrowBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  std::mt19937 rng(1000);
  HostWeight h = make_weight(rng, 128, 128, Mode::kRandom);
  std::vector<uint8_t> prepped(size_t(cuda::prepared_weight_bytes(128, 128)));
  EXPECT_THROW(cuda::prepared_weight_bytes(128, 100), Error);
  EXPECT_THROW(cuda::prepare_weight(h.codes, h.scales_rm, 128, 128, std::span<uint8_t>(prepped.data(), 10)), Error);
  auto bad = h.scales_rm;
  bad[37] = 0x7f;
  EXPECT_THROW(cuda::prepare_weight(h.codes, bad, 128, 128, prepped), Error);
  bad[37] = 0xb8;  // -1.0
  EXPECT_THROW(cuda::prepare_weight(h.codes, bad, 128, 128, prepped), Error);

  DeviceBuffer<uint8_t> w(prepped.size()), out(4096 * 4), ws(1 << 20);
  DeviceBuffer<uint16_t> a(128 * 128);
  DeviceBuffer<float> alpha(std::vector<float>{1.0f, 1.0f});
  const auto* ap = reinterpret_cast<const __nv_bfloat16*>(a.get());
  cuda::PreparedWeights pw{w.get(), 128, 128, 1};
  cuda::PreparedWeights bad_k{w.get(), 128, 120, 1};
  EXPECT_THROW(cuda::gemm_w4a16(ap, 4, bad_k, alpha.get(), out.get(), OutDType::kBF16, ws.get(), ws.size(), nullptr), Error);
  EXPECT_THROW(cuda::gemm_w4a16(ap + 1, 4, pw, alpha.get(), out.get(), OutDType::kBF16, ws.get(), ws.size(), nullptr), Error);
  EXPECT_THROW(cuda::gemm_w4a16(ap, 4, pw, alpha.get(), out.get() + 2, OutDType::kBF16, ws.get(), ws.size(), nullptr), Error);
  EXPECT_THROW(cuda::gemm_w4a16(ap, -1, pw, alpha.get(), out.get(), OutDType::kBF16, ws.get(), ws.size(), nullptr), Error);
  EXPECT_THROW(cuda::gemm_w4a16(ap, 1, cuda::PreparedWeights{w.get(), 128, 128, 2}, alpha.get(), out.get(),
                                OutDType::kBF16, ws.get(), ws.size(), nullptr), Error);
  size_t need = cuda::gemm_w4a16_workspace_bytes(1, 128, 7168);
  cuda::PreparedWeights long_k{w.get(), 128, 7168, 1};
  if (need > 0) {
    EXPECT_THROW(cuda::gemm_w4a16(ap, 1, long_k, alpha.get(), out.get(), OutDType::kBF16, ws.get(), need - 1, nullptr), Error);
  }
  DeviceBuffer<int32_t> off(std::vector<int32_t>{0, 4});
  EXPECT_THROW(cuda::grouped_gemm_w4a16(ap, 4, off.get(), cuda::PreparedWeights{w.get(), 128, 128, 2000},
                                        alpha.get(), out.get(), OutDType::kBF16, nullptr, 0, nullptr), Error);
  cuda::Nvfp4Act act{w.get(), w.get(), 0};
  EXPECT_THROW(cuda::grouped_gemm_w4a4(act, 4, off.get(), pw, alpha.get(), out.get(), OutDType::kBF16, ws.get(),
                                       ws.size(), nullptr), Error);  // scale_rows too small
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nvfp4moe::test
