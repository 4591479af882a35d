// Benchmark of the NVFP4 GEMMs on Hopper (cuda/gemm.h) against cuBLASLt bf16 on the same
// (M, N, K) (bf16 weights; for grouped GEMMs one cuBLASLt launch per non-empty expert).
// Prints the device, the measured copy-bandwidth ceiling, then per shape: time, TFLOP/s,
// weight GB/s, fraction of copy bandwidth (weight + activation + output bytes), fraction of
// the cuBLAS TFLOP/s, speed-up over cuBLAS. --json FILE writes the same rows.
// Inputs rotate through buffers larger than L2 (grouped: rotating routings), CUDA events,
// median of many calls (bench_util.h). Flags: --quick (fewer shapes), --single M,N,K (one
// single GEMM, for profilers), --decode (decode shapes only), --grouped [--rows a,b], --singles,
// --tok/--splits/--prefetch/--block-n/--hot/--claim/--kwarps/--ring (tuning overrides, below), --json FILE.
// Column `pipe`: dec = decode kernel (dec4: wide CTAs; ring: the ring decode kernel; +c: tiles
// claimed dynamically), cp = the cp.async wgmma kernel, ws = its warp-specialized variant.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/weights.h"
#include "nvfp4moe/format/swizzle.h"

namespace nb = nvfp4moe::bench;
namespace nc = nvfp4moe::cuda;

#define CUBLAS_CHECK(x)                                                              \
  do {                                                                               \
    cublasStatus_t st_ = (x);                                                        \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                              \
      std::fprintf(stderr, "%s failed: %d (%s:%d)\n", #x, int(st_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

namespace {

// Random bytes; scale_mode maps them into plausible e4m3 scales 0x30..0x3f.
__global__ void fill_bytes_kernel(uint8_t* p, size_t n, uint32_t seed, int scale_mode) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 15; h *= 0x2C1B3C6Du; h ^= h >> 12; h *= 0x297A2D39u; h ^= h >> 15;
    p[i] = scale_mode ? uint8_t(0x30 + (h & 15)) : uint8_t(h);
  }
}
void fill_bytes(void* p, size_t n, uint32_t seed, bool scales) {
  if (n) fill_bytes_kernel<<<1024, 256>>>(static_cast<uint8_t*>(p), n, seed, scales ? 1 : 0);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

// C[M,N] (row-major bf16) = A[M,K] x W[N,K]^T with cuBLASLt, fp32 accumulation.
class CublasBf16 {
 public:
  explicit CublasBf16(size_t ws_bytes = size_t(64) << 20) : ws_(ws_bytes) { CUBLAS_CHECK(cublasLtCreate(&lt_)); }
  ~CublasBf16() {
    for (auto& [key, plan] : plans_) {
      cublasLtMatmulDescDestroy(plan.op);
      cublasLtMatrixLayoutDestroy(plan.w);
      cublasLtMatrixLayoutDestroy(plan.a);
      cublasLtMatrixLayoutDestroy(plan.c);
    }
    cublasLtDestroy(lt_);
  }
  void run(const void* a, const void* w, void* c, int64_t m, int64_t n, int64_t k, cudaStream_t s) {
    Plan& p = plan(m, n, k);
    float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(lt_, p.op, &one, w, p.w, a, p.a, &zero, c, p.c, c, p.c, &p.algo,
                                ws_.get(), ws_.bytes(), s));
  }

 private:
  struct Plan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t w, a, c;
    cublasLtMatmulAlgo_t algo;
  };
  Plan& plan(int64_t m, int64_t n, int64_t k) {
    auto key = std::make_tuple(m, n, k);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    Plan p;
    // Column-major view: D (N x M) = W^T(op T of K x N) x A (K x M).
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof(nn)));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.w, CUDA_R_16BF, k, n, k));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, m, k));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, n, m, n));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t wsb = ws_.bytes();
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.w, p.a, p.c, p.c, pref, 1, &res, &found));
    cublasLtMatmulPreferenceDestroy(pref);
    if (found == 0) { std::fprintf(stderr, "cuBLASLt: no algorithm\n"); std::exit(1); }
    p.algo = res.algo;
    return plans_.emplace(key, p).first->second;
  }
  cublasLtHandle_t lt_;
  nb::DeviceBytes ws_;
  std::map<std::tuple<int64_t, int64_t, int64_t>, Plan> plans_;
};

