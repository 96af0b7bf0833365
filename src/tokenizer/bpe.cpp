#include "tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <queue>
#include <stdexcept>

#include <fmt/format.h>

#include "tokenizer/unicode.h"

namespace kvsqueeze {

// Pre-tokenizer: a chain of regexes; each splits the pieces the previous one produced,
// and text between matches stays a piece of its own (as llama.cpp's splitter does).
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::vector<std::string>& patterns) {
    for (const auto& p : patterns) {
      int err = 0;
      PCRE2_SIZE off = 0;
      pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.c_str()), p.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
      if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw std::runtime_error(fmt::format("bad pre-tokenizer regex at {}: {}", off, reinterpret_cast<char*>(msg)));
      }
      pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back silently
      codes_.push_back(re);
    }
  }
  ~RegexSplitter() {
    for (auto* c : codes_) pcre2_code_free(c);
  }
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  std::vector<std::string> split(const std::string& text) const {
    std::vector<std::string> pieces{text};
    for (auto* re : codes_) {
      std::vector<std::string> next;
      pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
      for (const auto& piece : pieces) split_one(re, md, piece, next);
      pcre2_match_data_free(md);
      pieces.swap(next);
    }
    return pieces;
  }

 private:
  static void split_one(pcre2_code* re, pcre2_match_data* md, const std::string& s, std::vector<std::string>& out) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    size_t start = 0, last = 0;
    while (start < s.size()) {
      const int rc = pcre2_match(re, subject, s.size(), start, 0, md, nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step over one character
        start = b + static_cast<size_t>(utf8_len(static_cast<unsigned char>(s[b])));
        continue;
      }
      if (b > last) out.push_back(s.substr(last, b - last));
      out.push_back(s.substr(b, e - b));
      last = start = e;
    }
    if (last < s.size()) out.push_back(s.substr(last));
  }

  std::vector<pcre2_code*> codes_;
};

namespace {
const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> patterns_for(const std::string& pre, bool& ignore_merges) {
  ignore_merges = false;
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" || pre == "smaug-bpe") {
    ignore_merges = pre != "dbrx" && pre != "smaug-bpe";
    return {kLlama3};
  }
  if (pre == "qwen2" || pre == "stablelm2" || pre == "deepseek-r1-qwen") return {kQwen2};
  if (pre == "gpt-2" || pre == "gpt2" || pre == "mpt" || pre == "olmo" || pre == "jais") return {kGpt2};
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r") return {R"(\p{N})", kGpt2};
  // "default" and unknown names: llama.cpp's default chain.
  return {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"};
}
}  // namespace

BpeTokenizer::BpeTokenizer(const std::vector<std::string>& merges, const std::string& pre) {
  splitter_ = std::make_unique<RegexSplitter>(patterns_for(pre, ignore_merges_));
  merge_rank_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) merge_rank_.emplace(merges[i], static_cast<int>(i));
}

BpeTokenizer::~BpeTokenizer() = default;

int BpeTokenizer::rank(const std::string& left, const std::string& right) const {
  auto it = merge_rank_.find(left + " " + right);
  return it == merge_rank_.end() ? -1 : it->second;
}

namespace {
// Surrogates (ED A0..BF xx) are invalid UTF-8, which PCRE2 never matches, while llama.cpp
// decodes them and its pre-tokenizer takes them as "other" characters. The split runs on
// a copy where each becomes a private-use character (also "other", also three bytes), and
// the words are cut from the text itself at the same offsets.
std::vector<std::string> split_like_llama(const RegexSplitter& splitter, const std::string& text) {
  std::string probe = text;
  bool surrogates = false;
  for (size_t i = 0; i + 2 < probe.size(); ++i)
    if (static_cast<unsigned char>(probe[i]) == 0xED && (static_cast<unsigned char>(probe[i + 1]) & 0xE0) == 0xA0) {
      probe.replace(i, 3, "\xEE\x80\x80");  // U+E000
      surrogates = true;
      i += 2;
    }
  if (!surrogates) return splitter.split(text);
  std::vector<std::string> words = splitter.split(probe);
  size_t at = 0;
  for (auto& w : words) {
    w = text.substr(at, w.size());
    at += w.size();
  }
  return words;
}
}  // namespace

void BpeTokenizer::encode_fragment(const std::string& text, bool, std::vector<int32_t>& out) const {
  for (const auto& word : split_like_llama(*splitter_, utf8_repaired(text))) {
    std::string mapped;
    for (unsigned char c : word) mapped += byte_to_unicode(c);
    encode_word(mapped, out);
  }
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    const int32_t id = vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  struct Sym {
    int prev, next;
    std::string text;
  };
  std::vector<Sym> sym;
  for (size_t off = 0; off < word.size();) {
    const size_t len = std::min<size_t>(static_cast<size_t>(utf8_len(static_cast<unsigned char>(word[off]))), word.size() - off);
    const int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, off + len == word.size() ? -1 : idx + 1, word.substr(off, len)});
    off += len;
  }
  struct Pair {
    int left, right, rank;
    std::string text;
    // Lowest rank first; on ties the leftmost pair.
    bool operator<(const Pair& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
  };
  std::priority_queue<Pair> queue;
  auto try_pair = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const int rk = rank(sym[static_cast<size_t>(l)].text, sym[static_cast<size_t>(r)].text);
    if (rk >= 0) queue.push({l, r, rk, sym[static_cast<size_t>(l)].text + sym[static_cast<size_t>(r)].text});
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_pair(i - 1, i);
  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Sym& l = sym[static_cast<size_t>(p.left)];
    Sym& r = sym[static_cast<size_t>(p.right)];
    if (l.text.empty() || r.text.empty() || l.text + r.text != p.text) continue;  // stale
    l.text += r.text;
    r.text.clear();
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = p.left;
    try_pair(l.prev, p.left);
    try_pair(p.left, l.next);
  }
  if (sym.empty()) return;
  for (int i = 0; i != -1; i = sym[static_cast<size_t>(i)].next) {
    const std::string& s = sym[static_cast<size_t>(i)].text;
    const int32_t id = vocab_.find(s);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // Not a token (vocab without full byte coverage): llama.cpp looks up each byte on its
    // own and drops those that are not tokens.
    for (char c : s) {
      const int32_t bid = vocab_.find(std::string(1, c));
      if (bid >= 0) out.push_back(bid);
    }
  }
}

std::string BpeTokenizer::normal_piece(int32_t id) const {
  const std::string& t = vocab_.text[static_cast<size_t>(id)];
  std::string bytes;
  for (size_t off = 0; off < t.size();) {
    const size_t len = std::min<size_t>(static_cast<size_t>(utf8_len(static_cast<unsigned char>(t[off]))), t.size() - off);
    const int b = unicode_to_byte(std::string_view(t).substr(off, len));
    if (b >= 0) bytes += static_cast<char>(b);
    else bytes += t.substr(off, len);
    off += len;
  }
  return bytes;
}

}  // namespace kvsqueeze
