// The prepared GEMM weight layout (kernels/gemm_layout_sm90.cuh, written by cuda::prepare_weight)
// checked on the host against the extraction the kernels do (kernels/gemm_dequant_sm90.cuh):
// for every weight, the A register the kernel builds from the word that holds it must be the
// code's value * 2^-126, and the scale byte must expand to the scale * 2^119. No GPU needed, so
// a layout change that breaks the kernels' arithmetic fails in CI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "nvfp4moe/cuda/weights.h"
#include "nvfp4moe/format/e2m1.h"
#include "nvfp4moe/format/e4m3.h"
#include "nvfp4moe/format/halfs.h"
#include "nvfp4moe/kernels/gemm_layout_sm90.cuh"

namespace nvfp4moe::test {
namespace {

namespace k = nvfp4moe::kernels;

// The kernels' extraction of A register j from a code word (gemm_dequant_sm90.cuh), on the host.
uint32_t extract_register(uint32_t w, int j) {
  switch (j) {
    case 0: return w & k::kCodeMaskQ;
    case 1: return (w << 3) & k::kCodeMaskQ;
    case 2: return (w << 6) & k::kCodeMaskQ;
    default: return (((w >> 7) & k::kCodeMaskJ3) * k::kCodeMulJ3) & k::kCodeMaskQ;
  }
}

uint32_t load_word(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Checks every weight of a random [n, k] weight (some scales zero, some subnormal).
void check_layout(int64_t n, int64_t kk, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> codes(size_t(n * kk / 2)), scales(size_t(n * kk / 16));
  for (auto& c : codes) c = uint8_t(rng());
  for (auto& s : scales) {
    uint32_t r = rng() % 16;
    s = r == 0 ? uint8_t(0) : r == 1 ? uint8_t(1 + rng() % 7) : uint8_t(rng() % 0x7f);  // zero, subnormal, any
    if (s == 0x7f) s = 0x7e;
  }
  std::vector<uint8_t> out(size_t(cuda::prepared_weight_bytes(n, kk)));
  cuda::prepare_weight(codes, scales, n, kk, out);
  const int64_t k_atoms = k::prepared_cols(kk) / k::kAtomK;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < kk; ++c) {
      const uint8_t* atom = out.data() + ((r / k::kAtomRows) * k_atoms + c / k::kAtomK) * k::kAtomBytes;
      const int ar = int(r % k::kAtomRows), ac = int(c % k::kAtomK);
      // Scale: the byte expands to bf16 bits (byte << 4) + 0x7600 = s * 2^119.
      const uint8_t s = scales[size_t(r * (kk / 16) + c / 16)];
      const uint8_t enc = atom[k::atom_scale_position(ar, ac / 16)];
      const float s_val = e4m3_to_float(s);
      if (s_val == 0.0f) {
        ASSERT_EQ(enc, 0) << "zero scale at (" << r << ", " << c / 16 << ")";
      } else {
        const float expanded = bf16_to_float(uint16_t((uint32_t(enc) << 4) + k::kScaleBf16Bias));
        ASSERT_EQ(expanded, std::ldexp(s_val, 119)) << "scale at (" << r << ", " << c / 16 << ")";
      }
      // Code: the register the kernel builds holds value * 2^-126 in this weight's half.
      const uint8_t byte = codes[size_t(r * (kk / 2) + c / 2)];
      const uint8_t code = (c & 1) ? uint8_t(byte >> 4) : uint8_t(byte & 0xf);
      const k::AtomCodePos pos = k::atom_code_position(ar, ac);
      const int i = ac % 4, j = (ar % 16) / 8 + 2 * (i / 2);
      const uint32_t reg = extract_register(load_word(atom + pos.word_byte), j);
      const uint16_t half = uint16_t(i % 2 ? reg >> 16 : reg & 0xffff);
      const float want = s_val == 0.0f ? 0.0f : e2m1_to_float(code);  // zero scale: codes zeroed
      ASSERT_EQ(std::ldexp(bf16_to_float(half), 126), want)
          << "weight (" << r << ", " << c << ") code " << int(code) << " register " << j;
    }
  }
}

TEST(GemmLayout, EveryWeightExtractsToItsValueAndScale) {
  check_layout(64, 64, 1);
  check_layout(128, 256, 2);
  check_layout(200, 144, 3);  // rows and K off the 128 padding
  check_layout(1, 16, 4);
}

// The layout by definition, one code at a time (atom_code_position, encode_weight_scale): what
// cuda::prepare_weight's table-driven loop must reproduce byte for byte.
std::vector<uint8_t> prepare_by_definition(const std::vector<uint8_t>& codes, const std::vector<uint8_t>& scales,
                                           int64_t n, int64_t kk) {
  std::vector<uint8_t> out(size_t(cuda::prepared_weight_bytes(n, kk)), 0);
  const int64_t k_atoms = k::prepared_cols(kk) / k::kAtomK;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < kk; ++c) {
      uint8_t* atom = out.data() + ((r / k::kAtomRows) * k_atoms + c / k::kAtomK) * k::kAtomBytes;
      const int ar = int(r % k::kAtomRows), ac = int(c % k::kAtomK);
      const uint8_t enc = k::encode_weight_scale(scales[size_t(r * (kk / 16) + c / 16)]);
      atom[k::atom_scale_position(ar, ac / 16)] = enc;
      if (enc == 0) continue;
      const uint8_t byte = codes[size_t(r * (kk / 2) + c / 2)];
      const uint8_t code = (c & 1) ? uint8_t(byte >> 4) : uint8_t(byte & 0xf);
      const k::AtomCodePos pos = k::atom_code_position(ar, ac);
      for (int b = 0; b < 4; ++b) {
        if ((code >> b) & 1) atom[pos.word_byte + pos.bits[b] / 8] |= uint8_t(1u << (pos.bits[b] % 8));
      }
    }
  }
  return out;
}

