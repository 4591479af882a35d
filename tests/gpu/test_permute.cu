// GPU permutation (cuda::permute) against the CPU model ref::permute, bit for bit on all six
// outputs: random, duplicate-heavy, skewed (every pair to one expert) and sparse (empty
// experts) routings, both the single-CTA and the multi-CTA paths, capacity > tokens, repeated
// runs, and bad arguments.
#include <gtest/gtest.h>

#include <cstring>  // gpu_test_util.h uses std::memcmp

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "nvfp4moe/cuda/routing.h"
#include "nvfp4moe/kernels/permute_sm90.cuh"
#include "nvfp4moe/ref/permute.h"

namespace nvfp4moe {
namespace {

using test::DeviceBuffer;

enum class IdKind { kDistinct, kDuplicates, kAllOne, kEvenOnly };

const char* kind_name(IdKind k) {
  switch (k) {
    case IdKind::kDistinct: return "distinct";
    case IdKind::kDuplicates: return "duplicates";
    case IdKind::kAllOne: return "all-one-expert";
    case IdKind::kEvenOnly: return "even-experts-only";
  }
  return "?";
}

// ids [T, k]: distinct experts per token (as top-k yields), uniform with repeats, every pair to
// expert E-1, or only even experts (odd ones stay empty).
std::vector<int32_t> random_ids(int64_t tokens, int k, int e, uint32_t seed, IdKind kind) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(size_t(tokens * k));
  std::vector<int32_t> perm(static_cast<size_t>(e));
  for (int64_t t = 0; t < tokens; ++t) {
    int32_t* row = ids.data() + t * k;
    switch (kind) {
      case IdKind::kDistinct:
        std::iota(perm.begin(), perm.end(), 0);
        for (int j = 0; j < k; ++j) {
          std::swap(perm[size_t(j)], perm[size_t(j + int(rng() % uint32_t(e - j)))]);
          row[j] = perm[size_t(j)];
        }
        break;
      case IdKind::kDuplicates:
        for (int j = 0; j < k; ++j) row[j] = int32_t(rng() % uint32_t(e));
        break;
      case IdKind::kAllOne:
        for (int j = 0; j < k; ++j) row[j] = e - 1;
        break;
      case IdKind::kEvenOnly:
        for (int j = 0; j < k; ++j) row[j] = int32_t(2 * (rng() % uint32_t((e + 1) / 2)));
        break;
    }
  }
  return ids;
}

// Device permute of `tokens` tokens with every buffer sized for `capacity` and poisoned first.
ref::Permutation permute_gpu(const std::vector<int32_t>& ids, int64_t tokens, int k, int e, int64_t capacity) {
  const size_t cap_m = size_t(capacity * k), m = size_t(tokens * k);
  std::vector<int32_t> ids_cap(ids);
  ids_cap.resize(std::max(cap_m, size_t(1)), 0);
  DeviceBuffer<int32_t> d_ids(ids_cap);
  DeviceBuffer<int32_t> counts(static_cast<size_t>(e)), off(size_t(e + 1)), sf_off(size_t(e + 1));
  DeviceBuffer<int32_t> s2p(std::max(cap_m, size_t(1))), p2s(std::max(cap_m, size_t(1))),
      s2t(std::max(cap_m, size_t(1)));
  for (auto* b : {&counts, &off, &sf_off, &s2p, &p2s, &s2t}) b->fill_bytes(0xff);
  const size_t ws_bytes = cuda::permute_workspace_bytes(capacity, k, e);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  ws.fill_bytes(0xab);
  cuda::PermuteOutputs out;
  out.counts = counts.get();
  out.off = off.get();
  out.sf_off = sf_off.get();
  out.sorted_to_pair = s2p.get();
  out.pair_to_sorted = p2s.get();
  out.sorted_to_token = s2t.get();
  cuda::permute(d_ids.get(), tokens, k, e, capacity, out, ws.get(), ws_bytes, nullptr);
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  ref::Permutation p;
  p.counts = counts.download();
  p.off = off.download();
  p.sf_off = sf_off.download();
  auto first_m = [m](std::vector<int32_t> v) {
    v.resize(m);
    return v;
  };
  p.sorted_to_pair = first_m(s2p.download());
  p.pair_to_sorted = first_m(p2s.download());
  p.sorted_to_token = first_m(s2t.download());
  return p;
}

::testing::AssertionResult perms_equal(const ref::Permutation& got, const ref::Permutation& want,
                                       const std::string& what) {
  struct Field {
    const std::vector<int32_t>* got;
    const std::vector<int32_t>* want;
    const char* name;
  };
  const Field fields[] = {{&got.counts, &want.counts, "counts"},
                          {&got.off, &want.off, "off"},
                          {&got.sf_off, &want.sf_off, "sf_off"},
                          {&got.sorted_to_pair, &want.sorted_to_pair, "sorted_to_pair"},
                          {&got.pair_to_sorted, &want.pair_to_sorted, "pair_to_sorted"},
                          {&got.sorted_to_token, &want.sorted_to_token, "sorted_to_token"}};
  for (const Field& f : fields) {
    auto r = test::bytes_equal(*f.got, *f.want, what + " " + f.name);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

void check_against_ref(int64_t tokens, int k, int e, IdKind kind, uint32_t seed, int64_t capacity = -1) {
  if (capacity < 0) capacity = tokens;
  const std::string what = "T=" + std::to_string(tokens) + " k=" + std::to_string(k) + " E=" + std::to_string(e) +
                           " cap=" + std::to_string(capacity) + " " + kind_name(kind) +
                           " seed=" + std::to_string(seed);
  SCOPED_TRACE(what);
  const auto ids = random_ids(tokens, k, e, seed, kind);
  EXPECT_TRUE(perms_equal(permute_gpu(ids, tokens, k, e, capacity), ref::permute(ids, tokens, k, e), what));
}

TEST(PermuteGpu, MatchesRefOverShapes) {
  NVFP4MOE_REQUIRE_GPU();
  uint32_t seed = 1;
  for (int e : {8, 128, 256, 512}) {
    for (int k : {1, 2, 8, 16}) {
      if (k > e) continue;
      for (int64_t t : {0, 1, 3, 255, 4096}) {
        check_against_ref(t, k, e, IdKind::kDistinct, seed++);
        check_against_ref(t, k, e, IdKind::kDuplicates, seed++);
      }
    }
  }
}

// M = 131072 and 262144: 128 and 256 tiles on the multi-CTA path.
TEST(PermuteGpu, LargeMatchesRef) {
  NVFP4MOE_REQUIRE_GPU();
  check_against_ref(16384, 8, 256, IdKind::kDistinct, 11);
  check_against_ref(16384, 8, 128, IdKind::kDuplicates, 12);
  check_against_ref(16384, 16, 512, IdKind::kDistinct, 13);
}

// Around the single-CTA / multi-CTA boundary (kPermuteSingleCtaMaxPairs) and tile edges.
TEST(PermuteGpu, PathBoundaryMatchesRef) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t single = kernels::kPermuteSingleCtaMaxPairs;
  for (int64_t m : {single - 1, single, single + 1, int64_t(kernels::kPermuteTilePairs) * 3,
                    int64_t(kernels::kPermuteTilePairs) * 3 + 1, int64_t(4999)}) {
    check_against_ref(m, 1, 64, IdKind::kDuplicates, uint32_t(m));
  }
  check_against_ref(256, 8, 256, IdKind::kDistinct, 21);  // M = 2048: single CTA
  check_against_ref(257, 8, 256, IdKind::kDistinct, 22);  // M = 2056: multi-CTA
}

TEST(PermuteGpu, SkewedAndEmptyExpertsMatchRef) {
  NVFP4MOE_REQUIRE_GPU();
  for (int64_t t : {1, 255, 4096, 16384}) {
    check_against_ref(t, 8, 256, IdKind::kAllOne, 31);
    check_against_ref(t, 8, 256, IdKind::kEvenOnly, 32);
    check_against_ref(t, 1, 512, IdKind::kAllOne, 33);
  }
}

// Buffers and workspace sized for a capacity, used for smaller batches (as a captured graph does).
TEST(PermuteGpu, CapacityLargerThanTokens) {
  NVFP4MOE_REQUIRE_GPU();
  for (int64_t t : {0, 3, 255, 2000, 4096}) check_against_ref(t, 8, 256, IdKind::kDistinct, 40, 4096);
}

TEST(PermuteGpu, RepeatedRunsBitwiseIdentical) {
  NVFP4MOE_REQUIRE_GPU();
  for (int64_t t : {200, 8192}) {
    const auto ids = random_ids(t, 8, 256, 50, IdKind::kDuplicates);
    const auto first = permute_gpu(ids, t, 8, 256, t);
    for (int rep = 0; rep < 3; ++rep) {
      EXPECT_TRUE(perms_equal(permute_gpu(ids, t, 8, 256, t), first, "rep " + std::to_string(rep)));
    }
  }
}

// Host-only size checks (no GPU needed): tokens * top_k wrapping int64 (2^61 * 8 = 2^64) is an
// error, not a zero-byte workspace whose later launches would write past the buffers.
TEST(PermuteBadArgs, WorkspaceSizesRejectOverflow) {
  EXPECT_THROW(cuda::permute_workspace_bytes(int64_t(1) << 61, 8, 128), Error);
  EXPECT_THROW(cuda::route_and_permute_workspace_bytes(int64_t(1) << 61, 8, 128), Error);
  EXPECT_THROW(cuda::permute_workspace_bytes(int64_t(1) << 28, 8, 128), Error);  // 2^31 rows
  EXPECT_NO_THROW(cuda::permute_workspace_bytes(int64_t(1) << 20, 8, 128));
}

TEST(PermuteBadArgs, ThrowsBeforeLaunch) {
  NVFP4MOE_REQUIRE_GPU();
  const int64_t cap = 1024;
  const int k = 8, e = 256;
  DeviceBuffer<int32_t> ids(cap * k), counts(e), off(e + 1), sf_off(e + 1), s2p(cap * k), p2s(cap * k), s2t(cap * k);
  const size_t ws_bytes = cuda::permute_workspace_bytes(cap, k, e);
  ASSERT_GT(ws_bytes, 0u);
  DeviceBuffer<uint8_t> ws(ws_bytes + 16);
  cuda::PermuteOutputs out;
  out.counts = counts.get();
  out.off = off.get();
  out.sf_off = sf_off.get();
  out.sorted_to_pair = s2p.get();
  out.pair_to_sorted = p2s.get();
  out.sorted_to_token = s2t.get();
  ids.fill_bytes(0);
  EXPECT_NO_THROW(cuda::permute(ids.get(), cap, k, e, cap, out, ws.get(), ws_bytes, nullptr));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto bad = [&](auto mutate) {
    const int32_t* i = ids.get();
    int64_t t = 100, c = cap;
    int kk = k, ee = e;
    cuda::PermuteOutputs o = out;
    void* w = ws.get();
    size_t wb = ws_bytes;
    mutate(i, t, kk, ee, c, o, w, wb);
    cuda::permute(i, t, kk, ee, c, o, w, wb, nullptr);
  };
  using O = cuda::PermuteOutputs;
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int& ee, int64_t&, O&, void*&, size_t&) { ee = 0; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int& ee, int64_t&, O&, void*&, size_t&) { ee = 513; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int& kk, int&, int64_t&, O&, void*&, size_t&) { kk = 0; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int& kk, int&, int64_t&, O&, void*&, size_t&) { kk = 17; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int& kk, int& ee, int64_t&, O&, void*&, size_t&) { ee = 4; kk = 5; }),
               Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t& t, int&, int&, int64_t&, O&, void*&, size_t&) { t = -1; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t& t, int&, int&, int64_t& c, O&, void*&, size_t&) { t = c + 1; }), Error);
  EXPECT_THROW(bad([](const int32_t*& i, int64_t&, int&, int&, int64_t&, O&, void*&, size_t&) { i = nullptr; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int&, int64_t&, O& o, void*&, size_t&) { o.off = nullptr; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int&, int64_t&, O& o, void*&, size_t&) {
                 o.sorted_to_token = nullptr;
               }),
               Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int&, int64_t&, O& o, void*&, size_t&) {
                 o.pair_to_sorted = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(o.pair_to_sorted) + 2);
               }),
               Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int&, int64_t&, O&, void*&, size_t& wb) { wb -= 4; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int&, int64_t&, O&, void*& w, size_t&) { w = nullptr; }), Error);
  EXPECT_THROW(bad([](const int32_t*&, int64_t&, int&, int&, int64_t&, O&, void*& w, size_t&) {
                 w = static_cast<char*>(w) + 4;
               }),
               Error);
  EXPECT_THROW(cuda::permute_workspace_bytes(-1, k, e), Error);
  EXPECT_THROW(cuda::permute_workspace_bytes(cap, 0, e), Error);
  EXPECT_THROW(cuda::permute_workspace_bytes(int64_t(1) << 30, 16, e), Error);  // rows overflow int32

  // Small capacity: no workspace needed, nullptr accepted.
  EXPECT_EQ(cuda::permute_workspace_bytes(16, 8, 256), 0u);
  EXPECT_NO_THROW(cuda::permute(ids.get(), 16, 8, 256, 16, out, nullptr, 0, nullptr));
  NVFP4MOE_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nvfp4moe
