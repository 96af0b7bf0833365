#include "eval/synthetic.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "tokenizer/tokenizer.h"

namespace kvsqueeze::eval {
namespace {

// Needle keys and word values: ordinary nouns (the retrieval-1k model's needles use such).
const std::vector<std::string> kKeys{
    "apple",  "river",  "candle", "falcon", "garden", "lantern", "mirror", "orchard", "silver", "thunder", "violet",
    "willow", "harbor", "meadow", "copper", "ember",  "anchor", "basket", "canyon",  "desert", "feather", "glacier",
    "hammer", "island", "jungle", "kettle", "ladder", "marble", "needle", "oyster",  "pepper", "quartz",  "ribbon",
    "saddle", "tiger",  "valley", "wagon",  "yellow", "zephyr", "blossom", "cobalt", "dragon", "fountain", "granite",
    "helmet", "ivory",  "jasmine", "lemon", "magnet", "nectar", "onion", "parrot",  "rocket", "spider",  "tunnel"};

// splitmix64: turns grid coordinates into independent seeds.
uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h + 0x9E3779B97F4A7C15ull + v * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t seed_for(uint64_t seed, const std::string& task, int64_t length, int64_t a, int64_t b) {
  uint64_t h = mix(seed, std::hash<std::string>{}(task) & 0xFFFFFFFFull);
  h = mix(h, static_cast<uint64_t>(length));
  h = mix(h, static_cast<uint64_t>(a));
  return mix(h, static_cast<uint64_t>(b));
}

std::string pick(std::mt19937_64& rng, const std::vector<std::string>& from) { return from[rng() % from.size()]; }

// Distinct keys in random order.
std::vector<std::string> distinct_keys(std::mt19937_64& rng, size_t n) {
  std::vector<std::string> k = kKeys;
  std::shuffle(k.begin(), k.end(), rng);
  k.resize(n);
  return k;
}

std::string number_value(std::mt19937_64& rng) { return std::to_string(1000000 + rng() % 9000000); }

std::string uuid_value(std::mt19937_64& rng) {
  const char* hex = "0123456789abcdef";
  std::string s;
  for (int group : {8, 4, 4, 4, 12}) {
    if (!s.empty()) s += '-';
    for (int i = 0; i < group; ++i) s += hex[rng() % 16];
  }
  return s;
}

// Pronounceable made-up words, all distinct ("bakoru", "timela").
std::vector<std::string> pseudo_words(std::mt19937_64& rng, size_t n) {
  const std::string cons = "bdfgklmnprstvz", vow = "aeiou";
  std::set<std::string> seen;
  std::vector<std::string> out;
  while (out.size() < n) {
    std::string w;
    const int syllables = 2 + static_cast<int>(rng() % 2);
    for (int s = 0; s < syllables; ++s) {
      w += cons[rng() % cons.size()];
      w += vow[rng() % vow.size()];
    }
    if (seen.insert(w).second) out.push_back(w);
  }
  return out;
}

int64_t count_tokens(const Tokenizer& tok, const std::string& text, bool bos) {
  return static_cast<int64_t>(tok.encode(text, bos, false).size());
}

void require_room(int64_t room, int64_t length, const std::string& what) {
  if (room <= 0)
    throw std::invalid_argument(fmt::format("a {}-token prompt has no room for filler around the {}", length, what));
}

// Tokens a sentence adds after a space. SentencePiece's dummy prefix already stands for
// the space; byte-level BPE folds the space into the first word.
int64_t sentence_cost(const Tokenizer& tok, const std::string& s) {
  return count_tokens(tok, tok.model_name() == "llama" ? s : " " + s, false);
}

// Filler sentences from `start` (wrapping) with each insert placed at its depth (0..1),
// joined so that context + question fit in `length` tokens, as close to it as they go.
std::string build_context(const Tokenizer& tok, const Haystack& hay, size_t start,
                          const std::vector<std::pair<double, std::string>>& inserts, const std::string& question,
                          int64_t length) {
  const auto& sent = hay.sentences();
  const int64_t q_tokens = count_tokens(tok, question, false);
  int64_t fixed = q_tokens + (tok.adds_bos() ? 1 : 0);
  for (const auto& [d, s] : inserts) fixed += sentence_cost(tok, s);
  const int64_t room = length - fixed;
  require_room(room, length, "question and needles");
  std::vector<std::string> filler;
  int64_t used = 0;
  size_t next = start;
  for (;; ++next) {
    const std::string& s = sent[next % sent.size()];
    const int64_t n = sentence_cost(tok, s);
    if (used + n > room) break;
    used += n;
    filler.push_back(s);
  }
  // Inserts go in from the deepest so earlier positions stay valid; equal depths keep order.
  std::vector<std::pair<double, std::string>> order = inserts;
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  auto compose = [&](const std::vector<std::string>& f) {
    std::vector<std::string> parts = f;
    for (const auto& [depth, s] : order) {
      const auto at = static_cast<size_t>(std::llround(std::clamp(depth, 0.0, 1.0) * static_cast<double>(f.size())));
      parts.insert(parts.begin() + static_cast<std::ptrdiff_t>(at), s);
    }
    std::string context;
    for (const auto& p : parts) context += (context.empty() ? "" : " ") + p;
    return context;
  };
  auto fits = [&](const std::string& context) { return count_tokens(tok, context, true) + q_tokens <= length; };
  // Pieces tokenized apart can differ from the whole by a token here and there: settle it.
  std::string context = compose(filler);
  while (!fits(context) && !filler.empty()) {
    filler.pop_back();
    context = compose(filler);
  }
  for (int tries = 0; tries < 4; ++tries) {
    filler.push_back(sent[next++ % sent.size()]);
    std::string longer = compose(filler);
    if (!fits(longer)) break;
    context = std::move(longer);
  }
  return context;
}

// A generated context whose size grows with `scale`: the largest scale that fits.
std::string fit_generated(const Tokenizer& tok, const std::string& question, int64_t length,
                          const std::function<std::string(int64_t)>& build, int64_t first_guess) {
  const int64_t q = count_tokens(tok, question, false);
  int64_t scale = std::max<int64_t>(1, first_guess);
  for (int iter = 0; iter < 40; ++iter) {
    std::string context = build(scale);
    const int64_t total = count_tokens(tok, context, true) + q;
    if (total <= length) return context;
    const int64_t next = static_cast<int64_t>(static_cast<double>(scale) * static_cast<double>(length - q) /
                                              static_cast<double>(total) * 0.98);
    scale = std::min(scale - 1, next);
    if (scale < 1) break;
  }
  throw std::invalid_argument(fmt::format("a {}-token prompt is too short for this task", length));
}

void check_lengths(const SyntheticOptions& o) {
  if (o.lengths.empty()) throw std::invalid_argument("no context lengths given");
  for (auto l : o.lengths)
    if (l < 16) throw std::invalid_argument(fmt::format("context length {} is too short (16 tokens at least)", l));
  if (o.samples < 1) throw std::invalid_argument("--samples must be at least 1");
}

QaSample needle_sample(const Tokenizer& tok, const Haystack& hay, std::mt19937_64& rng, int64_t length,
                       const std::string& kind, const std::vector<std::string>& keys,
                       const std::vector<std::string>& values, const std::vector<size_t>& asked, bool one_key) {
  // one_key: every value belongs to keys[0] (multi-value); else value i belongs to keys[i].
  std::vector<std::pair<double, std::string>> needles;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string& key = one_key ? keys[0] : keys[i];
    needles.emplace_back(static_cast<double>(rng() % 1001) / 1000.0,
                         fmt::format("The special magic {} for {} is {}.", kind, key, values[i]));
  }
  QaSample s;
  if (one_key && values.size() > 1) {
    s.question = fmt::format(" What are all the special magic {}s for {}? The special magic {}s for {} are", kind,
                             keys[0], kind, keys[0]);
    s.answers = values;
  } else if (asked.size() > 1) {
    std::string list;
    for (size_t i = 0; i < asked.size(); ++i)
      list += (i == 0 ? "" : i + 1 == asked.size() ? " and " : ", ") + keys[asked[i]];
    s.question = fmt::format(" What are the special magic {}s for {}? The special magic {}s for {} are", kind, list,
                             kind, list);
    for (auto a : asked) s.answers.push_back(values[a]);
  } else {
    const std::string& key = keys[asked[0]];
    s.question = fmt::format(" What is the special magic {} for {}? The special magic {} for {} is", kind, key, kind, key);
    s.answers = {values[asked[0]]};
  }
  s.context = build_context(tok, hay, rng() % hay.sentences().size(), needles, s.question, length);
  s.metric = AnswerMetric::StringMatchAll;
  s.max_new_tokens = kind == "uuid" ? 64 : 16 * static_cast<int>(s.answers.size());
  return s;
}

QaSample variable_tracking(const Tokenizer& tok, const Haystack& hay, std::mt19937_64& rng, int64_t length) {
  const int hops = 4;
  std::set<std::string> names;
  while (names.size() < hops + 1) {
    std::string n;
    for (int i = 0; i < 5; ++i) n += static_cast<char>('A' + rng() % 26);
    names.insert(n);
  }
  std::vector<std::string> vars(names.begin(), names.end());
  std::shuffle(vars.begin(), vars.end(), rng);
  const std::string value = std::to_string(10000 + rng() % 90000);
  std::vector<double> depths;
  for (int i = 0; i <= hops; ++i) depths.push_back(static_cast<double>(rng() % 1001) / 1000.0);
  std::sort(depths.begin(), depths.end());  // assignments appear in chain order
  std::vector<std::pair<double, std::string>> lines;
  lines.emplace_back(depths[0], fmt::format("VAR {} = {}.", vars[0], value));
  for (int i = 1; i <= hops; ++i) lines.emplace_back(depths[static_cast<size_t>(i)], fmt::format("VAR {} = VAR {}.", vars[static_cast<size_t>(i)], vars[static_cast<size_t>(i - 1)]));
  QaSample s;
  s.question = fmt::format(" Question: Which variables hold the value {}, directly or through the assignments above? "
                           "Answer: The variables holding {} are:", value, value);
  s.context = build_context(tok, hay, rng() % hay.sentences().size(), lines, s.question, length);
  s.answers = vars;
  s.max_new_tokens = 48;
  return s;
}

QaSample common_words(const Tokenizer& tok, std::mt19937_64& rng, int64_t length) {
  const size_t n_common = 10;
  const auto pool = pseudo_words(rng, 4096);
  const std::vector<std::string> common(pool.begin(), pool.begin() + n_common);
  QaSample s;
  s.question = "\nQuestion: What are the 10 most common words in the list above? Answer: The 10 most common words in "
               "the list are:";
  const uint64_t order_seed = rng();
  // scale = entries in the list; common words fill ~40% of it, each more often than any other.
  auto build = [&](int64_t entries) {
    const int64_t per_common = std::max<int64_t>(2, entries * 4 / 10 / static_cast<int64_t>(n_common));
    std::vector<std::string> list;
    for (const auto& w : common) list.insert(list.end(), static_cast<size_t>(per_common), w);
    for (size_t i = n_common; static_cast<int64_t>(list.size()) < entries && i < pool.size(); ++i) list.push_back(pool[i]);
    std::mt19937_64 shuffle_rng(order_seed);
    std::shuffle(list.begin(), list.end(), shuffle_rng);
    std::string text = "Below is a numbered list of words. A few of them appear many times; the rest appear once.\n";
    for (size_t i = 0; i < list.size(); ++i) text += fmt::format("{}. {} ", i + 1, list[i]);
    return text;
  };
  const int64_t per_entry = std::max<int64_t>(1, count_tokens(tok, build(100), false) / 100);
  s.context = fit_generated(tok, s.question, length, build, std::max<int64_t>(20, length / per_entry));
  s.answers = common;
  s.max_new_tokens = 120;
  return s;
}

QaSample frequent_words(const Tokenizer& tok, std::mt19937_64& rng, int64_t length) {
  const auto pool = pseudo_words(rng, 4096);
  QaSample s;
  s.question = "\nQuestion: Which three coded words appear most often in the text above? Answer: The three most "
               "frequent coded words are:";
  const uint64_t order_seed = rng();
  // scale = words in the text: rank r of a Zipf law (exponent 2) appears top/r² times,
  // and words used once fill the rest.
  auto build = [&](int64_t words) {
    const int64_t top = std::max<int64_t>(18, words * 6 / 10);
    std::vector<std::string> text_words;
    for (size_t r = 1; r < pool.size(); ++r) {
      const int64_t n = top / static_cast<int64_t>(r * r);
      if (n < 1) break;
      text_words.insert(text_words.end(), static_cast<size_t>(n), pool[r - 1]);
    }
    for (size_t i = 1000; static_cast<int64_t>(text_words.size()) < words && i < pool.size(); ++i) text_words.push_back(pool[i]);
    std::mt19937_64 shuffle_rng(order_seed);
    std::shuffle(text_words.begin(), text_words.end(), shuffle_rng);
    std::string text = "Read the coded text below and keep track of how often each coded word occurs.\n";
    for (const auto& w : text_words) text += w + " ";
    return text;
  };
  const int64_t per_word = std::max<int64_t>(1, count_tokens(tok, build(100), false) / 100);
  s.context = fit_generated(tok, s.question, length, build, std::max<int64_t>(30, length / per_word));
  s.answers = {pool[0], pool[1], pool[2]};
  s.max_new_tokens = 50;
  return s;
}

// Splits a line into sentences at ". ", "! " and "? ".
void add_sentences(const std::string& line, std::vector<std::string>& out) {
  size_t begin = 0;
  for (size_t i = 0; i + 1 < line.size(); ++i)
    if ((line[i] == '.' || line[i] == '!' || line[i] == '?') && line[i + 1] == ' ') {
      out.push_back(line.substr(begin, i + 1 - begin));
      begin = i + 2;
      while (begin < line.size() && line[begin] == ' ') ++begin;
      i = begin - 1;
    }
  if (begin < line.size()) out.push_back(line.substr(begin));
}

}  // namespace