TEST(GemmLayout, PrepareWeightEqualsTheLayoutByDefinition) {
  struct S { int64_t n, k; };
  uint32_t seed = 50;
  for (S sh : {S{64, 64}, S{1, 16}, S{200, 144}, S{136, 1216}, S{520, 2048}, S{7, 7168}}) {
    std::mt19937 rng(seed++);
    std::vector<uint8_t> codes(size_t(sh.n * sh.k / 2)), scales(size_t(sh.n * sh.k / 16));
    for (auto& c : codes) c = uint8_t(rng());
    for (auto& s : scales) {
      const uint32_t r = rng() % 16;
      s = r == 0 ? uint8_t(rng() % 2 ? 0x00 : 0x80) : r == 1 ? uint8_t(1 + rng() % 7) : uint8_t(rng() % 0x7f);
    }
    std::vector<uint8_t> out(size_t(cuda::prepared_weight_bytes(sh.n, sh.k)), 0xa5);  // stale bytes: overwritten
    cuda::prepare_weight(codes, scales, sh.n, sh.k, out);
    const std::vector<uint8_t> want = prepare_by_definition(codes, scales, sh.n, sh.k);
    ASSERT_EQ(out.size(), want.size());
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], want[i]) << "n=" << sh.n << " k=" << sh.k << " byte " << i;
  }
}

// The decode kernel reads a lane's 16 natural columns 16q..16q+15 of an atom as the B fragments
// of four k16 steps; the wgmma kernel reads a logical-order tile. Both must pair the same
// activation column with each weight: logical k (step s, kk = 2q + b + 8h) <-> natural column
// 16q + 4s + 2h + b, and logical pair p holds natural pair kact_pair_of_logical_pair(p).
TEST(GemmLayout, ActivationOrderMatchesTheWeightOrder) {
  std::vector<int> seen(32, 0);
  for (int s = 0; s < 4; ++s) {
    for (int q = 0; q < 4; ++q) {
      for (int h = 0; h < 2; ++h) {
        const int logical_pair = (16 * s + 8 * h + 2 * q) / 2;
        const int natural_pair = (16 * q + 4 * s + 2 * h) / 2;
        EXPECT_EQ(k::kact_pair_of_logical_pair(logical_pair), natural_pair);
        seen[size_t(natural_pair)]++;
      }
    }
  }
  for (int p = 0; p < 32; ++p) EXPECT_EQ(seen[size_t(p)], 1) << "natural pair " << p;
}

}  // namespace
}  // namespace nvfp4moe::test
