#include "gguf/gguf_value.h"

#include <stdexcept>

namespace kvsqueeze {

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "uint8";
    case GgufType::I8: return "int8";
    case GgufType::U16: return "uint16";
    case GgufType::I16: return "int16";
    case GgufType::U32: return "uint32";
    case GgufType::I32: return "int32";
    case GgufType::F32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::U64: return "uint64";
    case GgufType::I64: return "int64";
    case GgufType::F64: return "float64";
  }
  return "unknown";
}

GgufValue GgufValue::array(GgufType elem, std::vector<GgufValue> items) {
  auto a = std::make_shared<GgufArray>();
  a->elem = elem;
  a->items = std::move(items);
  return {GgufType::ARRAY, std::move(a)};
}

GgufValue GgufValue::string_array(const std::vector<std::string>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (const auto& s : items) v.push_back(str(s));
  return array(GgufType::STRING, std::move(v));
}

GgufValue GgufValue::f32_array(const std::vector<float>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (float x : items) v.push_back(f32(x));
  return array(GgufType::F32, std::move(v));
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (int32_t x : items) v.push_back(i32(x));
  return array(GgufType::I32, std::move(v));
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64:
      return true;
    default:
      return false;
  }
}

int64_t GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) return static_cast<int64_t>(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  throw std::runtime_error(std::string("expected an integer, found ") + gguf_type_name(type));
}

double GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (is_integer()) return static_cast<double>(as_int());
  throw std::runtime_error(std::string("expected a number, found ") + gguf_type_name(type));
}

const std::string& GgufValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  throw std::runtime_error(std::string("expected a string, found ") + gguf_type_name(type));
}

bool GgufValue::as_bool() const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  if (is_integer()) return as_int() != 0;
  throw std::runtime_error(std::string("expected a bool, found ") + gguf_type_name(type));
}

const GgufArray& GgufValue::as_array() const {
  if (auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v)) return **a;
  throw std::runtime_error(std::string("expected an array, found ") + gguf_type_name(type));
}

}  // namespace kvsqueeze