Haystack Haystack::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read haystack '{}'", path));
  Haystack h;
  for (std::string line; std::getline(in, line);) {
    // Drop a verse reference ("Ge1:1 ", "1Co13:4 ") at the start of the line.
    size_t i = 0;
    while (i < line.size() && std::isalnum(static_cast<unsigned char>(line[i]))) ++i;
    if (i < line.size() && line[i] == ':' && i > 0 && std::isdigit(static_cast<unsigned char>(line[i - 1]))) {
      size_t j = i + 1;
      while (j < line.size() && std::isdigit(static_cast<unsigned char>(line[j]))) ++j;
      if (j > i + 1 && j < line.size() && line[j] == ' ') line.erase(0, j + 1);
    }
    const size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
    if (a == std::string::npos) continue;
    add_sentences(line.substr(a, b - a + 1), h.sentences_);
  }
  if (h.sentences_.empty()) throw std::invalid_argument(fmt::format("haystack '{}' has no text", path));
  return h;
}

Haystack Haystack::generated(uint64_t seed) {
  const std::vector<std::string> who{"The old miller", "A young shepherd", "The baker", "My neighbour", "The ferryman",
                                     "A tired traveller", "The teacher", "Her brother", "The gardener", "A small boy"};
  const std::vector<std::string> did{"carried a basket to", "walked slowly past", "painted a picture of",
                                     "told a long story about", "swept the path near", "waited quietly by",
                                     "sang a song beside", "found a coin under"};
  const std::vector<std::string> where{"the bridge", "the market", "the mill", "the chapel", "the orchard",
                                       "the harbour", "the school", "the stable", "the well", "the hill"};
  const std::vector<std::string> when{"in the morning", "before supper", "after the rain", "on Sunday",
                                      "at dusk", "every spring", "in winter", "at noon"};
  std::mt19937_64 rng(seed);
  Haystack h;
  for (int i = 0; i < 4000; ++i)
    h.sentences_.push_back(fmt::format("{} {} {} {}.", pick(rng, who), pick(rng, did), pick(rng, where), pick(rng, when)));
  return h;
}

