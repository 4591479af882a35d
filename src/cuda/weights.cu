// Host-side preparation of NVFP4 weights into the Hopper GEMM layout (cuda/weights.h,
// kernels/gemm_layout_sm90.cuh).
#include "nvfp4moe/cuda/weights.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

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
  // One 16-code block (row r, columns 16g .. 16g + 15) fills, in its atom, four 32-bit words
  // (one per group of 4 columns, s = 0..3), each shared with the block of row r +- 8; code i of
  // a group goes to the word bits of A register j = (r % 16) / 8 + 2 (i / 2), half i % 2
  // (atom_code_position). kBits[j][half][code] is that code's bit pattern in the word: 16
  // lookups and 4 word updates per block instead of 4 bit moves and 4 byte updates per code
  // (8x faster measured on the host: the checkpoint loader prepares every expert matrix).
  static const auto kBits = [] {
    std::array<std::array<std::array<uint32_t, 16>, 2>, 4> t{};
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h)
        for (int code = 0; code < 16; ++code) {
          uint32_t word = 0;
          for (int bit = 0; bit < 4; ++bit) word |= uint32_t((code >> bit) & 1) << (k::code_bit(j, bit) + 16 * h);
          t[size_t(j)][size_t(h)][size_t(code)] = word;
        }
    return t;
  }();
  static_assert(std::endian::native == std::endian::little, "the atom words are stored little-endian");
  const int64_t k_atoms = k::prepared_cols(kk) / k::kAtomK;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t rb = r / k::kAtomRows;
    const int ar = int(r % k::kAtomRows);
    const int j0 = (ar % 16) / 8;  // A register of codes i = 0, 1 of a group (2 + j0 for i = 2, 3)
    const int t_row = (ar / 16) * 32 + (ar % 8) * 4;
    const uint8_t* row_codes = codes.data() + r * (kk / 2);
    for (int64_t g = 0; g < kk / 16; ++g) {
      const uint8_t enc = k::encode_weight_scale(scales[size_t(r * (kk / 16) + g)]);
      uint8_t* atom = out.data() + (rb * k_atoms + g / 4) * k::kAtomBytes;
      atom[k::atom_scale_position(ar, int(g % 4))] = enc;
      if (enc == 0) continue;  // zero scale: codes stay zero
      uint8_t* words = atom + (t_row + int(g % 4)) * 16;  // word s at words + 4 s
      const uint8_t* src = row_codes + g * 8;             // 16 codes, two per byte (low first)
      for (int s4 = 0; s4 < 4; ++s4) {
        const uint8_t b0 = src[2 * s4], b1 = src[2 * s4 + 1];  // codes i = 0, 1 | 2, 3
        const uint32_t bits = kBits[size_t(j0)][0][b0 & 0xf] | kBits[size_t(j0)][1][b0 >> 4] |
                              kBits[size_t(j0 + 2)][0][b1 & 0xf] | kBits[size_t(j0 + 2)][1][b1 >> 4];
        uint32_t word;
        std::memcpy(&word, words + 4 * s4, 4);
        word |= bits;
        std::memcpy(words + 4 * s4, &word, 4);
      }
    }
  }
}

}  // namespace nvfp4moe::cuda
