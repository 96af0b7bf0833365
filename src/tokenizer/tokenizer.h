// Tokenizers read from GGUF metadata: SentencePiece-style BPE (`llama`) and byte-level
// BPE (`gpt2`), with special-token parsing, BOS handling and decoding, following
// llama.cpp's rules (token attributes, special-token partition) so ids match it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace kvsqueeze {

class GgufFile;

// Token types as GGUF stores them in tokenizer.ggml.token_type.
enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// Token attributes, bit for bit llama.cpp's llama_token_attr: a token can carry several
// (a user-defined token that llama.cpp also treats as control, a control token that
// swallows the spaces after it ...).
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrNormalized = 1u << 6,
  kAttrLstrip = 1u << 7,  // the whitespace before the token belongs to it
  kAttrRstrip = 1u << 8,  // the whitespace after the token belongs to it
  kAttrSingleWord = 1u << 9,
};

struct Vocab {
  std::vector<std::string> text;
  std::vector<float> score;
  std::vector<uint32_t> attr;  // TokenAttr bits
  std::unordered_map<std::string, int32_t> index;
  int32_t find(const std::string& s) const {
    auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  }
  int32_t size() const { return static_cast<int32_t>(text.size()); }
  bool has_attr(int32_t id, uint32_t bits) const { return (attr[static_cast<size_t>(id)] & bits) != 0; }
};

class Tokenizer {
 public:
  virtual ~Tokenizer();
  // Builds the tokenizer the file's metadata describes; throws for unknown models.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& f);

  // add_bos: prepend BOS when the model asks for it (tokenizer.ggml.add_bos_token).
  // parse_special: text such as "<|im_start|>" becomes its control token; user-defined
  // tokens are matched either way, as llama.cpp does.
  std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const;
  // One text made of parts, each with its own parse_special: a chat prompt whose markup
  // is special and whose message contents are not, so no message can forge a turn. The
  // parts are joined before encoding, so without special text in the plain parts the ids
  // are those of encode(joined text, add_bos, true).
  struct TextPart {
    std::string text;
    bool parse_special = false;
  };
  std::vector<int32_t> encode_parts(const std::vector<TextPart>& parts, bool add_bos) const;
  // Bytes of one token as it appears in text (control tokens render as "" unless special).
  std::string piece(int32_t id, bool special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t n_vocab() const { return vocab_.size(); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  bool adds_bos() const { return add_bos_; }
  // tokenizer.ggml.add_eos_token: llama.cpp appends EOS when it adds special tokens.
  // encode() leaves that to callers, which may encode a prompt in parts.
  bool adds_eos() const { return add_eos_; }
  // True for the tokens llama.cpp treats as end of generation (EOS, <|eot_id|>, <|im_end|> ...).
  bool is_end_of_generation(int32_t id) const;
  const std::string& model_name() const { return model_; }
  const std::string& pre_name() const { return pre_; }

 protected:
  Tokenizer() = default;
  // Encodes one plain text fragment (no special tokens in it); after_special: the
  // fragment starts the text or follows a special token.
  virtual void encode_fragment(const std::string& text, bool after_special, std::vector<int32_t>& out) const = 0;
  virtual std::string normal_piece(int32_t id) const = 0;

  Vocab vocab_;

 private:
  void read_special_ids(const GgufFile& f);
  void build_special_cache();
  // Fragment of the text: a special token, or (token < 0) the bytes [begin, end).
  struct Fragment {
    int32_t token;
    size_t begin, end;
  };
  std::vector<Fragment> split_on_specials(const std::string& text, bool parse_special) const;
  std::vector<int32_t> encode_fragments(const std::string& text, const std::vector<Fragment>& frags, bool add_bos) const;

  std::string model_, pre_;
  int32_t bos_ = -1, eos_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  std::vector<int32_t> specials_;  // control / user-defined / unknown, longest text first
  std::vector<int32_t> end_ids_;
};

}  // namespace kvsqueeze
