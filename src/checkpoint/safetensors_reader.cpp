// Strict safetensors reader: one parser for memory-mapped files and in-memory images
// (the fuzz target drives from_memory, so the mmap path runs the same code).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "nvfp4moe/checkpoint/safetensors.h"
#include "nvfp4moe/common/error.h"
#include "json_input.h"

namespace nvfp4moe::checkpoint {

using nlohmann::json;

// ---- dtypes -----------------------------------------------------------------------------

const char* to_string(DType t) {
  switch (t) {
    case DType::kU8: return "U8";
    case DType::kF8_E4M3: return "F8_E4M3";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF32: return "F32";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

std::optional<DType> dtype_from_string(std::string_view s) {
  for (DType t : {DType::kU8, DType::kF8_E4M3, DType::kBF16, DType::kF16, DType::kF32,
                  DType::kI32, DType::kI64}) {
    if (s == to_string(t)) return t;
  }
  return std::nullopt;
}

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kU8:
    case DType::kF8_E4M3: return 1;
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kF32:
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

// ---- storage ----------------------------------------------------------------------------

// The bytes of the whole file: a read-only private mapping, or a vector.
struct SafetensorsFile::Storage {
  std::vector<std::byte> memory;
  void* map = nullptr;
  std::size_t map_len = 0;
  std::span<const std::byte> bytes() const {
    if (map) return {static_cast<const std::byte*>(map), map_len};
    return {memory.data(), memory.size()};
  }
  ~Storage() {
    if (map) munmap(map, map_len);
  }
};

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

namespace {

// Closes a file descriptor on every exit path.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

std::string errno_text() { return std::strerror(errno); }

// A JSON value as a non-negative integer that fits uint64, or nullopt.
std::optional<std::uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    std::int64_t x = v.get<std::int64_t>();
    if (x >= 0) return std::uint64_t(x);
  }
  return std::nullopt;
}

// Parse the header JSON, rejecting a duplicate key in any object (nlohmann would keep the
// last one silently; a tensor listed twice must not be read as one of the two).
json parse_header_json(const char* begin, const char* end, const std::string& label) {
  std::vector<std::set<std::string>> keys_in_open_objects;
  std::string duplicate;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: keys_in_open_objects.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys_in_open_objects.empty()) keys_in_open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys_in_open_objects.empty() &&
            !keys_in_open_objects.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default: break;
    }
    return true;
  };
  json header = checkpoint_json::parse_bounded(begin, end, "safetensors '" + label + "': header", on_event);
  NVFP4MOE_CHECK(duplicate.empty(), "safetensors '", label, "': header: duplicate key '",
                 duplicate, "'");
  return header;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  NVFP4MOE_CHECK(fd.fd >= 0, "safetensors '", path, "': cannot open: ", errno_text());
  struct stat st {};
  NVFP4MOE_CHECK(::fstat(fd.fd, &st) == 0, "safetensors '", path, "': cannot stat: ", errno_text());
  NVFP4MOE_CHECK(S_ISREG(st.st_mode), "safetensors '", path, "': not a regular file");
  NVFP4MOE_CHECK(st.st_size >= 8, "safetensors '", path,
                 "': file is shorter than the 8-byte header length (", st.st_size, " bytes)");
  auto storage = std::make_unique<Storage>();
  storage->map_len = std::size_t(st.st_size);
  void* map = ::mmap(nullptr, storage->map_len, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  NVFP4MOE_CHECK(map != MAP_FAILED, "safetensors '", path, "': mmap failed: ", errno_text());
  storage->map = map;
  SafetensorsFile f;
  f.label_ = path;
  f.storage_ = std::move(storage);
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_memory(std::vector<std::byte> file_image, std::string label) {
  SafetensorsFile f;
  f.label_ = std::move(label);
  f.storage_ = std::make_unique<Storage>();
  f.storage_->memory = std::move(file_image);
  f.parse();
  return f;
}

// Validates the whole file; fills names_, index_, metadata_, data_ only when all is well.
void SafetensorsFile::parse() {
  const std::string& L = label_;
  std::span<const std::byte> file = storage_->bytes();
  const std::uint64_t file_size = file.size();
  NVFP4MOE_CHECK(file_size >= 8, "safetensors '", L,
                 "': file is shorter than the 8-byte header length (", file_size, " bytes)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint64_t(file[std::size_t(i)]);
  NVFP4MOE_CHECK(n <= kMaxHeaderBytes, "safetensors '", L, "': header length ", n,
                 " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  NVFP4MOE_CHECK(n <= file_size - 8, "safetensors '", L, "': header length ", n,
                 " runs past the end of the file (", file_size, " bytes)");
  NVFP4MOE_CHECK(n >= 2, "safetensors '", L, "': header length ", n,
                 " is too short for a JSON object");
  const char* hbegin = reinterpret_cast<const char*>(file.data()) + 8;
  NVFP4MOE_CHECK(hbegin[0] == '{', "safetensors '", L,
                 "': header does not start with '{' (a JSON object)");
  json header = parse_header_json(hbegin, hbegin + n, L);
  NVFP4MOE_CHECK(header.is_object(), "safetensors '", L, "': header is not a JSON object");

  const std::uint64_t data_size = file_size - 8 - n;
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<std::string, TensorInfo>> tensors;
  tensors.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      NVFP4MOE_CHECK(v.is_object(), "safetensors '", L,
                     "': __metadata__ must be an object of strings, got ", v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        NVFP4MOE_CHECK(m.value().is_string(), "safetensors '", L, "': __metadata__ value of '",
                       m.key(), "' must be a string, got ", m.value().type_name());
        metadata.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    NVFP4MOE_CHECK(v.is_object(), "safetensors '", L, "': tensor '", name,
                   "': entry must be an object, got ", v.type_name());
    for (auto f = v.begin(); f != v.end(); ++f) {
      NVFP4MOE_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets",
                     "safetensors '", L, "': tensor '", name, "': unknown field '", f.key(), "'");
    }
    TensorInfo info;
    // dtype
    auto d = v.find("dtype");
    NVFP4MOE_CHECK(d != v.end(), "safetensors '", L, "': tensor '", name, "': missing dtype");
    NVFP4MOE_CHECK(d->is_string(), "safetensors '", L, "': tensor '", name,
                   "': dtype must be a string, got ", d->type_name());
    auto dt = dtype_from_string(d->get<std::string>());
    NVFP4MOE_CHECK(dt.has_value(), "safetensors '", L, "': tensor '", name, "': unsupported dtype '",
                   d->get<std::string>(), "' (supported: U8, F8_E4M3, BF16, F16, F32, I32, I64)");
    info.dtype = *dt;
    // shape: numel must not overflow at any step, each dim must fit int64
    auto s = v.find("shape");
    NVFP4MOE_CHECK(s != v.end(), "safetensors '", L, "': tensor '", name, "': missing shape");
    NVFP4MOE_CHECK(s->is_array(), "safetensors '", L, "': tensor '", name,
                   "': shape must be an array, got ", s->type_name());
    std::uint64_t numel = 1;
    for (const json& dim : *s) {
      auto u = as_u64(dim);
      NVFP4MOE_CHECK(u.has_value() && *u <= std::uint64_t(std::numeric_limits<std::int64_t>::max()),
                     "safetensors '", L, "': tensor '", name,
                     "': shape entries must be non-negative integers, got ", checkpoint_json::brief(dim));
      NVFP4MOE_CHECK(!__builtin_mul_overflow(numel, *u, &numel), "safetensors '", L, "': tensor '",
                     name, "': shape ", checkpoint_json::brief(*s), " overflows the element count");
      info.shape.push_back(std::int64_t(*u));
    }
    std::uint64_t nbytes = 0;
    NVFP4MOE_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(dtype_size(info.dtype)), &nbytes) &&
                       numel <= std::uint64_t(std::numeric_limits<std::int64_t>::max()),
                   "safetensors '", L, "': tensor '", name, "': shape ", checkpoint_json::brief(*s),
                   " overflows the byte count");
    info.numel = std::int64_t(numel);
    // data_offsets
    auto o = v.find("data_offsets");
    NVFP4MOE_CHECK(o != v.end(), "safetensors '", L, "': tensor '", name, "': missing data_offsets");
    NVFP4MOE_CHECK(o->is_array() && o->size() == 2, "safetensors '", L, "': tensor '", name,
                   "': data_offsets must be an array of two integers, got ", checkpoint_json::brief(*o));
    auto b = as_u64((*o)[0]), e = as_u64((*o)[1]);
    NVFP4MOE_CHECK(b.has_value() && e.has_value(), "safetensors '", L, "': tensor '", name,
                   "': data_offsets must be non-negative integers, got ", checkpoint_json::brief(*o));
    NVFP4MOE_CHECK(*b <= *e, "safetensors '", L, "': tensor '", name, "': data_offsets [", *b,
                   ", ", *e, "] end before they begin");
    NVFP4MOE_CHECK(*e <= data_size, "safetensors '", L, "': tensor '", name, "': data_offsets [",
                   *b, ", ", *e, "] run past the data buffer (", data_size, " bytes)");
    NVFP4MOE_CHECK(*e - *b == nbytes, "safetensors '", L, "': tensor '", name, "': data_offsets [",
                   *b, ", ", *e, "] hold ", *e - *b, " bytes but ", to_string(info.dtype), " ",
                   checkpoint_json::brief(*s), " needs ", nbytes);
    info.data_begin = *b;
    info.data_end = *e;
    tensors.emplace_back(name, std::move(info));
  }

  // Tile check: sorted by offsets, contiguous from 0 to the end of the file.
  std::sort(tensors.begin(), tensors.end(), [](const auto& x, const auto& y) {
    if (x.second.data_begin != y.second.data_begin) return x.second.data_begin < y.second.data_begin;
    if (x.second.data_end != y.second.data_end) return x.second.data_end < y.second.data_end;
    return x.first < y.first;
  });
  std::uint64_t expected_begin = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, info] = tensors[i];
    NVFP4MOE_CHECK(info.data_begin >= expected_begin, "safetensors '", L, "': tensor '", name,
                   "': data_offsets [", info.data_begin, ", ", info.data_end,
                   "] overlap the previous tensor '", tensors[i - 1].first, "' (ends at ",
                   expected_begin, ")");
    NVFP4MOE_CHECK(info.data_begin == expected_begin, "safetensors '", L, "': tensor '", name,
                   "': data_offsets [", info.data_begin, ", ", info.data_end,
                   "] leave a hole after offset ", expected_begin);
    expected_begin = info.data_end;
  }
  NVFP4MOE_CHECK(expected_begin == data_size, "safetensors '", L, "': the tensors cover ",
                 expected_begin, " bytes of the ", data_size,
                 "-byte data buffer (trailing bytes after the last tensor)");

  data_start_ = 8 + n;
  data_ = file.subspan(std::size_t(data_start_), std::size_t(data_size));
  metadata_ = std::move(metadata);
  names_.clear();
  index_.clear();
  for (auto& [name, info] : tensors) {
    names_.push_back(name);
    index_.emplace(name, std::move(info));
  }
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  NVFP4MOE_CHECK(it != index_.end(), "safetensors '", label_, "': no tensor named '", name, "'");
  return it->second;
}

std::span<const std::byte> SafetensorsFile::bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  return data_.subspan(std::size_t(t.data_begin), std::size_t(t.nbytes()));
}

void SafetensorsFile::copy_to(const std::string& name, DType expected, std::span<std::byte> out) const {
  const TensorInfo& t = info(name);
  NVFP4MOE_CHECK(t.dtype == expected, "safetensors '", label_, "': tensor '", name, "': expected dtype ",
                 to_string(expected), ", got ", to_string(t.dtype));
  NVFP4MOE_CHECK(out.size() == t.nbytes(), "out: expected ", t.nbytes(), " bytes for tensor '", name,
                 "', got ", out.size());
  if (!out.empty()) std::memcpy(out.data(), data_.data() + t.data_begin, out.size());
}

}  // namespace nvfp4moe::checkpoint
