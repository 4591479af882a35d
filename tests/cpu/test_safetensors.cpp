// safetensors reader/writer: round trips of every dtype, the reference's exact byte layout,
// and a battery of malformed files that must each raise nvfp4moe::Error naming the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "cpu/temp_dir.h"
#include "nvfp4moe/checkpoint/checkpoint.h"
#include "nvfp4moe/checkpoint/safetensors.h"
#include "nvfp4moe/common/error.h"

namespace nvfp4moe::checkpoint {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::vector<std::byte> random_bytes(std::size_t n, std::mt19937& rng) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = std::byte(rng() & 0xff);
  return v;
}

std::vector<std::byte> to_bytes(const std::string& s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

// A file image from a raw header (not padded) and `data_size` zero bytes of data.
std::vector<std::byte> image(const std::string& header, std::size_t data_size,
                             std::uint64_t declared_len = ~0ull) {
  std::uint64_t n = declared_len == ~0ull ? header.size() : declared_len;
  std::vector<std::byte> v(8);
  for (int i = 0; i < 8; ++i) v[std::size_t(i)] = std::byte((n >> (8 * i)) & 0xff);
  auto h = to_bytes(header);
  v.insert(v.end(), h.begin(), h.end());
  v.resize(v.size() + data_size, std::byte{0});
  return v;
}

// Expects from_memory(img) to throw nvfp4moe::Error whose message contains `needle`.
void expect_rejected(const std::vector<std::byte>& img, const std::string& needle,
                     const std::string& what) {
  try {
    SafetensorsFile::from_memory(img, "bad.safetensors");
    ADD_FAILURE() << what << ": accepted, expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << what << ": message was: " << msg;
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << what << ": no file name in: " << msg;
  }
}

const std::vector<DType> kAllDTypes = {DType::kU8,  DType::kF8_E4M3, DType::kBF16, DType::kF16,
                                       DType::kF32, DType::kI32,     DType::kI64};

TEST(Safetensors, DTypeNamesAndSizes) {
  const std::vector<std::pair<const char*, std::size_t>> expect = {
      {"U8", 1}, {"F8_E4M3", 1}, {"BF16", 2}, {"F16", 2}, {"F32", 4}, {"I32", 4}, {"I64", 8}};
  for (std::size_t i = 0; i < kAllDTypes.size(); ++i) {
    EXPECT_STREQ(to_string(kAllDTypes[i]), expect[i].first);
    EXPECT_EQ(dtype_size(kAllDTypes[i]), expect[i].second);
    EXPECT_EQ(dtype_from_string(expect[i].first), kAllDTypes[i]);
  }
  EXPECT_FALSE(dtype_from_string("F64").has_value());
  EXPECT_FALSE(dtype_from_string("bf16").has_value());
}

TEST(Safetensors, RoundTripEveryDTypeThroughFile) {
  const unsigned seed = 20261122u;
  std::mt19937 rng(seed);
  TempDir dir;
  SafetensorsWriter w;
  struct Expect {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };
  std::vector<Expect> expect;
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {1}, {19}, {3, 5}, {2, 0, 7}, {4, 3, 2}};
  for (DType t : kAllDTypes) {
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      std::int64_t numel = 1;
      for (auto d : shapes[s]) numel *= d;
      Expect e{std::string("t.") + to_string(t) + "." + std::to_string(s), t, shapes[s],
               random_bytes(std::size_t(numel) * dtype_size(t), rng)};
      if (s % 2) {
        w.add(e.name, t, e.shape, std::span<const std::byte>(e.data));
      } else {
        std::vector<std::byte> copy = e.data;
        w.add(e.name, t, e.shape, std::move(copy));
      }
      expect.push_back(std::move(e));
    }
  }
  w.set_metadata("format", "pt");
  w.set_metadata("note", "quote \" backslash \\ newline \n unicode \xc3\xa9");
  const std::string path = dir.file("round.safetensors");
  w.write(path);

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  ASSERT_EQ(f.names().size(), expect.size()) << "seed " << seed;
  EXPECT_EQ(f.data_start() % 8, 0u);
  for (const Expect& e : expect) {
    SCOPED_TRACE(e.name + " seed " + std::to_string(seed));
    ASSERT_TRUE(f.contains(e.name));
    const TensorInfo& info = f.info(e.name);
    EXPECT_EQ(info.dtype, e.dtype);
    EXPECT_EQ(info.shape, e.shape);
    EXPECT_EQ(info.data_begin % dtype_size(e.dtype), 0u) << "tensor not aligned to its element size";
    auto b = f.bytes(e.name);
    ASSERT_EQ(b.size(), e.data.size());
    EXPECT_TRUE(std::equal(b.begin(), b.end(), e.data.begin()));
    std::vector<std::byte> out(e.data.size());
    f.copy_to(e.name, e.dtype, out);
    EXPECT_EQ(out, e.data);
  }
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "quote \" backslash \\ newline \n unicode \xc3\xa9");
  // In-memory parse of the same bytes gives the same view.
  SafetensorsFile m = SafetensorsFile::from_memory(w.serialize(), "mem");
  EXPECT_EQ(m.names(), f.names());
}

