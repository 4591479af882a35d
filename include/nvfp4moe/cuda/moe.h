// The NVFP4 MoE layer on the GPU: one forward from hidden states and router logits to the
// layer output, all on the device (docs/FORMAT.md "The MoE layer"; CPU model ref/moe.h).
//
//   W4A4:  route -> permute -> gather + per-expert quantize (one kernel) -> grouped GEMM1
//          (gate|up, per-half alpha) -> fused SiLU*Mul(+clamp) + per-expert quantize ->
//          grouped GEMM2 -> combine in fp32 with the shared expert added in the same pass.
//   W4A16: the same with bf16 activations: gather -> GEMM1 -> silu_and_mul -> GEMM2 -> combine.
//   The shared expert (if any) runs on a second stream, forked from and joined back to the
//   caller's stream, concurrently with the routed experts.
//
// Nothing in moe_forward allocates or reads device memory on the host: with the weights and a
// workspace made once (sized from the maximum token count), a forward can be captured in a
// CUDA graph and replayed for any routing. Deterministic: the same inputs give the same bits.
// Activations are bf16 (the GEMM's input type); fp16 layers run on the CPU model only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "nvfp4moe/cuda/device_memory.h"
#include "nvfp4moe/cuda/quantize.h"
#include "nvfp4moe/cuda/weights.h"
#include "nvfp4moe/ref/moe.h"

namespace nvfp4moe::cuda {

// Device weights of one layer in the GEMM's prepared layout, with the per-expert alphas and
// activation scales; made once at load (upload) and read-only afterwards.
class MoeLayerWeights {
 public:
  // Validates cfg and w (validate(cfg, w)), prepares every weight (cuda/weights.h) and copies
  // it to the device. Throws nvfp4moe::Error for bf16-incompatible configs (act must be bf16).
  static MoeLayerWeights upload(const MoeConfig& cfg, const MoeWeights& w);

  // Random weights written straight into the GEMM layout on the device (benchmarks of
  // full-size layers without a host-side quantization): random codes, block scales in
  // [2^-3, 2^3), alpha 2^-10, activation scales 1, correction bias 0 (when sigmoid scoring).
  // H and I (and the shared width) must be multiples of 128.
  static MoeLayerWeights synthetic(const MoeConfig& cfg, uint64_t seed);

  const MoeConfig& config() const { return cfg_; }
  PreparedWeights w13() const;         // E x [2I, H]
  PreparedWeights w2() const;          // E x [H, I]
  PreparedWeights shared_w13() const;  // [2 Is, H] (num_experts 1); data null without shared
  PreparedWeights shared_w2() const;   // [H, Is]
  const float* alpha1() const;         // [2E]: per expert, gate half then up half
  const float* alpha2() const;         // [2E]
  const float* gA1() const;            // [E] encode scales of the GEMM1 inputs (W4A4)
  const float* gA2() const;            // [E]
  const float* shared_alpha1() const;  // [2]
  const float* shared_alpha2() const;  // [2]
  const float* shared_gA1() const;     // [1]
  const float* shared_gA2() const;     // [1]
  const float* correction_bias() const;  // [E] or null
  // W4A4: every routed expert has the same GEMM1 input scale gA1 (bit for bit): synthetic
  // weights, and checkpoints whose experts share one input scale (engines that take the max
  // over the experts' input_scale make it so). Then quantizing a token for one expert quantizes
  // it for all (MoeForwardPaths::quantize_once).
  bool uniform_gA1() const { return uniform_gA1_; }
  int64_t device_bytes() const { return weights_.bytes() + scalars_.bytes(); }

