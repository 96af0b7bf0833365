#include "server/api_key.h"

#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace kvsqueeze {
namespace {
std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}
}  // namespace

std::string resolve_api_key(const std::optional<std::string>& flag, const std::string& file, const char* env_value) {
  if (flag && !file.empty()) throw std::invalid_argument("give either --api-key or --api-key-file, not both");
  std::string key, source;
  if (flag) {
    key = *flag, source = "--api-key";
  } else if (!file.empty()) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error(fmt::format("cannot read the API key file '{}'", file));
    std::getline(in, key);
    key = trimmed(key), source = fmt::format("the API key file '{}'", file);
  } else if (env_value) {
    key = env_value, source = "KVSQUEEZE_API_KEY";
  } else {
    return "";
  }
  if (key.empty()) throw std::invalid_argument(fmt::format("the API key from {} is empty (it would leave the server open)", source));
  return key;
}

bool same_key(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

}  // namespace kvsqueeze