TEST(Safetensors, ReferenceByteLayout) {
  // The reference's own test vectors (safetensors tensor.rs): the header is compact JSON
  // padded with spaces to 8 bytes; a 1x1x2x3 F32 named attn0 needs 7 spaces.
  SafetensorsWriter w;
  std::vector<float> v = {0, 1, 2, 3, 4, 5};
  w.add("attn0", DType::kF32, {1, 1, 2, 3},
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(v.data()), 24));
  const std::string json = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}";
  EXPECT_EQ(w.header(), json + std::string(7, ' '));
  auto img = w.serialize();
  ASSERT_EQ(img.size(), 8u + 72u + 24u);
  EXPECT_EQ(std::to_integer<int>(img[0]), 72);
  for (int i = 1; i < 8; ++i) EXPECT_EQ(std::to_integer<int>(img[std::size_t(i)]), 0);

  SafetensorsWriter empty;
  EXPECT_EQ(empty.header(), "{}      ");
  empty.set_metadata("framework", "pt");
  EXPECT_EQ(empty.header(), "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
  SafetensorsFile e = SafetensorsFile::from_memory(empty.serialize(), "empty");
  EXPECT_TRUE(e.names().empty());
  EXPECT_EQ(e.metadata().at("framework"), "pt");
}

TEST(Safetensors, WriterOrdersByAlignmentThenName) {
  SafetensorsWriter w;
  std::vector<std::byte> eight(8);
  w.add("z_u8", DType::kU8, {8}, std::span<const std::byte>(eight));
  w.add("a_u8", DType::kU8, {8}, std::span<const std::byte>(eight));
  w.add("f8", DType::kF8_E4M3, {8}, std::span<const std::byte>(eight));
  w.add("f16", DType::kF16, {4}, std::span<const std::byte>(eight));
  w.add("bf16", DType::kBF16, {4}, std::span<const std::byte>(eight));
  w.add("i32", DType::kI32, {2}, std::span<const std::byte>(eight));
  w.add("f32", DType::kF32, {2}, std::span<const std::byte>(eight));
  w.add("i64", DType::kI64, {1}, std::span<const std::byte>(eight));
  w.add("b_i64", DType::kI64, {1}, std::span<const std::byte>(eight));
  SafetensorsFile f = SafetensorsFile::from_memory(w.serialize(), "order");
  const std::vector<std::string> expect = {"b_i64", "i64", "f32", "i32", "bf16",
                                           "f16",   "f8",  "a_u8", "z_u8"};
  EXPECT_EQ(f.names(), expect);
}

TEST(Safetensors, AtomicWriteReplacesAndLeavesNoTempFile) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  {
    std::ofstream(path) << "old contents";
  }
  SafetensorsWriter w;
  std::vector<std::byte> b = {std::byte{1}, std::byte{2}};
  w.add("a", DType::kU8, {2}, std::span<const std::byte>(b));
  w.write(path);
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names(), std::vector<std::string>{"a"});
  int files = 0;
  for (auto& entry : fs::directory_iterator(dir.path)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1) << "a temporary file was left behind";
  // A directory that does not exist: error naming the path, nothing created.
  EXPECT_THROW(w.write(dir.file("missing/y.safetensors")), Error);
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  std::vector<std::byte> four(4);
  w.add("a", DType::kF32, {1}, std::span<const std::byte>(four));
  EXPECT_THROW(w.add("a", DType::kF32, {1}, std::span<const std::byte>(four)), Error);
  EXPECT_THROW(w.add("b", DType::kF32, {2}, std::span<const std::byte>(four)), Error);
  EXPECT_THROW(w.add("c", DType::kU8, {-4}, std::span<const std::byte>(four)), Error);
  EXPECT_THROW(w.add("__metadata__", DType::kU8, {4}, std::span<const std::byte>(four)), Error);
  EXPECT_THROW(w.add("bad\xff", DType::kU8, {4}, std::span<const std::byte>(four)), Error);
  EXPECT_THROW(w.set_metadata("k", "\xc3"), Error);
  EXPECT_EQ(w.size(), 1u);
}

