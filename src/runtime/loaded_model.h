// A model file opened for use: its weights bound to a Model and its vocabulary to a
// Tokenizer (what the CLI, the server and the Python package all start from).
#pragma once

#include <memory>
#include <string>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// `path` is a GGUF file (short names are resolved by the caller: resolve_model_path).
LoadedModel load_model(const std::string& path);

}  // namespace kvsqueeze
