// Launchers of the NVFP4 GEMMs (cuda/gemm.h): validation, tile heuristics, dispatch over the
// token tile. Heuristics use only host-known sizes (no device reads), so calls are graph-safe.
#include "nvfp4moe/cuda/gemm.h"

#include <algorithm>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/pdl_launch.h"
#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/gemm_token_tiles.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/gemm_act_dequant_sm90.cuh"
#include "nvfp4moe/kernels/gemm_act_permute_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_decode_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_sm90.cuh"
#include "nvfp4moe/kernels/gemm_w4a16_ws_sm90.cuh"
#include "gemm_decode_ring.h"
#include "gemm_switches.h"
#include "tensor_map.h"

namespace nvfp4moe::cuda {
namespace {

namespace kn = nvfp4moe::kernels;
namespace sw = gemm_switches;

constexpr size_t kAlign = 256;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// SMs of the current device (cached per device: the heuristics run on every call).
int sm_count() {
  constexpr int kMaxDevices = 64;
  static int cached[kMaxDevices] = {};
  int dev = 0;
  NVFP4MOE_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev >= 0 && dev < kMaxDevices && cached[dev] > 0) return cached[dev];
  int n = 0;
  NVFP4MOE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  if (dev >= 0 && dev < kMaxDevices) cached[dev] = n;
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

template <int kTok, int kWarpGroups = 2>
int ctas_per_sm() {
  static int cached = [] {
    using Cfg = kn::GemmW4A16Config<kTok, kWarpGroups>;
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(kn::gemm_w4a16_sm90_kernel<kTok, kWarpGroups>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    int n = 0;
    NVFP4MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, kn::gemm_w4a16_sm90_kernel<kTok, kWarpGroups>, Cfg::kThreads, Cfg::kSmemBytes));
    return std::max(n, 1);
  }();
  return cached;
}

// Which kernel a call takes: the decode kernel (gemm_w4a16_decode_sm90.cuh: 64-row weight
// blocks, weights streamed into registers, mma.sync) for token tiles 8 and 16, the wgmma
// kernel for larger tiles (docs/GEMM.md, v6: a decode tile of 32 was slower than both).
bool is_decode(int tok, bool grouped, int64_t m) {
  (void)grouped;
  (void)m;
  return tok <= 16;
}

// CTAs per SM of the token-tile-8 decode kernel (register budget 65536 / 256 / CTAs). Measured
// on the H200 (docs/GEMM.md v6): grouped calls stream 12-14% faster at 4 (64 registers, a
// 16-byte spill), single M = 1 GEMMs 1-12% faster at 3 (80 registers).
constexpr int kDecode8CtasGrouped = 4;
constexpr int kDecode8CtasSingle = 3;
// Token tile 16 (v7): grouped calls stream 24% faster at 3 CTAs/SM (80 registers) than at 2
// (128); single GEMMs at M <= 16 were slower at 3 (more CTAs make the heuristic split K further:
// DSV3 w13 17.8 vs 15.9 us, Qwen3 w13 15.0 vs 10.3 us), so they keep 2.
constexpr int kDecode16CtasGrouped = 3;
constexpr int kDecode16CtasSingle = 2;

template <int kTok, int kMinCtas = kn::GemmDecodeConfig<kTok>::kMinCtasPerSm, int kKWarps = 2>
int decode_ctas_per_sm() {
  static int cached = [] {
    int n = 0;
    NVFP4MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, kn::gemm_w4a16_decode_sm90_kernel<kTok, kn::GemmDecodeConfig<kTok>::kDepth, kMinCtas, false, false, kKWarps>,
        kn::GemmDecodeConfig<kTok, 2, kMinCtas, kKWarps>::kThreads, 0));
    return std::max(n, 1);
  }();
  return cached;
}

// The wide decode CTA (512 threads, 4 K warps; kernels/gemm_w4a16_decode_sm90.cuh) for grouped
// calls whose tiles leave most of the narrow CTAs' slots empty: token tile 8 at 2 CTAs per SM
// (64 registers, as the narrow grouped kernel). Each tile then streams through 16 warps instead
// of 8, with its partial sums added in shared memory (no split-K round trip through global
// memory, which measured no gain at Qwen3 T = 1, v7).
constexpr int kDecodeWideCtas = 2;
int decode_k_warps(int tok, int splits, int64_t k, int64_t tiles_bound) {
  const int want = sw::decode_k_warps_setting();
  const bool possible = tok == 8 && splits == 1 && (kn::prepared_cols(k) / kn::kWeightKPad) % 2 == 0;
  if (!possible) return 2;
  if (want == 2 || want == 4) return want;
  return tiles_bound <= int64_t(sm_count()) * decode_ctas_per_sm<8, kDecodeWideCtas, 4>() ? 4 : 2;
}

int ctas_per_sm_for(int tok, bool decode, bool grouped, int block_n) {
  if (decode) {
    if (tok == 16) {
      return grouped ? decode_ctas_per_sm<16, kDecode16CtasGrouped>() : decode_ctas_per_sm<16, kDecode16CtasSingle>();
    }
    return grouped ? decode_ctas_per_sm<8, kDecode8CtasGrouped>() : decode_ctas_per_sm<8, kDecode8CtasSingle>();
  }
  switch (tok) {
    case 8: return ctas_per_sm<8>();
    case 16: return ctas_per_sm<16>();
    case 32: return ctas_per_sm<32>();
    case 64: return block_n == 256 ? ctas_per_sm<64, 4>() : ctas_per_sm<64>();
    default: return block_n == 256 ? ctas_per_sm<128, 4>() : ctas_per_sm<128>();
  }
}

// Weight-row blocks of a tile: 64 rows (decode kernel) or block_n = 128 or 256 (wgmma kernel;
// a 256-row block may end past Np by 128 rows).
int64_t tile_blocks_of(int64_t n, bool decode, int block_n) {
  return decode ? kn::prepared_rows(n) / kn::kAtomRows : (kn::prepared_rows(n) + block_n - 1) / block_n;
}
int64_t k_stages_of(int64_t k) { return kn::prepared_cols(k) / kn::kWeightKPad; }