TEST(Safetensors, OpenErrorsNameThePath) {
  TempDir dir;
  try {
    SafetensorsFile::open(dir.file("nope.safetensors"));
    ADD_FAILURE() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsFile::open(dir.path.string()), Error);  // a directory
  const std::string tiny = dir.file("tiny.safetensors");
  { std::ofstream(tiny) << "abc"; }
  EXPECT_THROW(SafetensorsFile::open(tiny), Error);
  SafetensorsWriter w;
  std::vector<std::byte> b(4);
  w.add("a", DType::kI32, {1}, std::span<const std::byte>(b));
  SafetensorsFile f = SafetensorsFile::from_memory(w.serialize(), "ok");
  EXPECT_THROW(f.info("b"), Error);
  EXPECT_THROW(f.bytes("b"), Error);
  std::vector<std::byte> out(4);
  EXPECT_THROW(f.copy_to("a", DType::kF32, out), Error);
  std::vector<std::byte> short_out(3);
  EXPECT_THROW(f.copy_to("a", DType::kI32, short_out), Error);
}

// A small valid file with two tensors and metadata, for the truncation sweep.
std::vector<std::byte> small_valid_image() {
  SafetensorsWriter w;
  std::vector<std::byte> a(12, std::byte{7}), b(6, std::byte{9});
  w.add("a", DType::kF32, {3}, std::span<const std::byte>(a));
  w.add("b", DType::kBF16, {1, 3}, std::span<const std::byte>(b));
  w.set_metadata("format", "pt");
  return w.serialize();
}

TEST(Safetensors, EveryTruncationIsRejected) {
  auto img = small_valid_image();
  ASSERT_NO_THROW(SafetensorsFile::from_memory(img, "full"));
  int accepted = 0;
  for (std::size_t len = 0; len < img.size(); ++len) {
    std::vector<std::byte> cut(img.begin(), img.begin() + std::ptrdiff_t(len));
    try {
      SafetensorsFile::from_memory(cut, "cut.safetensors");
      ++accepted;
      ADD_FAILURE() << "truncated at " << len << " of " << img.size() << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.safetensors"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(accepted, 0);
  // The mmap path runs the same checks.
  TempDir dir;
  for (std::size_t len : {std::size_t(0), std::size_t(7), std::size_t(8), img.size() / 2, img.size() - 1}) {
    const std::string path = dir.file("cut" + std::to_string(len));
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(img.data()),
                                                std::streamsize(len));
    EXPECT_THROW(SafetensorsFile::open(path), Error) << "length " << len;
  }
}

TEST(Safetensors, MalformedHeadersAreRejected) {
  const std::string ok_entry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  // Sanity: the baseline is accepted.
  ASSERT_NO_THROW(SafetensorsFile::from_memory(image("{\"a\":" + ok_entry + "}", 8), "base"));

  expect_rejected(image("{}", 0, 1ull << 63), "exceeds the limit", "header length 2^63");
  expect_rejected(image("{}", 0, ~0ull - 1), "exceeds the limit", "header length 2^64-2");
  expect_rejected(image("{}", 0, kMaxHeaderBytes + 1), "exceeds the limit", "header length 1e8+1");
  expect_rejected(image("{}", 0, 3), "past the end", "header length past EOF");
  expect_rejected(image("{}", 0, 0), "too short", "header length 0");
  expect_rejected(image(" {}", 0), "does not start with '{'", "leading space");
  expect_rejected(image("[1]", 0), "does not start with '{'", "array header");
  expect_rejected(image("{\"a\":", 0), "not valid JSON", "unterminated JSON");
  expect_rejected(image("{} x", 0), "not valid JSON", "trailing garbage");
  expect_rejected(image("{/*c*/}", 0), "not valid JSON", "comment");
  expect_rejected(image("{\"\xff\":1}", 0), "not valid JSON", "invalid UTF-8 key");
  expect_rejected(image("{\"a\":1}", 0), "entry must be an object", "entry not an object");
  expect_rejected(image("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "missing dtype",
                  "missing dtype");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8), "missing shape",
                  "missing shape");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8), "missing data_offsets",
                  "missing data_offsets");
  expect_rejected(image("{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                  "dtype must be a string", "dtype number");
  expect_rejected(image("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8),
                  "unsupported dtype 'F64'", "F64");
  expect_rejected(image("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
                  "unsupported dtype 'Q4'", "unknown dtype");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8),
                  "shape must be an array", "shape string");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8),
                  "non-negative integers", "negative dim");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8),
                  "non-negative integers", "float dim");
  expect_rejected(image("{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],"
                        "\"data_offsets\":[0,1]}}", 1),
                  "non-negative integers", "dim past int64");
  expect_rejected(image("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                        "\"data_offsets\":[0,1]}}", 1),
                  "overflows", "numel overflow");
  expect_rejected(image("{\"a\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],"
                        "\"data_offsets\":[0,1]}}", 1),
                  "overflows", "byte count overflow");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8),
                  "two integers", "one offset");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8),
                  "non-negative integers", "string offset");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8),
                  "non-negative integers", "negative offset");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8),
                  "end before they begin", "reversed offsets");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4),
                  "run past the data buffer", "offsets past end");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"
                        "[18446744073709551608,18446744073709551615]}}", 8),
                  "run past the data buffer", "huge offsets");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
                  "needs 12", "wrong size");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8),
                  "unknown field 'x'", "unknown field");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
                  "overlap", "overlapping tensors");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                  "overlap", "aliased tensors");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12),
                  "hole", "hole between tensors");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                  "hole", "hole at start");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8),
                  "trailing bytes", "trailing data");
  expect_rejected(image("{\"a\":" + ok_entry + ",\"a\":" + ok_entry + "}", 8),
                  "duplicate key 'a'", "duplicate tensor");
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
                        "\"data_offsets\":[0,8]}}", 8),
                  "duplicate key 'dtype'", "duplicate field");
  expect_rejected(image("{\"__metadata__\":[]}", 0), "__metadata__ must be an object", "metadata array");
  expect_rejected(image("{\"__metadata__\":{\"k\":1}}", 0), "must be a string", "metadata number");
  expect_rejected(image("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0), "duplicate key 'k'",
                  "duplicate metadata key");
}

