// The real models scripts/fetch_models.sh fetches, by short name (-m gemma3-270m).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kvsqueeze {

struct KnownModel {
  const char* name;  // short name, as scripts/fetch_models.sh takes it
  const char* file;  // file name in the model cache
};

const std::vector<KnownModel>& known_models();

// The cache folder: $KVSQUEEZE_MODELS, else models/ at the repository root.
std::string model_cache_dir();

// The cached file of a known model when it is there, else nothing (also for unknown names).
std::optional<std::string> cached_model_path(const std::string& name);

// An existing file is returned as it is; a short name becomes its cached file. Throws
// one clear message for anything else (an unknown name, or a known one not fetched yet).
std::string resolve_model_path(const std::string& arg);

}  // namespace kvsqueeze
