// Private to src/ref: a deterministic parallel loop for the golden model.
//
// parallel_for(n, min_chunk, fn) runs fn(begin, end) over [0, n) in contiguous chunks of at
// least min_chunk items, one chunk a thread (up to hardware_concurrency). Each item is handled
// by exactly one thread and fn must write only that item's outputs, so the split can never
// change a result: the golden model stays bit-reproducible on any core count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace nvfp4moe::ref::detail {

template <typename Fn>
void parallel_for(int64_t n, int64_t min_chunk, const Fn& fn) {
  if (n <= 0) return;
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t chunks = std::min<int64_t>(
      hw, (n + std::max<int64_t>(1, min_chunk) - 1) / std::max<int64_t>(1, min_chunk));
  if (chunks <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  std::vector<std::thread> threads;
  threads.reserve(size_t(chunks - 1));
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t begin = c * per, end = std::min(n, begin + per);
    if (begin < end) threads.emplace_back([&fn, begin, end] { fn(begin, end); });
  }
  fn(int64_t{0}, std::min(n, per));
  for (auto& t : threads) t.join();
}

}  // namespace nvfp4moe::ref::detail
