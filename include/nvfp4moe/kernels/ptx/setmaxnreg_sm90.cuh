// Per-warpgroup register reallocation (sm_90a): a warp-specialized kernel gives its producer
// warpgroup few registers and its MMA warpgroups many. Every thread of the warpgroup must
// execute the same instruction (.sync.aligned). One instruction per function.
#pragma once

namespace nvfp4moe::kernels::ptx {

// Lower this warpgroup's registers per thread to kRegs (a multiple of 8 in 24..256).
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kRegs % 8 == 0 && kRegs >= 24 && kRegs <= 256, "setmaxnreg: 24..256, a multiple of 8");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// Raise this warpgroup's registers per thread to kRegs (blocks until the CTA's pool has them).
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kRegs % 8 == 0 && kRegs >= 24 && kRegs <= 256, "setmaxnreg: 24..256, a multiple of 8");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace nvfp4moe::kernels::ptx
