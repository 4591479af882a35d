// Launchers of the NVFP4 GEMMs (cuda/gemm.h): validation, tile heuristics, dispatch over the
// token tile. Heuristics use only host-known sizes (no device reads), so calls are graph-safe.
#include "nvfp4moe/cuda/gemm.h"

#include <algorithm>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/gemm_act_dequant_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_decode_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

namespace kn = nvfp4moe::kernels;

constexpr size_t kAlign = 256;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

int sm_count() {
  int dev = 0, n = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

// Token tile from the rows one weight sees (tokens on wgmma's N side).
int tok_tile_for(int64_t rows_per_weight) {
  if (rows_per_weight <= 8) return 8;
  if (rows_per_weight <= 16) return 16;
  if (rows_per_weight <= 32) return 32;
  if (rows_per_weight <= 64) return 64;
  return 128;
}

template <int kTok>
int ctas_per_sm() {
  static int cached = [] {
    using Cfg = kn::GemmW4A16Config<kTok>;
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(kn::gemm_w4a16_sm90_kernel<kTok>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    int n = 0;
    NVFP4MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, kn::gemm_w4a16_sm90_kernel<kTok>, Cfg::kThreads, Cfg::kSmemBytes));
    return std::max(n, 1);
  }();
  return cached;
}

// Which kernel a call takes: the decode kernel (gemm_w4a16_decode_sm90.cuh: 64-row weight
// blocks, weights streamed into registers, mma.sync) for token tiles 8 and 16, the wgmma
// kernel for larger tiles (docs/GEMM.md, v6).
bool is_decode(int tok, bool grouped, int64_t m) {
  (void)grouped;
  (void)m;
  return tok <= 16;
}

template <int kTok>
int decode_ctas_per_sm() {
  static int cached = [] {
    int n = 0;
    NVFP4MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, kn::gemm_w4a16_decode_sm90_kernel<kTok>, kn::GemmDecodeConfig<kTok>::kThreads, 0));
    return std::max(n, 1);
  }();
  return cached;
}

int ctas_per_sm_for(int tok, bool decode) {
  if (decode) return tok == 8 ? decode_ctas_per_sm<8>() : decode_ctas_per_sm<16>();
  switch (tok) {
    case 8: return ctas_per_sm<8>();
    case 16: return ctas_per_sm<16>();
    case 32: return ctas_per_sm<32>();
    case 64: return ctas_per_sm<64>();
    default: return ctas_per_sm<128>();
  }
}

int64_t n_blocks_of(int64_t n) { return kn::prepared_rows(n) / kn::kWeightRowPad; }
// Weight-row blocks of a tile: 64 rows (decode kernel) or 128 (wgmma kernel).
int64_t tile_blocks_of(int64_t n, bool decode) {
  return decode ? kn::prepared_rows(n) / kn::kAtomRows : n_blocks_of(n);
}
int64_t k_stages_of(int64_t k) { return kn::prepared_cols(k) / kn::kWeightKPad; }

void check_shape(int64_t rows, int64_t n, int64_t k) {
  NVFP4MOE_CHECK(rows >= 0 && rows < (int64_t{1} << 31), "m/rows: expected 0 <= rows < 2^31, got ", rows);
  NVFP4MOE_CHECK(n >= 1 && n < (int64_t{1} << 31), "w.n: expected 1 <= N < 2^31, got ", n);
  NVFP4MOE_CHECK(k >= 16 && k % 16 == 0 && k < (int64_t{1} << 31),
                 "w.k: expected a positive multiple of 16 below 2^31, got ", k);
}

struct SplitLayout {
  size_t partial_bytes = 0, counter_bytes = 0;
  size_t total() const { return partial_bytes + counter_bytes; }
};

SplitLayout split_layout(const GemmPlan& plan, int64_t m, int64_t n) {
  SplitLayout s;
  if (plan.splits > 1) {
    int64_t tok_tiles = (m + plan.tok_tile - 1) / plan.tok_tile;
    s.partial_bytes = align_up(size_t(plan.splits) * size_t(m) * size_t(n) * sizeof(float));
    s.counter_bytes = align_up(size_t(tile_blocks_of(n, is_decode(plan.tok_tile, false, m)) * tok_tiles) * sizeof(int));
  }
  return s;
}

