// The GPU MoE forward and its workspace (cuda/moe.h).
#include <algorithm>
#include <limits>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/limits.h"
#include "nvfp4moe/cuda/gemm.h"
#include "nvfp4moe/cuda/moe.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/format/swizzle.h"
#include "nvfp4moe/kernels/moe_glue_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

constexpr size_t kAlign = 256;

// Carves one allocation into aligned sub-buffers: a first pass (base null) only measures.
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  template <typename T = void>
  T* take(size_t bytes) {
    offset_ = (offset_ + kAlign - 1) / kAlign * kAlign;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += bytes;
    return p;
  }
  size_t used() const { return (offset_ + kAlign - 1) / kAlign * kAlign; }

 private:
  char* base_;
  size_t offset_ = 0;
};

// W4A4: routed rows up to which the workspace holds bf16 copies of the quantized activations
// (a1_bf16, a2_bf16), so small batches skip the GEMMs' dequantization launches. 256 rows are
// T = 32 at top-8: beyond, the launches are a small part of the layer. DeepSeek-V3: 4.7 MB.
constexpr int64_t kDirectValueRows = 256;

// The shared expert likewise (MoeForwardPaths::shared_values): up to 16 tokens, the decode
// kernel's largest token tile.
constexpr int64_t kSharedDirectValueRows = 16;

// Tokens up to which the layer fuses the combine into GEMM2 (MoeForwardPaths::fused_combine):
// the last CTA of each 64-column block combines T tokens x k slots there, serially after its
// own tile, so the fusion pays only while that tail is shorter than a kernel boundary.
constexpr int64_t kFusedCombineMaxTokens = 16;

// Whether a W4A4 grouped GEMM of m rows takes the quantizer's bf16 values: the workspace holds
// them and the GEMM takes its decode kernel (token tile <= 16), which reads them as they are.
bool direct_values(int64_t m, int64_t direct_rows, int64_t n, int64_t k, int num_experts) {
  return m > 0 && m <= direct_rows && plan_grouped_gemm(m, n, k, num_experts).tok_tile <= 16;
}

}  // namespace

void gather_rows(const void* x, int64_t rows_in, int64_t hidden, const int32_t* index, int64_t rows, void* out,
                 cudaStream_t stream, ValuesOrder out_order) {
  NVFP4MOE_CHECK(hidden > 0 && hidden % 8 == 0 && hidden <= kMaxLayerWidth,
                 "hidden: expected a positive multiple of 8 up to ", kMaxLayerWidth, ", got ", hidden);
  NVFP4MOE_CHECK(out_order == ValuesOrder::kNatural || (out_order == ValuesOrder::kGemm && hidden % 64 == 0),
                 "out_order: kNatural, or kGemm with hidden % 64 == 0; got ", int(out_order), " with hidden ", hidden);
  NVFP4MOE_CHECK(rows >= 0 && rows <= std::numeric_limits<int32_t>::max(), "rows: expected 0..2^31-1, got ", rows);
  NVFP4MOE_CHECK(rows_in >= 0, "rows_in: expected >= 0, got ", rows_in);
  if (rows == 0) return;
  NVFP4MOE_CHECK(x != nullptr && is_aligned(x, 16), "x: expected a 16-byte aligned device pointer, got ", x);
  NVFP4MOE_CHECK(index != nullptr && is_aligned(index, 4), "index: expected a 4-byte aligned device pointer, got ",
                 index);
  NVFP4MOE_CHECK(out != nullptr && is_aligned(out, 16), "out: expected a 16-byte aligned device pointer, got ", out);
  const int64_t vec = hidden * 2 / 16;
  dim3 block(32, 8);
  dim3 grid(unsigned((rows + 7) / 8));
  if (out_order == ValuesOrder::kGemm) {
    kernels::gather_rows_gemm_order_kernel<<<grid, block, 0, stream>>>(static_cast<const uint32_t*>(x), rows_in, vec,
                                                                       index, rows, static_cast<uint4*>(out));
  } else {
    kernels::gather_rows_kernel<<<grid, block, 0, stream>>>(static_cast<const uint4*>(x), rows_in, vec, index, rows,
                                                            static_cast<uint4*>(out));
  }
  NVFP4MOE_CUDA_CHECK_LAUNCH();
}

