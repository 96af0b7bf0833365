#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "gguf/gguf_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/token_attrs.h"

namespace kvsqueeze {
namespace {

// Pre-tokenizers for which llama.cpp adds BOS unless the metadata says otherwise.
bool bpe_adds_bos_by_default(const std::string& pre) {
  for (const char* p : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"})
    if (pre == p) return true;
  return false;
}

Vocab read_vocab(const GgufFile& f, const GgufArray& tokens) {
  Vocab v;
  const size_t n = tokens.items.size();
  v.text.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string t = tokens.items[i].as_string();
    // llama.cpp renames empty tokens, so they stay distinct (and can be looked up).
    v.text.push_back(t.empty() ? fmt::format("[EMPTY_{}]", i) : std::move(t));
  }
  v.score.assign(n, 0.0f);
  v.attr.assign(n, kAttrNormal);
  if (const GgufArray* s = f.get_array("tokenizer.ggml.scores")) {
    if (s->items.size() != n) throw std::runtime_error(fmt::format("'{}': tokenizer scores and tokens differ in length", f.path()));
    for (size_t i = 0; i < n; ++i) v.score[i] = static_cast<float>(s->items[i].as_float());
  }
  if (const GgufArray* ty = f.get_array("tokenizer.ggml.token_type")) {
    if (ty->items.size() != n) throw std::runtime_error(fmt::format("'{}': tokenizer token types and tokens differ in length", f.path()));
    for (size_t i = 0; i < n; ++i) v.attr[i] = attr_of_token_type(ty->items[i].as_int());
  }
  for (size_t i = 0; i < n; ++i) v.index.emplace(v.text[i], static_cast<int32_t>(i));
  return v;
}

bool is_c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

}  // namespace

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
  tok->vocab_ = read_vocab(f, *tokens);
  tok->read_special_ids(f);
  tok->end_ids_ = apply_llamacpp_token_rules(tok->vocab_, f, tok->eos_);
  tok->build_special_cache();
  if (auto* sp = dynamic_cast<SpmTokenizer*>(tok.get())) sp->finish_init();
  return tok;
}

void Tokenizer::read_special_ids(const GgufFile& f) {
  const bool spm = model_ == "llama";
  const int64_t n = vocab_.size();
  auto id_or = [&](const char* key, int64_t def) {
    const int64_t id = f.get_int_or(key, def);
    return (id >= 0 && id < n) ? static_cast<int32_t>(id) : -1;
  };
  bos_ = id_or("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  eos_ = id_or("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  add_bos_ = f.get_bool_or("tokenizer.ggml.add_bos_token", spm || bpe_adds_bos_by_default(pre_)) && bos_ >= 0;
  add_eos_ = f.get_bool_or("tokenizer.ggml.add_eos_token", false) && eos_ >= 0;
}

void Tokenizer::build_special_cache() {
  specials_.clear();
  for (int32_t id = 0; id < vocab_.size(); ++id)
    if (vocab_.has_attr(id, kAttrControl | kAttrUserDefined | kAttrUnknown)) specials_.push_back(id);
  // std::sort, not stable_sort: llama.cpp orders its cache this way, and among tokens of
  // equal length the order decides which of two overlapping ones is matched.
  std::sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
    return vocab_.text[static_cast<size_t>(a)].size() > vocab_.text[static_cast<size_t>(b)].size();
  });
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::binary_search(end_ids_.begin(), end_ids_.end(), id);
}

// Splits the text around special-token strings, longest token first, as llama.cpp's
// tokenizer_st_partition does. Control and unknown tokens only count with
// parse_special; user-defined ones always. lstrip/rstrip tokens take the ASCII
// whitespace next to them along.
std::vector<Tokenizer::Fragment> Tokenizer::split_on_specials(const std::string& text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (!text.empty()) frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : specials_) {
    const uint32_t attr = vocab_.attr[static_cast<size_t>(id)];
    if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string& needle = vocab_.text[static_cast<size_t>(id)];
    const auto occurs_in = [&](const Fragment& f) {
      return f.token < 0 && std::string_view(text.data(), f.end).find(needle, f.begin) != std::string_view::npos;
    };
    if (std::none_of(frags.begin(), frags.end(), occurs_in)) continue;

    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t begin = f.begin;
      for (;;) {
        const size_t at = std::string_view(text.data(), f.end).find(needle, begin);
        if (at == std::string_view::npos) {
          if (begin < f.end) next.push_back({-1, begin, f.end});
          break;
        }
        size_t left_end = at;
        if (attr & kAttrLstrip)
          while (left_end > begin && is_c_space(text[left_end - 1])) --left_end;
        if (left_end > begin) next.push_back({-1, begin, left_end});
        next.push_back({id, 0, 0});
        begin = at + needle.size();
        if (attr & kAttrRstrip)
          while (begin < f.end && is_c_space(text[begin])) ++begin;
      }
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos, bool parse_special) const {
  return encode_fragments(text, split_on_specials(text, parse_special), add_bos);
}

std::vector<int32_t> Tokenizer::encode_parts(const std::vector<TextPart>& parts, bool add_bos) const {
  std::string text;
  std::vector<Fragment> frags;
  const auto add_text = [&](size_t begin, size_t end) {
    if (begin == end) return;
    if (!frags.empty() && frags.back().token < 0 && frags.back().end == begin) frags.back().end = end;  // one run of text
    else frags.push_back({-1, begin, end});
  };
  for (const TextPart& p : parts) {
    const size_t offset = text.size();
    text += p.text;
    for (const Fragment& f : split_on_specials(p.text, p.parse_special)) {
      if (f.token >= 0) frags.push_back(f);
      else add_text(offset + f.begin, offset + f.end);
    }
  }
  return encode_fragments(text, frags, add_bos);
}

std::vector<int32_t> Tokenizer::encode_fragments(const std::string& text, const std::vector<Fragment>& frags,
                                                 bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos && add_bos_) out.push_back(bos_);
  bool after_special = true;  // the start of the text counts as following a special token
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_fragment(text.substr(f.begin, f.end - f.begin), after_special, out);
      after_special = false;
    }
  }
  return out;
}

// As llama.cpp's token_to_piece: control and unknown tokens only when special is asked
// for; tokens that are neither normal, byte nor special (unused ones) render as nothing.
std::string Tokenizer::piece(int32_t id, bool special) const {
  if (id < 0 || id >= vocab_.size()) return {};
  const std::string& text = vocab_.text[static_cast<size_t>(id)];
  if (vocab_.has_attr(id, kAttrControl | kAttrUnknown)) return special ? text : std::string();
  if (vocab_.has_attr(id, kAttrUserDefined)) return text;
  if (vocab_.has_attr(id, kAttrNormal)) return normal_piece(id);
  if (vocab_.has_attr(id, kAttrByte) && text.size() == 6 && text.rfind("<0x", 0) == 0)
    return std::string(1, static_cast<char>(std::strtol(text.substr(3, 2).c_str(), nullptr, 16)));
  return {};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string s;
  for (int32_t id : ids) s += piece(id, special);
  return s;
}

}  // namespace kvsqueeze
