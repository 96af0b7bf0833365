// Where `serve` gets its API key, and how a request's key is compared with it.
#pragma once

#include <optional>
#include <string>

namespace kvsqueeze {

// The key from --api-key (flag), else --api-key-file (its first line, surrounding
// whitespace trimmed), else the environment variable's value; none of them: no key (the
// server is open). Throws std::invalid_argument for an empty key from any source (it
// would silently open the server) or both options at once, std::runtime_error for a
// file that cannot be read.
std::string resolve_api_key(const std::optional<std::string>& flag, const std::string& file, const char* env_value);

// a == b in time that depends only on their lengths, not on where they differ.
bool same_key(const std::string& a, const std::string& b);

}  // namespace kvsqueeze
