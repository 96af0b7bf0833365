// Chat prompts for the common model families. kvsqueeze does not run Jinja: it recognises
// the family from the GGUF's tokenizer.chat_template and renders that family's format
// (what the template would produce for plain text messages). A template it does not
// recognise is refused with a clear error rather than guessed at.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvsqueeze {

enum class ChatFormat { Llama3, ChatML, Mistral, Gemma };

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

struct ChatTemplate {
  ChatFormat format = ChatFormat::ChatML;
  std::string default_system;  // ChatML templates that add a system turn when none is given
  std::string name() const;
};

class Tokenizer;

// The family of a template text; a model without a template gets ChatML (what llama.cpp
// falls back to as well). Throws std::invalid_argument naming the supported families
// when the text is none of them.
ChatTemplate chat_template_from(const std::string& template_text);
// The same, except that a model without a template gets the family whose turn markers its
// vocabulary holds (Gemma's <start_of_turn>, Llama 3's header tokens) before ChatML:
// base Gemma 3 files carry no template but were trained with those markers.
ChatTemplate chat_template_for(const std::string& template_text, const Tokenizer& tok);

// The prompt for `messages` followed (add_generation_prompt) by the opening of the
// assistant's turn. BOS is not included: the tokenizer adds it when the model wants one.
// A rendering of the first k messages is a prefix of the rendering of all of them.
// Throws std::invalid_argument for an unknown role or an empty conversation.
std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt = true);

// The same rendering as parts: the template's markup, and the messages' contents.
struct ChatPart {
  std::string text;
  bool content = false;  // a message's text (its special-token spellings stay plain text)
};
std::vector<ChatPart> render_chat_parts(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt = true);
// Token ids of rendered parts: the markup's special tokens are special, a message's text
// never is, so content such as "<|im_end|>" cannot close its turn or open another.
std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::vector<ChatPart>& parts, bool add_bos);

// One user turn holding `context` then `question`, rendered and cut right after the
// context: {the opening of the conversation up to the context's end, the rest (question,
// end of turn, opening of the assistant's turn)}. Question-agnostic compression reads the
// first part alone. Throws std::invalid_argument when the context is blank, and
// std::logic_error if the template altered it.
std::pair<std::string, std::string> split_turn_after_context(const ChatTemplate& t, const std::string& context,
                                                             const std::string& question);
// The same cut as parts, for encode_chat: the context and the question are message text,
// so their special-token spellings stay plain text (a document holding "<|im_end|>"
// cannot close the turn).
std::pair<std::vector<ChatPart>, std::vector<ChatPart>> split_turn_parts(const ChatTemplate& t,
                                                                          const std::string& context,
                                                                          const std::string& question);

}  // namespace kvsqueeze
