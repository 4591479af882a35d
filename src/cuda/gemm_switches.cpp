// The GEMM launchers' tuning switches (gemm_switches.h) and their public setters (cuda/gemm.h
// set_gemm_*). Each switch's comment says what it chooses and what measured its default.
#include "gemm_switches.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/gemm.h"

namespace nvfp4moe::cuda {
namespace {

// The setters' state (-1 or 0: not set).
int g_token_tile_override = 0;
int g_split_override = 0;
int g_prefetch_override = -1;
int g_block_n_override = 0;
int g_hot_override = -1;
int g_claim_override = -1;
int g_k_warps_override = -1;
int g_ring_override = -1;
int g_fused_combine_override = -1;
int g_ws_override = -1;
int g_ws_width_step_override = 0;
int g_ws_consumers_override = 0;
int g_ws_staged_override = -1;
int g_ws_fit_override = -1;
int g_ws_persist_override = -1;
int g_act_chunks_override = -1;

// A tuning switch read from the environment: "1" turns it on, "0" off, anything else (or unset)
// leaves the default (callers read it once, into a static).
bool env_switch(const char* name, bool default_on) {
  const char* v = std::getenv(name);
  if (v != nullptr && std::strcmp(v, "1") == 0) return true;
  if (v != nullptr && std::strcmp(v, "0") == 0) return false;
  return default_on;
}

// A tuning switch that is on unless the environment variable `name` equals `off_value` (the
// switches named by their two ways, e.g. NVFP4MOE_GEMM_WS_EPILOGUE=direct|staged).
bool env_on_unless(const char* name, const char* off_value) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, off_value) != 0;
}

// A tuning switch's state: its setter's mode when set (0 / 1), else the environment's (or the
// default) read once by the caller (set_switch below stores the mode).
bool switch_on(int mode, bool from_env) { return mode >= 0 ? mode == 1 : from_env; }

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != 0 ? std::atoi(v) : fallback;
}

// A tuning switch's setter `name`: mode -1 (the default), 0 or 1 (`off` / `on` name them); the
// error names the public setter, as NVFP4MOE_CHECK in it would.
void set_switch(const char* name, int mode, const char* off, const char* on, int& slot) {
  if (mode < -1 || mode > 1) {
    throw ::nvfp4moe::Error(::nvfp4moe::detail::concat(name, ": mode: expected -1 (default), 0 (", off, ") or 1 (", on,
                                                       "), got ", mode));
  }
  slot = mode;
}

}  // namespace

