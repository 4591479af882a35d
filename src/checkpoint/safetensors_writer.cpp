// safetensors writer: reference ordering and padding, atomic replace via temp file + rename.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "nvfp4moe/checkpoint/safetensors.h"
#include "nvfp4moe/common/error.h"

namespace nvfp4moe::checkpoint {

using nlohmann::json;

namespace {

// The reference's Dtype enum rank ("increasing alignment order"); the writer sorts by it
// descending. Only the relative order of our dtypes matters.
int reference_dtype_rank(DType t) {
  switch (t) {
    case DType::kU8: return 0;
    case DType::kF8_E4M3: return 1;
    case DType::kF16: return 2;
    case DType::kBF16: return 3;
    case DType::kI32: return 4;
    case DType::kF32: return 5;
    case DType::kI64: return 6;
  }
  return -1;
}

// JSON string literal (serde_json and nlohmann escape alike: \" \\ \b \f \n \r \t, other
// control characters as \u00xx, non-ASCII UTF-8 verbatim). Throws Error on invalid UTF-8.
std::string json_string(const std::string& s, const char* what) {
  try {
    return json(s).dump();
  } catch (const json::exception& e) {
    NVFP4MOE_CHECK(false, what, ": '", s, "' is not valid UTF-8 (", e.what(), ")");
  }
  return {};
}

void write_all(int fd, const void* p, std::size_t n, const std::string& tmp) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, std::min<std::size_t>(n, std::size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    NVFP4MOE_CHECK(w > 0, "safetensors '", tmp, "': write failed: ", std::strerror(errno));
    c += w;
    n -= std::size_t(w);
  }
}

}  // namespace

void SafetensorsWriter::add_entry(Entry e) {
  NVFP4MOE_CHECK(e.name != "__metadata__", "name: '__metadata__' is reserved for the metadata");
  NVFP4MOE_CHECK(!by_name_.count(e.name), "name: tensor '", e.name, "' was already added");
  json_string(e.name, "name");
  std::uint64_t numel = 1;
  for (std::int64_t d : e.shape) {
    NVFP4MOE_CHECK(d >= 0, "shape: tensor '", e.name, "': dimensions must be >= 0, got ", d);
    NVFP4MOE_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(d), &numel), "shape: tensor '",
                   e.name, "': element count overflows");
  }
  std::uint64_t nbytes = 0;
  NVFP4MOE_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(dtype_size(e.dtype)), &nbytes),
                 "shape: tensor '", e.name, "': byte count overflows");
  NVFP4MOE_CHECK(e.data.size() == nbytes, "bytes: tensor '", e.name, "' (", to_string(e.dtype),
                 ", ", e.shape.size(), "-d, ", numel, " elements) needs ", nbytes, " bytes, got ",
                 e.data.size());
  by_name_.emplace(e.name, entries_.size());
  entries_.push_back(std::make_unique<Entry>(std::move(e)));
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                            std::span<const std::byte> bytes) {
  std::vector<std::byte> copy(bytes.begin(), bytes.end());
  add(name, dtype, std::move(shape), std::move(copy));
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                            std::vector<std::byte>&& bytes) {
  Entry e{name, dtype, std::move(shape), std::move(bytes), {}};
  // The span must point into the vector's final home; the vector's buffer does not move
  // when the Entry is moved, so it is safe to take it here.
  e.data = std::span<const std::byte>(e.owned.data(), e.owned.size());
  add_entry(std::move(e));
}

void SafetensorsWriter::add_borrowed(const std::string& name, DType dtype,
                                     std::vector<std::int64_t> shape,
                                     std::span<const std::byte> bytes) {
  add_entry(Entry{name, dtype, std::move(shape), {}, bytes});
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  json_string(key, "key");
  json_string(value, "value");
  metadata_[key] = value;
}

bool SafetensorsWriter::contains(const std::string& name) const { return by_name_.count(name) != 0; }

std::vector<const SafetensorsWriter::Entry*> SafetensorsWriter::ordered() const {
  std::vector<const Entry*> v;
  for (const auto& e : entries_) v.push_back(e.get());
  std::sort(v.begin(), v.end(), [](const Entry* a, const Entry* b) {
    int ra = reference_dtype_rank(a->dtype), rb = reference_dtype_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });
  return v;
}

std::string SafetensorsWriter::header() const {
  std::string h = "{";
  bool first = true;
  if (!metadata_.empty()) {
    h += "\"__metadata__\":{";
    bool mfirst = true;
    for (const auto& [k, v] : metadata_) {
      if (!mfirst) h += ",";
      mfirst = false;
      h += json_string(k, "key") + ":" + json_string(v, "value");
    }
    h += "}";
    first = false;
  }
  std::uint64_t offset = 0;
  for (const Entry* e : ordered()) {
    if (!first) h += ",";
    first = false;
    h += json_string(e->name, "name") + ":{\"dtype\":\"" + to_string(e->dtype) + "\",\"shape\":[";
    for (std::size_t i = 0; i < e->shape.size(); ++i) {
      if (i) h += ",";
      h += std::to_string(e->shape[i]);
    }
    std::uint64_t end = offset + e->data.size();
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  NVFP4MOE_CHECK(h.size() <= kMaxHeaderBytes, "header: ", h.size(), " bytes exceed the limit of ",
                 kMaxHeaderBytes, " (too many tensors or too much metadata)");
  return h;
}

std::vector<std::byte> SafetensorsWriter::serialize() const {
  std::string h = header();
  std::vector<std::byte> out(8);
  std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = std::byte((n >> (8 * i)) & 0xff);
  const std::byte* hb = reinterpret_cast<const std::byte*>(h.data());
  out.insert(out.end(), hb, hb + h.size());
  for (const Entry* e : ordered()) out.insert(out.end(), e->data.begin(), e->data.end());
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  NVFP4MOE_CHECK(!path.empty(), "path: must not be empty");
  std::string h = header();
  static std::atomic<unsigned> counter{0};
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  NVFP4MOE_CHECK(fd >= 0, "path: cannot create '", tmp, "': ", std::strerror(errno));
  try {
    unsigned char len[8];
    std::uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
    write_all(fd, len, 8, tmp);
    write_all(fd, h.data(), h.size(), tmp);
    for (const Entry* e : ordered()) write_all(fd, e->data.data(), e->data.size(), tmp);
    NVFP4MOE_CHECK(::fsync(fd) == 0, "safetensors '", tmp, "': fsync failed: ", std::strerror(errno));
    int rc = ::close(fd);
    fd = -1;
    NVFP4MOE_CHECK(rc == 0, "safetensors '", tmp, "': close failed: ", std::strerror(errno));
    NVFP4MOE_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "path: cannot rename '", tmp,
                   "' to '", path, "': ", std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

}  // namespace nvfp4moe::checkpoint
