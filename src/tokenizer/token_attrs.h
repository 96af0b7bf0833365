// Token attributes beyond what GGUF's token_type says: llama.cpp derives more from token
// texts and model names (it promotes end-of-turn and fill-in-the-middle tokens to
// control tokens, gives Phi-3's special tokens rstrip ...). Matching it token for token
// needs the same rules.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

// Attributes of a GGUF token_type value (unknown values are Undefined, as in llama.cpp).
uint32_t attr_of_token_type(int64_t gguf_token_type);

// Applies llama.cpp's text- and name-based rules to v.attr and returns the ids that end
// a generation. eos: the EOS id, or -1.
std::vector<int32_t> apply_llamacpp_token_rules(Vocab& v, const GgufFile& f, int32_t eos);

}  // namespace kvsqueeze