std::vector<QaSample> niah_samples(const Tokenizer& tok, const Haystack& hay, const SyntheticOptions& o) {
  check_lengths(o);
  if (o.depths.empty()) throw std::invalid_argument("no needle depths given");
  for (double d : o.depths)
    if (!(d >= 0 && d <= 100)) throw std::invalid_argument(fmt::format("needle depth {} is outside 0..100", d));
  std::vector<QaSample> out;
  for (int64_t len : o.lengths)
    for (double depth : o.depths)
      for (int i = 0; i < o.samples; ++i) {
        std::mt19937_64 rng(seed_for(o.seed, "niah", len, std::llround(depth * 1000), i));
        const std::string key = pick(rng, kKeys), value = number_value(rng);
        QaSample s;
        s.question = fmt::format(" What is the special magic number for {}? The special magic number for {} is", key, key);
        s.context = build_context(tok, hay, rng() % hay.sentences().size(),
                                  {{depth / 100, fmt::format("The special magic number for {} is {}.", key, value)}},
                                  s.question, len);
        s.answers = {value};
        s.max_new_tokens = 16;
        s.id = fmt::format("len{}-depth{}-{}", len, depth, i);
        s.tags = {{"length", len}, {"depth", depth}};
        out.push_back(std::move(s));
      }
  return out;
}