void check_ptr(const void* p, const char* name) {
  NVFP4MOE_CHECK(p != nullptr, name, ": expected a device pointer, got null");
  NVFP4MOE_CHECK(is_aligned(p, 16), name, ": expected 16-byte alignment, got ", p);
}

void check_weights(const PreparedWeights& w, bool grouped) {
  check_ptr(w.data, "w.data");
  if (grouped) {
    NVFP4MOE_CHECK(w.num_experts >= 1 && w.num_experts <= kn::kMaxExperts,
                   "w.num_experts: expected 1..", kn::kMaxExperts, ", got ", w.num_experts);
  } else {
    NVFP4MOE_CHECK(w.num_experts == 1, "w.num_experts: a single GEMM takes one weight, got ",
                   w.num_experts);
  }
}

template <int kTok>
void launch(const kn::GemmW4A16Params& p, int grid, cudaStream_t stream) {
  using Cfg = kn::GemmW4A16Config<kTok>;
  ctas_per_sm<kTok>();  // sets the dynamic shared memory limit once
  kn::gemm_w4a16_sm90_kernel<kTok><<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

// The decode kernel counts tiles in 64-row weight blocks.
template <int kTok>
void launch_decode(kn::GemmW4A16Params p, int grid, cudaStream_t stream) {
  p.n_blocks = int(kn::prepared_rows(p.n) / kn::kAtomRows);
  kn::gemm_w4a16_decode_sm90_kernel<kTok><<<grid, kn::GemmDecodeConfig<kTok>::kThreads, 0, stream>>>(p);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void dispatch(int tok, bool decode, const kn::GemmW4A16Params& p, int grid, cudaStream_t stream) {
  if (decode) {
    if (tok == 8) launch_decode<8>(p, grid, stream);
    else launch_decode<16>(p, grid, stream);
    return;
  }
  switch (tok) {
    case 8: launch<8>(p, grid, stream); break;
    case 16: launch<16>(p, grid, stream); break;
    case 32: launch<32>(p, grid, stream); break;
    case 64: launch<64>(p, grid, stream); break;
    default: launch<128>(p, grid, stream); break;
  }
}

kn::GemmW4A16Params base_params(const __nv_bfloat16* a, int64_t rows, const PreparedWeights& w,
                                const float* alpha, void* out, OutDType out_dtype) {
  kn::GemmW4A16Params p{};
  p.a = a;
  p.w = w.data;
  p.w_expert_bytes = prepared_weight_bytes(w.n, w.k);
  p.alpha = alpha;
  p.out = out;
  p.out_f32 = out_dtype == OutDType::kFP32;
  p.num_experts = w.num_experts;
  p.rows = int(rows);
  p.n = int(w.n);
  p.k = int(w.k);
  p.k_stages = int(k_stages_of(w.k));
  p.n_blocks = int(n_blocks_of(w.n));
  p.splits = 1;
  return p;
}

void check_common(int64_t rows, const PreparedWeights& w, const float* alpha, void* out,
                  OutDType out_dtype, bool grouped) {
  check_shape(rows, w.n, w.k);
  check_weights(w, grouped);
  NVFP4MOE_CHECK(out_dtype == OutDType::kBF16 || out_dtype == OutDType::kFP32,
                 "out_dtype: expected kBF16 or kFP32, got ", int(out_dtype));
  if (rows > 0) {
    NVFP4MOE_CHECK(alpha != nullptr && is_aligned(alpha, 8), "alpha: expected an 8-byte aligned device pointer, got ",
                   static_cast<const void*>(alpha));
    check_ptr(out, "out");
  }
}

void run_act_dequant(const Nvfp4Act& a, int64_t rows, int64_t k, const int32_t* off, int num_experts,
                     __nv_bfloat16* out, cudaStream_t stream) {
  int64_t work = rows * (k / 16);
  int64_t blocks = std::min<int64_t>((work + kn::kActDequantThreads - 1) / kn::kActDequantThreads,
                                     int64_t(sm_count()) * 16);
  kn::act_dequant_bf16_sm90_kernel<<<int(std::max<int64_t>(blocks, 1)), kn::kActDequantThreads, 0, stream>>>(
      a.codes, a.scales, int(rows), int(k), off, num_experts, int(a.scale_rows), out);
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

void check_act(const Nvfp4Act& a, int64_t rows, int64_t k, bool grouped, int num_experts) {
  check_ptr(a.codes, "a.codes");
  check_ptr(a.scales, "a.scales");
  if (grouped) {
    int64_t need = expert_scale_rows_capacity(rows, num_experts);
    NVFP4MOE_CHECK(a.scale_rows >= need && a.scale_rows % 128 == 0 && a.scale_rows < (int64_t{1} << 31),
                   "a.scale_rows: expected a multiple of 128 >= expert_scale_rows_capacity(rows, E) = ",
                   need, ", got ", a.scale_rows);
  }
  (void)k;
}

}  // namespace

GemmPlan plan_gemm(int64_t m, int64_t n, int64_t k) {
  check_shape(m, n, k);
  GemmPlan plan;
  plan.tok_tile = tok_tile_for(m);
  const bool decode = is_decode(plan.tok_tile, false, m);
  int64_t tiles = tile_blocks_of(n, decode) * ((m + plan.tok_tile - 1) / plan.tok_tile);
  int64_t ctas = int64_t(sm_count()) * ctas_per_sm_for(plan.tok_tile, decode);
  // wgmma kernel: >= 2 stages per split (its pipeline runs kStages-2 ahead); decode kernel:
  // >= 1 stage (one atom per K warp), one wave of CTAs.
  int64_t max_splits = std::max<int64_t>(1, decode ? k_stages_of(k) : k_stages_of(k) / 2);
  if (tiles > 0 && tiles < ctas) plan.splits = int(std::clamp<int64_t>(ctas / tiles, 1, max_splits));
  int64_t per = (k_stages_of(k) + plan.splits - 1) / plan.splits;
  plan.splits = int((k_stages_of(k) + per - 1) / per);  // no empty split
  plan.grid = int(decode ? std::max<int64_t>(1, std::min(tiles * plan.splits, ctas)) : tiles * plan.splits);
  return plan;
}

GemmPlan plan_grouped_gemm(int64_t rows, int64_t n, int64_t k, int num_experts) {
  check_shape(rows, n, k);
  NVFP4MOE_CHECK(num_experts >= 1 && num_experts <= kn::kMaxExperts, "num_experts: expected 1..",
                 kn::kMaxExperts, ", got ", num_experts);
  GemmPlan plan;
  plan.tok_tile = tok_tile_for((rows + num_experts - 1) / num_experts);  // balanced routing
  const bool decode = is_decode(plan.tok_tile, true, rows);
  int64_t bound = tile_blocks_of(n, decode) * ((rows + plan.tok_tile - 1) / plan.tok_tile + num_experts);
  int64_t ctas = int64_t(sm_count()) * ctas_per_sm_for(plan.tok_tile, decode);
  plan.grid = int(std::max<int64_t>(1, std::min(bound, ctas)));
  return plan;
}

size_t gemm_w4a16_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  return split_layout(plan_gemm(m, n, k), m, n).total();
}

size_t gemm_w4a4_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  return align_up(size_t(m) * size_t(k) * 2) + gemm_w4a16_workspace_bytes(m, n, k);
}

