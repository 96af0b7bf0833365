// Generated long-context tasks: needle-in-a-haystack and the RULER-style synthetic tasks.
// Every sample is a pure function of (seed, its grid coordinates), so a grid can be rerun
// or resumed in any order and gives the same prompts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/qa_sample.h"

namespace kvsqueeze {
class Tokenizer;
}

namespace kvsqueeze::eval {

// Filler text as a list of sentences.
class Haystack {
 public:
  // Every non-empty line of the file, split into sentences. A leading verse reference
  // such as "Ge1:1 " (what `bible -f` prints) is dropped. Throws when nothing is left.
  static Haystack from_file(const std::string& path);
  // Plain generated sentences ("The old miller carried a basket to the bridge."), for
  // when no file is given.
  static Haystack generated(uint64_t seed = 7);
  const std::vector<std::string>& sentences() const { return sentences_; }

 private:
  std::vector<std::string> sentences_;
};

struct SyntheticOptions {
  std::vector<int64_t> lengths;       // prompt tokens (context + question), at most
  std::vector<double> depths;         // niah: needle depth in percent of the context
  int samples = 1;                    // per grid point
  uint64_t seed = 0;
  std::vector<std::string> subtasks;  // ruler: which variants (empty: all)
};

// One needle "The special magic number for WORD is NUMBER." per prompt, at each depth of
// each length; the question asks for WORD's number. Score: the number is in the answer.
std::vector<QaSample> niah_samples(const Tokenizer& tok, const Haystack& hay, const SyntheticOptions& o);

// niah_single_number, niah_single_word, niah_single_uuid, niah_multikey, niah_multivalue,
// niah_multiquery, variable_tracking, common_words, frequent_words.
const std::vector<std::string>& ruler_subtasks();
std::vector<QaSample> ruler_samples(const Tokenizer& tok, const Haystack& hay, const SyntheticOptions& o);

}  // namespace kvsqueeze::eval
