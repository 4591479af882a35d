// Launcher of the ring decode kernel (src/cuda/gemm_decode_ring.h).
#include "gemm_decode_ring.h"

#include <algorithm>

#include "nvfp4moe/common/cuda_check.h"
#include "nvfp4moe/common/pdl_launch.h"
#include "nvfp4moe/kernels/gemm_w4a16_decode_ring_sm90.cuh"

namespace nvfp4moe::cuda {
namespace {

namespace kn = nvfp4moe::kernels;

// Ring depth and CTAs per SM. Token tile 8: 5 stages of 6.6 KiB at 4 CTAs per SM (56 registers,
// ~46 KiB of shared memory each); 16: 6 stages of 8.8 KiB at 3 (75 registers, ~70 KiB). Either
// keeps 90-110 KiB of weights in flight per SM, about 3x the register kernel's. The depth was
// swept on the H100 at token tile 8 (3 stages x 4 CTAs, 5 x 4, 9 x 3, 12 x 2): 3 and 5 stages
// timed the same and the deeper rings at fewer CTAs were slower, so more bytes in flight is not
// what limits the small grouped calls (docs/GEMM.md).
template <int kTok>
struct RingChoice;
template <>
struct RingChoice<8> {
  static constexpr int kStages = 5, kCtas = 4;
};
template <>
struct RingChoice<16> {
  static constexpr int kStages = 6, kCtas = 3;
};

template <int kTok, bool kClaim>
auto ring_kernel() {
  return kn::gemm_w4a16_decode_ring_sm90_kernel<kTok, RingChoice<kTok>::kStages, RingChoice<kTok>::kCtas, kClaim>;
}
template <int kTok>
using RingCfg = kn::GemmDecodeRingConfig<kTok, RingChoice<kTok>::kStages, RingChoice<kTok>::kCtas>;

// Shared-memory attributes once per instantiation (the ring is dynamic shared memory; the
// carveout asks for the whole of it so that kCtas CTAs fit).
template <int kTok, bool kClaim>
void prepare_kernel() {
  static const bool done = [] {
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(ring_kernel<kTok, kClaim>(), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             RingCfg<kTok>::kRingBytes));
    NVFP4MOE_CUDA_CHECK(cudaFuncSetAttribute(ring_kernel<kTok, kClaim>(),
                                             cudaFuncAttributePreferredSharedMemoryCarveout, 100));
    return true;
  }();
  (void)done;
}

template <int kTok>
int ctas_per_sm() {
  static const int cached = [] {
    prepare_kernel<kTok, false>();
    int n = 0;
    NVFP4MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, ring_kernel<kTok, false>(),
                                                                      RingCfg<kTok>::kThreads, RingCfg<kTok>::kRingBytes));
    return std::max(n, 1);
  }();
  return cached;
}

template <int kTok, bool kClaim>
void launch(const kn::GemmW4A16Params& p, const kn::DecodeCombineParams& combine, int grid, cudaStream_t stream) {
  prepare_kernel<kTok, kClaim>();
  launch_pdl(ring_kernel<kTok, kClaim>(), dim3(grid), dim3(RingCfg<kTok>::kThreads), RingCfg<kTok>::kRingBytes, stream, p,
             combine);
}

}  // namespace

int decode_ring_ctas_per_sm(int tok) { return tok == 16 ? ctas_per_sm<16>() : ctas_per_sm<8>(); }

void launch_decode_ring(int tok, const kn::GemmW4A16Params& p, const kn::DecodeCombineParams& combine, int grid,
                        cudaStream_t stream) {
  const bool claim = p.off != nullptr && p.claim != nullptr;
  if (tok == 16) claim ? launch<16, true>(p, combine, grid, stream) : launch<16, false>(p, combine, grid, stream);
  else claim ? launch<8, true>(p, combine, grid, stream) : launch<8, false>(p, combine, grid, stream);
}

}  // namespace nvfp4moe::cuda
