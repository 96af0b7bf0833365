// A GGUF file opened read-only: metadata parsed, tensor data memory-mapped in place.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gguf/gguf_value.h"
#include "tensor/dtype.h"

namespace kvsqueeze {

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // dims[0] is the innermost (contiguous) dimension
  DType type = DType::F32;
  uint64_t offset = 0;        // relative to the start of the data section
  const uint8_t* data = nullptr;  // points into the mapping (zero copy)
  int64_t n_bytes = 0;

  int64_t n_elements() const;
  int64_t rows() const { return n_elements() / dims[0]; }
  int64_t cols() const { return dims[0]; }
  std::string shape_string() const;
};

class GgufFile {
 public:
  // Opens and validates the whole file; throws std::runtime_error with a message that
  // names the file and what is wrong (truncated, bad magic, data past the end ...).
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  // Parses a GGUF image already in memory (used by the fuzzer); the buffer must outlive
  // the object.
  static std::unique_ptr<GgufFile> from_memory(const uint8_t* data, size_t size);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed look-ups; the *_or forms return the default when the key is absent, and all
  // throw with the key's name when the value has the wrong type.
  int64_t get_int(const std::string& key) const;
  int64_t get_int_or(const std::string& key, int64_t def) const;
  double get_float_or(const std::string& key, double def) const;
  std::string get_string(const std::string& key) const;
  std::string get_string_or(const std::string& key, const std::string& def) const;
  bool get_bool_or(const std::string& key, bool def) const;
  const GgufArray* get_array(const std::string& key) const;

  // Copies n bytes of the file image starting at p (a pointer into it, such as a tensor's
  // data) to dst. A mapped file is read with pread, so the copied range is never faulted
  // into the mapping: the mapping's resident pages stay those something actually uses.
  void read_bytes(const uint8_t* p, size_t n, uint8_t* dst) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(const std::string& name) const;

 private:
  GgufFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  int fd_ = -1;  // the open file of a mapping
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace kvsqueeze