namespace gemm_switches {

int token_tile_override() { return g_token_tile_override; }
int split_override() { return g_split_override; }
int prefetch_atoms_override() { return g_prefetch_override; }
int block_n_override() { return g_block_n_override; }

const std::vector<GroupedTokStep>& grouped_tok_steps() {
  static const std::vector<GroupedTokStep> steps = [] {
    const char* v = std::getenv("NVFP4MOE_GEMM_GROUPED_TOK");
    return v != nullptr ? parse_grouped_tok_steps(v) : default_grouped_tok_steps();
  }();
  return steps;
}

int hot_rows_setting() {
  static const int hot_env = [] {  // NVFP4MOE_GEMM_HOT=R: the threshold for every call (tuning)
    const char* v = std::getenv("NVFP4MOE_GEMM_HOT");
    return v != nullptr ? std::max(0, std::atoi(v)) : -1;
  }();
  return g_hot_override >= 0 ? g_hot_override : hot_env;
}

int decode_k_warps_setting() {
  static const int env = env_int("NVFP4MOE_GEMM_KWARPS", -1);
  return g_k_warps_override >= 0 ? g_k_warps_override : env;
}

// Whether the 256-row CTAs of the wgmma kernel take its warp-specialized variant
// (kernels/gemm_w4a16_ws_sm90.cuh: a producer warpgroup filling the stages by TMA, two MMA
// warpgroups): set_gemm_ws_pipeline, else NVFP4MOE_GEMM_WS=0/1 in the environment. On by
// default: H100, 2026-12-07 (docs/GEMM.md v18), against the cp.async kernel: DeepSeek-V3 w13
// M = 4096 470 -> 354 us (66% -> 95% of cuBLAS), w2 267 -> 229 us, grouped w13 32768 rows
// 5210 -> 3630 us, the DeepSeek-V3 layer at T = 4096 9045 -> 6664 us.
bool ws_pipeline() {
  static const bool from_env = env_switch("NVFP4MOE_GEMM_WS", true);
  return switch_on(g_ws_override, from_env);
}

// Whether the warp-specialized kernel's grouped calls at token tile 128 take token tile 160
// (see dispatch_wgmma): NVFP4MOE_GEMM_WS_TILE160=0 keeps them at 128, an A/B knob (the 160-row
// kernel holds 2 A buffers instead of 4 and spills outside its mainloop).
bool ws_tile_160() {
  static const bool on = env_switch("NVFP4MOE_GEMM_WS_TILE160", true);
  return on;
}

// The warp-specialized token-tile-160 kernel's MMA widths come in steps of 16 or 32 tokens
// (kernels/gemm_balanced_tiles.h): set_gemm_ws_width_step, else NVFP4MOE_GEMM_WS_WIDTH_STEP=16|32,
// else 32. Steps of 16 measured -1.4% on the grouped DeepSeek-V3 w13 call at 32768 rows (H200,
// docs/GEMM.md v20; skewed unchanged), within what one run moves, and have not been timed on an
// H100 (`scripts/gpu-quick.sh run step`), so 32 stays. Tiles 64 and 128 keep steps of 32 (with
// more widths ptxas serializes the 128 kernel's wgmma).
int ws_width_step() {
  static const int from_env = [] {
    const char* v = std::getenv("NVFP4MOE_GEMM_WS_WIDTH_STEP");
    return v != nullptr && std::strcmp(v, "16") == 0 ? 16 : 32;
  }();
  return g_ws_width_step_override > 0 ? g_ws_width_step_override : from_env;
}

// Consumer warpgroups of the warp-specialized kernel at token tile 64 (GemmWsConfig, v34): 2 of
// two 64-row blocks each, or 4 of one block each (twice the warps to hide the latency of each k16
// step where the MMAs are narrow). set_gemm_ws_consumers, else NVFP4MOE_GEMM_WS_CONSUMERS=2|4
// (other values throw), else 2 until a device run times 4. Same results bit for bit. Tiles 128
// and 160 keep 2 (their accumulators do not fit 4 consumers' registers: ptxas serializes the
// wgmma, C7511).
int ws_consumers_tile64() {
  static const int from_env = [] {
    const char* v = std::getenv("NVFP4MOE_GEMM_WS_CONSUMERS");
    if (v == nullptr || *v == 0) return 2;
    NVFP4MOE_CHECK(std::strcmp(v, "2") == 0 || std::strcmp(v, "4") == 0,
                   "NVFP4MOE_GEMM_WS_CONSUMERS: expected 2 or 4, got '", v, "'");
    return std::strcmp(v, "4") == 0 ? 4 : 2;
  }();
  return g_ws_consumers_override > 0 ? g_ws_consumers_override : from_env;
}

// Whether the warp-specialized kernel stores its bf16 output tiles through shared memory in
// 16-byte chunks (GemmW4A16Params::staged_epilogue): set_gemm_ws_staged_epilogue, else
// NVFP4MOE_GEMM_WS_EPILOGUE=direct|staged, else staged (docs/GEMM.md v22; H100: DeepSeek-V3 w2
// at M = 4096 244 -> 183 us, the layer at T = 4096 -11%). Calls with fp32 output or n % 8 != 0
// always store directly.
bool ws_staged_epilogue() {
  static const bool from_env = env_on_unless("NVFP4MOE_GEMM_WS_EPILOGUE", "direct");
  return switch_on(g_ws_staged_override, from_env);
}

// Single GEMMs on the warp-specialized kernel: token-tile counts fitted to whole waves
// (GemmPlan::tile_rows, ws_single_fit_tiles) and one CTA per SM looping over its tiles.
// set_gemm_ws_single_fit / set_gemm_ws_single_persistent, else NVFP4MOE_GEMM_WS_FIT=0 and
// NVFP4MOE_GEMM_WS_PERSIST=0 turn them off; both on by default (docs/GEMM.md v23; H100: Qwen3 w13
// at M = 4096 78.5 -> 64.1 us, DeepSeek-V3 w2 181.7 -> 173.8, Qwen3 w2 33.7 -> 32.3).
bool ws_single_fit() {
  static const bool from_env = env_switch("NVFP4MOE_GEMM_WS_FIT", true);
  return switch_on(g_ws_fit_override, from_env);
}
bool ws_single_persistent() {
  static const bool from_env = env_switch("NVFP4MOE_GEMM_WS_PERSIST", true);
  return switch_on(g_ws_persist_override, from_env);
}

// Weight atoms per CTA the decode kernel prefetches into L2 ahead of its register ring
// (docs/GEMM.md v7, v13): off by default. The H200 measured grouped calls 4-6% faster at 16
// (v7), but the H100 (2026-12-06, same binary, interleaved) measured 16 slower everywhere:
// grouped DeepSeek-V3 w13 8 / 64 rows 63.5 -> 55.8 us / 369 -> 344 us at 0, the MoE layer
// DeepSeek-V3 T = 1 / 64 119.6 -> 113.8 us / 2287 -> 2194 us, Qwen3 T = 64 199 -> 189 us.
// 4 was between (1-4% better than 0 at T = 4-32, 3% worse at DeepSeek-V3 T = 1).
// NVFP4MOE_GEMM_PREFETCH_ATOMS overrides the grouped distance (layer A/Bs; bench_gemm --prefetch
// for one GEMM).
constexpr int kDecodePrefetchAtomsGrouped = 0;
// (kDecodePrefetchAtomsSingle, the single calls' distance, is in gemm_switches.h.)

int decode_prefetch_atoms_grouped() {
  static const int atoms = std::clamp(env_int("NVFP4MOE_GEMM_PREFETCH_ATOMS", kDecodePrefetchAtomsGrouped), 0, 1024);
  return atoms;
}
// Grouped decode calls: bytes of weights (all CTAs together) prefetched into L2 before the
// wait on the previous kernel, i.e. while it finishes (each CTA the start of its first tile;
// docs/GEMM.md v10). NVFP4MOE_GEMM_PREWAIT_MB overrides it (A/B measurements; 0: off).
int64_t decode_prewait_bytes() {
  static const int64_t mb = env_int("NVFP4MOE_GEMM_PREWAIT_MB", 32);
  return std::max<int64_t>(mb, 0) << 20;
}

// Whether a grouped decode call hands out its tiles after each CTA's first from a counter
// (dynamic balance, kernels/gemm_w4a16_decode_sm90.cuh), from the host-known bound on its tiles:
// set_gemm_decode_claiming, else from kClaimTilesPerCta (register kernel) or
// kClaimTilesPerCtaRing (ring kernel) tiles per CTA up; NVFP4MOE_GEMM_CLAIM_TILES overrides both
// thresholds for A/B measurements. Measured on the H100: register kernel (docs/GEMM.md v12)
// DeepSeek-V3 T = 16 / 64 (>= 15 tiles per CTA) -2.1% / -3.6% on the layer, at T = 1-4 (1-4 per
// CTA) no gain, Qwen3 T = 4 / 16 (1.5 / 6 per CTA) +2-4%. Ring kernel (v15, grouped W4A16, us
// static -> claimed): gains from 3.4 tiles per CTA (DeepSeek-V3 w2 16 rows 54.9 -> 53.9, w13 32
// rows (3.9) 181.1 -> 171.6, Qwen3 w13 128 rows (5.8) 61.2 -> 56.9), losses below 3 (Qwen3 w13
// 32 rows (1.5) 29.5 -> 32.2, 64 rows (2.9) 40.6 -> 42.6): the ring's producer runs ahead into
// its next tile, so a claimed tile costs less idle time there than in the register kernel.
constexpr int kClaimTilesPerCta = 8;
constexpr int kClaimTilesPerCtaRing = 3;
bool decode_claiming(int64_t max_tiles, int64_t grid, bool ring) {
  if (g_claim_override >= 0) return g_claim_override == 1;
  static const int env = env_int("NVFP4MOE_GEMM_CLAIM_TILES", -1);
  const int per_cta = env >= 0 ? env : ring ? kClaimTilesPerCtaRing : kClaimTilesPerCta;
  return max_tiles >= per_cta * grid;
}

// Whether a decode call takes the ring kernel (kernels/gemm_w4a16_decode_ring_sm90.cuh):
// set_gemm_decode_ring, else NVFP4MOE_GEMM_RING=0|1, else grouped calls do unless the register
// kernel's wide CTA is chosen for them. Measured on the H100 (docs/GEMM.md v15): grouped
// DeepSeek-V3 w13 / w2 at 64 rows 358 -> 325 / 190 -> 167 us (98% / 95% of copy), the layer at
// DeepSeek-V3 T = 16 / 64 960 -> 865 / 2197 -> 1940 us; at Qwen3 T = 1 the wide CTA stays ahead
// (36.4 against 37.5 us). Single GEMMs keep the register kernel: the ring measured slower there
// (DeepSeek-V3 w13 M = 1 15.6 against 15.4 us, Qwen3 w13 M = 1 12.4 against 10.1 us).
bool decode_ring(bool grouped, bool wide) {
  static const int env = env_int("NVFP4MOE_GEMM_RING", -1);
  const int want = g_ring_override >= 0 ? g_ring_override : env;
  if (want == 0 || want == 1) return want == 1;
  return grouped && !wide;
}

// Whether act_permute and act_dequant write the prepared K order as 16-byte chunks after lane
// transposes (1) or as 4-byte pieces (0) (kernels/gemm_act_permute_sm90.cuh):
// set_gemm_act_chunk_stores, else NVFP4MOE_GEMM_ACT_STORE=strided|chunks, else chunks
// (docs/GEMM.md v24).
int act_chunk_stores() {
  static const bool from_env = env_on_unless("NVFP4MOE_GEMM_ACT_STORE", "strided");
  return switch_on(g_act_chunks_override, from_env) ? 1 : 0;
}

}  // namespace gemm_switches

