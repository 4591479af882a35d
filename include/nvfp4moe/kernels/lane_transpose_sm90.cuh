// A 4 x 4 transpose of 32-bit words across 4 lanes of a warp, by shuffles: what turns four lanes'
// scattered 4-byte stores into whole 16-byte ones where a K permutation of the GEMM's operand
// spreads each lane's values over several chunks (the GEMM's activation front ends,
// gemm_act_permute_sm90.cuh).
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels {

// 4 x 4 transpose of 32-bit words across 4 lanes: the lane with index q (0..3) among them passes
// v (its words i = 0..3) and gets back word q of each lane j = 0..3, in j order. Lane q's
// partner for index bit 0 is lane ^ m1, for bit 1 lane ^ m2. Two butterfly stages, each moving
// two words per lane (the words whose index bit differs from q's), then an index-dependent
// reorder. All 32 lanes call it.
__device__ __forceinline__ uint4 transpose4x4_lanes(const uint4& v, int q, int m1, int m2) {
  const bool o1 = q & 1, o2 = q & 2;
  // Stage 1: keep words i with bit 0 == o1 (own_lo: i = o1, own_hi: i = o1 + 2), receive the
  // partner's words of the same i (r0, r1).
  const uint32_t own_lo = o1 ? v.y : v.x, own_hi = o1 ? v.w : v.z;
  const uint32_t r0 = __shfl_xor_sync(0xffffffffu, o1 ? v.x : v.y, m1);
  const uint32_t r1 = __shfl_xor_sync(0xffffffffu, o1 ? v.z : v.w, m1);
  // Stage 2: keep i = q (own: from lane q, par: from lane q ^ 1), send the other i, receive
  // word q of lanes q ^ 2 and q ^ 3.
  const uint32_t keep_own = o2 ? own_hi : own_lo, keep_par = o2 ? r1 : r0;
  const uint32_t got_own = __shfl_xor_sync(0xffffffffu, o2 ? own_lo : own_hi, m2);
  const uint32_t got_par = __shfl_xor_sync(0xffffffffu, o2 ? r0 : r1, m2);
  // Word of lane j = entry j ^ q of {keep_own, keep_par, got_own, got_par}.
  auto entry = [&](int e) {
    const uint32_t lo = (e & 1) ? keep_par : keep_own, hi = (e & 1) ? got_par : got_own;
    return (e & 2) ? hi : lo;
  };
  return make_uint4(entry(q), entry(q ^ 1), entry(q ^ 2), entry(q ^ 3));
}

}  // namespace nvfp4moe::kernels