size_t grouped_gemm_w4a16_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts) {
  plan_grouped_gemm(rows, n, k, num_experts);  // validates
  return 0;
}

size_t grouped_gemm_w4a4_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts) {
  plan_grouped_gemm(rows, n, k, num_experts);
  return align_up(size_t(rows) * size_t(k) * 2);
}

void gemm_w4a16(const __nv_bfloat16* a, int64_t m, const PreparedWeights& w, const float* alpha,
                void* out, OutDType out_dtype, void* workspace, size_t workspace_bytes,
                cudaStream_t stream) {
  check_common(m, w, alpha, out, out_dtype, false);
  if (m == 0) return;
  check_ptr(a, "a");
  GemmPlan plan = plan_gemm(m, w.n, w.k);
  SplitLayout ws = split_layout(plan, m, w.n);
  NVFP4MOE_CHECK(workspace_bytes >= ws.total(), "workspace_bytes: expected >= gemm_w4a16_workspace_bytes = ",
                 ws.total(), ", got ", workspace_bytes);
  kn::GemmW4A16Params p = base_params(a, m, w, alpha, out, out_dtype);
  p.splits = plan.splits;
  if (plan.splits > 1) {
    check_ptr(workspace, "workspace");
    p.partial = static_cast<float*>(workspace);
    p.counters = reinterpret_cast<int*>(static_cast<uint8_t*>(workspace) + ws.partial_bytes);
  }
  dispatch(plan.tok_tile, is_decode(plan.tok_tile, false, m), p, plan.grid, stream);
}

