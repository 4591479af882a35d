// A checkpoint = one or more safetensors shards seen as one name -> tensor map.
//
// Checkpoint::open(path):
//   - a file: that file alone;
//   - a directory with model.safetensors.index.json: the shards its "weight_map" names
//     (every mapped tensor must exist in the shard the map names);
//   - any other directory: every *.safetensors file in it, in name order.
// A tensor name present in two shards is an error (naming both files).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "nvfp4moe/checkpoint/safetensors.h"

namespace nvfp4moe::checkpoint {

// The shard files of a checkpoint directory (see above), as paths.
std::vector<std::string> list_safetensors_shards(const std::string& dir);

class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);
  static Checkpoint open_files(const std::vector<std::string>& files);

  // All tensor names, sorted.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // These throw Error naming the tensor (and the checkpoint) when it is absent.
  const SafetensorsFile& file_of(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const { return file_of(name).info(name); }
  std::span<const std::byte> bytes(const std::string& name) const { return file_of(name).bytes(name); }
  // A float32 scalar stored with shape [] or [1] (ModelOpt's weight_scale_2 / input_scale).
  float scalar_f32(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::string label_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t> where_;  // tensor -> index into files_
  std::vector<std::string> names_;
};

}  // namespace nvfp4moe::checkpoint
