#include "runtime/chat_template.h"

#include <stdexcept>

#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

namespace {

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// The first literal system text after `open` (no template expressions in it).
std::string system_text_after(const std::string& t, const std::string& open) {
  for (size_t at = t.find(open); at != std::string::npos; at = t.find(open, at + 1)) {
    const size_t start = at + open.size();
    const size_t end = t.find("<|im_end|>", start);
    if (end == std::string::npos) break;
    const std::string text = t.substr(start, end - start);
    if (!text.empty() && text.find('{') == std::string::npos && text.find('\'') == std::string::npos) return text;
  }
  return "";
}

// Qwen- and SmolLM2-style templates write a literal system turn for conversations without
// one: "<|im_start|>system\nYou are ...<|im_end|>". Take that text from the template. The
// newline after "system" is an escape inside the template's string literal (Qwen) or a
// real newline (SmolLM2).
std::string default_system_prompt(const std::string& t) {
  for (const std::string open : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
    const std::string text = system_text_after(t, open);
    if (!text.empty()) return text;
  }
  return "";
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

void check_role(const std::string& role) {
  if (role != "system" && role != "user" && role != "assistant")
    throw std::invalid_argument("message role must be system, user or assistant, not '" + role + "'");
}

// For formats without a system role: trimmed user and assistant messages, the (last)
// system message's text opening the first user message.
std::vector<ChatMessage> system_into_first_user(const std::vector<ChatMessage>& messages) {
  std::string system;
  bool first_user = true;
  std::vector<ChatMessage> out;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system = trim(m.content);
      continue;
    }
    ChatMessage t{m.role, trim(m.content)};
    if (m.role == "user" && first_user && !system.empty()) t.content = system + "\n\n" + t.content;
    if (m.role == "user") first_user = false;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

std::string ChatTemplate::name() const {
  switch (format) {
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Mistral: return "mistral";
    case ChatFormat::Gemma: return "gemma";
    default: return "chatml";
  }
}

ChatTemplate chat_template_from(const std::string& text) {
  ChatTemplate t;
  if (text.empty()) return t;
  if (contains(text, "<|start_header_id|>") && contains(text, "<|eot_id|>")) {
    t.format = ChatFormat::Llama3;
  } else if (contains(text, "<start_of_turn>")) {
    t.format = ChatFormat::Gemma;
  } else if (contains(text, "<|im_start|>")) {
    t.format = ChatFormat::ChatML;
    t.default_system = default_system_prompt(text);
  } else if (contains(text, "[INST]") && contains(text, "[/INST]")) {
    t.format = ChatFormat::Mistral;
  } else {
    throw std::invalid_argument("this model's chat template is not one kvsqueeze can render (supported families: "
                                "llama3, chatml/qwen2, mistral, gemma); use /v1/completions with your own prompt");
  }
  return t;
}

ChatTemplate chat_template_for(const std::string& template_text, const Tokenizer& tok) {
  if (!template_text.empty()) return chat_template_from(template_text);
  ChatTemplate t;
  if (tok.vocab().find("<start_of_turn>") >= 0 && tok.vocab().find("<end_of_turn>") >= 0) t.format = ChatFormat::Gemma;
  else if (tok.vocab().find("<|start_header_id|>") >= 0 && tok.vocab().find("<|eot_id|>") >= 0) t.format = ChatFormat::Llama3;
  return t;
}

std::vector<ChatPart> render_chat_parts(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) {
  if (messages.empty()) throw std::invalid_argument("messages must not be empty");
  for (const ChatMessage& m : messages) check_role(m.role);
  std::vector<ChatPart> out;
  const auto markup = [&](std::string s) { out.push_back({std::move(s), false}); };
  const auto content = [&](std::string s) { out.push_back({std::move(s), true}); };
  switch (t.format) {
    case ChatFormat::Llama3:
      for (const ChatMessage& m : messages) {
        markup("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n");
        content(trim(m.content));
        markup("<|eot_id|>");
      }
      if (add_generation_prompt) markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
    case ChatFormat::ChatML:
      if (messages.front().role != "system" && !t.default_system.empty())
        markup("<|im_start|>system\n" + t.default_system + "<|im_end|>\n");
      for (const ChatMessage& m : messages) {
        markup("<|im_start|>" + m.role + "\n");
        content(m.content);
        markup("<|im_end|>\n");
      }
      if (add_generation_prompt) markup("<|im_start|>assistant\n");
      break;
    case ChatFormat::Mistral:
      // [INST] user [/INST]assistant</s>[INST] ...
      for (const ChatMessage& m : system_into_first_user(messages)) {
        if (m.role == "user") markup("[INST] ");
        content(m.content);
        markup(m.role == "user" ? " [/INST]" : "</s>");
      }
      break;
    case ChatFormat::Gemma:
      // <start_of_turn>user\n...<end_of_turn>\n, the assistant's turns as "model".
      for (const ChatMessage& m : system_into_first_user(messages)) {
        markup("<start_of_turn>" + std::string(m.role == "user" ? "user" : "model") + "\n");
        content(m.content);
        markup("<end_of_turn>\n");
      }
      if (add_generation_prompt) markup("<start_of_turn>model\n");
      break;
  }
  return out;
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatPart& p : render_chat_parts(t, messages, add_generation_prompt)) out += p.text;
  return out;
}

std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::vector<ChatPart>& parts, bool add_bos) {
  std::vector<Tokenizer::TextPart> text;
  for (const ChatPart& p : parts) text.push_back({p.text, !p.content});
  return tok.encode_parts(text, add_bos);
}

std::pair<std::vector<ChatPart>, std::vector<ChatPart>> split_turn_parts(const ChatTemplate& t,
                                                                          const std::string& context,
                                                                          const std::string& question) {
  const std::vector<ChatPart> parts = render_chat_parts(t, {{"user", context + question}});
  // Templates may trim the turn at either end (its end is the context's when the question
  // is empty): the cut goes after the context's last character that is not a space.
  const size_t first = context.find_first_not_of(" \t\n\r");
  if (first == std::string::npos) throw std::invalid_argument("the context is empty");
  const std::string trimmed = context.substr(first, context.find_last_not_of(" \t\n\r") + 1 - first);
  for (size_t i = 0; i < parts.size(); ++i) {
    const size_t at = parts[i].content ? parts[i].text.find(trimmed) : std::string::npos;
    if (at == std::string::npos) continue;
    const size_t cut = at + trimmed.size();
    std::vector<ChatPart> head(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(i)), tail;
    head.push_back({parts[i].text.substr(0, cut), true});
    if (cut < parts[i].text.size()) tail.push_back({parts[i].text.substr(cut), true});
    tail.insert(tail.end(), parts.begin() + static_cast<std::ptrdiff_t>(i) + 1, parts.end());
    return {std::move(head), std::move(tail)};
  }
  throw std::logic_error("the chat template changed the context");
}

std::pair<std::string, std::string> split_turn_after_context(const ChatTemplate& t, const std::string& context,
                                                             const std::string& question) {
  const auto [head, tail] = split_turn_parts(t, context, question);
  std::pair<std::string, std::string> out;
  for (const ChatPart& p : head) out.first += p.text;
  for (const ChatPart& p : tail) out.second += p.text;
  return out;
}

}  // namespace kvsqueeze
