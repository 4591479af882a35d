// CPU golden model of one NVFP4 MoE layer forward (docs/FORMAT.md, "The MoE layer"), its
// weights, and the float32 layer it approximates.
//
// moe_forward, T tokens, hidden H, intermediate I, E experts, top-k, M = T * k rows:
//   1. route(router_logits [T, E]) -> ids [T, k], weights [T, k]            (ref/routing.h)
//   2. permute(ids) -> off [E+1], sorted_to_token [M], pair_to_sorted [M]     (ref/permute.h)
//   3. W4A4:  quantize_experts(hidden, gather = sorted_to_token, g = gA1)  -> A1 [M, H] nvfp4
//      W4A16: A1 = hidden[sorted_to_token[i]] (act dtype, no quantization)
//   4. GEMM1 (grouped) A1 x W13_e^T -> [M, 2I] float32, round to act dtype  (gate | up halves)
//      alpha per half: W4A4 1 / (gA1[e] * g_lo|g_hi), W4A16 1 / g_lo|g_hi (float32 ops)
//   5. W4A4:  silu_and_mul_quantize_experts(limit, g = gA2) -> A2 [M, I] nvfp4
//      W4A16: A2 = silu_and_mul(limit) (act dtype)
//   6. GEMM2 (grouped) A2 x W2_e^T -> [M, H] float32, round to act dtype
//   7. combine in float32: out[t] = sum_j w[t, j] * row(t, j) (j ascending) + shared[t],
//      where shared (n_shared_experts > 0) is the same MLP on all T tokens with one fused
//      weight pair of intermediate Is = n_shared_experts * I and static scales (per-tensor
//      quantize with gA1/gA2, single GEMMs), its output rounded to the act dtype; then the
//      sum is rounded to the act dtype.
// Every alpha is computed in float32 as written: alpha = 1.0f / (gA * gB) (product rounded,
// then a correctly rounded division), or 1.0f / gB.
//
// All functions validate their arguments and throw nvfp4moe::Error naming the bad one before
// writing any output.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/ref/gemm.h"
#include "nvfp4moe/ref/permute.h"
#include "nvfp4moe/ref/routing.h"

namespace nvfp4moe {

enum class MoeMode : int {
  kW4A4 = 0,   // NVFP4 activations (per-expert global scales), the Blackwell math
  kW4A16 = 1,  // bf16/fp16 activations, NVFP4 weights
};

inline const char* to_string(MoeMode m) { return m == MoeMode::kW4A4 ? "w4a4" : "w4a16"; }

struct MoeConfig {
  int64_t hidden = 0;                 // H: positive multiple of 16
  int64_t intermediate = 0;           // I per routed expert: positive multiple of 16
  RoutingConfig routing;              // E = routing.num_experts, k = routing.top_k
  int n_shared_experts = 0;           // >= 0; fused as one MLP of intermediate n_shared * I
  std::optional<float> swiglu_limit;  // when set: finite and > 0 (ref/quantize.h silu_and_mul)
  ActDType act = ActDType::kBF16;     // activation dtype of hidden, out and intermediates
  MoeMode mode = MoeMode::kW4A4;
};

// Throws nvfp4moe::Error naming the bad field (routing fields via validate(RoutingConfig)).
void validate(const MoeConfig& cfg);

// An NVFP4 weight [rows, k], owning. Row n is decoded as e2m1 * e4m3 / g(n) with
// g(n) = g_lo for n < rows/2 and g_hi otherwise: a fused gate|up W13 may carry a different
// global scale per half (ModelOpt's two weight_scale_2); an unfused weight has g_lo == g_hi.
struct Nvfp4Weight {
  int64_t rows = 0;             // N
  int64_t k = 0;                // K, multiple of 16
  std::vector<uint8_t> codes;   // [rows, k/2] packed e2m1, element 2i in the low nibble
  std::vector<uint8_t> scales;  // swizzled_scale_bytes(rows, k), 128x4 layout (format/swizzle.h)
  float g_lo = 1.0f;            // encode global scale of rows [0, rows/2)
  float g_hi = 1.0f;            // encode global scale of rows [rows/2, rows)