void gemm_w4a4(const Nvfp4Act& a, int64_t m, const PreparedWeights& w, const float* alpha,
               void* out, OutDType out_dtype, void* workspace, size_t workspace_bytes,
               cudaStream_t stream) {
  check_common(m, w, alpha, out, out_dtype, false);
  if (m == 0) return;
  check_act(a, m, w.k, false, 1);
  size_t act_bytes = align_up(size_t(m) * size_t(w.k) * 2);
  size_t need = gemm_w4a4_workspace_bytes(m, w.n, w.k);
  NVFP4MOE_CHECK(workspace_bytes >= need, "workspace_bytes: expected >= gemm_w4a4_workspace_bytes = ", need,
                 ", got ", workspace_bytes);
  check_ptr(workspace, "workspace");
  auto* act = static_cast<__nv_bfloat16*>(workspace);
  run_act_dequant(a, m, w.k, nullptr, 1, act, stream);
  gemm_w4a16(act, m, w, alpha, out, out_dtype, static_cast<uint8_t*>(workspace) + act_bytes,
             workspace_bytes - act_bytes, stream);
}

void grouped_gemm_w4a16(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                        const PreparedWeights& w, const float* alpha, void* out,
                        OutDType out_dtype, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream) {
  (void)workspace;
  (void)workspace_bytes;
  check_common(rows, w, alpha, out, out_dtype, true);
  if (rows == 0) return;
  check_ptr(a, "a");
  NVFP4MOE_CHECK(off != nullptr && is_aligned(off, 4), "off: expected a 4-byte aligned device pointer");
  GemmPlan plan = plan_grouped_gemm(rows, w.n, w.k, w.num_experts);
  kn::GemmW4A16Params p = base_params(a, rows, w, alpha, out, out_dtype);
  p.off = off;
  dispatch(plan.tok_tile, is_decode(plan.tok_tile, true, rows), p, plan.grid, stream);
}

void grouped_gemm_w4a4(const Nvfp4Act& a, int64_t rows, const int32_t* off,
                       const PreparedWeights& w, const float* alpha, void* out,
                       OutDType out_dtype, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
  check_common(rows, w, alpha, out, out_dtype, true);
  if (rows == 0) return;
  check_act(a, rows, w.k, true, w.num_experts);
  NVFP4MOE_CHECK(off != nullptr && is_aligned(off, 4), "off: expected a 4-byte aligned device pointer");
  size_t need = grouped_gemm_w4a4_workspace_bytes(rows, w.n, w.k, w.num_experts);
  NVFP4MOE_CHECK(workspace_bytes >= need, "workspace_bytes: expected >= grouped_gemm_w4a4_workspace_bytes = ",
                 need, ", got ", workspace_bytes);
  check_ptr(workspace, "workspace");
  auto* act = static_cast<__nv_bfloat16*>(workspace);
  run_act_dequant(a, rows, w.k, off, w.num_experts, act, stream);
  grouped_gemm_w4a16(act, rows, off, w, alpha, out, out_dtype, nullptr, 0, stream);
}

}  // namespace nvfp4moe::cuda