 private:
  MoeConfig cfg_;
  DeviceMemory weights_;   // w13 | w2 | shared_w13 | shared_w2, prepared
  DeviceMemory scalars_;   // alphas, gA, bias (float32)
  int64_t w13_bytes_ = 0, w2_bytes_ = 0, shared_w13_bytes_ = 0;
  int64_t shared_inter_ = 0;
  bool has_bias_ = false;
  bool uniform_gA1_ = false;
};

// Execution choices of the small-batch W4A4 forward that leave the layer output, the routing
// and the permutation bit for bit unchanged (MoeGpu.ForwardPathsGiveIdenticalResults). All on
// by default but quantize_once (measured slower, 2026-12-07): measured on the H100 (2026-12-06,
// docs/RESULTS.md) each gains at the batches it touches (DeepSeek-V3 T = 1: values_only -3 us, tiny_front_end -9 us, shared_values -5 us;
// Qwen3-30B-A3B T = 1-16: values_only -3 to -6 us, tiny_front_end -6 to -9 us at T = 1-4).
struct MoeForwardPaths {
  // Where the GEMMs read the quantizers' bf16 values (direct_rows): the quantizers write only
  // those values; a1/a2 codes and scales are then not written.
  bool values_only = true;
  // T <= 4 with T * k <= 32: routing, permutation and the first quantization in one launch
  // (cuda::route_permute_values; the a1 values only).
  bool tiny_front_end = true;
  // W4A4, T <= 16: the shared expert's GEMMs read its quantizers' bf16 values (values-only
  // per-expert quantizers with one expert), two dequantization launches fewer.
  bool shared_values = true;
  // T <= 16, where GEMM2 reads bf16 activations in one decode launch: the combine runs in
  // GEMM2's epilogue (cuda::grouped_gemm_w4a16_combine), one kernel boundary fewer; the shared
  // expert then joins before GEMM2. Takes effect only where the GEMM may fuse
  // (cuda::set_gemm_fused_combine / NVFP4MOE_FUSED_COMBINE=1; off by default: measured slower).
  bool fused_combine = true;
  // W4A4 where a grouped GEMM runs its prefill kernel (token tile >= 32) and its K % 256 == 0:
  // the quantizer before it writes only the bf16 values in the GEMM's K order
  // (cuda::ValuesOrder::kGemm) and the GEMM reads them (grouped_gemm_w4a16_gemm_order): no codes,
  // no scales, and no dequantize launch of grouped_gemm_w4a4 (at DeepSeek-V3 T = 4096 that
  // launch read 147 MB and wrote 470 MB before GEMM1).
  bool gemm_order_values = true;
  // W4A16 likewise: the row gather and silu_and_mul write the GEMMs' bf16 operands in their K
  // order (hidden, intermediate % 128 == 0), two permute launches fewer (docs/GEMM.md v21; H100,
  // T = 4096: DeepSeek-V3 -6.5%, Qwen3-30B-A3B -15%).
  bool gemm_order_bf16 = true;
  // W4A4 prefill (GEMM1 past the direct values), where the weights' gA1 is uniform
  // (MoeLayerWeights::uniform_gA1): the T tokens are quantized once (cuda::quantize) and their
  // codes and scales copied into expert order (cuda::gather_experts_nvfp4: the same bytes as
  // quantize_experts' gathering of each token top_k times), which GEMM1 reads as codes and
  // scales (grouped_gemm_w4a4), in place of gemm_order_values for GEMM1. Off: measured slower
  // than gemm_order_values on the H100 (DeepSeek-V3 T = 4096 6270 -> 6377 us; docs/GEMM.md v30).
  bool quantize_once = false;
  // Every path off: the quantizers write codes and scales at every batch (for tests and
  // debugging that read them through MoeWorkspace::views()). Same output bits.
  static MoeForwardPaths all_intermediates() { return {false, false, false, false, false, false, false}; }
};

// Buffers of one forward for up to max_tokens tokens, made once. Holds its own second stream
// and events for the shared-expert branch. Not to be used by two forwards at the same time.
class MoeWorkspace {
 public:
  MoeWorkspace(const MoeConfig& cfg, int64_t max_tokens);
  ~MoeWorkspace();
  MoeWorkspace(const MoeWorkspace&) = delete;
  MoeWorkspace& operator=(const MoeWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t device_bytes() const { return mem_.bytes(); }
  // Device-side validation word of the quantization kernels (cuda/quantize.h flags), ORed by
  // every forward; zeroed at creation. A caller that wants to check it reads it after a sync.
  const uint32_t* error_flags() const;

  // Intermediates of the last forward (device pointers, for tests and debugging).
  struct Views {
    int32_t* ids; float* weights;                  // [T, k]
    int32_t* counts;                               // [E]
    int32_t* off; int32_t* sf_off;                 // [E+1]
    int32_t* sorted_to_pair; int32_t* sorted_to_token; int32_t* pair_to_sorted;  // [T k]
    uint8_t* a1_codes; uint8_t* a1_scales;         // W4A4 GEMM1 input; up to direct_rows
                                                   // rows written only with the paths of
                                                   // MoeForwardPaths::all_intermediates()
    void* a1_bf16;                                 // GEMM1 bf16 input [T k, H]: W4A16; W4A4 at
                                                   // small batches (the quantized values, see
                                                   // direct_rows), else null
    void* gemm1;                                   // [T k, 2I] bf16
    uint8_t* a2_codes; uint8_t* a2_scales;         // W4A4 GEMM2 input, likewise
    void* a2_bf16;                                 // GEMM2 bf16 input [T k, I], likewise
    void* gemm2;                                   // [T k, H] bf16
    void* shared_out;                              // [T, H] bf16 or null
    int64_t scale_rows;                            // rows of a1/a2 scale buffers
    int64_t direct_rows;                           // W4A4: up to this many routed rows the
                                                   // quantizers also write a1/a2_bf16 and the
                                                   // GEMMs read them (no dequantization launch)
  };
  const Views& views() const { return v_; }

  // Execution choices of later forwards (MoeForwardPaths: all on at creation).
  const MoeForwardPaths& paths() const { return paths_; }
  // Whether a forward of `tokens` tokens on weights w takes MoeForwardPaths::quantize_once (the
  // same decision moe_forward makes: the path on, W4A4, w.uniform_gA1(), GEMM1 past the direct
  // values).
  bool quantizes_tokens_once(const MoeLayerWeights& w, int64_t tokens) const;
  void set_paths(const MoeForwardPaths& paths) { paths_ = paths; }

 private:
  friend void moe_forward(const MoeLayerWeights&, MoeWorkspace&, const void*, const float*, int64_t,
                          void*, cudaStream_t);
  MoeConfig cfg_;
  int64_t max_tokens_ = 0;
  DeviceMemory mem_;
  Views v_{};
  MoeForwardPaths paths_;
  uint32_t* error_flags_ = nullptr;
  int32_t* shared_off_ = nullptr;   // {0, T} for the shared expert's one-expert quantization
  void* permute_ws_ = nullptr;
  size_t permute_ws_bytes_ = 0;
  void* gemm_ws_ = nullptr;         // routed GEMMs
  void* shared_gemm_ws_ = nullptr;  // shared-expert GEMMs (concurrent with the routed ones)
  size_t gemm_ws_bytes_ = 0, shared_gemm_ws_bytes_ = 0;
  // W4A4 prefill (MoeForwardPaths::gemm_order_values): the GEMM's own part at the front of
  // gemm_ws_ (its counters stay where every call has them), the quantized values after it.
  size_t gemm_order_ws_bytes_ = 0;
  // W4A4: the T tokens quantized once with the uniform gA1 (MoeForwardPaths::quantize_once).
  uint8_t* token_codes_ = nullptr; uint8_t* token_scales_ = nullptr;
  uint8_t* shared_a1_codes_ = nullptr; uint8_t* shared_a1_scales_ = nullptr;
  uint8_t* shared_a2_codes_ = nullptr; uint8_t* shared_a2_scales_ = nullptr;
  void* shared_a2_bf16_ = nullptr;  // W4A16: SiLU*Mul output; W4A4: GEMM2 input values
  void* shared_a1_bf16_ = nullptr;  // W4A4: GEMM1 input values (shared_values)
  int64_t shared_direct_rows_ = 0;  // W4A4: rows of shared_a1/a2_bf16_
  void* shared_gemm1_ = nullptr;
  cudaStream_t side_stream_ = nullptr;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
};

// One forward. hidden: [tokens, H] bf16; router_logits: [tokens, E] float32; out: [tokens, H]
// bf16; all device pointers, 16-byte aligned; 0 <= tokens <= ws.max_tokens(). Enqueued on
// `stream`; no host synchronization, no allocation. Throws nvfp4moe::Error (before any launch)
// on bad arguments.
void moe_forward(const MoeLayerWeights& w, MoeWorkspace& ws, const void* hidden, const float* router_logits,
                 int64_t tokens, void* out, cudaStream_t stream);

// Gather rows: out[i, :] = x[index[i], :] for i < rows (bf16/fp16 rows of `hidden` elements,
// hidden % 8 == 0, 16-byte aligned). An index outside [0, rows_in) writes a zero row.
// out_order kGemm: each out row in the prefill GEMM's K order (hidden % 64 == 0; quantize.h
// ValuesOrder), the operand grouped_gemm_w4a16_gemm_order reads where hidden % 128 == 0.
void gather_rows(const void* x, int64_t rows_in, int64_t hidden, const int32_t* index, int64_t rows, void* out,
                 cudaStream_t stream, ValuesOrder out_order = ValuesOrder::kNatural);

}  // namespace nvfp4moe::cuda
