// Import of llama2.c checkpoints (legacy format) and their tokenizer.bin into GGUF.
#pragma once

#include <string>

namespace kvsqueeze {

// Writes a GGUF (architecture `llama`, F32 weights, SentencePiece-style tokenizer) that
// kvsqueeze and llama.cpp load. Throws with a clear message on malformed input.
void convert_llama2c(const std::string& model_path, const std::string& tokenizer_path, const std::string& out_path);

}  // namespace kvsqueeze
