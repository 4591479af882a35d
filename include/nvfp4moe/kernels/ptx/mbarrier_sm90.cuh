// Shared-memory mbarriers (sm_90): the full/empty handshake of a pipeline whose stages are
// filled by the async proxy (TMA, bulk copies). A barrier counts expected arrivals and, for
// async copies, expected transaction bytes; its phase completes when both reach zero, and
// waiters test the parity of the phase they wait for. One instruction per function.
#pragma once

#include <cstdint>

namespace nvfp4moe::kernels::ptx {

// Initialise the barrier at `bar` to expect `count` arrivals per phase (one thread, before use).
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Make barrier initialisation visible to the other threads and to the async proxy (TMA and
// bulk copies complete their transactions on it).
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// Arrive once (release: this thread's earlier shared-memory accesses happen before the phase
// completes for the waiters).
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar) : "memory");
}

// Arrive once and add `bytes` to the transaction count the phase waits for (the producer, just
// before issuing the copies that will complete those bytes on this barrier).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}

// Whether the phase of parity `parity` has completed, without waiting (a fresh barrier is in
// phase 0, so parity 1 tests true at once: producers start on free slots).
__device__ __forceinline__ bool mbarrier_test_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}

// Wait until the phase of parity `parity` has completed (acquire: the writes it covers, also
// those of TMA and bulk copies, are then visible to this thread).
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra wait_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

}  // namespace nvfp4moe::kernels::ptx