void set_gemm_plan_override(int tok, int splits, int prefetch_atoms, int block_n) {
  NVFP4MOE_CHECK(tok == 0 || tok == 8 || tok == 16 || tok == 32 || tok == 64 || tok == 128,
                 "tok: expected 0 (heuristics) or 8, 16, 32, 64, 128, got ", tok);
  NVFP4MOE_CHECK(splits >= 0 && splits <= 64, "splits: expected 0 (heuristics) .. 64, got ", splits);
  NVFP4MOE_CHECK(prefetch_atoms >= -1 && prefetch_atoms <= 1024,
                 "prefetch_atoms: expected -1 (default) .. 1024, got ", prefetch_atoms);
  NVFP4MOE_CHECK(block_n == 0 || block_n == 128 || block_n == 256,
                 "block_n: expected 0 (heuristics), 128 or 256, got ", block_n);
  g_token_tile_override = tok;
  g_block_n_override = block_n;
  g_split_override = splits;
  g_prefetch_override = prefetch_atoms;
}

void set_gemm_hot_expert_rows(int rows) {
  NVFP4MOE_CHECK(rows >= -1, "rows: expected -1 (heuristics), 0 (off) or a row count, got ", rows);
  g_hot_override = rows;
}

void set_gemm_decode_claiming(int mode) {
  NVFP4MOE_CHECK(mode >= -1 && mode <= 1, "mode: expected -1 (heuristics), 0 (static) or 1 (claimed), got ", mode);
  g_claim_override = mode;
}

