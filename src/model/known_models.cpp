#include "model/known_models.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

namespace kvsqueeze {

const std::vector<KnownModel>& known_models() {
  // Keep in step with the table in scripts/fetch_models.sh.
  static const std::vector<KnownModel> models = {
      {"smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"},
      {"gemma3-270m", "gemma-3-270m-q4_k_m.gguf"},
      // Opt-in (large): fetched only when named.
      {"qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"},
      {"qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"},
  };
  return models;
}

std::string model_cache_dir() {
  if (const char* env = std::getenv("KVSQUEEZE_MODELS"); env && *env) return env;
  return std::string(KVSQUEEZE_SOURCE_DIR) + "/models";
}

namespace {
const KnownModel* find_known(const std::string& name) {
  for (const auto& m : known_models())
    if (name == m.name) return &m;
  return nullptr;
}
}  // namespace

std::optional<std::string> cached_model_path(const std::string& name) {
  const KnownModel* m = find_known(name);
  if (!m) return std::nullopt;
  std::string path = model_cache_dir() + "/" + m->file;
  if (!std::filesystem::is_regular_file(path)) return std::nullopt;
  return path;
}

std::string resolve_model_path(const std::string& arg) {
  if (std::filesystem::exists(arg)) return arg;
  if (const KnownModel* m = find_known(arg)) {
    if (auto path = cached_model_path(arg)) return *path;
    throw std::runtime_error(fmt::format("model '{}' is not fetched yet ({} is missing): run scripts/fetch_models.sh {}",
                                         arg, model_cache_dir() + "/" + m->file, arg));
  }
  std::string names;
  for (const auto& m : known_models()) names += std::string(names.empty() ? "" : ", ") + m.name;
  throw std::runtime_error(fmt::format("no model file '{}' (nor a known model name: {})", arg, names));
}

}  // namespace kvsqueeze