struct Row {
  std::string name, kind;
  int64_t m, n, k;
  int experts;
  double us, cublas_us, weight_bytes, io_bytes;
  nc::GemmPlan plan;
};

struct Ctx {
  nb::DeviceInfo dev;
  double copy_gbs = 0;
  cudaStream_t s = nullptr;
  CublasBf16 cublas;
  std::vector<Row> rows;
};

// Single GEMMs, W4A16 and W4A4, rotating weights/activations beyond L2.
void bench_single(Ctx& cx, const std::string& name, int64_t m, int64_t n, int64_t k) {
  const int64_t wbytes = nc::prepared_weight_bytes(n, k);
  const double act_bytes = double(m) * k * 2, out_bytes = double(m) * n * 2;
  const int rot = nb::rotation_count(double(wbytes) + act_bytes, cx.dev.l2_bytes);
  nb::RotatingBuffers w(size_t(wbytes), rot), a(size_t(m * k * 2), rot);
  for (int i = 0; i < rot; ++i) fill_bytes(w.at(i), size_t(wbytes), 11 + i, false);
  a.fill_random(5, cx.s);
  nb::RotatingBuffers a_codes(size_t(m * k / 2), rot), a_scales(size_t(nvfp4moe::swizzled_scale_bytes(m, k)), rot);
  for (int i = 0; i < rot; ++i) {
    fill_bytes(a_codes.at(i), a_codes.bytes_each(), 77 + i, false);
    fill_bytes(a_scales.at(i), a_scales.bytes_each(), 99 + i, true);
  }
  nb::DeviceBytes out(size_t(m * n * 2)), alpha(8);
  float alpha_h[2] = {1.0f, 1.0f};
  NVFP4MOE_CUDA_CHECK(cudaMemcpy(alpha.get(), alpha_h, 8, cudaMemcpyHostToDevice));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());  // pageable copies may land after cudaMemcpy returns
  size_t ws16 = nc::gemm_w4a16_workspace_bytes(m, n, k), ws4 = nc::gemm_w4a4_workspace_bytes(m, n, k);
  nb::DeviceBytes ws(std::max<size_t>(std::max(ws16, ws4), 256));
  NVFP4MOE_CUDA_CHECK(cudaMemset(ws.get(), 0, ws.bytes()));
  int iters = nb::iterations_for_bytes(double(wbytes) + act_bytes);

  auto t16 = nb::time_median_us(cx.s, [&](int i) {
    nc::PreparedWeights pw{w.at<uint8_t>(i), n, k, 1};
    nc::gemm_w4a16(a.at<__nv_bfloat16>(i), m, pw, alpha.get<float>(), out.get(), nc::OutDType::kBF16, ws.get(),
                   ws.bytes(), cx.s);
  }, 5, iters);
  auto t4 = nb::time_median_us(cx.s, [&](int i) {
    nc::PreparedWeights pw{w.at<uint8_t>(i), n, k, 1};
    nc::Nvfp4Act act{a_codes.at<uint8_t>(i), a_scales.at<uint8_t>(i), 0};
    nc::gemm_w4a4(act, m, pw, alpha.get<float>(), out.get(), nc::OutDType::kBF16, ws.get(), ws.bytes(), cx.s);
  }, 5, iters);
  // cuBLAS bf16 baseline: bf16 weights (reuse the rotation count for >L2 inputs).
  const int rot_bf = nb::rotation_count(double(n) * k * 2 + act_bytes, cx.dev.l2_bytes);
  nb::RotatingBuffers wb(size_t(n * k * 2), rot_bf);
  wb.fill_random(3, cx.s);
  auto tc = nb::time_median_us(cx.s, [&](int i) {
    cx.cublas.run(a.at(i % rot), wb.at(i), out.get(), m, n, k, cx.s);
  }, 5, iters);
  nc::GemmPlan plan = nc::plan_gemm(m, n, k);
  cx.rows.push_back(Row{name, "W4A16", m, n, k, 1, t16.median_us, tc.median_us, double(wbytes),
                        double(wbytes) + act_bytes + out_bytes, plan});
  cx.rows.push_back(Row{name, "W4A4", m, n, k, 1, t4.median_us, tc.median_us, double(wbytes),
                        double(wbytes) + double(m) * k * 0.5625 + out_bytes, plan});
}

