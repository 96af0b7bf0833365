#include "gguf/gguf_writer.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include <fmt/format.h>

#include "tensor/quant.h"

namespace kvsqueeze {
namespace {

class Out {
 public:
  explicit Out(std::FILE* f) : f_(f) {}
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw std::runtime_error("write failed (disk full?)");
    pos_ += n;
  }
  template <typename T>
  void put(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t align) {
    static const uint8_t zeros[64] = {};
    while (pos_ % align) bytes(zeros, std::min<uint64_t>(align - pos_ % align, sizeof zeros));
  }

 private:
  std::FILE* f_;
  uint64_t pos_ = 0;
};

void put_value(Out& o, const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: o.put<uint8_t>(static_cast<uint8_t>(v.as_int())); break;
    case GgufType::I8: o.put<int8_t>(static_cast<int8_t>(v.as_int())); break;
    case GgufType::U16: o.put<uint16_t>(static_cast<uint16_t>(v.as_int())); break;
    case GgufType::I16: o.put<int16_t>(static_cast<int16_t>(v.as_int())); break;
    case GgufType::U32: o.put<uint32_t>(static_cast<uint32_t>(v.as_int())); break;
    case GgufType::I32: o.put<int32_t>(static_cast<int32_t>(v.as_int())); break;
    case GgufType::U64: o.put<uint64_t>(static_cast<uint64_t>(v.as_int())); break;
    case GgufType::I64: o.put<int64_t>(v.as_int()); break;
    case GgufType::F32: o.put<float>(static_cast<float>(v.as_float())); break;
    case GgufType::F64: o.put<double>(v.as_float()); break;
    case GgufType::BOOL: o.put<uint8_t>(v.as_bool() ? 1 : 0); break;
    case GgufType::STRING: o.str(v.as_string()); break;
    case GgufType::ARRAY: {
      const GgufArray& a = v.as_array();
      o.put<uint32_t>(static_cast<uint32_t>(a.elem));
      o.put<uint64_t>(a.items.size());
      for (const auto& item : a.items) put_value(o, item);
      break;
    }
  }
}

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : kv_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> dims, DType type, std::vector<uint8_t> data) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  if (dims.empty() || dims[0] % traits(type).block_elems != 0)
    throw std::runtime_error(fmt::format("tensor '{}': row length is not a multiple of the {} block size", name,
                                         dtype_name(type)));
  if (static_cast<int64_t>(data.size()) != row_bytes(type, n))
    throw std::runtime_error(fmt::format("tensor '{}': {} bytes given, {} expected", name, data.size(), row_bytes(type, n)));
  tensors_.push_back({name, std::move(dims), type, std::move(data)});
}

void GgufWriter::add_tensor_f32(const std::string& name, std::vector<int64_t> dims, DType type,
                                const std::vector<float>& values) {
  const int64_t cols = dims.at(0);
  const int64_t rows = static_cast<int64_t>(values.size()) / cols;
  if (cols % traits(type).block_elems != 0)
    throw std::runtime_error(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}", name,
                                         cols, dtype_name(type), traits(type).block_elems));
  const int64_t rb = row_bytes(type, cols);
  std::vector<uint8_t> data(static_cast<size_t>(rb * rows));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, values.data() + r * cols, data.data() + r * rb, cols);
  add_tensor(name, std::move(dims), type, std::move(data));
}

void GgufWriter::set_spm_tokenizer(const std::vector<std::string>& texts, const std::vector<float>& scores,
                                   const std::vector<int32_t>& types) {
  set("tokenizer.ggml.model", GgufValue::str("llama"));
  set("tokenizer.ggml.tokens", GgufValue::string_array(texts));
  set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
  set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
  set("tokenizer.ggml.unknown_token_id", GgufValue::u32(0));
  set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
  set("tokenizer.ggml.eos_token_id", GgufValue::u32(2));
}

void GgufWriter::write(const std::string& path) const {
  // Unique per process: concurrent writers of one path must not share a temp file.
  const std::string tmp = fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(fmt::format("cannot create '{}'", tmp));
  try {
    Out o(f);
    o.put<uint32_t>(0x46554747);
    o.put<uint32_t>(3);
    o.put<uint64_t>(tensors_.size());
    o.put<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
      o.str(k);
      o.put<uint32_t>(static_cast<uint32_t>(v.type));
      put_value(o, v);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      o.str(t.name);
      o.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
      for (auto d : t.dims) o.put<uint64_t>(static_cast<uint64_t>(d));
      o.put<uint32_t>(static_cast<uint32_t>(t.type));
      o.put<uint64_t>(offset);
      offset += (t.data.size() + kAlignment - 1) / kAlignment * kAlignment;
    }
    o.pad_to(kAlignment);
    for (const auto& t : tensors_) {
      o.bytes(t.data.data(), t.data.size());
      o.pad_to(kAlignment);
    }
    const bool closed_ok = std::fclose(f) == 0;
    f = nullptr;
    if (!closed_ok) throw std::runtime_error("close failed (disk full?)");
  } catch (const std::exception& e) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("writing '{}': {}", path, e.what()));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("cannot rename '{}' to '{}'", tmp, path));
  }
}

}  // namespace kvsqueeze
