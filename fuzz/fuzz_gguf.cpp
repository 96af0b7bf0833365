// Fuzz target: the GGUF parser, the model binder and the tokenizer builder on arbitrary
// bytes. Any input must either load or raise a std::exception, never crash or leak.
#include <cstddef>
#include <cstdint>
#include <exception>

#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = kvsqueeze::GgufFile::from_memory(data, size);
    try {
      auto tok = kvsqueeze::Tokenizer::from_gguf(*f);
      (void)tok->encode("Hello <s> world 123", true, true);
    } catch (const std::exception&) {
    }
    try {
      kvsqueeze::Model model(std::shared_ptr<const kvsqueeze::GgufFile>(std::move(f)));
    } catch (const std::exception&) {
    }
  } catch (const std::exception&) {
  }
  return 0;
}
