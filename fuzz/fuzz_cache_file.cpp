// Fuzz target: reading a saved KV cache (`generate --load-cache`, contexts that `serve`
// persisted) against a model. Any bytes must load or raise a std::exception.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>

#include "cache/cache_file.h"
#include "fuzz_util.h"
#include "gguf/gguf_file.h"
#include "model/model.h"

using namespace kvsqueeze;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Model model(std::make_shared<const GgufFile>(fuzz::corpus_file("gguf/tiny-llama.gguf")));
  try {
    const KvCache cache = load_cache(fuzz::as_file(data, size, ".kvc"), model.cache_identity());
    (void)cache.bytes_used();
  } catch (const std::exception&) {
  }
  return 0;
}
