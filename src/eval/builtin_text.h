// The text fidelity and ppl read when no --text is given: an original story in plain,
// simple English (the register small story models were trained on), about 1,300 words.
#pragma once

#include <string>

namespace kvsqueeze::eval {

const std::string& builtin_text();

}  // namespace kvsqueeze::eval
