// The server's OpenAPI document (docs/openapi.yaml, compiled in), as the JSON that
// GET /openapi.json answers.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kvsqueeze {

// The YAML source, byte for byte as in docs/.
const std::string& openapi_yaml();

// It as JSON (parsed once; throws std::runtime_error if the embedded YAML is broken).
const nlohmann::json& openapi_json();

// A YAML document as JSON: plain scalars take YAML 1.2's core types (null, booleans,
// integers, floats), quoted ones stay strings. Anchors and aliases resolve; tags other
// than the defaults are not supported.
nlohmann::json yaml_to_json(const std::string& yaml);

}  // namespace kvsqueeze
