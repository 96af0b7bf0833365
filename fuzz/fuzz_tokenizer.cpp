// Fuzz target: every shared vocabulary (../shared/vocab) encoding arbitrary bytes, with
// and without special-token parsing, and decoding the ids back. Ids must lie in the
// vocabulary, and the byte-level BPE vocabularies (gpt-2, llama-bpe, qwen2) must give the
// text back exactly when it is valid UTF-8 and read as plain text.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using namespace kvsqueeze;

namespace {
struct Vocabulary {
  std::unique_ptr<Tokenizer> tok;
  bool byte_level;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<Vocabulary> vocabs = [] {
    std::vector<Vocabulary> v;
    for (const char* name : {"gpt-2", "llama-bpe", "qwen2", "llama-spm", "phi-3"}) {
      const GgufFile f(fuzz::shared_file(std::string("vocab/ggml-vocab-") + name + ".gguf"));
      v.push_back({Tokenizer::from_gguf(f), std::string(name) != "llama-spm" && std::string(name) != "phi-3"});
    }
    return v;
  }();
  if (size == 0) return 0;
  const bool special = data[0] & 1;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool valid = utf8_repaired(text) == text;
  for (const Vocabulary& v : vocabs) {
    const std::vector<int32_t> ids = v.tok->encode(text, false, special);
    for (int32_t id : ids)
      if (id < 0 || id >= v.tok->n_vocab()) __builtin_trap();
    const std::string back = v.tok->decode(ids, special);
    if (v.byte_level && valid && !special && back != text) __builtin_trap();  // the round trip lost bytes
  }
  return 0;
}
