// Typed GGUF metadata values (every value type of the format, arrays included).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace kvsqueeze {

// Ids fixed by the GGUF format.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

const char* gguf_type_name(GgufType t);

struct GgufArray;

// One metadata value. Integers of every width are held as int64/uint64 and floats as
// double; `type` remembers the width on disk so a rewrite keeps it.
struct GgufValue {
  GgufType type = GgufType::U32;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> v;

  static GgufValue u32(uint32_t x) { return {GgufType::U32, uint64_t{x}}; }
  static GgufValue i32(int32_t x) { return {GgufType::I32, int64_t{x}}; }
  static GgufValue u64(uint64_t x) { return {GgufType::U64, x}; }
  static GgufValue f32(float x) { return {GgufType::F32, double{x}}; }
  static GgufValue boolean(bool x) { return {GgufType::BOOL, x}; }
  static GgufValue str(std::string s) { return {GgufType::STRING, std::move(s)}; }
  static GgufValue array(GgufType elem, std::vector<GgufValue> items);
  static GgufValue string_array(const std::vector<std::string>& items);
  static GgufValue f32_array(const std::vector<float>& items);
  static GgufValue i32_array(const std::vector<int32_t>& items);

  bool is_integer() const;
  bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
  // Numeric value as the requested kind; throws when the value is not numeric.
  int64_t as_int() const;
  double as_float() const;
  const std::string& as_string() const;
  bool as_bool() const;
  const GgufArray& as_array() const;
};

struct GgufArray {
  GgufType elem = GgufType::U8;
  std::vector<GgufValue> items;
};

}  // namespace kvsqueeze
