// Tokenizers read from GGUF metadata: SentencePiece-style BPE (`llama`) and byte-level
// BPE (`gpt2`), with special-token parsing, BOS/EOS handling and decoding.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace kvsqueeze {

class GgufFile;

// Token types as GGUF stores them in tokenizer.ggml.token_type.
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct Vocab {
  std::vector<std::string> text;
  std::vector<float> score;
  std::vector<TokenType> type;
  std::unordered_map<std::string, int32_t> index;
  int32_t find(const std::string& s) const {
    auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  }
  int32_t size() const { return static_cast<int32_t>(text.size()); }
};

class Tokenizer {
 public:
  virtual ~Tokenizer();
  // Builds the tokenizer the file's metadata describes; throws for unknown models.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& f);

  // add_bos: prepend BOS when the model asks for it (tokenizer.ggml.add_bos_token).
  // parse_special: text such as "<|im_start|>" becomes its control token.
  std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const;
  // Bytes of one token as it appears in text (control tokens render as "" unless special).
  std::string piece(int32_t id, bool special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t n_vocab() const { return vocab_.size(); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  bool adds_bos() const { return add_bos_; }
  // True for tokens that end a generation (EOS, <|eot_id|>, <|im_end|> ...).
  bool is_end_of_generation(int32_t id) const;
  const std::string& model_name() const { return model_; }
  const std::string& pre_name() const { return pre_; }

 protected:
  Tokenizer() = default;
  // Encodes one plain text fragment (no special tokens in it).
  virtual void encode_fragment(const std::string& text, bool first_fragment, bool after_special,
                               std::vector<int32_t>& out) const = 0;
  virtual std::string normal_piece(int32_t id) const = 0;

  Vocab vocab_;
  std::string model_, pre_;
  int32_t bos_ = -1, eos_ = -1;
  bool add_bos_ = false;
  std::vector<int32_t> specials_;  // control / user-defined / unknown, longest text first
  std::vector<int32_t> end_ids_;
};

}  // namespace kvsqueeze
