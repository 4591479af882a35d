// Writes a seed corpus of small valid safetensors files (every dtype, scalars, empty
// tensors, metadata) into the directory given as argv[1], for scripts/fuzz.sh.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "nvfp4moe/checkpoint/safetensors.h"

int main(int argc, char** argv) {
  using namespace nvfp4moe::checkpoint;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int n = 0;
  auto emit = [&](const SafetensorsWriter& w) {
    std::vector<std::byte> img = w.serialize();
    std::ofstream(dir + "/seed" + std::to_string(n++) + ".safetensors", std::ios::binary)
        .write(reinterpret_cast<const char*>(img.data()), std::streamsize(img.size()));
  };
  const DType all[] = {DType::kU8, DType::kF8_E4M3, DType::kBF16, DType::kF16,
                       DType::kF32, DType::kI32, DType::kI64};
  SafetensorsWriter empty;
  emit(empty);
  SafetensorsWriter meta;
  meta.set_metadata("format", "pt");
  emit(meta);
  for (DType t : all) {
    SafetensorsWriter w;
    std::vector<std::byte> b(6 * dtype_size(t), std::byte{0x5a});
    w.add(std::string("w.") + to_string(t), t, {2, 3}, std::span<const std::byte>(b));
    emit(w);
  }
  SafetensorsWriter mixed;
  std::vector<std::byte> four(4, std::byte{1}), none;
  mixed.add("model.layers.0.mlp.experts.0.up_proj.weight", DType::kU8, {2, 2},
            std::span<const std::byte>(four));
  mixed.add("model.layers.0.mlp.experts.0.up_proj.weight_scale_2", DType::kF32, {},
            std::span<const std::byte>(four));
  mixed.add("empty", DType::kBF16, {0, 16}, std::span<const std::byte>(none));
  mixed.set_metadata("format", "pt");
  mixed.set_metadata("producer", "nvfp4moe");
  emit(mixed);
  std::printf("make_seeds: wrote %d files to %s\n", n, dir.c_str());
  return 0;
}
