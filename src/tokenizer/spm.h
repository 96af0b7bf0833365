// SentencePiece-style BPE (GGUF tokenizer model `llama`): merges by token score, with
// byte fallback for characters that are not in the vocabulary.
#pragma once

#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(bool add_space_prefix) : add_space_prefix_(add_space_prefix) {}
  void finish_init();

 protected:
  void encode_fragment(const std::string& text, bool after_special, std::vector<int32_t>& out) const override;
  std::string normal_piece(int32_t id) const override;

 private:
  bool add_space_prefix_;
  int32_t byte_tokens_[256];  // -1 where the vocabulary has no token for the byte
};

}  // namespace kvsqueeze