const std::vector<std::string>& ruler_subtasks() {
  static const std::vector<std::string> names{"niah_single_number", "niah_single_word", "niah_single_uuid",
                                              "niah_multikey",      "niah_multivalue",  "niah_multiquery",
                                              "variable_tracking",  "common_words",     "frequent_words"};
  return names;
}

std::vector<QaSample> ruler_samples(const Tokenizer& tok, const Haystack& hay, const SyntheticOptions& o) {
  check_lengths(o);
  const auto& all = ruler_subtasks();
  const std::vector<std::string> chosen = o.subtasks.empty() ? all : o.subtasks;
  for (const auto& t : chosen)
    if (std::find(all.begin(), all.end(), t) == all.end())
      throw std::invalid_argument(fmt::format("unknown ruler subtask '{}' (known: {})", t, fmt::join(all, ", ")));
  std::vector<QaSample> out;
  for (const auto& task : chosen)
    for (int64_t len : o.lengths)
      for (int i = 0; i < o.samples; ++i) {
        std::mt19937_64 rng(seed_for(o.seed, task, len, i, 0));
        QaSample s;
        if (task.rfind("niah_single_", 0) == 0) {
          const std::string kind = task.substr(12);
          const auto keys = distinct_keys(rng, 1);
          std::string value = kind == "number" ? number_value(rng) : kind == "uuid" ? uuid_value(rng) : pick(rng, kKeys);
          while (value == keys[0]) value = pick(rng, kKeys);
          s = needle_sample(tok, hay, rng, len, kind, keys, {value}, {0}, false);
        } else if (task == "niah_multikey" || task == "niah_multiquery") {
          const auto keys = distinct_keys(rng, 4);
          std::vector<std::string> values;
          for (int k = 0; k < 4; ++k) values.push_back(number_value(rng));
          const std::vector<size_t> asked =
              task == "niah_multikey" ? std::vector<size_t>{rng() % 4} : std::vector<size_t>{0, 1, 2, 3};
          s = needle_sample(tok, hay, rng, len, "number", keys, values, asked, false);
        } else if (task == "niah_multivalue") {
          const auto keys = distinct_keys(rng, 1);
          std::vector<std::string> values;
          for (int k = 0; k < 4; ++k) values.push_back(number_value(rng));
          s = needle_sample(tok, hay, rng, len, "number", keys, values, {0, 1, 2, 3}, true);
        } else if (task == "variable_tracking") {
          s = variable_tracking(tok, hay, rng, len);
        } else if (task == "common_words") {
          s = common_words(tok, rng, len);
        } else {
          s = frequent_words(tok, rng, len);
        }
        s.subtask = task;
        s.id = fmt::format("{}-len{}-{}", task, len, i);
        s.tags = {{"length", len}};
        out.push_back(std::move(s));
      }
  return out;
}

}  // namespace kvsqueeze::eval
