#include "tokenizer/token_attrs.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <string_view>

#include "gguf/gguf_file.h"

namespace kvsqueeze {
namespace {

// Fill-in-the-middle roles. Without an id in the metadata llama.cpp takes a token by its
// text and makes it a control token; the last three also end a generation.
struct FimRole {
  const char* key;
  const char* old_key;  // deprecated key name, or nullptr
  std::vector<std::string_view> texts;
  bool ends_generation;
};

const std::vector<FimRole>& fim_roles() {
  static const std::vector<FimRole> roles = {
      {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id",
       {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}, false},
      {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id",
       {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}, false},
      {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id",
       {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}, false},
      {"tokenizer.ggml.fim_pad_token_id", nullptr, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}, true},
      {"tokenizer.ggml.fim_rep_token_id", nullptr, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}, true},
      {"tokenizer.ggml.fim_sep_token_id", nullptr, {"<|file_sep|>"}, true},
  };
  return roles;
}

// Texts that end a generation; llama.cpp also makes each a control token. (Its
// end-of-turn and end-of-message look-ups by text find only tokens of this list.)
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["};

// gpt-oss: llama.cpp renders these always, as user-defined tokens.
constexpr std::string_view kAlwaysUserDefined[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};

int32_t id_from_metadata(const GgufFile& f, const char* key, int32_t n_vocab) {
  if (!key || !f.has(key)) return -1;
  const int64_t id = f.get_int_or(key, -1);
  return (id >= 0 && id < n_vocab) ? static_cast<int32_t>(id) : -1;
}

// llama.cpp takes the first hit in hash-map order; the lowest id is the same whenever
// a vocabulary has only one of the texts, which is the normal case.
int32_t find_first_of_texts(const Vocab& v, const std::vector<std::string_view>& texts) {
  int32_t best = -1;
  for (std::string_view t : texts) {
    const int32_t id = v.find(std::string(t));
    if (id >= 0 && (best < 0 || id < best)) best = id;
  }
  return best;
}

void add_attr(Vocab& v, int32_t id, uint32_t bits) { v.attr[static_cast<size_t>(id)] |= bits; }
void clear_attr(Vocab& v, int32_t id, uint32_t bits) { v.attr[static_cast<size_t>(id)] &= ~bits; }

void apply_fim_roles(Vocab& v, const GgufFile& f, std::set<int32_t>& eog) {
  for (const FimRole& role : fim_roles()) {
    int32_t id = id_from_metadata(f, role.key, v.size());
    if (id < 0) id = id_from_metadata(f, role.old_key, v.size());
    if (id < 0) {
      id = find_first_of_texts(v, role.texts);
      if (id >= 0) add_attr(v, id, kAttrControl);
    }
    if (id >= 0 && role.ends_generation) eog.insert(id);
  }
}

// Control tokens named "unused" are placeholders.
void mark_unused(Vocab& v) {
  for (int32_t id = 0; id < v.size(); ++id)
    if (v.has_attr(id, kAttrControl) && v.text[static_cast<size_t>(id)].find("unused") != std::string::npos)
      add_attr(v, id, kAttrUnused);
}

void apply_end_of_generation_texts(Vocab& v, std::set<int32_t>& eog) {
  for (std::string_view t : kEndOfGenerationTexts) {
    const int32_t id = v.find(std::string(t));
    if (id < 0) continue;
    eog.insert(id);
    add_attr(v, id, kAttrControl);
  }
  for (std::string_view t : kAlwaysUserDefined) {
    const int32_t id = v.find(std::string(t));
    if (id >= 0) v.attr[static_cast<size_t>(id)] = kAttrUserDefined;
  }
}

bool eog_has_text(const Vocab& v, const std::set<int32_t>& eog, std::string_view text) {
  const int32_t id = v.find(std::string(text));
  return id >= 0 && eog.count(id) > 0;
}

// Two vocabularies where llama.cpp takes a listed token back out of the end set:
// harmony-style ones (<|end|> separates messages there) and ones where </s> is text.
void apply_end_of_generation_exceptions(Vocab& v, std::set<int32_t>& eog) {
  const bool has_call = eog_has_text(v, eog, "<|call|>") || eog_has_text(v, eog, "<|calls|>");
  const bool has_end = eog_has_text(v, eog, "<|end|>");
  if (has_call && has_end && (eog_has_text(v, eog, "<|return|>") || eog_has_text(v, eog, "<|flush|>"))) {
    const int32_t end = v.find("<|end|>");
    eog.erase(end);
    v.attr[static_cast<size_t>(end)] = kAttrUserDefined;
  }
  if (eog_has_text(v, eog, "<|tool_response>") && eog_has_text(v, eog, "</s>")) {
    const int32_t s = v.find("</s>");
    eog.erase(s);
    v.attr[static_cast<size_t>(s)] = kAttrNormal;
  }
}

bool contains_any(const std::string& s, std::initializer_list<std::string_view> parts) {
  return std::any_of(parts.begin(), parts.end(), [&](std::string_view p) { return s.find(p) != std::string::npos; });
}

void set_attr_if_present(Vocab& v, const char* text, uint32_t bits, bool on) {
  const int32_t id = v.find(text);
  if (id < 0) return;
  if (on) add_attr(v, id, bits);
  else clear_attr(v, id, bits);
}

// Whitespace-stripping attributes that llama.cpp keys on model and tokenizer names,
// since GGUF does not store them.
void apply_strip_rules(Vocab& v, const GgufFile& f) {
  std::string name = f.get_string_or("general.name", "");
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const std::string pre = f.get_string_or("tokenizer.ggml.pre", "");
  const std::string arch = f.get_string_or("general.architecture", "");
  if (contains_any(pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) || contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
    set_attr_if_present(v, "<mask>", kAttrLstrip, true);
  } else if (contains_any(name, {"phi-3", "phi3"})) {
    for (int32_t id = 0; id < v.size(); ++id)
      if (v.has_attr(id, kAttrControl | kAttrUserDefined | kAttrUnknown)) add_attr(v, id, kAttrRstrip);
    set_attr_if_present(v, "</s>", kAttrRstrip, true);
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr_if_present(v, t, kAttrRstrip, false);
  } else if (contains_any(name, {"modern-bert"})) {
    set_attr_if_present(v, "[MASK]", kAttrLstrip, true);
  }
}

}  // namespace

uint32_t attr_of_token_type(int64_t gguf_token_type) {
  switch (static_cast<TokenType>(gguf_token_type)) {
    case TokenType::Normal: return kAttrNormal;
    case TokenType::Unknown: return kAttrUnknown;
    case TokenType::Control: return kAttrControl;
    case TokenType::UserDefined: return kAttrUserDefined;
    case TokenType::Unused: return kAttrUnused;
    case TokenType::Byte: return kAttrByte;
    default: return kAttrUndefined;
  }
}

std::vector<int32_t> apply_llamacpp_token_rules(Vocab& v, const GgufFile& f, int32_t eos) {
  std::set<int32_t> eog;
  apply_fim_roles(v, f, eog);
  mark_unused(v);
  apply_end_of_generation_texts(v, eog);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = id_from_metadata(f, key, v.size());
    if (id >= 0) eog.insert(id);
  }
  if (eos >= 0) eog.insert(eos);
  apply_end_of_generation_exceptions(v, eog);
  apply_strip_rules(v, f);
  return {eog.begin(), eog.end()};
}

}  // namespace kvsqueeze
