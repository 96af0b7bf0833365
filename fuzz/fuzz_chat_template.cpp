// Fuzz target: chat templates. The input is read as a conversation (messages separated by
// '\0', each "role\ncontent") and rendered in every family, whole and split around a
// context, then tokenized with markup special and contents plain; the whole input is also
// offered as a template text to recognise. Bad roles and unknown templates must raise
// std::invalid_argument; the contents must never turn into turn markers.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "gguf/gguf_file.h"
#include "runtime/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace kvsqueeze;

namespace {

std::vector<ChatMessage> conversation(const std::string& text) {
  std::vector<ChatMessage> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find('\0', at), text.size());
    const std::string m = text.substr(at, end - at);
    const size_t nl = m.find('\n');
    out.push_back({m.substr(0, nl), nl == std::string::npos ? "" : m.substr(nl + 1)});
    at = end + 1;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const GgufFile f(fuzz::shared_file("vocab/ggml-vocab-qwen2.gguf"));
    return Tokenizer::from_gguf(f);
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)chat_template_from(text);
  } catch (const std::invalid_argument&) {
  }
  const std::vector<ChatMessage> messages = conversation(text);
  for (const char* family : {"{{ '<|im_start|>' }}", "<|start_header_id|><|eot_id|>", "[INST] [/INST]", "<start_of_turn>"}) {
    const ChatTemplate t = chat_template_from(family);
    try {
      const std::vector<ChatPart> parts = render_chat_parts(t, messages);
      const std::vector<int32_t> ids = encode_chat(*tok, parts, true);
      // Only the template's markup may become control tokens (those that render as ""
      // unless asked to show specials): no more of them than the markup alone gives.
      const auto controls = [&](const std::vector<int32_t>& v) {
        size_t n = 0;
        for (int32_t id : v) n += tok->piece(id, false) != tok->piece(id, true);
        return n;
      };
      size_t markup = tok->adds_bos() ? 1 : 0;
      for (const ChatPart& p : parts)
        if (!p.content) markup += controls(tok->encode(p.text, false, true));
      if (controls(ids) > markup) __builtin_trap();  // a message forged a turn marker
      if (messages.size() >= 2) (void)split_turn_parts(t, messages[0].content, messages[1].content);
    } catch (const std::invalid_argument&) {
    }
  }
  return 0;
}
