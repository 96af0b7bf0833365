// Weight and activation element types, with the numeric ids GGUF files use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvsqueeze {

// Ids are fixed by the GGUF format (ggml's type enum); do not renumber.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct DTypeTraits {
  const char* name;
  int64_t block_elems;  // elements per block (1 for plain floats)
  int64_t block_bytes;  // bytes per block
  bool supported;       // kvsqueeze can compute with it
};

// Traits of a raw GGUF type id; nullopt when the id is not a known ggml type.
std::optional<DTypeTraits> dtype_traits(uint32_t raw_id);
const DTypeTraits& traits(DType t);
std::string_view dtype_name(DType t);
// Parses "q4_k", "Q8_0", "f16" ... (case-insensitive); nullopt when unknown.
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes needed for a row of n elements (n must be a multiple of the block size).
int64_t row_bytes(DType t, int64_t n);

}  // namespace kvsqueeze
