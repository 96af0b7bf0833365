// GGUF reading and writing: every metadata type, alignment, and malformed files.
#include <cstring>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "tensor/quant.h"
#include "test_util.h"

using namespace kvsqueeze;

TEST(Gguf, WriterReaderRoundTripAllValueTypes) {
  GgufWriter w;
  w.set("u8", {GgufType::U8, uint64_t{200}});
  w.set("i8", {GgufType::I8, int64_t{-100}});
  w.set("u16", {GgufType::U16, uint64_t{60000}});
  w.set("i16", {GgufType::I16, int64_t{-30000}});
  w.set("u32", GgufValue::u32(4000000000u));
  w.set("i32", GgufValue::i32(-2000000000));
  w.set("u64", GgufValue::u64(1ull << 60));
  w.set("i64", {GgufType::I64, int64_t{-(1ll << 60)}});
  w.set("f32", GgufValue::f32(1.5f));
  w.set("f64", {GgufType::F64, 2.25});
  w.set("bool", GgufValue::boolean(true));
  w.set("str", GgufValue::str("héllo"));
  w.set("arr", GgufValue::string_array({"a", "", "ccc"}));
  w.set("nested", GgufValue::array(GgufType::ARRAY, {GgufValue::i32_array({1, 2}), GgufValue::i32_array({3})}));
  std::vector<float> data(64);
  for (int i = 0; i < 64; ++i) data[i] = static_cast<float>(i) - 32.0f;
  w.add_tensor_f32("t.f32", {32, 2}, DType::F32, data);
  w.add_tensor_f32("t.q8", {32, 2}, DType::Q8_0, data);
  const std::string path = test::temp_path("roundtrip.gguf");
  w.write(path);

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.find("u8")->type, GgufType::U8);
  EXPECT_EQ(f.get_int("u8"), 200);
  EXPECT_EQ(f.get_int("i8"), -100);
  EXPECT_EQ(f.get_int("u16"), 60000);
  EXPECT_EQ(f.get_int("i16"), -30000);
  EXPECT_EQ(f.get_int("u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("i32"), -2000000000);
  EXPECT_EQ(f.get_int("u64"), 1ll << 60);
  EXPECT_EQ(f.get_int("i64"), -(1ll << 60));
  EXPECT_EQ(f.get_float_or("f32", 0), 1.5);
  EXPECT_EQ(f.get_float_or("f64", 0), 2.25);
  EXPECT_TRUE(f.get_bool_or("bool", false));
  EXPECT_EQ(f.get_string("str"), "héllo");
  const GgufArray* a = f.get_array("arr");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 3u);
  EXPECT_EQ(a->items[2].as_string(), "ccc");
  const GgufArray* n = f.get_array("nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->items[0].as_array().items[1].as_int(), 2);
  EXPECT_THROW(f.get_string("u8"), std::runtime_error);  // wrong type names the key

  const GgufTensor* t = f.tensor("t.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dims, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 32, 0u) << "tensor data must be aligned";
  std::vector<float> back(64);
  dequantize_row(DType::F32, t->data, back.data(), 64);
  EXPECT_EQ(back, data);
  const GgufTensor* q = f.tensor("t.q8");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, DType::Q8_0);
  dequantize_row(DType::Q8_0, q->data, back.data(), 64);
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(back[i], data[i], 0.13);
}

TEST(Gguf, HonoursGeneralAlignment) {
  GgufWriter w;
  w.set("general.alignment", GgufValue::u32(32));
  w.add_tensor_f32("a", {3}, DType::F32, {1, 2, 3});
  w.add_tensor_f32("b", {5}, DType::F32, {4, 5, 6, 7, 8});
  const std::string path = test::temp_path("align.gguf");
  w.write(path);
  GgufFile f(path);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.tensor("b")->offset % 32, 0u);
  EXPECT_EQ(reinterpret_cast<const float*>(f.tensor("b")->data)[4], 8.0f);
}

// ---- malformed files ------------------------------------------------------------

namespace {
// Hand-assembled GGUF with one tensor, so single fields can be corrupted.
struct RawGguf {
  uint32_t magic = 0x46554747, version = 3;
  uint32_t n_dims = 2;
  uint64_t dim0 = 32, dim1 = 2;
  uint32_t type = 0;
  uint64_t offset = 0;
  uint64_t data_bytes = 32 * 2 * 4;

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> b;
    auto put = [&](const auto& v) {
      const auto* p = reinterpret_cast<const uint8_t*>(&v);
      b.insert(b.end(), p, p + sizeof v);
    };
    auto put_str = [&](const std::string& s) {
      put(uint64_t{s.size()});
      b.insert(b.end(), s.begin(), s.end());
    };
    put(magic);
    put(version);
    put(uint64_t{1});  // tensors
    put(uint64_t{1});  // kv
    put_str("general.architecture");
    put(uint32_t{8});
    put_str("llama");
    put_str("w");
    put(n_dims);
    put(dim0);
    if (n_dims > 1) put(dim1);
    put(type);
    put(offset);
    while (b.size() % 32) b.push_back(0);
    b.resize(b.size() + data_bytes, 0);
    return b;
  }
};

