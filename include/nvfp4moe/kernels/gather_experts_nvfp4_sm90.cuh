// The per-expert NVFP4 layout of quantize_experts, built from rows quantized once (sm_90).
//
// When every expert's global scale is the same g, row i of quantize_experts(x, gather, g[E])
// is the quantization of x[gather[i]] with g, whichever expert owns it: the codes and the
// scale bytes of quantize(x, g)'s row gather[i]. The MoE layer's first quantizer gathers each
// token top_k times, so quantizing the T tokens once and copying their codes and scale words
// into the expert-sorted layout reads and computes top_k times less (docs/GEMM.md v30).
// This kernel does the copy and writes exactly what quantize_experts writes, with the same
// device-side validation (QuantizeParams as quantize_experts fills it; x unused):
//   - codes [rows_out, k/2]: row i < off[E] = codes row gather[i] of codes_in, rows past off[E]
//     and rows with a gather entry outside [0, rows_in) zero (kErrorBadGather);
//   - scales: expert e's swizzled matrix from scale row sf_off[e] (the tables of
//     build_expert_tables), its padding rows zero, rows of a bad gather entry zero; scale rows
//     past sf_off[E] untouched; with invalid offsets every code and scale byte zero
//     (kErrorBadOffsets).
// codes_in [rows_in, k/2] and scales_in (swizzled, padded_scale_rows(rows_in) rows) are
// quantize's output for the same k, whose padding columns are zero.
//
// Work: codes, one warp per output row (kUnit-byte copies per lane); scales, one warp per 128-row
// scale tile of data (every tile lies in one expert: sf_off[e] is a multiple of 128) and chunk of
// 16 column groups, lane a writing the tile's 16-byte line a (rows a, a + 32, a + 64, a + 96) of
// each column group with one store, its four 4-byte words read from the token rows' places in
// scales_in.
#pragma once

#include <cstdint>
#include <type_traits>

#include "nvfp4moe/kernels/quantize_sm90.cuh"

namespace nvfp4moe::kernels {

struct GatherNvfp4In {
  const uint8_t* codes;   // [rows_in, k/2]
  const uint8_t* scales;  // swizzled, padded_scale_rows(rows_in) x padded_scale_cols(k)
};

// The input row of output row r (r < off[E]), or -1 for an entry outside [0, rows_in), which is
// reported once per output row (by its codes' warp).
__device__ __forceinline__ int32_t gathered_row(const QuantizeParams& p, int64_t r, bool report) {
  const int32_t src = __ldg(p.gather + r);
  if (src >= 0 && src < p.rows_in) return src;
  if (report && p.error_flags != nullptr) atomicOr(p.error_flags, kErrorBadGather);
  return -1;
}

// kUnit: 16 when k % 32 == 0 (a codes row is whole 16-byte units), else 8.
template <int kUnit>
__global__ void __launch_bounds__(kQuantThreads) gather_experts_nvfp4_kernel(QuantizeParams p, GatherNvfp4In in) {
  using Unit = std::conditional_t<kUnit == 16, uint4, uint2>;
  ptx::pdl_prologue();  // launched with PDL (common/pdl_launch.h)
  __shared__ ExpertTables t;
  const int E = build_expert_tables(p, t);
  const int32_t nq = int32_t(padded_scale_cols(p.k) / 4);
  const int lane = int(threadIdx.x) & 31;
  if (t.bad) zero_scales_outside_data(p, t, nq);  // the whole scale buffer
  const int64_t data_rows = t.off[E];             // 0 with invalid offsets

  // Codes.
  const int64_t row_bytes = p.k / 2;
  const int32_t units = int32_t(row_bytes / kUnit);
  for (int64_t r = global_warp(); r < p.rows_out; r += total_warps()) {
    const int32_t src = r < data_rows ? gathered_row(p, r, lane == 0) : -1;
    Unit* dst = reinterpret_cast<Unit*>(p.codes + r * row_bytes);
    const Unit* from = reinterpret_cast<const Unit*>(in.codes + int64_t(src < 0 ? 0 : src) * row_bytes);
#pragma unroll 4
    for (int32_t u = lane; u < units; u += 32) dst[u] = src >= 0 ? __ldg(from + u) : Unit{};
  }

  // Scales: items (data tile in [0, sf_off[E] / 128), chunk of kScaleGroups column groups), so
  // that a tile's column groups spread over several warps and each warp's loads are independent
  // (its four source rows are fixed): a wide row (DeepSeek-V3: 112 groups) is not one warp's
  // chain of L2 round trips.
  constexpr int kScaleGroups = 16;
  const int32_t tiles = t.bad ? 0 : t.sf[E] / 128;
  const int32_t chunks = (nq + kScaleGroups - 1) / kScaleGroups;
  for (int64_t item = global_warp(); item < int64_t(tiles) * chunks; item += total_warps()) {
    const int32_t tile = int32_t(item / chunks), q0 = int32_t(item % chunks) * kScaleGroups;
    const int32_t first = tile * 128;
    int a = 0, b = E;  // the expert e with sf[e] <= first < sf[e+1] (empty experts have none)
    while (b - a > 1) {
      const int mid = (a + b) >> 1;
      if (t.sf[mid] <= first) a = mid; else b = mid;
    }
    const int32_t local0 = first - t.sf[a], rows_e = t.off[a + 1] - t.off[a];
    int32_t src[4];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int32_t local = local0 + lane + 32 * w;
      src[w] = local < rows_e ? gathered_row(p, int64_t(t.off[a]) + local, false) : -1;  // padding: zero
    }
    uint4* line = reinterpret_cast<uint4*>(p.scales + int64_t(tile) * nq * kScaleTileBytes) + lane;
    const int32_t q1 = min(nq, q0 + kScaleGroups);
#pragma unroll 8
    for (int32_t q = q0; q < q1; ++q) {
      uint32_t word[4];
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        word[w] = src[w] >= 0 ? __ldg(reinterpret_cast<const uint32_t*>(in.scales + swizzled_offset(src[w], 4 * q, nq)))
                              : 0u;
      }
      line[int64_t(q) * (kScaleTileBytes / 16)] = make_uint4(word[0], word[1], word[2], word[3]);
    }
  }
}

}  // namespace nvfp4moe::kernels