  ref::Nvfp4View view() const { return ref::Nvfp4View{codes, scales, rows, k}; }
};

// The shared expert(s), fused into one MLP of intermediate Is = n_shared_experts * I.
struct SharedExpertWeights {
  Nvfp4Weight w13;   // [2 * Is, H]: gate rows [0, Is), up rows [Is, 2 * Is)
  Nvfp4Weight w2;    // [H, Is], g_lo == g_hi
  float gA1 = 1.0f;  // static encode scale of its GEMM1 input (all T tokens), W4A4
  float gA2 = 1.0f;  // static encode scale of its GEMM2 input, W4A4
};

struct MoeWeights {
  std::vector<Nvfp4Weight> w13;  // [E], each [2I, H]: gate rows [0, I), up rows [I, 2I)
  std::vector<Nvfp4Weight> w2;   // [E], each [H, I], g_lo == g_hi
  std::vector<float> gA1;        // [E] encode scales of the GEMM1 inputs (W4A4; empty is
  std::vector<float> gA2;        // [E] allowed for W4A16, which does not use them)
  std::vector<float> e_score_correction_bias;  // [E] or empty (sigmoid scoring only)
  std::optional<SharedExpertWeights> shared;   // present iff n_shared_experts > 0
};

// Checks every shape and scale of w against cfg (all global scales finite and > 0).
void validate(const MoeConfig& cfg, const MoeWeights& w);

// Intermediates of one moe_forward, for stage-by-stage GPU comparisons. Sizes use M = T * k.
// Activation tensors are act-dtype bits; *_f32 are the GEMM outputs before rounding.
struct MoeTrace {
  std::vector<int32_t> ids;       // [T, k]
  std::vector<float> weights;     // [T, k]
  ref::Permutation perm;          // counts, off, sf_off, sorted_to_pair/-token, pair_to_sorted
  int64_t scale_rows = 0;         // rows of a1_scales / a2_scales: expert_scale_rows_capacity(M, E)
  std::vector<uint8_t> a1_codes;  // W4A4: [M, H/2] quantized gathered hidden (empty for W4A16)
  std::vector<uint8_t> a1_scales;  // W4A4: [scale_rows, padded_scale_cols(H)], per expert at sf_off
  std::vector<float> gemm1_f32;    // [M, 2I]
  std::vector<uint16_t> gemm1;     // [M, 2I] rounded to act
  std::vector<uint16_t> act;       // [M, I] silu_and_mul(gemm1) (the GEMM2 input in W4A16)
  std::vector<uint8_t> a2_codes;   // W4A4: [M, I/2]
  std::vector<uint8_t> a2_scales;  // W4A4: [scale_rows, padded_scale_cols(I)]
  std::vector<float> gemm2_f32;    // [M, H]
  std::vector<uint16_t> gemm2;     // [M, H] rounded to act (the rows combine reads)
  std::vector<uint16_t> shared_gemm1;  // [T, 2 Is] rounded, empty without shared experts
  std::vector<uint16_t> shared_act;    // [T, Is]
  std::vector<uint16_t> shared_out;    // [T, H] rounded shared-expert output
  std::vector<float> combined;         // [T, H] float32 sum before the final rounding
};

namespace ref {

// The quantized layer. hidden: [T, H] act bits; router_logits: [T, E] float32;
// out: [T, H] act bits. T = 0 is allowed. trace (optional) receives the intermediates.
void moe_forward(const MoeConfig& cfg, const MoeWeights& w, std::span<const uint16_t> hidden,
                 int64_t tokens, std::span<const float> router_logits, std::span<uint16_t> out,
                 MoeTrace* trace = nullptr);

// Float32 weights of the same layer (original, or dequantize_weights() of the NVFP4 ones).
struct MoeFloatWeights {
  std::vector<std::vector<float>> w13;         // [E] of [2I * H]
  std::vector<std::vector<float>> w2;          // [E] of [H * I]
  std::vector<float> e_score_correction_bias;  // [E] or empty
  std::vector<float> shared_w13;               // [2 Is * H], empty without shared experts
  std::vector<float> shared_w2;                // [H * Is]
};

// The same layer entirely in float32 (no activation quantization, no rounding to act dtype;
// cfg.mode and cfg.act are ignored): route, GEMMs with gemm_f32, silu(gate') * up' in float
// with the same clamp, combine() in float32. hidden: [T, H], out: [T, H] float32.
// For accuracy reports: moe_forward vs this on the original (or dequantized) weights.
void moe_forward_unquantized(const MoeConfig& cfg, const MoeFloatWeights& w,
                             std::span<const float> hidden, int64_t tokens,
                             std::span<const float> router_logits, std::span<float> out);

// Weight [rows, k] float32 -> NVFP4 (format/block_quant.h recipe). split_halves: g_lo from the
// amax of rows [0, rows/2), g_hi from rows [rows/2, rows) (rows must be even), as for a fused
// W13; else one g = global_scale_from_amax(amax of the whole tensor) in both fields.
Nvfp4Weight quantize_weight(std::span<const float> w, int64_t rows, int64_t k, bool split_halves);

// out[n, c] = e2m1 * e4m3 / g(n) in float32 (dequantize_element, as the format defines it).
std::vector<float> dequantize_weight(const Nvfp4Weight& w);

// All routed and shared weights quantized (W13 per half, W2 whole); the bias is copied.
// gA1/gA2 are left empty (and the shared ones 1): set them, e.g. from calibrate_activation_scales.
MoeWeights quantize_weights(const MoeConfig& cfg, const MoeFloatWeights& w);
MoeFloatWeights dequantize_weights(const MoeConfig& cfg, const MoeWeights& w);

// Static activation encode scales from a calibration batch, g = global_scale_from_amax(amax).
// Policy:
//   gA1[e]: amax of the hidden rows routed to expert e (each token once per pick).
//   gA2[e]: amax of expert e's silu_and_mul output, computed with the W4A16 path (act-dtype
//           inputs, the NVFP4 weights), i.e. without activation quantization upstream.
//   An expert that sees no token takes the amax over all experts' rows for that input, so it
//   never gets an arbitrary scale. Shared expert: gA1 from all T tokens, gA2 from its own
//   W4A16 silu_and_mul output.
// Needs tokens >= 1; w.gA1/gA2 are not read (cfg.mode is ignored).
struct ActivationScales {
  std::vector<float> gA1;  // [E]
  std::vector<float> gA2;  // [E]
  float shared_gA1 = 1.0f;
  float shared_gA2 = 1.0f;
};
ActivationScales calibrate_activation_scales(const MoeConfig& cfg, const MoeWeights& w,
                                             std::span<const uint16_t> hidden, int64_t tokens,
                                             std::span<const float> router_logits);

// Copy the scales into w (w.shared's too when present). Throws on a size mismatch.
void apply_activation_scales(const ActivationScales& s, MoeWeights& w);

// One activation scale per GEMM input for all routed experts, as inference engines use them (vLLM
// and TensorRT-LLM take the largest input_scale over the experts): every gA1[e] becomes the
// smallest gA1 (the largest calibrated amax, so no expert's calibrated range saturates), every
// gA2[e] the smallest gA2. The shared expert keeps its own. Changes the numerics (experts with a
// smaller amax lose resolution) in exchange for a cheaper forward: with one gA1 the GPU layer can
// quantize each token once (cuda::MoeForwardPaths::quantize_once). Throws when w has no
// activation scales.
void share_activation_scales(MoeWeights& w);

}  // namespace ref
}  // namespace nvfp4moe
