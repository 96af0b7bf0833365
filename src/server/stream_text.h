// Generated text on its way to a client: pieces go out as soon as they are final. Text
// that could still turn into a stop string, or a UTF-8 character cut between two
// tokens, is held back until the next piece decides it.
#pragma once

#include <string>
#include <vector>

namespace kvsqueeze {

class StreamText {
 public:
  explicit StreamText(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {}
  // Adds a token's bytes; returns what may be sent now. After a stop string appears,
  // stopped() is true and the text up to it (the stop string excluded) has been returned.
  std::string add(const std::string& piece);
  // What is left at the end of the generation.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

// Bytes at the end of s that begin a UTF-8 character not yet complete (0 to 3).
size_t incomplete_utf8_tail(const std::string& s);

}  // namespace kvsqueeze