std::string expect_error(const std::vector<uint8_t>& file, const std::string& name) {
  const std::string path = test::temp_path(name);
  test::write_bytes(path, file);
  try {
    GgufFile f(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << name << ": no error raised";
  return {};
}
}  // namespace

// read_bytes copies a tensor from the file (pread) or from an in-memory image: the same
// bytes the mapping shows; a range outside the image is refused.
TEST(Gguf, ReadBytesCopiesTensorData) {
  GgufWriter w;
  std::vector<float> data(256);
  for (int i = 0; i < 256; ++i) data[i] = 0.25f * static_cast<float>(i % 37) - 3.0f;
  w.add_tensor_f32("a", {64, 2}, DType::F32, std::vector<float>(data.begin(), data.begin() + 128));
  w.add_tensor_f32("b", {128, 2}, DType::Q8_0, data);
  const std::string path = test::temp_path("read-bytes.gguf");
  w.write(path);
  const std::vector<uint8_t> image = test::read_bytes(path);
  GgufFile mapped(path);
  const auto in_memory = GgufFile::from_memory(image.data(), image.size());
  for (const GgufFile* f : {&mapped, in_memory.get()})
    for (const char* name : {"a", "b"}) {
      const GgufTensor* t = f->tensor(name);
      ASSERT_NE(t, nullptr);
      std::vector<uint8_t> copy(static_cast<size_t>(t->n_bytes), 0xEE);
      f->read_bytes(t->data, copy.size(), copy.data());
      EXPECT_EQ(0, std::memcmp(copy.data(), t->data, copy.size())) << name;
      EXPECT_THROW(f->read_bytes(t->data + 1, f->file_size(), copy.data()), std::out_of_range);
      const uint8_t elsewhere[4] = {};  // not in the image
      EXPECT_THROW(f->read_bytes(elsewhere, 1, copy.data()), std::out_of_range);
    }
}

TEST(GgufBadInput, WellFormedBaselineLoads) {
  const std::string path = test::temp_path("good.gguf");
  test::write_bytes(path, RawGguf{}.bytes());
  GgufFile f(path);
  EXPECT_EQ(f.tensors().size(), 1u);
}

TEST(GgufBadInput, VersionTwoLoads) {
  RawGguf r;
  r.version = 2;  // same layout as v3 for little-endian files
  const std::string path = test::temp_path("v2.gguf");
  test::write_bytes(path, r.bytes());
  GgufFile f(path);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
}

TEST(GgufBadInput, NonExistentFile) {
  try {
    GgufFile f("/nonexistent/model.gguf");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
}

TEST(GgufBadInput, WrongMagic) {
  RawGguf r;
  r.magic = 0x12345678;
  EXPECT_NE(expect_error(r.bytes(), "magic.gguf").find("wrong magic"), std::string::npos);
}

TEST(GgufBadInput, UnsupportedVersion) {
  RawGguf r;
  r.version = 1;
  EXPECT_NE(expect_error(r.bytes(), "v1.gguf").find("version 1"), std::string::npos);
}

TEST(GgufBadInput, EveryTruncationIsRejected) {
  const auto full = RawGguf{}.bytes();
  for (size_t len = 0; len < full.size(); ++len) {
    const std::string msg = expect_error(std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(len)),
                                         "trunc.gguf");
    ASSERT_FALSE(msg.empty()) << "length " << len;
  }
}

TEST(GgufBadInput, TensorDataPastEndOfFile) {
  RawGguf r;
  r.offset = 1 << 20;
  EXPECT_NE(expect_error(r.bytes(), "past_end.gguf").find("past the end"), std::string::npos);
}

TEST(GgufBadInput, UnknownWeightType) {
  RawGguf r;
  r.type = 99;
  EXPECT_NE(expect_error(r.bytes(), "type.gguf").find("unknown weight type id 99"), std::string::npos);
}

TEST(GgufBadInput, AbsurdDimensions) {
  RawGguf r;
  r.dim1 = 1ull << 62;
  EXPECT_NE(expect_error(r.bytes(), "dims.gguf").find("absurd dimension"), std::string::npos);
  RawGguf z;
  z.dim0 = 0;
  EXPECT_FALSE(expect_error(z.bytes(), "zero.gguf").empty());
  RawGguf many;
  many.n_dims = 9;
  EXPECT_NE(expect_error(many.bytes(), "ndims.gguf").find("dimensions"), std::string::npos);
}

TEST(GgufBadInput, MisalignedOffset) {
  RawGguf r;
  r.offset = 4;
  EXPECT_NE(expect_error(r.bytes(), "misaligned.gguf").find("not aligned"), std::string::npos);
}

TEST(GgufBadInput, HugeCountsDoNotAllocate) {
  auto b = RawGguf{}.bytes();
  const uint64_t huge = 1ull << 60;
  std::memcpy(b.data() + 8, &huge, 8);  // tensor count
  EXPECT_NE(expect_error(b, "count.gguf").find("more than the file can hold"), std::string::npos);
}