void check_shape(int64_t rows, int64_t n, int64_t k) {
  NVFP4MOE_CHECK(rows >= 0 && rows < (int64_t{1} << 31), "m/rows: expected 0 <= rows < 2^31, got ", rows);
  NVFP4MOE_CHECK(n >= 1 && n < (int64_t{1} << 31), "w.n: expected 1 <= N < 2^31, got ", n);
  NVFP4MOE_CHECK(k >= 16 && k % 16 == 0 && k < (int64_t{1} << 31),
                 "w.k: expected a positive multiple of 16 below 2^31, got ", k);
}

// Workspace layout of every call: [split-K tile counters, claim counter | kernel activations |
// partial sums]. The counters sit at one fixed place for all calls: calls of other shapes that
// share the workspace (the MoE layer's two GEMMs) leave activations and partial sums behind,
// never on a counter, and the last CTA of each output tile resets its counter to zero (the
// last claim, the claim counter). A split call has at most one counter per CTA of the grid
// (splits are chosen only when tiles < CTAs), far below kMaxSplitCounters; the plans check it.
constexpr int64_t kMaxSplitCounters = 8192;
constexpr int64_t kClaimCounter = kMaxSplitCounters;  // index of the dynamic-tile counter
constexpr size_t kCounterBytes = size_t(kMaxSplitCounters + 32) * sizeof(int);  // 32 KiB + 128 B

// fp32 partial sums [splits][rows][n] of a split-K call (single or grouped).
size_t partial_bytes_for(const GemmPlan& plan, int64_t rows, int64_t n) {
  return plan.splits > 1 ? align_up(size_t(plan.splits) * size_t(rows) * size_t(n) * sizeof(float)) : 0;
}

struct WorkspaceParts {
  int* counters;
  uint8_t* act;
  float* partial;
};

WorkspaceParts carve(void* workspace, size_t act_bytes) {
  auto* ws = static_cast<uint8_t*>(workspace);
  return {reinterpret_cast<int*>(ws), ws + kCounterBytes, reinterpret_cast<float*>(ws + kCounterBytes + act_bytes)};
}