MoeWorkspace::MoeWorkspace(const MoeConfig& cfg, int64_t max_tokens) : cfg_(cfg), max_tokens_(max_tokens) {
  validate(cfg);
  NVFP4MOE_CHECK(max_tokens >= 1, "max_tokens: expected >= 1, got ", max_tokens);
  check_token_count(max_tokens, cfg.routing.top_k, "max_tokens");
  const int64_t e = cfg.routing.num_experts, k = cfg.routing.top_k, h = cfg.hidden, inter = cfg.intermediate;
  const int64_t m = max_tokens * k, t = max_tokens;
  const int64_t is = int64_t(cfg.n_shared_experts) * inter;
  const bool w4a4 = cfg.mode == MoeMode::kW4A4;
  v_.scale_rows = expert_scale_rows_capacity(m, e);
  v_.direct_rows = w4a4 ? std::min<int64_t>(m, kDirectValueRows) : 0;
  const int64_t shared_scale_rows = expert_scale_rows_capacity(t, 1);
  permute_ws_bytes_ = route_and_permute_workspace_bytes(t, int(k), int(e));
  if (w4a4) {
    gemm_ws_bytes_ = std::max(grouped_gemm_w4a4_workspace_bytes(m, 2 * inter, h, int(e)),
                              grouped_gemm_w4a4_workspace_bytes(m, h, inter, int(e)));
    // The GEMM-order values (MoeForwardPaths::gemm_order_values) after the GEMM's own part: about
    // the bytes of the dequantized activations the W4A4 calls keep there, so little more memory.
    const size_t order_gemm = std::max(grouped_gemm_w4a16_gemm_order_workspace_bytes(m, 2 * inter, h, int(e)),
                                       grouped_gemm_w4a16_gemm_order_workspace_bytes(m, h, inter, int(e)));
    gemm_order_ws_bytes_ = (order_gemm + 255) / 256 * 256;
    gemm_ws_bytes_ = std::max(gemm_ws_bytes_, gemm_order_ws_bytes_ + size_t(m * std::max(h, inter)) * 2);
    if (is) {
      // W4A4 GEMMs, and W4A16 GEMMs on the quantized values of up to 16 tokens (shared_values).
      const int64_t td = std::min<int64_t>(t, kSharedDirectValueRows);
      shared_gemm_ws_bytes_ = std::max({gemm_w4a4_workspace_bytes(t, 2 * is, h), gemm_w4a4_workspace_bytes(t, h, is),
                                        gemm_w4a16_workspace_bytes(td, 2 * is, h), gemm_w4a16_workspace_bytes(td, h, is)});
    }
  } else {
    gemm_ws_bytes_ = std::max(grouped_gemm_w4a16_workspace_bytes(m, 2 * inter, h, int(e)),
                              grouped_gemm_w4a16_workspace_bytes(m, h, inter, int(e)));
    if (is) shared_gemm_ws_bytes_ = std::max(gemm_w4a16_workspace_bytes(t, 2 * is, h), gemm_w4a16_workspace_bytes(t, h, is));
  }

  auto layout = [&](Carver& c) {
    v_.ids = c.take<int32_t>(size_t(m) * 4);
    v_.weights = c.take<float>(size_t(m) * 4);
    v_.counts = c.take<int32_t>(size_t(e) * 4);
    v_.off = c.take<int32_t>(size_t(e + 1) * 4);
    v_.sf_off = c.take<int32_t>(size_t(e + 1) * 4);
    v_.sorted_to_pair = c.take<int32_t>(size_t(m) * 4);
    v_.pair_to_sorted = c.take<int32_t>(size_t(m) * 4);
    v_.sorted_to_token = c.take<int32_t>(size_t(m) * 4);
    permute_ws_ = c.take(permute_ws_bytes_);
    error_flags_ = c.take<uint32_t>(4);
    shared_off_ = c.take<int32_t>(8);
    gemm_ws_ = c.take(gemm_ws_bytes_);
    v_.gemm1 = c.take(size_t(m * 2 * inter) * 2);
    v_.gemm2 = c.take(size_t(m * h) * 2);
    v_.a1_codes = v_.a1_scales = v_.a2_codes = v_.a2_scales = nullptr;
    v_.a1_bf16 = v_.a2_bf16 = nullptr;
    if (w4a4) {
      v_.a1_codes = c.take<uint8_t>(size_t(m * h / 2));
      v_.a1_scales = c.take<uint8_t>(size_t(v_.scale_rows * padded_scale_cols(h)));
      v_.a2_codes = c.take<uint8_t>(size_t(m * inter / 2));
      v_.a2_scales = c.take<uint8_t>(size_t(v_.scale_rows * padded_scale_cols(inter)));
      if (v_.direct_rows > 0) {
        v_.a1_bf16 = c.take(size_t(v_.direct_rows * h) * 2);
        v_.a2_bf16 = c.take(size_t(v_.direct_rows * inter) * 2);
      }
      // The tokens quantized once (MoeForwardPaths::quantize_once): read by the copy before
      // GEMM1, so they may live in GEMM2's input buffers, written only after GEMM1 (stream order),
      // where those are large enough (top_k * I >= H: DeepSeek-V3, Qwen3-30B-A3B).
      const size_t token_code_bytes = size_t(t * h / 2), token_scale_bytes = size_t(swizzled_scale_bytes(t, h));
      token_codes_ = size_t(m * inter / 2) >= token_code_bytes ? v_.a2_codes : c.take<uint8_t>(token_code_bytes);
      token_scales_ = size_t(v_.scale_rows * padded_scale_cols(inter)) >= token_scale_bytes
                          ? v_.a2_scales
                          : c.take<uint8_t>(token_scale_bytes);
    } else {
      v_.a1_bf16 = c.take(size_t(m * h) * 2);
      v_.a2_bf16 = c.take(size_t(m * inter) * 2);
    }
    v_.shared_out = nullptr;
    if (is) {
      shared_gemm_ws_ = c.take(shared_gemm_ws_bytes_);
      shared_gemm1_ = c.take(size_t(t * 2 * is) * 2);
      v_.shared_out = c.take(size_t(t * h) * 2);
      if (w4a4) {
        shared_a1_codes_ = c.take<uint8_t>(size_t(t * h / 2));
        shared_a1_scales_ = c.take<uint8_t>(size_t(swizzled_scale_bytes(t, h)));
        shared_a2_codes_ = c.take<uint8_t>(size_t(t * is / 2));
        shared_a2_scales_ = c.take<uint8_t>(size_t(shared_scale_rows * padded_scale_cols(is)));
        // The quantized values of the shared expert's GEMM inputs at small T (shared_values).
        shared_direct_rows_ = std::min<int64_t>(t, kSharedDirectValueRows);
        shared_a1_bf16_ = c.take(size_t(shared_direct_rows_ * h) * 2);
        shared_a2_bf16_ = c.take(size_t(shared_direct_rows_ * is) * 2);
      } else {
        shared_a2_bf16_ = c.take(size_t(t * is) * 2);
      }
    }
  };
  Carver measure(nullptr);
  layout(measure);
  mem_ = DeviceMemory(measure.used());
  Carver carve(mem_.as<char>());
  layout(carve);
  // Zeroed once: the GEMMs' split-K counters and the error word start at zero.
  NVFP4MOE_CUDA_CHECK(cudaMemset(mem_.get(), 0, mem_.bytes()));
  if (is) {
    NVFP4MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
    NVFP4MOE_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
    NVFP4MOE_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
  }
}