// Routing of `rows` rows over E experts: uniform (random expert per row) or skewed (Zipf,
// weight 1/(rank+1) over a random expert order).
std::vector<int32_t> routing(std::mt19937& rng, int64_t rows, int experts, bool skewed) {
  std::vector<double> wgt(size_t(experts), 1.0);
  std::vector<int> perm(static_cast<size_t>(experts), 0);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  if (skewed) for (int i = 0; i < experts; ++i) wgt[size_t(perm[size_t(i)])] = 1.0 / (i + 1);
  std::discrete_distribution<int> pick(wgt.begin(), wgt.end());
  std::vector<int64_t> cnt(size_t(experts), 0);
  for (int64_t r = 0; r < rows; ++r) cnt[size_t(pick(rng))]++;
  std::vector<int32_t> off(size_t(experts + 1), 0);
  for (int e = 0; e < experts; ++e) off[size_t(e + 1)] = off[size_t(e)] + int32_t(cnt[size_t(e)]);
  return off;
}

struct GroupedBuffers {
  nb::DeviceBytes w, wb;  // prepared NVFP4 and bf16 weights of all experts
  int64_t n, k;
  int experts;
};

void bench_grouped(Ctx& cx, GroupedBuffers& g, const std::string& name, int64_t rows, bool skewed) {
  const int64_t n = g.n, k = g.k;
  const int e_count = g.experts;
  const int64_t wbytes = nc::prepared_weight_bytes(n, k);
  constexpr int kRoutings = 8;
  std::mt19937 rng(uint32_t(rows * 7 + skewed));
  std::vector<std::vector<int32_t>> offs;
  std::vector<nb::DeviceBytes> off_d;
  double touched = 0;
  for (int r = 0; r < kRoutings; ++r) {
    offs.push_back(routing(rng, rows, e_count, skewed));
    off_d.emplace_back(size_t(e_count + 1) * 4);
    NVFP4MOE_CUDA_CHECK(cudaMemcpy(off_d.back().get(), offs.back().data(), size_t(e_count + 1) * 4,
                                   cudaMemcpyHostToDevice));
    for (int e = 0; e < e_count; ++e) touched += offs.back()[size_t(e + 1)] > offs.back()[size_t(e)];
  }
  touched /= kRoutings;
  nb::DeviceBytes a(size_t(rows * k * 2)), out(size_t(rows * n * 2)), alpha(size_t(e_count) * 8);
  nb::fill_random_act16(a.get<uint16_t>(), size_t(rows * k), false, 9, cx.s);
  std::vector<float> ah(size_t(2 * e_count), 1.0f);
  NVFP4MOE_CUDA_CHECK(cudaMemcpy(alpha.get(), ah.data(), ah.size() * 4, cudaMemcpyHostToDevice));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());  // pageable copies (offsets too) may land after cudaMemcpy returns
  nb::DeviceBytes codes(size_t(rows * k / 2)),
      scales(size_t(nvfp4moe::expert_scale_rows_capacity(rows, e_count) * nvfp4moe::padded_scale_cols(k)));
  fill_bytes(codes.get(), codes.bytes(), 5, false);
  fill_bytes(scales.get(), scales.bytes(), 6, true);
  size_t ws_bytes = std::max(nc::grouped_gemm_w4a4_workspace_bytes(rows, n, k, e_count),
                             nc::grouped_gemm_w4a16_workspace_bytes(rows, n, k, e_count));
  nb::DeviceBytes ws(std::max<size_t>(ws_bytes, 256));
  NVFP4MOE_CUDA_CHECK(cudaMemset(ws.get(), 0, ws.bytes()));  // split-K counters start at zero
  nc::PreparedWeights pw{g.w.get<uint8_t>(), n, k, e_count};
  int iters = std::clamp(nb::iterations_for_bytes(touched * double(wbytes)), 20, 100);
  auto t16 = nb::time_median_us(cx.s, [&](int i) {
    nc::grouped_gemm_w4a16(a.get<__nv_bfloat16>(), rows, off_d[size_t(i % kRoutings)].get<int32_t>(), pw,
                           alpha.get<float>(), out.get(), nc::OutDType::kBF16, ws.get(), ws.bytes(), cx.s);
  }, 3, iters);
  auto t4 = nb::time_median_us(cx.s, [&](int i) {
    nc::Nvfp4Act act{codes.get<uint8_t>(), scales.get<uint8_t>(),
                     nvfp4moe::expert_scale_rows_capacity(rows, e_count)};
    nc::grouped_gemm_w4a4(act, rows, off_d[size_t(i % kRoutings)].get<int32_t>(), pw, alpha.get<float>(),
                          out.get(), nc::OutDType::kBF16, ws.get(), ws.bytes(), cx.s);
  }, 3, iters);
  auto tc = nb::time_median_us(cx.s, [&](int i) {
    const auto& off = offs[size_t(i % kRoutings)];
    for (int e = 0; e < e_count; ++e) {
      int64_t me = off[size_t(e + 1)] - off[size_t(e)];
      if (me == 0) continue;
      cx.cublas.run(a.get<uint8_t>() + int64_t(off[size_t(e)]) * k * 2, g.wb.get<uint8_t>() + int64_t(e) * n * k * 2,
                    out.get<uint8_t>() + int64_t(off[size_t(e)]) * n * 2, me, n, k, cx.s);
    }
  }, 2, std::min(iters, 30));
  nc::GemmPlan plan = nc::plan_grouped_gemm(rows, n, k, e_count);
  std::string nm = name + (skewed ? " skew" : " unif");
  double wb_touched = touched * double(wbytes);
  cx.rows.push_back(Row{nm, "W4A16", rows, n, k, e_count, t16.median_us, tc.median_us, wb_touched,
                        wb_touched + double(rows) * k * 2 + double(rows) * n * 2, plan});
  cx.rows.push_back(Row{nm, "W4A4", rows, n, k, e_count, t4.median_us, tc.median_us, wb_touched,
                        wb_touched + double(rows) * k * 0.5625 + double(rows) * n * 2, plan});
}

}  // namespace

