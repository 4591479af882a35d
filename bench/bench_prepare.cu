// Host benchmark of cuda::prepare_weight, the conversion of an NVFP4 checkpoint matrix (codes +
// row-major e4m3 scales) into the GEMM's prepared layout, which the checkpoint loader runs for
// every expert matrix (cuda/moe.h, on host threads). No GPU needed. Prints, per expert shape,
// the best of 5 single-thread runs: ms per matrix, ns per weight, prepared bytes per second,
// and the single-thread seconds for the 256 experts' w13 + w2 of one DeepSeek-V3 layer.
// --json FILE writes the same rows.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "bench_util.h"
#include "nvfp4moe/cuda/weights.h"

namespace nb = nvfp4moe::bench;
namespace nc = nvfp4moe::cuda;

int main(int argc, char** argv) {
  struct Shape { const char* name; int64_t n, k; };
  const Shape shapes[] = {{"DSV3 w13", 4096, 7168}, {"DSV3 w2", 7168, 2048}, {"Qwen3 w13", 1536, 2048},
                          {"Qwen3 w2", 2048, 768}};
  nb::Table table({"shape", "N", "K", "ms", "ns/weight", "prepared GB/s"});
  nb::JsonWriter json;
  json.meta().add("benchmark", "prepare_weight (host, one thread)");
  double dsv3_layer_s = 0.0;
  for (const Shape& s : shapes) {
    std::mt19937 rng(7);
    std::vector<uint8_t> codes(size_t(s.n * s.k / 2)), scales(size_t(s.n * s.k / 16));
    for (auto& b : codes) b = uint8_t(rng());
    for (auto& x : scales) x = uint8_t(0x28 + rng() % 0x28);  // normal scales 2^-2 .. ~2^3
    std::vector<uint8_t> out(size_t(nc::prepared_weight_bytes(s.n, s.k)));
    double best = 1e30;
    for (int it = 0; it < 5; ++it) {
      const auto t0 = std::chrono::steady_clock::now();
      nc::prepare_weight(codes, scales, s.n, s.k, out);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double ns_per_weight = best * 1e9 / double(s.n * s.k), gbs = double(out.size()) / best / 1e9;
    if (std::string(s.name).rfind("DSV3", 0) == 0) dsv3_layer_s += 256 * best;
    table.add_row({s.name, std::to_string(s.n), std::to_string(s.k), nb::fmt("%.2f", best * 1e3),
                   nb::fmt("%.3f", ns_per_weight), nb::fmt("%.2f", gbs)});
    nb::JsonObject o;
    o.add("shape", s.name).add("n", s.n).add("k", s.k).add("ms", best * 1e3).add("ns_per_weight", ns_per_weight)
        .add("prepared_gbs", gbs);
    json.add_result(o);
  }
  table.print();
  std::printf("DeepSeek-V3 layer (256 x (w13 + w2)), one thread: %.1f s\n", dsv3_layer_s);
  json.meta().add("dsv3_layer_seconds_one_thread", dsv3_layer_s);
  if (const char* path = nb::arg_value(argc, argv, "--json")) return json.write(path) ? 0 : 1;
  return 0;
}