// Token tiles a grouped call over `rows` rows can have at most, per weight-row block: an
// expert with r rows has ceil(r / tok) tiles, so at most rows / tok + (experts hit) in all, and
// never more than rows.
int64_t grouped_max_tok_tiles(int64_t rows, int tok, int num_experts) {
  return std::min<int64_t>(rows, (rows + tok - 1) / tok + std::min<int64_t>(num_experts, rows));
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

template <int kTok, int kWarpGroups = 2>
void launch(kn::GemmW4A16Params p, int grid, cudaStream_t stream) {
  using Cfg = kn::GemmW4A16Config<kTok, kWarpGroups>;
  ctas_per_sm<kTok, kWarpGroups>();  // sets the dynamic shared memory limit once
  p.n_blocks = int(tile_blocks_of(p.n, false, Cfg::kBlockN));
  launch_pdl(kn::gemm_w4a16_sm90_kernel<kTok, kWarpGroups>, dim3(grid), dim3(Cfg::kThreads), Cfg::kSmemBytes, stream,
             p);
}

// The warp-specialized 256-row kernel (token tiles 64, 128 and 160, no split of K), MMA widths
// in steps of kStep tokens.
template <int kTok, int kStep = 32, int kConsumers = 2>
void launch_ws(kn::GemmW4A16Params p, int grid, cudaStream_t stream) {
  using Cfg = kn::GemmWsConfig<kTok, kStep, kConsumers>;
  static const bool attr_set = [] {
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(kn::gemm_w4a16_ws_sm90_kernel<kTok, kStep, kConsumers>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    return true;
  }();
  (void)attr_set;
  NVFP4MOE_CHECK(p.splits == 1, "internal: the warp-specialized GEMM kernel does not split K");
  p.n_blocks = int(tile_blocks_of(p.n, false, Cfg::kBlockN));
  p.staged_epilogue = sw::ws_staged_epilogue() && !p.out_f32 && p.n % 8 == 0;
  kn::WsActMaps maps{};  // the boxes of the widths the kernel can take
  const int64_t cols = int64_t(p.k_stages) * kn::kWeightKPad;
  for (int i = 0; i < kn::kWsWidths && kn::ws_width(i) <= kTok; ++i) {
    if (kn::ws_width(i) < 32 || kn::ws_width(i) % kStep != 0) continue;
    maps.box[i] = bf16_tile_map_swizzle128(p.a, p.rows, cols, kn::kWeightKPad / 2, kn::ws_width(i));
  }
  launch_pdl(kn::gemm_w4a16_ws_sm90_kernel<kTok, kStep, kConsumers>, dim3(grid), dim3(Cfg::kThreads), Cfg::kSmemBytes,
             stream, p, maps);
}

// Token tile 160 (grouped calls) with the MMA width step in force.
void launch_ws160(const kn::GemmW4A16Params& p, int grid, cudaStream_t stream) {
  if (sw::ws_width_step() == 16) launch_ws<160, 16>(p, grid, stream);
  else launch_ws<160, 32>(p, grid, stream);
}

// Whether a (non-decode) plan runs on the warp-specialized kernel (dispatch_wgmma's choice).
bool takes_ws_kernel(const GemmPlan& plan, int splits) {
  return plan.ws && plan.block_n == 256 && splits == 1 && (plan.tok_tile == 64 || plan.tok_tile == 128);
}

void dispatch_wgmma(const GemmPlan& plan, const kn::GemmW4A16Params& p, cudaStream_t stream) {
  const int grid = plan.grid;
  if (takes_ws_kernel(plan, p.splits)) {
    if (plan.tok_tile == 64) {
      if (sw::ws_consumers_tile64() == 4) launch_ws<64, 32, 4>(p, grid, stream);
      else launch_ws<64>(p, grid, stream);
    } else if (p.off != nullptr && sw::ws_tile_160()) {
      // Grouped calls at token tile 128 take balanced tiles of up to 160 rows: an expert of
      // 129-160 rows (half the experts at 128 rows on average, DeepSeek-V3 T = 4096) is then one
      // tile instead of 128 + a thin remainder that dequantizes the whole weight block again.
      // The tile count never exceeds the token-tile-128 count the grid was sized for. Measured
      // (H200, 2026-12-07): grouped DeepSeek-V3 w13 at 32768 rows 4098 -> 3681 us uniform,
      // 4227 -> 4448 skewed.
      launch_ws160(p, grid, stream);
    } else {
      // Single GEMMs: balanced tiles of up to 128 rows. Not 160 even where it saves a wave: the
      // 160-row kernel (2 A buffers, spills outside the mainloop) is slower per tile; DeepSeek-V3
      // w2 at M = 4096 ran 205 us in 7 waves of 128 against 223 us in 6 waves of 160 (H200).
      launch_ws<128>(p, grid, stream);
    }
    return;
  }
  switch (plan.tok_tile) {
    case 8: launch<8>(p, grid, stream); break;
    case 16: launch<16>(p, grid, stream); break;
    case 32: launch<32>(p, grid, stream); break;
    case 64: plan.block_n == 256 ? launch<64, 4>(p, grid, stream) : launch<64>(p, grid, stream); break;
    default: plan.block_n == 256 ? launch<128, 4>(p, grid, stream) : launch<128>(p, grid, stream); break;
  }
}

// The decode kernel counts tiles in 64-row weight blocks. kGrouped: p.off is set; only those
// calls may prefetch before the wait (their own kernel instantiation).
template <int kTok, int kMinCtas, bool kGrouped, int kKWarps = 2>
void launch_decode(kn::GemmW4A16Params p, int grid, bool prefetch_before_wait, cudaStream_t stream) {
  constexpr int kDepth = kn::GemmDecodeConfig<kTok>::kDepth;
  const dim3 block(kn::GemmDecodeConfig<kTok, kDepth, kMinCtas, kKWarps>::kThreads);
  p.n_blocks = int(kn::prepared_rows(p.n) / kn::kAtomRows);
  const int prefetch_set = sw::prefetch_atoms_override();
  p.prefetch_atoms = prefetch_set >= 0 ? prefetch_set
                     : kGrouped        ? sw::decode_prefetch_atoms_grouped()
                                       : sw::kDecodePrefetchAtomsSingle;
  if constexpr (kGrouped) {
    p.prewait_atoms =
        prefetch_before_wait ? int(std::min<int64_t>(sw::decode_prewait_bytes() / (int64_t(grid) * kn::kAtomBytes), 1 << 20))
                             : 0;
    // Four instantiations: the early prefetch and the claimed tiles each cost the other calls
    // registers (kernels/gemm_w4a16_decode_sm90.cuh).
    const bool prewait = p.prewait_atoms > 0, claim = p.claim != nullptr;
    if (prewait && claim) {
      launch_pdl(kn::gemm_w4a16_decode_sm90_kernel<kTok, kDepth, kMinCtas, true, true, kKWarps>, dim3(grid), block, 0, stream, p);
    } else if (prewait) {
      launch_pdl(kn::gemm_w4a16_decode_sm90_kernel<kTok, kDepth, kMinCtas, true, false, kKWarps>, dim3(grid), block, 0, stream, p);
    } else if (claim) {
      launch_pdl(kn::gemm_w4a16_decode_sm90_kernel<kTok, kDepth, kMinCtas, false, true, kKWarps>, dim3(grid), block, 0, stream, p);
    } else {
      launch_pdl(kn::gemm_w4a16_decode_sm90_kernel<kTok, kDepth, kMinCtas, false, false, kKWarps>, dim3(grid), block, 0,
                 stream, p);
    }
  } else {
    static_assert(kKWarps == 2, "single GEMMs: narrow CTAs only");
    p.claim = nullptr;  // single GEMMs never claim
    launch_pdl(kn::gemm_w4a16_decode_sm90_kernel<kTok, kDepth, kMinCtas>, dim3(grid), block, 0, stream, p);
  }
}

// combine: the ring kernel's fused MoE combine (out == nullptr: none; the caller checked
// grouped_gemm_fuses_combine, which requires the ring kernel).
void dispatch(const GemmPlan& plan, bool decode, const kn::GemmW4A16Params& p, cudaStream_t stream,
              bool prefetch_before_wait = false, const kn::DecodeCombineParams& combine = {}) {
  const int tok = plan.tok_tile, grid = plan.grid;
  if (decode && plan.ring) {
    kn::GemmW4A16Params q = p;
    q.n_blocks = int(kn::prepared_rows(p.n) / kn::kAtomRows);
    launch_decode_ring(tok, q, combine, grid, stream);
    return;
  }
  if (decode) {
    if (tok == 16 && p.off != nullptr) launch_decode<16, kDecode16CtasGrouped, true>(p, grid, prefetch_before_wait, stream);
    else if (tok == 16) launch_decode<16, kDecode16CtasSingle, false>(p, grid, prefetch_before_wait, stream);
    else if (p.off != nullptr && plan.k_warps == 4)
      launch_decode<8, kDecodeWideCtas, true, 4>(p, grid, prefetch_before_wait, stream);
    else if (p.off != nullptr) launch_decode<8, kDecode8CtasGrouped, true>(p, grid, prefetch_before_wait, stream);
    else launch_decode<8, kDecode8CtasSingle, false>(p, grid, prefetch_before_wait, stream);
    return;
  }
  dispatch_wgmma(plan, p, stream);
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

int grid_for(int64_t work, int threads) {
  return int(std::max<int64_t>(1, std::min<int64_t>((work + threads - 1) / threads, int64_t(sm_count()) * 16)));
}

// The activations the kernel reads: natural order [rows, K] for the decode kernel, the
// prepared K order [rows, Kp] for the wgmma kernel (gemm_act_permute_sm90.cuh).
size_t act_bytes_for(int64_t rows, int64_t k, bool decode) {
  return decode ? 0 : align_up(size_t(rows) * size_t(kn::prepared_cols(k)) * 2);
}

// W4A4: the dequantized bf16 activations act_dequant writes (natural [rows, K] for the decode
// kernel, prepared order [rows, Kp] for the wgmma kernel).
size_t dequant_act_bytes_for(int64_t rows, int64_t k, bool decode) {
  return align_up(size_t(rows) * size_t(decode ? k : kn::prepared_cols(k)) * 2);
}

void run_act_permute(const __nv_bfloat16* a, int64_t rows, int64_t k, __nv_bfloat16* out, cudaStream_t stream) {
  launch_pdl(kn::act_permute_bf16_sm90_kernel, dim3(grid_for(rows * (kn::prepared_cols(k) / 16), kn::kActPermuteThreads)),
             dim3(kn::kActPermuteThreads), 0, stream, a, int(rows), int(k), out, sw::act_chunk_stores());
}

// The bf16 activations the kernel reads: `a` itself for the decode kernel, else `a` permuted into
// the prepared K order at the start of the workspace (act_bytes_for bytes).
const __nv_bfloat16* kernel_activations(const __nv_bfloat16* a, int64_t rows, int64_t k, bool decode, uint8_t* ws,
                                        cudaStream_t stream) {
  if (decode) return a;
  auto* perm = reinterpret_cast<__nv_bfloat16*>(ws);
  run_act_permute(a, rows, k, perm, stream);
  return perm;
}

void run_act_dequant(const Nvfp4Act& a, int64_t rows, int64_t k, const int32_t* off, int num_experts,
                     bool prepared_order, __nv_bfloat16* out, cudaStream_t stream) {
  const int64_t work = rows * ((prepared_order ? kn::prepared_cols(k) : k) / 16);
  launch_pdl(kn::act_dequant_bf16_sm90_kernel, dim3(grid_for(work, kn::kActDequantThreads)), dim3(kn::kActDequantThreads), 0,
             stream, a.codes, a.scales, int(rows), int(k), off, num_experts, int(a.scale_rows), prepared_order ? 1 : 0,
             out, sw::act_chunk_stores());
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

namespace {

// Weight rows per CTA of the wgmma kernel (docs/GEMM.md v8). 256 rows (4 warpgroups) reuse each
// bf16 activation tile for twice the weight rows, halving the L2 traffic per MMA: measured on
// the H200, a 256-row tile takes 1.67x the time of a 128-row tile (1.2x the work rate) at token
// tile 128. Both kernels run one CTA per SM, so a call takes ceil(tiles / SMs) waves; the wider
// tile is taken when its waves cost less (Qwen3 w13 at M = 4096: 2 waves x 1.67 > 3 waves of
// 128-row tiles, measured 5% slower wide). Token tile 64: the same rule (grouped E=256 at 8192
// rows: wide 18-20% faster). The decode kernel has its own 64-row blocks (0 here).
constexpr double kWideTileTimeRatio = 1.67;

int wgmma_block_n(int tok, bool decode, int64_t n, int64_t tok_tiles) {
  if (decode) return 0;
  if (sw::block_n_override() != 0) return tok >= 64 ? sw::block_n_override() : 128;
  if (tok < 64) return 128;
  const int64_t sms = sm_count();
  const int64_t waves128 = (tile_blocks_of(n, false, 128) * tok_tiles + sms - 1) / sms;
  const int64_t waves256 = (tile_blocks_of(n, false, 256) * tok_tiles + sms - 1) / sms;
  return double(waves256) * kWideTileTimeRatio < double(waves128) ? 256 : 128;
}

// Wave-fitted token tiles of a warp-specialized single GEMM (256-row CTAs, one per SM, token
// tile 128, balanced tiles of MMA width rounded up to 32 rows). A tile costs about
// kWsTileFixedColumns + width in MMA columns (the dequantization of its weights is paid once per
// tile whatever its width: ~40 columns, from the skewed grouped call, docs/GEMM.md), a call
// ceil(tiles / SMs) tile times. Among tile counts q from ceil(m / 128) up to twice that, the one
// of least cost, fewest tiles on a tie: Qwen3 w13 at M = 4096 (6 row blocks): 32 tiles of 128
// rows fill 2 waves to 73% (cost 2 x 168), 43 tiles of 95-96 rows fill them (2 x 136).
constexpr int kWsTileFixedColumns = 40;
struct WsFit {
  int tile_rows;  // rows per balanced tile at most
  int64_t waves;
  int width;      // MMA width of the widest tile
  int64_t cost() const { return waves * (kWsTileFixedColumns + width); }
};
// Searched only up to kWsFitMaxWaves waves of 128-row tiles: past them the last wave's idle part
// is at most 1/8 of the call, and the search (q0 candidates, q0 = M / 128) stays a few hundred
// steps of host time per call.
constexpr int64_t kWsFitMaxWaves = 8;
WsFit ws_single_fit_tiles(int64_t m, int64_t blocks256) {
  const int64_t sms = sm_count(), q0 = (m + 127) / 128;
  WsFit best{128, (blocks256 * q0 + sms - 1) / sms, 128};
  if (best.waves > kWsFitMaxWaves) return best;
  for (int64_t q = q0 + 1; q <= 2 * q0; ++q) {
    const int rows = int((m + q - 1) / q);
    const int64_t tiles = blocks256 * ((m + rows - 1) / rows);  // the kernel's count for these rows
    const WsFit f{rows, (tiles + sms - 1) / sms, (rows + 31) / 32 * 32};
    if (f.cost() < best.cost()) best = f;
  }
  return best;
}

// The 256-row warp-specialized CTA against the 128-row cp.async kernel on fitted waves
// (ws_single_fit on, token tile 128): its tile (twice the rows) takes about as long as a 128-row
// cp.async tile of the same width (H100, DeepSeek-V3 w13 at M = 4096: 350 us in 4 waves against
// 470 us in 4 waves of the 4-warpgroup cp.async kernel), so 256 rows win whenever they need fewer
// waves; kWsWideTileTimeRatio = 1.1 keeps 128 rows (and their K splits) where the waves tie.
// Measured (H100, v23): Qwen3 w13 at M = 4096 2 waves of 96-wide 256-row tiles 64-66 us against
// 3 waves of 128-row cp.async tiles 78.5 us.
constexpr double kWsWideTileTimeRatio = 1.1;

}  // namespace

GemmPlan plan_gemm(int64_t m, int64_t n, int64_t k) {
  check_shape(m, n, k);
  GemmPlan plan;
  plan.tok_tile = sw::token_tile_override() ? sw::token_tile_override() : tok_tile_for(m);
  const bool decode = is_decode(plan.tok_tile, false, m);
  plan.block_n = wgmma_block_n(plan.tok_tile, decode, n, (m + plan.tok_tile - 1) / plan.tok_tile);
  // Fitted only past one wave of 256-row tiles: below it the 128-row kernel splits K over the
  // idle SMs, which the tile cost model does not weigh.
  const bool ws_fit = !decode && sw::ws_pipeline() && sw::ws_single_fit() && plan.tok_tile == 128 &&
                      tile_blocks_of(n, false, 256) * ((m + 127) / 128) > sm_count();
  if (ws_fit) {
    const WsFit fit = ws_single_fit_tiles(m, tile_blocks_of(n, false, 256));
    const int64_t sms = sm_count();
    const int64_t waves128 = (tile_blocks_of(n, false, 128) * ((m + 127) / 128) + sms - 1) / sms;
    if (sw::block_n_override() == 0)
      plan.block_n = double(fit.cost()) * kWsWideTileTimeRatio < double(waves128 * (kWsTileFixedColumns + 128)) ? 256 : 128;
    if (plan.block_n == 256) plan.tile_rows = fit.tile_rows;
  }
  const int tok_rows = plan.tile_rows > 0 ? plan.tile_rows : plan.tok_tile;  // rows per token tile
  int64_t tiles = tile_blocks_of(n, decode, plan.block_n) * ((m + tok_rows - 1) / tok_rows);
  plan.ring = decode && sw::decode_ring(false, false);
  int64_t ctas = int64_t(sm_count()) * (plan.ring ? decode_ring_ctas_per_sm(plan.tok_tile)
                                                  : ctas_per_sm_for(plan.tok_tile, decode, false, plan.block_n));
  // wgmma kernel: >= 2 stages per split (its pipeline runs kStages-2 ahead); decode kernel:
  // >= 1 stage (one atom per K warp), one wave of CTAs.
  int64_t max_splits = std::max<int64_t>(1, decode ? k_stages_of(k) : k_stages_of(k) / 2);
  if (tiles > 0 && tiles < ctas && tiles <= kMaxSplitCounters && plan.block_n != 256)  // 256: never split
    plan.splits = int(std::clamp<int64_t>(ctas / tiles, 1, max_splits));
  if (sw::split_override() > 0 && plan.block_n != 256 && tiles <= kMaxSplitCounters)  // tuning
    plan.splits = int(std::clamp<int64_t>(sw::split_override(), 1, max_splits));
  int64_t per = (k_stages_of(k) + plan.splits - 1) / plan.splits;
  plan.splits = int((k_stages_of(k) + per - 1) / per);  // no empty split
  plan.grid = int(decode ? std::max<int64_t>(1, std::min(tiles * plan.splits, ctas)) : tiles * plan.splits);
  plan.ws = !decode && sw::ws_pipeline();
  // The warp-specialized kernel (256 rows, no split) loops over tiles: one CTA per SM, if chosen.
  if (plan.ws && plan.block_n == 256 && plan.splits == 1 && sw::ws_single_persistent())
    plan.grid = int(std::max<int64_t>(1, std::min<int64_t>(tiles, sm_count())));
  return plan;
}

// The token tile from the balanced rows per expert (cuda/gemm_token_tiles.h): tile 8 (the
// decode kernel, 4 CTAs/SM) up to 4 rows per expert, 64 (the warp-specialized kernel, 256-row
// CTAs by the wave rule) up to 32, else 128. Measured on the H100 (2026-12-07, docs/GEMM.md v32;
// every tile on E=256 DSV3 and E=128 Qwen3 w13/w2 at 512-8192 rows, uniform and skewed): from 8
// rows per expert up the warp-specialized kernel at tile 64 beats the decode kernel at 16 and the
// cp.async wgmma kernel at 32 by 4-27% (DSV3 w2 2048 rows skewed 1079 -> 793 us); at 4 rows it
// loses to tile 8 when uniform (DSV3 w13 1024 rows 1417 vs 1562 us). The layer: DeepSeek-V3
// T = 256 2777-2831 -> 2524-2537 us. Before (v8, H200, before the warp-specialized kernel): 16 up
// to 12 rows, 32 up to 16.
GemmPlan plan_grouped_gemm(int64_t rows, int64_t n, int64_t k, int num_experts) {
  check_shape(rows, n, k);
  NVFP4MOE_CHECK(num_experts >= 1 && num_experts <= kn::kMaxExperts, "num_experts: expected 1..",
                 kn::kMaxExperts, ", got ", num_experts);
  GemmPlan plan;
  plan.tok_tile =
      sw::token_tile_override() ? sw::token_tile_override() : grouped_tok_tile(rows, num_experts, sw::grouped_tok_steps());
  const bool decode = is_decode(plan.tok_tile, true, rows);
  plan.block_n = wgmma_block_n(plan.tok_tile, decode, n, grouped_max_tok_tiles(rows, plan.tok_tile, num_experts));
  const int64_t blocks = tile_blocks_of(n, decode, plan.block_n);
  int64_t ctas = int64_t(sm_count()) * ctas_per_sm_for(plan.tok_tile, decode, true, plan.block_n);
  const int64_t max_tiles = blocks * grouped_max_tok_tiles(rows, plan.tok_tile, num_experts);
  int64_t bound = max_tiles;  // persistent grid: no more CTAs than work items
  if (decode && sw::split_override() > 1 && max_tiles <= kMaxSplitCounters) {
    // Grouped split-K is supported (partial sums + last-CTA reduction as for single GEMMs) but
    // not chosen by the heuristics: measured, the per-tile cost of a split outweighed the fuller
    // last wave at DeepSeek-V3 shapes (docs/GEMM.md v6) and gained nothing where the routing
    // leaves half the CTAs idle (Qwen3 at T = 1, v7); the tuning override can still select it.
    plan.splits = int(std::min<int64_t>(sw::split_override(), k_stages_of(k)));
    const int64_t per = (k_stages_of(k) + plan.splits - 1) / plan.splits;
    plan.splits = int((k_stages_of(k) + per - 1) / per);  // no empty split
    bound *= plan.splits;
  }
  if (decode) plan.k_warps = decode_k_warps(plan.tok_tile, plan.splits, k, bound);
  plan.ring = decode && sw::decode_ring(true, plan.k_warps == 4);
  if (plan.ring) {
    plan.k_warps = 2;
    ctas = int64_t(sm_count()) * decode_ring_ctas_per_sm(plan.tok_tile);
  }
  if (plan.k_warps == 4) ctas = int64_t(sm_count()) * decode_ctas_per_sm<8, kDecodeWideCtas, 4>();
  plan.grid = int(std::max<int64_t>(1, std::min(bound, ctas)));
  plan.ws = !decode && sw::ws_pipeline();
  plan.claim = decode && sw::decode_claiming(bound, plan.grid, plan.ring);
  // Hot experts (docs/GEMM.md v9): the token tile fits the average expert; under a skewed
  // routing a few experts hold hundreds of rows, and every token tile of theirs dequantizes the
  // expert's weights again (Zipf over 256 experts at 4096 rows: 322 token tiles per weight
  // block instead of 256 balanced, +19-28% time measured). Experts above hot_rows go to a
  // second launch at token tile 128 (6 tiles instead of 21 for a 670-row expert); which
  // experts those are is decided on the device from the offsets, so a balanced routing's
  // second launch finds no tiles and returns.
  const int hot_set = sw::hot_rows_setting();  // NVFP4MOE_GEMM_HOT=R: every call's threshold (tuning)
  // Threshold = the token tile: measured at 1, 1.5, 2 and 3 tiles on the H100 (skewed E=256,
  // DSV3 w13): 4096 rows 2201 / 2229 / 2283 / 2263 us, 8192 rows 2587 / 2599 / 2686 / 2659 us
  // (one launch: 2425 and 2682 us). By default only for calls of >= 100 GFLOP (>= ~200 us): the second launch costs 5-10 us
  // even when it finds no hot expert (132 CTAs of 214 KB shared memory start and exit; measured
  // +10-25 us on the Qwen3 layer at T = 256..512), 3% or less there.
  const bool big_call = 2.0 * double(rows) * double(n) * double(k) >= 1e11;
  const int hot = hot_set >= 0                                              ? hot_set
                  : big_call && (plan.tok_tile == 32 || plan.tok_tile == 64) ? plan.tok_tile
                                                                             : 0;
  if (!decode && plan.splits == 1 && hot > 0 && hot < rows) {
    plan.hot_rows = hot;
    const int64_t hot_experts = std::min<int64_t>(num_experts, rows / (hot + 1));
    const int64_t hot_tok_tiles = grouped_max_tok_tiles(rows, 128, int(std::max<int64_t>(1, hot_experts)));
    plan.hot_block_n = wgmma_block_n(128, false, n, hot_tok_tiles);
    const int64_t hot_ctas = int64_t(sm_count()) * ctas_per_sm_for(128, false, true, plan.hot_block_n);
    plan.hot_grid = int(std::max<int64_t>(1, std::min(tile_blocks_of(n, false, plan.hot_block_n) * hot_tok_tiles, hot_ctas)));
  }
  return plan;
}

namespace {

// Workspace of one single-GEMM call with m rows: [counters | activations | partial sums].
size_t single_need(int64_t m, int64_t n, int64_t k, bool w4a4) {
  const GemmPlan plan = plan_gemm(m, n, k);
  const bool decode = is_decode(plan.tok_tile, false, m);
  const size_t act = w4a4 ? dequant_act_bytes_for(m, k, decode)
                          : act_bytes_for(m, k, decode);
  return kCounterBytes + act + partial_bytes_for(plan, m, n);
}

// The largest single_need over m' <= m: one workspace then serves every batch up to m. The
// split-K part peaks where the token tile changes (m' = 8, 16, 32, 64) or where a 128-token
// tile is full (m' = 128c) while the tiles still leave CTAs idle; the activation part grows
// with m'.
size_t single_bound(int64_t m, int64_t n, int64_t k, bool w4a4) {
  check_shape(m, n, k);
  size_t best = 0;
  auto consider = [&](int64_t mm) {
    if (mm >= 1 && mm <= m) best = std::max(best, single_need(mm, n, k, w4a4));
  };
  for (int64_t t : {8, 16, 32, 64}) consider(std::min(t, m));
  // Fewest blocks (256 rows) and most CTAs (2 per SM) of any plan: a superset of the split cases.
  const int64_t blocks = tile_blocks_of(n, false, 256), ctas = int64_t(sm_count()) * 2;
  for (int64_t c = 1; c * blocks < ctas && c * 128 < m; ++c) consider(c * 128);
  consider(m);
  return best;
}

void launch_single(const __nv_bfloat16* a_kernel, int64_t m, const PreparedWeights& w, const float* alpha,
                   void* out, OutDType out_dtype, const GemmPlan& plan, bool decode, const WorkspaceParts& ws,
                   cudaStream_t stream) {
  kn::GemmW4A16Params p = base_params(a_kernel, m, w, alpha, out, out_dtype);
  p.splits = plan.splits;
  p.tile_rows = plan.tile_rows;
  if (plan.splits > 1) {
    p.partial = ws.partial;
    p.counters = ws.counters;
  }
  dispatch(plan, decode, p, stream);
}

void check_workspace(void* workspace, size_t workspace_bytes, size_t need, const char* bound_fn) {
  NVFP4MOE_CHECK(workspace_bytes >= need, "workspace_bytes: expected >= ", need, " (", bound_fn,
                 " gives enough for any batch up to its m), got ", workspace_bytes);
  if (need > 0) check_ptr(workspace, "workspace");
}

}  // namespace

size_t gemm_w4a16_workspace_bytes(int64_t m, int64_t n, int64_t k) { return single_bound(m, n, k, false); }

size_t gemm_w4a4_workspace_bytes(int64_t m, int64_t n, int64_t k) { return single_bound(m, n, k, true); }

namespace {

// Workspace of one grouped call: [counters | activations | partial sums].
// The activation buffer a grouped call keeps in its workspace: the permuted bf16 input
// (grouped_gemm_w4a16), the dequantized NVFP4 input (grouped_gemm_w4a4), or none (the input
// already in the GEMM's K order, grouped_gemm_w4a16_gemm_order).
enum class ActBuffer { kPermuted, kDequantized, kNone };

size_t grouped_need(int64_t rows, int64_t n, int64_t k, int num_experts, ActBuffer buffer) {
  const GemmPlan plan = plan_grouped_gemm(rows, n, k, num_experts);
  const bool decode = is_decode(plan.tok_tile, true, rows);
  const size_t act = buffer == ActBuffer::kDequantized ? dequant_act_bytes_for(rows, k, decode)
                     : buffer == ActBuffer::kPermuted  ? act_bytes_for(rows, k, decode)
                                                       : 0;
  return kCounterBytes + act + partial_bytes_for(plan, rows, n);
}

// The largest grouped_need over rows' <= rows. Split-K makes the need non-monotone (the split
// count falls as rows' grows, the partial sums grow with it; the token tile, so the kernel,
// changes): every rows' up to a few thousand is a candidate (splits need few tiles, so few
// rows), then the ends of the token-tile ranges and rows itself.
size_t grouped_bound(int64_t rows, int64_t n, int64_t k, int num_experts, ActBuffer buffer) {
  plan_grouped_gemm(rows, n, k, num_experts);  // validates
  size_t best = 0;
  auto consider = [&](int64_t r) {
    if (r >= 1 && r <= rows) best = std::max(best, grouped_need(r, n, k, num_experts, buffer));
  };
  for (int64_t r = 1; r <= std::min<int64_t>(rows, 4096); ++r) consider(r);
  for (int64_t t : {4, 8, 16, 32, 64}) consider(int64_t(num_experts) * t);
  consider(rows);
  return best;
}

// combine: the fused combine (the caller checked grouped_gemm_fuses_combine), or null. Its
// counters are the split-K counters of the workspace (a fused call has no split).
void launch_grouped(const __nv_bfloat16* a_kernel, int64_t rows, const int32_t* off, const PreparedWeights& w,
                    const float* alpha, void* out, OutDType out_dtype, const GemmPlan& plan, bool decode,
                    const WorkspaceParts& ws, cudaStream_t stream, bool prefetch_before_wait = false,
                    const GroupedCombine* combine = nullptr) {
  kn::GemmW4A16Params p = base_params(a_kernel, rows, w, alpha, out, out_dtype);
  p.off = off;
  kn::DecodeCombineParams fused{};
  if (combine != nullptr) {
    fused.out = combine->out;
    fused.weights = combine->weights;
    fused.pair_to_sorted = combine->pair_to_sorted;
    fused.shared = combine->shared;
    fused.tokens = int(combine->tokens);
    fused.top_k = combine->top_k;
    fused.counters = ws.counters;
  }
  p.splits = plan.splits;
  if (plan.splits > 1) {
    p.partial = ws.partial;
    p.counters = ws.counters;
  }
  p.expert_rows_hi = plan.hot_rows;  // 0: every expert
  if (plan.claim) p.claim = ws.counters + kClaimCounter;
  dispatch(plan, decode, p, stream, prefetch_before_wait, fused);
  if (plan.hot_rows > 0) {  // the hot experts, same activations (prepared K order) and output
    GemmPlan hot = plan;
    hot.tok_tile = 128;
    hot.block_n = plan.hot_block_n;
    hot.grid = plan.hot_grid;
    p.expert_rows_lo = plan.hot_rows + 1;
    p.expert_rows_hi = 0;
    p.claim = nullptr;
    dispatch(hot, false, p, stream);
  }
}

}  // namespace

size_t grouped_gemm_w4a16_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts) {
  return grouped_bound(rows, n, k, num_experts, ActBuffer::kPermuted);
}

size_t grouped_gemm_w4a16_gemm_order_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts) {
  return grouped_bound(rows, n, k, num_experts, ActBuffer::kNone);
}

size_t grouped_gemm_w4a4_workspace_bytes(int64_t rows, int64_t n, int64_t k, int num_experts) {
  return grouped_bound(rows, n, k, num_experts, ActBuffer::kDequantized);
}

void gemm_w4a16(const __nv_bfloat16* a, int64_t m, const PreparedWeights& w, const float* alpha,
                void* out, OutDType out_dtype, void* workspace, size_t workspace_bytes,
                cudaStream_t stream) {
  check_common(m, w, alpha, out, out_dtype, false);
  if (m == 0) return;
  check_ptr(a, "a");
  const GemmPlan plan = plan_gemm(m, w.n, w.k);
  const bool decode = is_decode(plan.tok_tile, false, m);
  check_workspace(workspace, workspace_bytes, single_need(m, w.n, w.k, false), "gemm_w4a16_workspace_bytes");
  const WorkspaceParts ws = carve(workspace, act_bytes_for(m, w.k, decode));
  const __nv_bfloat16* a_kernel = kernel_activations(a, m, w.k, decode, ws.act, stream);
  launch_single(a_kernel, m, w, alpha, out, out_dtype, plan, decode, ws, stream);
}

void gemm_w4a4(const Nvfp4Act& a, int64_t m, const PreparedWeights& w, const float* alpha,
               void* out, OutDType out_dtype, void* workspace, size_t workspace_bytes,
               cudaStream_t stream) {
  check_common(m, w, alpha, out, out_dtype, false);
  if (m == 0) return;
  check_act(a, m, w.k, false, 1);
  const GemmPlan plan = plan_gemm(m, w.n, w.k);
  const bool decode = is_decode(plan.tok_tile, false, m);
  check_workspace(workspace, workspace_bytes, single_need(m, w.n, w.k, true), "gemm_w4a4_workspace_bytes");
  const WorkspaceParts ws = carve(workspace, dequant_act_bytes_for(m, w.k, decode));
  auto* act = reinterpret_cast<__nv_bfloat16*>(ws.act);
  run_act_dequant(a, m, w.k, nullptr, 1, !decode, act, stream);
  launch_single(act, m, w, alpha, out, out_dtype, plan, decode, ws, stream);
}

void grouped_gemm_w4a16(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                        const PreparedWeights& w, const float* alpha, void* out,
                        OutDType out_dtype, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream, bool prefetch_before_wait) {
  check_common(rows, w, alpha, out, out_dtype, true);
  if (rows == 0) return;
  check_ptr(a, "a");
  NVFP4MOE_CHECK(off != nullptr && is_aligned(off, 4), "off: expected a 4-byte aligned device pointer");
  const GemmPlan plan = plan_grouped_gemm(rows, w.n, w.k, w.num_experts);
  const bool decode = is_decode(plan.tok_tile, true, rows);
  check_workspace(workspace, workspace_bytes, grouped_need(rows, w.n, w.k, w.num_experts, ActBuffer::kPermuted),
                  "grouped_gemm_w4a16_workspace_bytes");
  const WorkspaceParts ws = carve(workspace, act_bytes_for(rows, w.k, decode));
  const __nv_bfloat16* a_kernel = kernel_activations(a, rows, w.k, decode, ws.act, stream);
  launch_grouped(a_kernel, rows, off, w, alpha, out, out_dtype, plan, decode, ws, stream, prefetch_before_wait);
}

bool grouped_gemm_takes_gemm_order(int64_t rows, int64_t n, int64_t k, int num_experts) {
  if (rows <= 0 || k % 128 != 0) return false;
  return !is_decode(plan_grouped_gemm(rows, n, k, num_experts).tok_tile, true, rows);
}

void grouped_gemm_w4a16_gemm_order(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                                   const PreparedWeights& w, const float* alpha, void* out,
                                   OutDType out_dtype, void* workspace, size_t workspace_bytes,
                                   cudaStream_t stream) {
  check_common(rows, w, alpha, out, out_dtype, true);
  if (rows == 0) return;
  check_ptr(a, "a");
  NVFP4MOE_CHECK(off != nullptr && is_aligned(off, 4), "off: expected a 4-byte aligned device pointer");
  NVFP4MOE_CHECK(grouped_gemm_takes_gemm_order(rows, w.n, w.k, w.num_experts),
                 "a: activations in the GEMM's K order need the prefill kernel and K % 128 == 0 "
                 "(grouped_gemm_takes_gemm_order), not so for rows = ", rows, ", N = ", w.n, ", K = ", w.k);
  const GemmPlan plan = plan_grouped_gemm(rows, w.n, w.k, w.num_experts);
  check_workspace(workspace, workspace_bytes, grouped_need(rows, w.n, w.k, w.num_experts, ActBuffer::kNone),
                  "grouped_gemm_w4a16_gemm_order_workspace_bytes");
  const WorkspaceParts ws = carve(workspace, 0);
  launch_grouped(a, rows, off, w, alpha, out, out_dtype, plan, false, ws, stream);
}

bool grouped_gemm_fuses_combine(int64_t rows, int64_t n, int64_t k, int num_experts) {
  if (!gemm_fused_combine_on() || rows <= 0) return false;
  const GemmPlan plan = plan_grouped_gemm(rows, n, k, num_experts);
  // The ring kernel only: the combine is compiled into it alone (DecodeCombineParams).
  return is_decode(plan.tok_tile, true, rows) && plan.ring && plan.splits == 1 && plan.hot_rows == 0 &&
         int64_t(kn::prepared_rows(n) / kn::kAtomRows) <= kMaxSplitCounters;
}

void grouped_gemm_w4a16_combine(const __nv_bfloat16* a, int64_t rows, const int32_t* off,
                                const PreparedWeights& w, const float* alpha, __nv_bfloat16* out,
                                const GroupedCombine& c, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream, bool prefetch_before_wait) {
  NVFP4MOE_CHECK(c.top_k >= 1 && c.top_k <= kn::kCombineMaxTopK, "c.top_k: expected 1..", kn::kCombineMaxTopK,
                 ", got ", c.top_k);
  NVFP4MOE_CHECK(c.tokens >= 0 && c.tokens * c.top_k == rows, "c.tokens: expected tokens * top_k == rows (", rows,
                 "), got ", c.tokens, " * ", c.top_k);
  NVFP4MOE_CHECK(w.n % kn::kCombineVec == 0, "w.n: the combine needs N % ", kn::kCombineVec, " == 0, got ", w.n);
  check_common(rows, w, alpha, out, OutDType::kBF16, true);
  if (rows == 0) return;
  check_ptr(a, "a");
  check_ptr(c.out, "c.out");
  if (c.shared != nullptr) check_ptr(c.shared, "c.shared");
  NVFP4MOE_CHECK(c.weights != nullptr && is_aligned(c.weights, 4), "c.weights: expected a 4-byte aligned device pointer");
  NVFP4MOE_CHECK(c.pair_to_sorted != nullptr && is_aligned(c.pair_to_sorted, 4),
                 "c.pair_to_sorted: expected a 4-byte aligned device pointer");
  NVFP4MOE_CHECK(off != nullptr && is_aligned(off, 4), "off: expected a 4-byte aligned device pointer");
  check_workspace(workspace, workspace_bytes, grouped_need(rows, w.n, w.k, w.num_experts, ActBuffer::kPermuted),
                  "grouped_gemm_w4a16_workspace_bytes");
  if (!grouped_gemm_fuses_combine(rows, w.n, w.k, w.num_experts)) {
    grouped_gemm_w4a16(a, rows, off, w, alpha, out, OutDType::kBF16, workspace, workspace_bytes, stream,
                       prefetch_before_wait);
    combine(out, ActDType::kBF16, c.weights, c.pair_to_sorted, c.tokens, c.top_k, w.n, c.shared, c.out,
            CombineOutDType::kBF16, stream);
    return;
  }
  const GemmPlan plan = plan_grouped_gemm(rows, w.n, w.k, w.num_experts);
  const WorkspaceParts ws = carve(workspace, act_bytes_for(rows, w.k, true));
  const __nv_bfloat16* a_kernel = kernel_activations(a, rows, w.k, true, ws.act, stream);
  launch_grouped(a_kernel, rows, off, w, alpha, out, OutDType::kBF16, plan, true, ws, stream, prefetch_before_wait, &c);
}

void grouped_gemm_w4a4(const Nvfp4Act& a, int64_t rows, const int32_t* off,
                       const PreparedWeights& w, const float* alpha, void* out,
                       OutDType out_dtype, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
  check_common(rows, w, alpha, out, out_dtype, true);
  if (rows == 0) return;
  check_act(a, rows, w.k, true, w.num_experts);
  NVFP4MOE_CHECK(off != nullptr && is_aligned(off, 4), "off: expected a 4-byte aligned device pointer");
  const GemmPlan plan = plan_grouped_gemm(rows, w.n, w.k, w.num_experts);
  const bool decode = is_decode(plan.tok_tile, true, rows);
  check_workspace(workspace, workspace_bytes, grouped_need(rows, w.n, w.k, w.num_experts, ActBuffer::kDequantized),
                  "grouped_gemm_w4a4_workspace_bytes");
  const WorkspaceParts ws = carve(workspace, dequant_act_bytes_for(rows, w.k, decode));
  auto* act = reinterpret_cast<__nv_bfloat16*>(ws.act);
  run_act_dequant(a, rows, w.k, off, w.num_experts, !decode, act, stream);
  launch_grouped(act, rows, off, w, alpha, out, out_dtype, plan, decode, ws, stream);
}

}  // namespace nvfp4moe::cuda