static int run_benchmark(int argc, char** argv) {
  Ctx cx;
  cx.dev = nb::device_info();
  NVFP4MOE_CUDA_CHECK(cudaStreamCreate(&cx.s));
  cx.copy_gbs = nb::measure_copy_bandwidth_gbs(cx.s);
  std::printf("%s\ncopy bandwidth (read+write): %.0f GB/s\n", nb::describe(cx.dev).c_str(), cx.copy_gbs);
  const bool quick = nb::has_flag(argc, argv, "--quick");
  // --decode: only the shapes of the decode path (<= 16 rows per weight).
  const bool decode_only = nb::has_flag(argc, argv, "--decode");
  // --grouped: only the grouped shapes (--rows a,b,c: these row counts). --tok T / --splits S /
  // --prefetch P / --block-n B: force the token tile / the grouped decode split count (tuning;
  // 0 = heuristics) / the decode kernel's L2 prefetch distance in atoms (-1 = default, 0 = off) /
  // the wgmma kernel's weight rows per CTA (128, 256; 0 = heuristics).
  const bool grouped_only = nb::has_flag(argc, argv, "--grouped");
  const bool singles_only = nb::has_flag(argc, argv, "--singles");  // only the single-GEMM shapes
  {
    const char* tok = nb::arg_value(argc, argv, "--tok");
    const char* splits = nb::arg_value(argc, argv, "--splits");
    const char* prefetch = nb::arg_value(argc, argv, "--prefetch");  // decode L2 prefetch atoms
    const char* block_n = nb::arg_value(argc, argv, "--block-n");    // wgmma weight rows per CTA
    nc::set_gemm_plan_override(tok ? std::atoi(tok) : 0, splits ? std::atoi(splits) : 0,
                               prefetch ? std::atoi(prefetch) : -1, block_n ? std::atoi(block_n) : 0);
    // --ws 0|1: the 256-row CTAs on the warp-specialized kernel (cuda/gemm.h
    // set_gemm_ws_pipeline); the `pipe` column shows ws where it runs.
    if (const char* ws = nb::arg_value(argc, argv, "--ws")) nc::set_gemm_ws_pipeline(std::atoi(ws));
    // --ws-step 16|32: the warp-specialized kernel's MMA width step (set_gemm_ws_width_step).
    if (const char* step = nb::arg_value(argc, argv, "--ws-step")) nc::set_gemm_ws_width_step(std::atoi(step));
    // --ws-consumers 2|4: consumer warpgroups of the warp-specialized kernel at token tile 64
    // (set_gemm_ws_consumers).
    if (const char* wc = nb::arg_value(argc, argv, "--ws-consumers")) nc::set_gemm_ws_consumers(std::atoi(wc));
    // --ws-epilogue 0|1: the warp-specialized kernel's output through shared memory in 16-byte
    // stores (1) or each thread's own elements (0) (set_gemm_ws_staged_epilogue).
    if (const char* e = nb::arg_value(argc, argv, "--ws-epilogue")) nc::set_gemm_ws_staged_epilogue(std::atoi(e));
    // --act-store 0|1: the prefill kernels' activation front ends (act_permute, act_dequant) store
    // 4-byte pieces (0) or 16-byte chunks after lane transposes (1) (set_gemm_act_chunk_stores).
    if (const char* st = nb::arg_value(argc, argv, "--act-store")) nc::set_gemm_act_chunk_stores(std::atoi(st));
    // --ws-fit 0|1: single GEMMs on the warp-specialized kernel take token-tile counts fitted to
    // whole waves (set_gemm_ws_single_fit; column `tok` shows 128/R for tiles of at most R rows).
    if (const char* f = nb::arg_value(argc, argv, "--ws-fit")) nc::set_gemm_ws_single_fit(std::atoi(f));
    // --ws-persist 0|1: those calls run one CTA per SM looping over tiles, or one CTA per tile
    // (set_gemm_ws_single_persistent; JSON `grid`).
    if (const char* pe = nb::arg_value(argc, argv, "--ws-persist")) nc::set_gemm_ws_single_persistent(std::atoi(pe));
    // --hot R: grouped experts above R rows in a second launch at token tile 128 (-1 = the
    // heuristics, 0 = one launch); column `hot` shows the plan's threshold.
    if (const char* hot = nb::arg_value(argc, argv, "--hot")) nc::set_gemm_hot_expert_rows(std::atoi(hot));
    // --claim 0|1: grouped decode tiles static or claimed from a counter (cuda/gemm.h
    // set_gemm_decode_claiming); the `pipe` column shows dec+c when claimed.
    if (const char* claim = nb::arg_value(argc, argv, "--claim")) nc::set_gemm_decode_claiming(std::atoi(claim));
    // --kwarps 2|4: grouped decode CTAs of 2 or 4 K warps (cuda/gemm.h set_gemm_decode_k_warps;
    // -1 = heuristics); the `pipe` column shows dec4 for the 4-K-warp CTA.
    if (const char* kw = nb::arg_value(argc, argv, "--kwarps")) nc::set_gemm_decode_k_warps(std::atoi(kw));
    // --ring 0|1: the register or the ring decode kernel (cuda/gemm.h set_gemm_decode_ring);
    // the `pipe` column shows ring when the ring kernel runs.
    if (const char* ring = nb::arg_value(argc, argv, "--ring")) nc::set_gemm_decode_ring(std::atoi(ring));
  }
  // --match S: only the shapes whose name contains S (e.g. "Qwen3", "DSV3 w2").
  const char* match = nb::arg_value(argc, argv, "--match");
  // --single M,N,K: only that single GEMM (for profilers).
  const char* single = nb::arg_value(argc, argv, "--single");
  long long sm = 0, sn = 0, sk = 0;
  if (single && std::sscanf(single, "%lld,%lld,%lld", &sm, &sn, &sk) == 3) {
    bench_single(cx, "single", sm, sn, sk);
  } else {

  struct Shape { const char* name; int64_t n, k; };
  const Shape shapes[] = {{"DSV3 w13", 4096, 7168}, {"DSV3 w2", 7168, 2048}, {"Qwen3 w13", 1536, 2048},
                          {"Qwen3 w2", 2048, 768}};
  const int64_t ms_full[] = {1, 16, 128, 4096};
  for (const Shape& s : shapes) {
    if (grouped_only) break;
    if (match && std::strstr(s.name, match) == nullptr) continue;
    for (int64_t m : ms_full) {
      if (quick && m != 1 && m != 4096) continue;
      if (decode_only && m > 16) continue;
      bench_single(cx, s.name, m, s.n, s.k);
    }
  }
  if (!decode_only && !grouped_only && !match) bench_single(cx, "dense 8192^3", 8192, 8192, 8192);

  // Grouped, E = 256, the DeepSeek-V3 expert shapes: w13 at every row count, w2 (the MoE
  // layer's second GEMM: K = 2048, so 4x shorter tiles) at the decode row counts (<= 2048).
  std::vector<int64_t> row_counts = {8, 64, 512, 2048, 4096, 8192, 32768};
  const char* rows_list = nb::arg_value(argc, argv, "--rows");
  if (const char* list = rows_list) {  // --rows a,b,c: these row counts, for every shape (no row caps)
    row_counts.clear();
    for (const char* c = list; *c != 0;) {
      row_counts.push_back(std::atoll(c));
      while (*c != 0 && *c != ',') ++c;
      if (*c == ',') ++c;
    }
  }
  // Qwen3-30B-A3B (E = 128, top-8) at the decode row counts: its small GEMMs (T = 1: 8 rows of
  // 1536 x 2048 and 2048 x 768) are where the per-tile costs weigh most.
  struct GroupedShape { const char* name; int64_t n, k; int experts; int64_t max_rows; };
  const GroupedShape grouped_shapes[] = {{"E256 DSV3 w13", 4096, 7168, 256, int64_t(1) << 40},
                                         {"E256 DSV3 w2", 7168, 2048, 256, 2048},
                                         {"E128 Qwen3 w13", 1536, 2048, 128, 2048},
                                         {"E128 Qwen3 w2", 2048, 768, 128, 2048}};
  for (const GroupedShape& gs : grouped_shapes) {
    if (singles_only) break;
    if (match && std::strstr(gs.name, match) == nullptr) continue;
    GroupedBuffers g;
    g.n = gs.n;
    g.k = gs.k;
    g.experts = gs.experts;
    g.w = nb::DeviceBytes(size_t(nc::prepared_weight_bytes(g.n, g.k)) * g.experts);
    g.wb = nb::DeviceBytes(size_t(g.n * g.k * 2) * g.experts);
    fill_bytes(g.w.get(), g.w.bytes(), 1234, false);
    nb::fill_random_act16(g.wb.get<uint16_t>(), g.wb.bytes() / 2, false, 4321, cx.s);
    for (int64_t rows : row_counts) {
      if (rows > gs.max_rows && rows_list == nullptr) continue;
      if (quick && rows != 64 && rows != 32768) continue;
      if (decode_only && rows > 4096) continue;
      bench_grouped(cx, g, gs.name, rows, false);
      bench_grouped(cx, g, gs.name, rows, true);
    }
  }

  }  // not --single

  nb::Table table({"shape", "kind", "M/rows", "N", "K", "tok", "bn", "pipe", "split", "hot", "us", "TFLOP/s", "wGB/s", "%copy",
                   "cuBLAS us", "cuBLAS TF", "%cuBLAS TF", "x cuBLAS"});
  nb::JsonWriter json;
  nb::add_device_meta(json.meta(), cx.dev, cx.copy_gbs);
  for (const Row& r : cx.rows) {
    double flops = 2.0 * r.m * r.n * r.k;
    double tf = flops / (r.us * 1e-6) / 1e12, tfc = flops / (r.cublas_us * 1e-6) / 1e12;
    double wgbs = r.weight_bytes / (r.us * 1e-6) / 1e9;
    double frac_copy = r.io_bytes / (r.us * 1e-6) / 1e9 / cx.copy_gbs;
    table.add_row({r.name, r.kind, std::to_string(r.m), std::to_string(r.n), std::to_string(r.k),
                   std::to_string(r.plan.tok_tile) + (r.plan.tile_rows > 0 ? "/" + std::to_string(r.plan.tile_rows) : ""),
                   std::to_string(r.plan.block_n),
                   r.plan.tok_tile <= 16 ? std::string(r.plan.ring ? "ring" : r.plan.k_warps == 4 ? "dec4" : "dec") + (r.plan.claim ? "+c" : "")
                                         : std::string(r.plan.ws && r.plan.block_n == 256 ? "ws" : "cp"),
                   std::to_string(r.plan.splits),
                   std::to_string(r.plan.hot_rows), nb::fmt("%.1f", r.us),
                   nb::fmt("%.1f", tf), nb::fmt("%.0f", wgbs), nb::fmt("%.0f%%", 100 * frac_copy),
                   nb::fmt("%.1f", r.cublas_us), nb::fmt("%.1f", tfc), nb::fmt("%.0f%%", 100 * tf / tfc),
                   nb::fmt("%.2f", r.cublas_us / r.us)});
    nb::JsonObject o;
    o.add("shape", r.name).add("kind", r.kind).add("m", r.m).add("n", r.n).add("k", r.k).add("experts", r.experts)
        .add("tok_tile", r.plan.tok_tile).add("block_n", r.plan.block_n).add("hot_rows", r.plan.hot_rows).add("claim", r.plan.claim).add("ring", r.plan.ring).add("splits", r.plan.splits).add("tile_rows", r.plan.tile_rows).add("grid", r.plan.grid).add("us", r.us).add("tflops", tf)
        .add("weight_gbs", wgbs).add("frac_copy_bw", frac_copy).add("cublas_us", r.cublas_us)
        .add("cublas_tflops", tfc).add("frac_cublas_tflops", tf / tfc).add("speedup_vs_cublas", r.cublas_us / r.us);
    json.add_result(o);
  }
  table.print();
  if (const char* path = nb::arg_value(argc, argv, "--json")) json.write(path);
  return 0;
}

int main(int argc, char** argv) { return nb::guarded_main("nvfp4moe_bench_gemm", argc, argv, run_benchmark); }
