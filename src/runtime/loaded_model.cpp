#include "runtime/loaded_model.h"

#include "gguf/gguf_file.h"

namespace kvsqueeze {

LoadedModel load_model(const std::string& path) {
  auto file = std::make_shared<const GgufFile>(path);
  LoadedModel m;
  m.model = std::make_unique<Model>(file);
  m.tokenizer = Tokenizer::from_gguf(*file);
  return m;
}

}  // namespace kvsqueeze
