#include "tokenizer/spm.h"

#include <cstdio>
#include <map>
#include <queue>

#include "tokenizer/unicode.h"

namespace kvsqueeze {
namespace {
const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// One pass into a new string: replacing in place shifts the rest of the text at every
// match, quadratic in the number of spaces of a long prompt.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  out.reserve(s.size() + s.size() / 4 * (to.size() > from.size() ? to.size() - from.size() : 0));
  size_t pos = 0;
  for (size_t at; (at = s.find(from, pos)) != std::string::npos; pos = at + from.size()) {
    out.append(s, pos, at - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

struct Symbol {
  int prev, next;
  size_t start, len;
};

struct Bigram {
  int left, right;
  float score;
  size_t len;
  // Highest score first; on ties the leftmost pair.
  bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
};
}  // namespace

void SpmTokenizer::finish_init() {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_tokens_[b] = vocab_.find(name);
    if (byte_tokens_[b] < 0) byte_tokens_[b] = vocab_.find(std::string(1, static_cast<char>(b)));  // as llama.cpp falls back
  }
}

void SpmTokenizer::encode_fragment(const std::string& fragment, bool after_special, std::vector<int32_t>& out) const {
  std::string text = (add_space_prefix_ && after_special) ? " " + fragment : fragment;
  text = replace_all(text, " ", kSpace);

  std::vector<Symbol> sym;
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min<size_t>(static_cast<size_t>(utf8_len(static_cast<unsigned char>(text[off]))), text.size() - off);
    const int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, off, len});
    off += len;
  }
  std::priority_queue<Bigram> queue;
  // Which two symbols formed each merged string, to split pieces missing from the vocab.
  std::map<std::string, std::pair<int, int>> formed_from;
  auto try_pair = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const std::string s = text.substr(sym[static_cast<size_t>(l)].start, sym[static_cast<size_t>(l)].len + sym[static_cast<size_t>(r)].len);
    const int32_t id = vocab_.find(s);
    if (id < 0) return;
    queue.push({l, r, vocab_.score[static_cast<size_t>(id)], s.size()});
    formed_from[s] = {l, r};
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_pair(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = sym[static_cast<size_t>(b.left)];
    Symbol& r = sym[static_cast<size_t>(b.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
    try_pair(l.prev, b.left);
    try_pair(b.left, l.next);
  }

  auto emit = [&](auto&& self, int i) -> void {
    const Symbol& s = sym[static_cast<size_t>(i)];
    const std::string piece = text.substr(s.start, s.len);
    const int32_t id = vocab_.find(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    auto it = formed_from.find(piece);
    if (it != formed_from.end()) {
      self(self, it->second.first);
      self(self, it->second.second);
      return;
    }
    for (unsigned char c : piece) {
      const int32_t bt = byte_tokens_[c];
      if (bt >= 0) out.push_back(bt);
    }
  };
  if (sym.empty()) return;
  for (int i = 0; i != -1; i = sym[static_cast<size_t>(i)].next) emit(emit, i);
}

std::string SpmTokenizer::normal_piece(int32_t id) const { return replace_all(vocab_.text[static_cast<size_t>(id)], kSpace, " "); }

}  // namespace kvsqueeze
