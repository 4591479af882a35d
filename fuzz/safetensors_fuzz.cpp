// libFuzzer target: SafetensorsFile::from_memory on arbitrary bytes (the same parser open()
// runs on a mapped file). Any outcome but "parsed" or nvfp4moe::Error is a bug; for a parsed
// file every tensor's bytes are read so ASan catches a span past the buffer.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nvfp4moe/checkpoint/safetensors.h"
#include "nvfp4moe/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nvfp4moe::checkpoint;
  std::vector<std::byte> image(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    SafetensorsFile f = SafetensorsFile::from_memory(std::move(image), "fuzz-input");
    unsigned checksum = 0;
    std::uint64_t total = 0;
    for (const auto& name : f.names()) {
      const TensorInfo& info = f.info(name);
      auto bytes = f.bytes(name);
      if (bytes.size() != info.numel * dtype_size(info.dtype)) __builtin_trap();
      for (std::byte b : bytes) checksum += unsigned(b);
      total += bytes.size();
    }
    if (total != f.data_bytes()) __builtin_trap();  // tensors must tile the data buffer
    for (const auto& [k, v] : f.metadata()) checksum += unsigned(k.size() + v.size());
    volatile unsigned sink = checksum;
    (void)sink;
  } catch (const nvfp4moe::Error&) {
    // Rejected with a message: the expected outcome for malformed input.
  }
  return 0;
}
