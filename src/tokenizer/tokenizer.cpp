#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <list>
#include <stdexcept>
#include <variant>

#include <fmt/format.h>

#include "gguf/gguf_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"

namespace kvsqueeze {

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  const std::string model = f.get_string_or("tokenizer.ggml.model", "");
  const GgufArray* tokens = f.get_array("tokenizer.ggml.tokens");
  if (model.empty() || !tokens)
    throw std::runtime_error(fmt::format("'{}' has no tokenizer (tokenizer.ggml.model / tokenizer.ggml.tokens)", f.path()));
  const std::string pre = f.get_string_or("tokenizer.ggml.pre", "default");

  std::unique_ptr<Tokenizer> tok;
  if (model == "llama") {
    tok = std::make_unique<SpmTokenizer>(f.get_bool_or("tokenizer.ggml.add_space_prefix", true));
  } else if (model == "gpt2") {
    std::vector<std::string> merges;
    if (const GgufArray* m = f.get_array("tokenizer.ggml.merges"))
      for (const auto& v : m->items) merges.push_back(v.as_string());
    tok = std::make_unique<BpeTokenizer>(merges, pre);
  } else {
    throw std::runtime_error(fmt::format("'{}': unsupported tokenizer model '{}' (supported: llama, gpt2)", f.path(), model));
  }
  tok->model_ = model;
  tok->pre_ = pre;

  Vocab& v = tok->vocab_;
  const size_t n = tokens->items.size();
  v.text.reserve(n);
  for (const auto& t : tokens->items) v.text.push_back(t.as_string());
  v.score.assign(n, 0.0f);
  v.type.assign(n, TokenType::Normal);
  if (const GgufArray* s = f.get_array("tokenizer.ggml.scores")) {
    if (s->items.size() != n) throw std::runtime_error(fmt::format("'{}': tokenizer scores and tokens differ in length", f.path()));
    for (size_t i = 0; i < n; ++i) v.score[i] = static_cast<float>(s->items[i].as_float());
  }
  if (const GgufArray* ty = f.get_array("tokenizer.ggml.token_type")) {
    if (ty->items.size() != n) throw std::runtime_error(fmt::format("'{}': tokenizer token types and tokens differ in length", f.path()));
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = ty->items[i].as_int();
      v.type[i] = (t >= 1 && t <= 6) ? static_cast<TokenType>(t) : TokenType::Normal;
    }
  }
  for (size_t i = 0; i < n; ++i) v.index.emplace(v.text[i], static_cast<int32_t>(i));

  const bool spm = model == "llama";
  auto id_or = [&](const char* key, int64_t def) {
    const int64_t id = f.get_int_or(key, def);
    return (id >= 0 && id < static_cast<int64_t>(n)) ? static_cast<int32_t>(id) : -1;
  };
  tok->bos_ = id_or("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  tok->eos_ = id_or("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  tok->add_bos_ = f.get_bool_or("tokenizer.ggml.add_bos_token", spm) && tok->bos_ >= 0;

  for (int32_t i = 0; i < v.size(); ++i) {
    const TokenType t = v.type[static_cast<size_t>(i)];
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !v.text[static_cast<size_t>(i)].empty())
      tok->specials_.push_back(i);
  }
  std::stable_sort(tok->specials_.begin(), tok->specials_.end(), [&](int32_t a, int32_t b) {
    return v.text[static_cast<size_t>(a)].size() > v.text[static_cast<size_t>(b)].size();
  });

  if (tok->eos_ >= 0) tok->end_ids_.push_back(tok->eos_);
  const int32_t eot = id_or("tokenizer.ggml.eot_token_id", -1);
  if (eot >= 0) tok->end_ids_.push_back(eot);
  for (const char* s : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|eom_id|>", "<end_of_turn>", "<|end_of_text|>"}) {
    const int32_t id = v.find(s);
    if (id >= 0 && v.type[static_cast<size_t>(id)] == TokenType::Control) tok->end_ids_.push_back(id);
  }
  if (auto* sp = dynamic_cast<SpmTokenizer*>(tok.get())) sp->finish_init();
  return tok;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos, bool parse_special) const {
  // Split the text around special-token strings, longest first (as llama.cpp does).
  // User-defined tokens are always split out; control ones only with parse_special.
  using Fragment = std::variant<std::string, int32_t>;
  std::list<Fragment> frags;
  if (!text.empty()) frags.emplace_back(text);
  for (int32_t id : specials_) {
    const TokenType t = vocab_.type[static_cast<size_t>(id)];
    if (!parse_special && t != TokenType::UserDefined) continue;
    const std::string& s = vocab_.text[static_cast<size_t>(id)];
    for (auto it = frags.begin(); it != frags.end();) {
      auto* str = std::get_if<std::string>(&*it);
      const size_t at = str ? str->find(s) : std::string::npos;
      if (at == std::string::npos) {
        ++it;
        continue;
      }
      std::string left = str->substr(0, at), right = str->substr(at + s.size());
      if (!left.empty()) frags.insert(it, Fragment(std::move(left)));
      frags.insert(it, Fragment(id));
      if (right.empty())
        it = frags.erase(it);
      else
        *it = Fragment(std::move(right));  // searched again on the next turn
    }
  }

  std::vector<int32_t> out;
  if (add_bos && add_bos_) out.push_back(bos_);
  bool first = true, after_special = true;
  for (const auto& f : frags) {
    if (auto* id = std::get_if<int32_t>(&f)) {
      out.push_back(*id);
      after_special = true;
    } else {
      encode_fragment(std::get<std::string>(f), first, after_special, out);
      after_special = false;
    }
    first = false;
  }
  return out;
}

std::string Tokenizer::piece(int32_t id, bool special) const {
  if (id < 0 || id >= vocab_.size()) return {};
  switch (vocab_.type[static_cast<size_t>(id)]) {
    case TokenType::Control:
    case TokenType::Unknown:
    case TokenType::Unused:
      return special ? vocab_.text[static_cast<size_t>(id)] : std::string();
    case TokenType::UserDefined:
      return vocab_.text[static_cast<size_t>(id)];
    default:
      return normal_piece(id);
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string s;
  for (int32_t id : ids) s += piece(id, special);
  return s;
}

}  // namespace kvsqueeze
