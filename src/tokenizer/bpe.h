// Byte-level BPE (GGUF tokenizer model `gpt2`): regex pre-split chosen by
// tokenizer.ggml.pre, GPT-2 byte mapping, merges by rank.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

class RegexSplitter;

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(const std::vector<std::string>& merges, const std::string& pre);
  ~BpeTokenizer() override;

 protected:
  void encode_fragment(const std::string& text, bool after_special, std::vector<int32_t>& out) const override;
  std::string normal_piece(int32_t id) const override;

 private:
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  int rank(const std::string& left, const std::string& right) const;

  std::unordered_map<std::string, int> merge_rank_;  // "left right" -> rank
  std::unique_ptr<RegexSplitter> splitter_;
  bool ignore_merges_ = false;  // Llama 3: a word that is a whole token skips the merges
};

}  // namespace kvsqueeze