void set_gemm_decode_k_warps(int k_warps) {
  NVFP4MOE_CHECK(k_warps == -1 || k_warps == 2 || k_warps == 4,
                 "k_warps: expected -1 (heuristics), 2 or 4, got ", k_warps);
  g_k_warps_override = k_warps;
}

void set_gemm_decode_ring(int mode) { set_switch(__func__, mode, "register kernel", "ring kernel", g_ring_override); }

void set_gemm_ws_pipeline(int mode) { set_switch(__func__, mode, "off", "warp-specialized", g_ws_override); }

void set_gemm_ws_width_step(int step) {
  NVFP4MOE_CHECK(step == 0 || step == 16 || step == 32, "step: expected 0 (default), 16 or 32, got ", step);
  g_ws_width_step_override = step;
}

void set_gemm_ws_consumers(int warpgroups) {
  NVFP4MOE_CHECK(warpgroups == 0 || warpgroups == 2 || warpgroups == 4,
                 "warpgroups: expected 0 (default), 2 or 4, got ", warpgroups);
  g_ws_consumers_override = warpgroups;
}

void set_gemm_ws_staged_epilogue(int mode) { set_switch(__func__, mode, "direct", "staged", g_ws_staged_override); }

void set_gemm_act_chunk_stores(int mode) {
  set_switch(__func__, mode, "4-byte pieces", "16-byte chunks", g_act_chunks_override);
}

void set_gemm_ws_single_fit(int mode) { set_switch(__func__, mode, "128-row tiles", "fitted to waves", g_ws_fit_override); }

void set_gemm_ws_single_persistent(int mode) { set_switch(__func__, mode, "a CTA per tile", "a CTA per SM", g_ws_persist_override); }

void set_gemm_fused_combine(int mode) { set_switch(__func__, mode, "off", "on", g_fused_combine_override); }

bool gemm_fused_combine_on() {
  static const bool env_on = env_switch("NVFP4MOE_FUSED_COMBINE", false);
  return switch_on(g_fused_combine_override, env_on);
}

}  // namespace nvfp4moe::cuda
