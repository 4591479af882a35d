// Host-side preparation of NVFP4 weights into the Hopper GEMM layout (cuda/weights.h,
// kernels/gemm_layout_sm90.cuh).
#include "nvfp4moe/cuda/weights.h"

#include <algorithm>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"

namespace nvfp4moe::cuda {

namespace k = nvfp4moe::kernels;

int64_t prepared_weight_bytes(int64_t n, int64_t kk) {
  NVFP4MOE_CHECK(n >= 1 && n < (int64_t{1} << 31), "n: expected 1 <= n < 2^31, got ", n);
  NVFP4MOE_CHECK(kk >= 16 && kk % 16 == 0 && kk < (int64_t{1} << 31),
                 "k: expected a positive multiple of 16 below 2^31, got ", kk);
  return k::prepared_bytes(n, kk);
}

void prepare_weight(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int64_t n,
                    int64_t kk, std::span<uint8_t> out) {
  const int64_t bytes = prepared_weight_bytes(n, kk);
  NVFP4MOE_CHECK(int64_t(codes.size()) == n * kk / 2, "codes: expected n*k/2 = ", n * kk / 2,
                 " bytes, got ", codes.size());
  NVFP4MOE_CHECK(int64_t(scales.size()) == n * kk / 16, "scales: expected n*k/16 = ", n * kk / 16,
                 " bytes (row-major e4m3), got ", scales.size());
  NVFP4MOE_CHECK(int64_t(out.size()) == bytes, "out: expected prepared_weight_bytes(n, k) = ", bytes,
                 " bytes, got ", out.size());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < kk / 16; ++g) {
      uint8_t s = scales[size_t(r * (kk / 16) + g)];
      NVFP4MOE_CHECK((s & 0x7f) != 0x7f, "scales: NaN block scale at row ", r, ", block ", g);
      NVFP4MOE_CHECK(s == 0x80 || (s & 0x80) == 0, "scales: negative block scale 0x", std::hex, int(s),
                     std::dec, " at row ", r, ", block ", g);
    }
  }
  std::fill(out.begin(), out.end(), uint8_t{0});
  const int64_t k_atoms = k::prepared_cols(kk) / k::kAtomK;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t rb = r / k::kAtomRows;
    const int ar = int(r % k::kAtomRows);
    for (int64_t g = 0; g < kk / 16; ++g) {
      const uint8_t s = scales[size_t(r * (kk / 16) + g)];
      const uint8_t enc = k::encode_weight_scale(s);
      const int64_t col0 = g * 16;
      uint8_t* atom = out.data() + (rb * k_atoms + col0 / k::kAtomK) * k::kAtomBytes;
      atom[k::atom_scale_position(ar, int((col0 % k::kAtomK) / 16))] = enc;
      if (enc == 0) continue;  // zero scale: codes stay zero
      for (int64_t c = col0; c < col0 + 16; ++c) {
        uint8_t b = codes[size_t(r * (kk / 2) + c / 2)];
        uint8_t code = (c & 1) ? uint8_t(b >> 4) : uint8_t(b & 0xf);
        const k::AtomCodePos pos = k::atom_code_position(ar, int(c % k::kAtomK));
        uint32_t word = 0;
        for (int bit = 0; bit < 4; ++bit) word |= uint32_t((code >> bit) & 1u) << pos.bits[bit];
        for (int byte = 0; byte < 4; ++byte) atom[pos.word_byte + byte] |= uint8_t(word >> (8 * byte));
      }
    }
  }
}

}  // namespace nvfp4moe::cuda
