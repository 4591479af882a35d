// Multi-shard checkpoints (see checkpoint.h).
#include "nvfp4moe/checkpoint/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "nvfp4moe/common/error.h"
#include "json_input.h"

namespace nvfp4moe::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The index's weight_map: tensor -> shard file name (relative to the directory).
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  NVFP4MOE_CHECK(in.good(), "path: cannot open '", index_path.string(), "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  json j = checkpoint_json::parse_bounded(text.begin(), text.end(), index_path.string());
  NVFP4MOE_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                 index_path.string(), ": missing key 'weight_map' (an object)");
  std::map<std::string, std::string> map;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    NVFP4MOE_CHECK(it.value().is_string(), index_path.string(), ": weight_map['", it.key(),
                   "']: expected a file name, got ", checkpoint_json::brief(it.value()));
    std::string file = it.value().get<std::string>();
    NVFP4MOE_CHECK(!file.empty() && file.find('/') == std::string::npos && file != "." && file != "..",
                   index_path.string(), ": weight_map['", it.key(), "']: '", file,
                   "' is not a plain file name in the checkpoint directory");
    map.emplace(it.key(), file);
  }
  return map;
}

}  // namespace

std::vector<std::string> list_safetensors_shards(const std::string& dir) {
  fs::path d(dir);
  std::error_code ec;
  NVFP4MOE_CHECK(fs::is_directory(d, ec), "dir: '", dir, "' is not a directory");
  fs::path index = d / "model.safetensors.index.json";
  std::vector<std::string> out;
  if (fs::exists(index, ec)) {
    std::set<std::string> files;
    for (const auto& [name, file] : read_weight_map(index)) files.insert(file);
    for (const auto& f : files) out.push_back((d / f).string());
    return out;
  }
  for (const auto& e : fs::directory_iterator(d, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".safetensors") out.push_back(e.path().string());
  }
  NVFP4MOE_CHECK(!ec, "dir: cannot list '", dir, "': ", ec.message());
  std::sort(out.begin(), out.end());
  NVFP4MOE_CHECK(!out.empty(), "dir: '", dir, "' holds no *.safetensors file");
  return out;
}

Checkpoint Checkpoint::open_files(const std::vector<std::string>& files) {
  NVFP4MOE_CHECK(!files.empty(), "files: expected at least one safetensors file");
  Checkpoint c;
  c.label_ = files.size() == 1 ? files[0] : files[0] + " (+" + std::to_string(files.size() - 1) + " shards)";
  for (const auto& f : files) c.files_.push_back(SafetensorsFile::open(f));
  for (std::size_t i = 0; i < c.files_.size(); ++i) {
    for (const auto& name : c.files_[i].names()) {
      auto [it, inserted] = c.where_.emplace(name, i);
      NVFP4MOE_CHECK(inserted, "files: tensor '", name, "' is in both '", c.files_[it->second].path(),
                     "' and '", c.files_[i].path(), "'");
    }
  }
  for (const auto& [name, i] : c.where_) c.names_.push_back(name);
  return c;
}

Checkpoint Checkpoint::open(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return open_files({path});
  Checkpoint c = open_files(list_safetensors_shards(path));
  fs::path index = fs::path(path) / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    for (const auto& [name, file] : read_weight_map(index)) {
      auto it = c.where_.find(name);
      NVFP4MOE_CHECK(it != c.where_.end() &&
                         fs::path(c.files_[it->second].path()).filename() == fs::path(file),
                     index.string(), ": weight_map says tensor '", name, "' is in '", file,
                     "', but it is not there");
    }
  }
  c.label_ = path;
  return c;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  NVFP4MOE_CHECK(it != where_.end(), "checkpoint '", label_, "': no tensor named '", name, "'");
  return files_[it->second];
}

float Checkpoint::scalar_f32(const std::string& name) const {
  const SafetensorsFile& f = file_of(name);
  const TensorInfo& t = f.info(name);
  NVFP4MOE_CHECK(t.dtype == DType::kF32 && t.numel == 1 && t.shape.size() <= 1, "checkpoint '",
                 f.path(), "': tensor '", name, "': expected an F32 scalar (shape [] or [1]), got ",
                 to_string(t.dtype), " with ", t.numel, " elements in ", t.shape.size(), " dims");
  float v;
  std::memcpy(&v, f.bytes(name).data(), sizeof(v));
  return v;
}

}  // namespace nvfp4moe::checkpoint
