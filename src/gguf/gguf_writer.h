// Builds a GGUF v3 file: metadata in insertion order, tensors aligned to 32 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_value.h"
#include "tensor/dtype.h"

namespace kvsqueeze {

class GgufWriter {
 public:
  void set(const std::string& key, GgufValue value);
  // Adds a tensor whose data (already encoded in `type`) is copied in.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, DType type, std::vector<uint8_t> data);
  // Encodes float data into `type` row by row, then adds it.
  void add_tensor_f32(const std::string& name, std::vector<int64_t> dims, DType type, const std::vector<float>& values);
  // Stores a SentencePiece-style tokenizer (model `llama`, <unk>=0, <s>=1, </s>=2) the way
  // llama.cpp's converters do. types are GGUF token types (1 normal ... 6 byte).
  void set_spm_tokenizer(const std::vector<std::string>& texts, const std::vector<float>& scores,
                         const std::vector<int32_t>& types);
  // Writes to a temporary file then renames, so a failed write never leaves half a model.
  void write(const std::string& path) const;

  static constexpr uint64_t kAlignment = 32;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    DType type;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace kvsqueeze
