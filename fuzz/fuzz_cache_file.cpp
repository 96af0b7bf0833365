// Fuzz target: reading a saved KV cache (`generate --load-cache`, contexts that `serve`
// persisted) against a model. Any bytes must load or raise a std::exception. Each input is
// read twice: as it is (the checksum turns away almost every mutation), and with its last
// 8 bytes set to the checksum of the rest, so that the structure behind the checksum
// (header, layers, rows, positions) meets arbitrary bytes too.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "cache/cache_file.h"
#include "fuzz_util.h"
#include "gguf/gguf_file.h"
#include "model/model.h"

using namespace kvsqueeze;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Model model(std::make_shared<const GgufFile>(fuzz::corpus_file("gguf/tiny-llama.gguf")));
  std::vector<uint8_t> sealed(data, data + size);
  if (size >= 8) {
    const uint64_t sum = cache_checksum(sealed.data(), size - 8);
    std::memcpy(sealed.data() + size - 8, &sum, 8);
  }
  for (const std::vector<uint8_t>& bytes : {std::vector<uint8_t>(data, data + size), sealed}) {
    try {
      const KvCache cache = load_cache(fuzz::as_file(bytes.data(), bytes.size(), ".kvc"), model.cache_identity());
      (void)cache.bytes_used();
    } catch (const std::exception&) {
    }
  }
  return 0;
}