MoeWorkspace::~MoeWorkspace() {
  if (fork_) cudaEventDestroy(fork_);
  if (join_) cudaEventDestroy(join_);
  if (side_stream_) cudaStreamDestroy(side_stream_);
}

const uint32_t* MoeWorkspace::error_flags() const { return error_flags_; }

bool MoeWorkspace::quantizes_tokens_once(const MoeLayerWeights& w, int64_t tokens) const {
  const MoeConfig& cfg = w.config();
  if (cfg.mode != MoeMode::kW4A4 || !paths_.quantize_once || !w.uniform_gA1() || tokens < 1) return false;
  const int64_t m = tokens * cfg.routing.top_k;
  // Not where GEMM1 reads the quantizer's bf16 values (direct_values; the tiny front end too).
  return !direct_values(m, v_.direct_rows, 2 * cfg.intermediate, cfg.hidden, cfg.routing.num_experts);
}

void moe_forward(const MoeLayerWeights& w, MoeWorkspace& ws, const void* hidden, const float* router_logits,
                 int64_t tokens, void* out, cudaStream_t stream) {
  const MoeConfig& cfg = w.config();
  const MoeConfig& wcfg = ws.cfg_;
  NVFP4MOE_CHECK(cfg.hidden == wcfg.hidden && cfg.intermediate == wcfg.intermediate &&
                     cfg.routing.num_experts == wcfg.routing.num_experts && cfg.routing.top_k == wcfg.routing.top_k &&
                     cfg.n_shared_experts == wcfg.n_shared_experts && cfg.mode == wcfg.mode,
                 "ws: the workspace was made for another layer configuration");
  NVFP4MOE_CHECK(tokens >= 0 && tokens <= ws.max_tokens_, "tokens: expected 0..", ws.max_tokens_,
                 " (the workspace's max_tokens), got ", tokens);
  if (tokens == 0) return;
  NVFP4MOE_CHECK(hidden != nullptr && is_aligned(hidden, 16), "hidden: expected a 16-byte aligned device pointer, got ",
                 hidden);
  NVFP4MOE_CHECK(router_logits != nullptr && is_aligned(router_logits, 16),
                 "router_logits: expected a 16-byte aligned device pointer, got ", router_logits);
  NVFP4MOE_CHECK(out != nullptr && is_aligned(out, 16), "out: expected a 16-byte aligned device pointer, got ", out);

  const auto& v = ws.v_;
  const int e = cfg.routing.num_experts, k = cfg.routing.top_k;
  const int64_t h = cfg.hidden, inter = cfg.intermediate, t = tokens, m = tokens * k;
  const bool w4a4 = cfg.mode == MoeMode::kW4A4;
  const bool has_shared = cfg.n_shared_experts > 0;
  const int64_t is = int64_t(cfg.n_shared_experts) * inter;

  // W4A4 small batches: the quantizers write the quantized values as bf16 and the GEMMs take
  // them as W4A16 input with the W4A4 alpha 1/(gA*gB) (see routed_gemm below).
  const bool direct1 = w4a4 && direct_values(m, v.direct_rows, 2 * inter, h, int(e));
  const bool direct2 = w4a4 && direct_values(m, v.direct_rows, h, inter, int(e));
  // The smallest batches: routing, permutation and the first quantization in one launch.
  const MoeForwardPaths& paths = ws.paths_;
  const bool tiny = direct1 && paths.tiny_front_end && uses_route_permute_values(t, k, h);
  // Direct: the quantizers may write the values only (no codes, scales or scale padding: the
  // decode GEMM reads nothing else; at DeepSeek-V3 T = 16 the padding alone is ~6 MB).
  const bool only1 = direct1 && paths.values_only, only2 = direct2 && paths.values_only;
  // The shared expert's W4A4 GEMMs on bf16 values where both take the decode kernel.
  const bool shared_direct = has_shared && w4a4 && paths.shared_values && t <= ws.shared_direct_rows_ &&
                             plan_gemm(t, 2 * is, h).tok_tile <= 16 && plan_gemm(t, h, is).tok_tile <= 16;
  // The combine in GEMM2's epilogue (cuda::grouped_gemm_w4a16_combine) where GEMM2 reads bf16
  // activations in one decode launch: one kernel boundary fewer on the routed path. The shared
  // expert then joins before GEMM2 instead of before the combine.
  const bool fused_combine = paths.fused_combine && t <= kFusedCombineMaxTokens && (direct2 || !w4a4) &&
                             grouped_gemm_fuses_combine(m, h, inter, int(e));
  // W4A4 prefill: the quantizers write the GEMMs' operand itself, bf16 values in the GEMM's K
  // order, into the GEMM workspace after the GEMM's own part (GEMM1 has finished reading the a1
  // values before the SiLU quantizer writes the a2 values there: stream order, and each PDL
  // kernel waits for its predecessor before touching memory).
  auto gemm_order = [&](int64_t n, int64_t kk) {
    return w4a4 && paths.gemm_order_values && kk % 256 == 0 && grouped_gemm_takes_gemm_order(m, n, kk, int(e));
  };
  // W4A4 prefill with one gA1 for every expert: the tokens quantized once, their codes and
  // scales copied into expert order, GEMM1 on those (MoeForwardPaths::quantize_once).
  const bool once1 = ws.quantizes_tokens_once(w, tokens);
  const bool order1 = !once1 && gemm_order(2 * inter, h), order2 = gemm_order(h, inter);
  void* const order_values = static_cast<char*>(ws.gemm_ws_) + ws.gemm_order_ws_bytes_;

  // Shared expert on the side stream, concurrent with the routed experts. It needs neither
  // the routing nor the permutation but forks after them: forking before them was measured
  // 5 us slower at DeepSeek-V3 T = 1 (H100, 2026-12-06; its kernels then hold SMs the routing
  // and the routed GEMM's early prefetch want).
  // The same pipeline as the routed experts with one expert (W4A4: quantize, GEMM1, SiLU*Mul +
  // quantize, GEMM2; W4A16: GEMM1, SiLU*Mul, GEMM2).
  auto fork_shared = [&] {
    if (!has_shared) return;
    cudaStream_t side = ws.side_stream_;
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(ws.fork_, stream));
    NVFP4MOE_CUDA_CHECK(cudaStreamWaitEvent(side, ws.fork_, 0));
    const int64_t shared_scale_rows = expert_scale_rows_capacity(ws.max_tokens_, 1);
    if (shared_direct) {
      // The GEMMs read the quantizers' bf16 values (alpha 1/(gA*gB) as for W4A4): the same
      // operand gemm_w4a4 would dequantize itself, two act_dequant launches fewer.
      kernels::write_single_expert_offsets_kernel<<<1, 1, 0, side>>>(ws.shared_off_, int32_t(t));
      NVFP4MOE_CUDA_CHECK_LAUNCH();
      quantize_experts(hidden, ActDType::kBF16, t, h, ws.shared_off_, 1, w.shared_gA1(), nullptr, t, nullptr, nullptr,
                       shared_scale_rows, ws.error_flags_, side, ws.shared_a1_bf16_);
      gemm_w4a16(static_cast<const __nv_bfloat16*>(ws.shared_a1_bf16_), t, w.shared_w13(), w.shared_alpha1(),
                 ws.shared_gemm1_, OutDType::kBF16, ws.shared_gemm_ws_, ws.shared_gemm_ws_bytes_, side);
      silu_and_mul_quantize_experts(ws.shared_gemm1_, ActDType::kBF16, t, is, cfg.swiglu_limit, ws.shared_off_, 1,
                                    w.shared_gA2(), nullptr, nullptr, shared_scale_rows, ws.error_flags_, side,
                                    ws.shared_a2_bf16_);
      gemm_w4a16(static_cast<const __nv_bfloat16*>(ws.shared_a2_bf16_), t, w.shared_w2(), w.shared_alpha2(),
                 v.shared_out, OutDType::kBF16, ws.shared_gemm_ws_, ws.shared_gemm_ws_bytes_, side);
    } else if (w4a4) {
      quantize(hidden, ActDType::kBF16, t, h, w.shared_gA1(), ws.shared_a1_codes_, ws.shared_a1_scales_, side);
      gemm_w4a4(Nvfp4Act{ws.shared_a1_codes_, ws.shared_a1_scales_, 0}, t, w.shared_w13(), w.shared_alpha1(),
                ws.shared_gemm1_, OutDType::kBF16, ws.shared_gemm_ws_, ws.shared_gemm_ws_bytes_, side);
      kernels::write_single_expert_offsets_kernel<<<1, 1, 0, side>>>(ws.shared_off_, int32_t(t));
      NVFP4MOE_CUDA_CHECK_LAUNCH();
      silu_and_mul_quantize_experts(ws.shared_gemm1_, ActDType::kBF16, t, is, cfg.swiglu_limit, ws.shared_off_, 1,
                                    w.shared_gA2(), ws.shared_a2_codes_, ws.shared_a2_scales_, shared_scale_rows,
                                    ws.error_flags_, side);
      gemm_w4a4(Nvfp4Act{ws.shared_a2_codes_, ws.shared_a2_scales_, 0}, t, w.shared_w2(), w.shared_alpha2(),
                v.shared_out, OutDType::kBF16, ws.shared_gemm_ws_, ws.shared_gemm_ws_bytes_, side);
    } else {
      gemm_w4a16(static_cast<const __nv_bfloat16*>(hidden), t, w.shared_w13(), w.shared_alpha1(), ws.shared_gemm1_,
                 OutDType::kBF16, ws.shared_gemm_ws_, ws.shared_gemm_ws_bytes_, side);
      silu_and_mul(ws.shared_gemm1_, ActDType::kBF16, t, is, cfg.swiglu_limit, ws.shared_a2_bf16_, side);
      gemm_w4a16(static_cast<const __nv_bfloat16*>(ws.shared_a2_bf16_), t, w.shared_w2(), w.shared_alpha2(),
                 v.shared_out, OutDType::kBF16, ws.shared_gemm_ws_, ws.shared_gemm_ws_bytes_, side);
    }
    NVFP4MOE_CUDA_CHECK(cudaEventRecord(ws.join_, side));
  };
  // 1-2. Routing and permutation.
  PermuteOutputs po;
  po.counts = v.counts;
  po.off = v.off;
  po.sf_off = v.sf_off;
  po.sorted_to_pair = v.sorted_to_pair;
  po.pair_to_sorted = v.pair_to_sorted;
  po.sorted_to_token = v.sorted_to_token;
  if (tiny) {
    route_permute_values(router_logits, LogitsDType::kFloat32, w.correction_bias(), t, cfg.routing, v.ids, v.weights,
                         po, hidden, ActDType::kBF16, h, w.gA1(), v.a1_bf16, stream);
  } else {
    // One launch for small batches (route, then the last block permutes), else route + permute.
    route_and_permute(router_logits, LogitsDType::kFloat32, w.correction_bias(), t, cfg.routing, ws.max_tokens_,
                      v.ids, v.weights, po, ws.permute_ws_, ws.permute_ws_bytes_, stream);
  }
  fork_shared();

  // 3-6. Routed experts.
  if (w4a4) {
    // Direct: the GEMM on the quantized values (decode kernel) instead of codes + scales, one
    // launch fewer per GEMM. Only where the GEMM takes its decode kernel, which reads that
    // operand as it is (the wgmma kernel would permute it, no gain).
    auto routed_gemm = [&](bool direct, bool order, const void* values, const uint8_t* codes,
                           const uint8_t* scales, const PreparedWeights& wt, const float* alpha, void* out) {
      if (order) {
        grouped_gemm_w4a16_gemm_order(static_cast<const __nv_bfloat16*>(order_values), m, v.off, wt, alpha, out,
                                      OutDType::kBF16, ws.gemm_ws_, ws.gemm_order_ws_bytes_, stream);
      } else if (direct) {
        // The kernel before it lets it launch only once the offsets are written (the values-
        // output quantizer after its own wait; route_permute_values after the permutation),
        // so the GEMM may prefetch its weights by the offsets before it waits.
        grouped_gemm_w4a16(static_cast<const __nv_bfloat16*>(values), m, v.off, wt, alpha, out, OutDType::kBF16,
                           ws.gemm_ws_, ws.gemm_ws_bytes_, stream, /*prefetch_before_wait=*/true);
      } else {
        grouped_gemm_w4a4(Nvfp4Act{codes, scales, v.scale_rows}, m, v.off, wt, alpha, out, OutDType::kBF16,
                          ws.gemm_ws_, ws.gemm_ws_bytes_, stream);
      }
    };
    // What each quantizer writes: codes + scales, and/or bf16 values (natural order for the
    // decode GEMM, the GEMM's K order for the prefill GEMM).
    const bool none1 = only1 || order1, none2 = only2 || order2;  // no codes and scales
    void* const values1 = direct1 ? v.a1_bf16 : order1 ? order_values : nullptr;
    void* const values2 = direct2 ? v.a2_bf16 : order2 ? order_values : nullptr;
    if (once1) {
      quantize(hidden, ActDType::kBF16, t, h, w.gA1(), ws.token_codes_, ws.token_scales_, stream);
      gather_experts_nvfp4(ws.token_codes_, ws.token_scales_, t, h, v.off, e, v.sorted_to_token, m, v.a1_codes,
                           v.a1_scales, v.scale_rows, ws.error_flags_, stream);
    } else if (!tiny) {
      quantize_experts(hidden, ActDType::kBF16, t, h, v.off, e, w.gA1(), v.sorted_to_token, m,
                       none1 ? nullptr : v.a1_codes, none1 ? nullptr : v.a1_scales, v.scale_rows, ws.error_flags_,
                       stream, values1, order1 ? ValuesOrder::kGemm : ValuesOrder::kNatural);
    }
    routed_gemm(direct1, order1, v.a1_bf16, v.a1_codes, v.a1_scales, w.w13(), w.alpha1(), v.gemm1);
    silu_and_mul_quantize_experts(v.gemm1, ActDType::kBF16, m, inter, cfg.swiglu_limit, v.off, e, w.gA2(),
                                  none2 ? nullptr : v.a2_codes, none2 ? nullptr : v.a2_scales, v.scale_rows,
                                  ws.error_flags_, stream, values2, order2 ? ValuesOrder::kGemm : ValuesOrder::kNatural);
    if (!fused_combine) {
      routed_gemm(direct2, order2, v.a2_bf16, v.a2_codes, v.a2_scales, w.w2(), w.alpha2(), v.gemm2);
    }
  } else {
    // W4A16 prefill (MoeForwardPaths::gemm_order_bf16): the gather and silu_and_mul write the
    // GEMMs' operands in their K order, which the GEMMs then read without a permute launch.
    auto bf16_order = [&](int64_t n, int64_t kk) {
      return paths.gemm_order_bf16 && kk % 128 == 0 && grouped_gemm_takes_gemm_order(m, n, kk, int(e));
    };
    const bool order1b = bf16_order(2 * inter, h), order2b = !fused_combine && bf16_order(h, inter);
    auto routed_gemm = [&](bool order, const void* a, const PreparedWeights& wt, const float* alpha, void* out) {
      const auto* a16 = static_cast<const __nv_bfloat16*>(a);
      if (order) {
        grouped_gemm_w4a16_gemm_order(a16, m, v.off, wt, alpha, out, OutDType::kBF16, ws.gemm_ws_, ws.gemm_ws_bytes_,
                                      stream);
      } else {
        grouped_gemm_w4a16(a16, m, v.off, wt, alpha, out, OutDType::kBF16, ws.gemm_ws_, ws.gemm_ws_bytes_, stream);
      }
    };
    gather_rows(hidden, t, h, v.sorted_to_token, m, v.a1_bf16, stream,
                order1b ? ValuesOrder::kGemm : ValuesOrder::kNatural);
    routed_gemm(order1b, v.a1_bf16, w.w13(), w.alpha1(), v.gemm1);
    silu_and_mul(v.gemm1, ActDType::kBF16, m, inter, cfg.swiglu_limit, v.a2_bf16, stream,
                 order2b ? ValuesOrder::kGemm : ValuesOrder::kNatural);
    if (!fused_combine) routed_gemm(order2b, v.a2_bf16, w.w2(), w.alpha2(), v.gemm2);
  }

  // 7. Combine, the shared expert's output added in the same pass (in GEMM2 where fused).
  if (has_shared) NVFP4MOE_CUDA_CHECK(cudaStreamWaitEvent(stream, ws.join_, 0));
  if (fused_combine) {
    GroupedCombine c;
    c.weights = v.weights;
    c.pair_to_sorted = v.pair_to_sorted;
    c.tokens = t;
    c.top_k = k;
    c.shared = has_shared ? static_cast<const __nv_bfloat16*>(v.shared_out) : nullptr;
    c.out = static_cast<__nv_bfloat16*>(out);
    // W4A4: the values-output quantizer before it orders its trigger after its wait (see
    // routed_gemm), so GEMM2 may prefetch by the offsets; W4A16's silu_and_mul does not.
    grouped_gemm_w4a16_combine(static_cast<const __nv_bfloat16*>(v.a2_bf16), m, v.off, w.w2(), w.alpha2(),
                               static_cast<__nv_bfloat16*>(v.gemm2), c, ws.gemm_ws_, ws.gemm_ws_bytes_, stream,
                               /*prefetch_before_wait=*/w4a4);
    return;
  }
  combine(v.gemm2, ActDType::kBF16, v.weights, v.pair_to_sorted, t, k, h, has_shared ? v.shared_out : nullptr, out,
          CombineOutDType::kBF16, stream);
}

}  // namespace nvfp4moe::cuda