// Deep nesting is rejected while parsing (quoting such a value in an error message used to
// recurse once per level and overflow the stack): in a header, and in the shard index that
// Checkpoint::open reads. A moderate depth in an unused field is still accepted.
TEST(Safetensors, DeepNestingIsRejectedNotACrash) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_rejected(image("{\"t\":{\"dtype\":\"U8\",\"shape\":" + deep + ",\"data_offsets\":[0,0]}}", 0),
                  "nested deeper", "shape nested 100000 deep");
  expect_rejected(image("{\"__metadata__\":" + deep + "}", 0), "nested deeper", "metadata nested deep");
  const std::string ok_entry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  const std::string shape_deep = std::string(40, '[') + "2" + std::string(40, ']');
  expect_rejected(image("{\"a\":{\"dtype\":\"F32\",\"shape\":" + shape_deep + ",\"data_offsets\":[0,8]}}", 8),
                  "nested deeper", "shape nested 40 deep");
  ASSERT_NO_THROW(SafetensorsFile::from_memory(image("{\"a\":" + ok_entry + "}", 8), "base"));

  TempDir dir;
  { std::ofstream(dir.file("model.safetensors.index.json")) << "{\"weight_map\":{\"x\":" << deep << "}}"; }
  try {
    Checkpoint::open(dir.str());
    ADD_FAILURE() << "a deeply nested index was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, AcceptsWhatTheFormatAllows) {
  // Keys in any order, tensors listed out of data order, zero-size tensors, trailing
  // spaces, an empty-string name, an unpadded header (data then unaligned).
  auto img = image("{\"b\":{\"data_offsets\":[4,4],\"shape\":[0,3],\"dtype\":\"BF16\"},"
                   "\"\":{\"shape\":[],\"dtype\":\"I32\",\"data_offsets\":[0,4]},"
                   "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5]}}   ",
                   5);
  SafetensorsFile f = SafetensorsFile::from_memory(img, "odd");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"", "b", "c"}));
  EXPECT_EQ(f.info("").numel, 1);
  EXPECT_TRUE(f.info("").shape.empty());
  EXPECT_EQ(f.info("b").numel, 0);
  EXPECT_EQ(f.bytes("b").size(), 0u);
  EXPECT_EQ(f.bytes("c").size(), 1u);
}

}  // namespace
}  // namespace nvfp4moe::checkpoint
