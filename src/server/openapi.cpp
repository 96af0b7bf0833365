#include "server/openapi.h"

#include <charconv>
#include <stdexcept>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace kvsqueeze {

extern const char* const kOpenApiYaml;  // openapi_text.cpp, generated from docs/openapi.yaml

namespace {

// Digits from `at`; returns how many.
size_t digits(const std::string& s, size_t& at) {
  const size_t from = at;
  while (at < s.size() && s[at] >= '0' && s[at] <= '9') ++at;
  return at - from;
}

// YAML 1.2 core-schema numbers: [-+]?[0-9]+ is an integer; a float is
// [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?.
bool is_integer(const std::string& s) {
  size_t at = s.empty() || (s[0] != '-' && s[0] != '+') ? 0 : 1;
  return digits(s, at) > 0 && at == s.size();
}
bool is_float(const std::string& s) {
  size_t at = s.empty() || (s[0] != '-' && s[0] != '+') ? 0 : 1;
  size_t mantissa = digits(s, at);
  if (at < s.size() && s[at] == '.') {
    ++at;
    mantissa += digits(s, at);
  }
  if (mantissa == 0) return false;
  if (at < s.size() && (s[at] == 'e' || s[at] == 'E')) {
    ++at;
    if (at < s.size() && (s[at] == '-' || s[at] == '+')) ++at;
    if (digits(s, at) == 0) return false;
  }
  return at == s.size();
}

// A plain (unquoted) scalar under YAML 1.2's core schema.
nlohmann::json plain_scalar(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (is_integer(s)) {
    const char* b = s.data() + (s[0] == '+' ? 1 : 0);
    int64_t v = 0;
    if (const auto r = std::from_chars(b, s.data() + s.size(), v); r.ec == std::errc()) return v;
    uint64_t u = 0;
    if (const auto r = std::from_chars(b, s.data() + s.size(), u); r.ec == std::errc()) return u;
    return std::stod(s);  // beyond 64 bits: as JSON would read it
  }
  if (is_float(s)) return std::stod(s);
  return s;
}

nlohmann::json convert(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return n.Tag() == "?" ? plain_scalar(n.Scalar()) : nlohmann::json(n.Scalar());
    case YAML::NodeType::Sequence: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& item : n) a.push_back(convert(item));
      return a;
    }
    case YAML::NodeType::Map: {
      nlohmann::json o = nlohmann::json::object();
      // JSON keys are strings whatever the YAML key's type ("200": and 200: alike).
      for (const auto& kv : n) o[kv.first.Scalar()] = convert(kv.second);
      return o;
    }
  }
  return nullptr;
}

}  // namespace

nlohmann::json yaml_to_json(const std::string& yaml) {
  try {
    return convert(YAML::Load(yaml));
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(fmt::format("YAML: {}", e.what()));
  }
}

const std::string& openapi_yaml() {
  static const std::string text(kOpenApiYaml);
  return text;
}

const nlohmann::json& openapi_json() {
  static const nlohmann::json spec = yaml_to_json(openapi_yaml());
  return spec;
}

}  // namespace kvsqueeze
