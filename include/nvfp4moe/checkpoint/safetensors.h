// safetensors files (https://github.com/huggingface/safetensors): a strict, memory-mapped
// reader and an atomic writer.
//
// File layout:
//   [0, 8)        N, uint64 little-endian: header length
//   [8, 8 + N)    UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]},
//                 optional "__metadata__": {string: string}}; may end with spaces
//   [8 + N, EOF)  data buffer; data_offsets are relative to its start
//
// The reader checks everything before any tensor is visible, like the reference
// implementation (Rust crate `safetensors`, Metadata::validate) and a little stricter:
//   - file >= 8 bytes, N <= 100'000'000 (the reference's MAX_HEADER_SIZE), 8 + N <= file size;
//   - the header starts with '{', is valid UTF-8 JSON (no comments, nothing after the object
//     but whitespace) and has no duplicate key in any object;
//   - every entry has exactly the fields dtype (string), shape (array of non-negative
//     integers) and data_offsets (two non-negative integers begin <= end), and nothing else;
//   - dtype is one of U8, F8_E4M3, BF16, F16, F32, I32, I64 (others are rejected, naming the
//     tensor and the dtype); the element count does not overflow and
//     end - begin == numel * dtype size;
//   - sorted by data_offsets the tensors tile the data buffer exactly: the first starts at 0,
//     each starts where the previous ended, the last ends at the end of the file. So no
//     overlap, no hole and no trailing bytes (the reference rejects holes with InvalidOffset
//     and trailing bytes with MetadataIncompleteBuffer; we do the same);
//   - "__metadata__" is an object whose values are all strings.
// Every failure is an nvfp4moe::Error naming the file (or the label given for an in-memory
// buffer) and the problem. Data of a tensor need not be aligned: copy it (memcpy) or use
// copy_to() rather than casting the pointer; files written by SafetensorsWriter (and by the
// reference) have every tensor aligned to its element size relative to an 8-aligned buffer.
// A file mapped by open() must not be truncated by another process while it is open (a
// mapped read past the new end raises SIGBUS; nothing a reader can check for).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nvfp4moe::checkpoint {

// The dtypes this project reads and writes, named as safetensors names them.
enum class DType : int { kU8, kF8_E4M3, kBF16, kF16, kF32, kI32, kI64 };

const char* to_string(DType t);                       // "U8", "F8_E4M3", ...
std::optional<DType> dtype_from_string(std::string_view s);  // nullopt for any other name
std::size_t dtype_size(DType t);                      // bytes per element

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  DType dtype = DType::kU8;
  std::vector<std::int64_t> shape;   // [] for a scalar
  std::int64_t numel = 1;            // product of shape (1 for a scalar)
  std::uint64_t data_begin = 0;      // byte offsets into the data buffer
  std::uint64_t data_end = 0;
  std::uint64_t nbytes() const { return data_end - data_begin; }
};

// A validated safetensors file, memory-mapped read-only (open) or held in memory (from_memory).
// Movable, not copyable; spans returned by bytes() live as long as the object.
class SafetensorsFile {
 public:
  // Map `path` read-only and validate it. Throws nvfp4moe::Error naming the path.
  static SafetensorsFile open(const std::string& path);
  // Validate a whole file image held in memory (the fuzz target's entry; open() runs the same
  // parser on the mapped bytes). `label` stands for the file name in error messages.
  static SafetensorsFile from_memory(std::vector<std::byte> file_image, std::string label);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& path() const { return label_; }
  // Tensor names in file order (ascending data_offsets).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws Error naming the file and the tensor when it is absent.
  const TensorInfo& info(const std::string& name) const;
  std::span<const std::byte> bytes(const std::string& name) const;
  // Copy a tensor's bytes into `out`, checking the dtype and that out has numel elements.
  void copy_to(const std::string& name, DType expected, std::span<std::byte> out) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Size of the data buffer (the sum of all tensors' bytes) and where it starts in the file.
  std::uint64_t data_bytes() const { return data_.size(); }
  std::uint64_t data_start() const { return data_start_; }

 private:
  struct Storage;
  SafetensorsFile() = default;
  void parse();

  std::string label_;
  std::unique_ptr<Storage> storage_;
  std::span<const std::byte> data_;  // the data buffer inside storage_
  std::uint64_t data_start_ = 0;
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorInfo> index_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and writes one safetensors file the way the reference implementation does:
//   - tensors ordered by dtype alignment, largest first (I64, F32, I32, BF16, F16, F8_E4M3,
//     U8: the reference's Dtype enum order, descending), then by name (byte order);
//   - header = compact JSON {"__metadata__": {...keys sorted...}, then each tensor in data
//     order as {"dtype":..,"shape":[..],"data_offsets":[b,e]}}, padded with spaces to a
//     multiple of 8 bytes, so every tensor is aligned to its element size;
//   - written to `<path>.tmp.<pid>.<n>` in the same directory, flushed, then renamed over
//     `path`, so readers never see a half-written file.
class SafetensorsWriter {
 public:
  // Copies `bytes` (numel(shape) * dtype_size(dtype) bytes).
  void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
           std::span<const std::byte> bytes);
  // Takes ownership of `bytes` without copying.
  void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
           std::vector<std::byte>&& bytes);
  // Refers to `bytes` without copying: it must stay valid until write() returns (e.g. a span
  // of an open SafetensorsFile being copied through).
  void add_borrowed(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                    std::span<const std::byte> bytes);
  void set_metadata(const std::string& key, const std::string& value);

  bool contains(const std::string& name) const;
  std::size_t size() const { return entries_.size(); }
  // The exact header bytes (JSON + padding, without the 8-byte length) write() would emit.
  std::string header() const;
  // Serialize the whole file into memory (tests, fuzz seeds).
  std::vector<std::byte> serialize() const;
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> owned;
    std::span<const std::byte> data;  // points into owned, or borrowed
  };
  void add_entry(Entry e);
  std::vector<const Entry*> ordered() const;

  std::vector<std::unique_ptr<Entry>> entries_;
  std::map<std::string, std::size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace nvfp4moe::checkpoint
