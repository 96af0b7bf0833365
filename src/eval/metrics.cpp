#include "eval/metrics.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <unordered_set>

namespace kvsqueeze::eval {
namespace {

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split_whitespace(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// F1 of the multiset overlap of two token lists.
double overlap_f1(const std::vector<std::string>& pred, const std::vector<std::string>& ref) {
  if (pred.empty() || ref.empty()) return 0;
  std::map<std::string, int> count;
  for (const auto& t : ref) ++count[t];
  int same = 0;
  for (const auto& t : pred) {
    auto it = count.find(t);
    if (it != count.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0;
  const double p = static_cast<double>(same) / static_cast<double>(pred.size());
  const double r = static_cast<double>(same) / static_cast<double>(ref.size());
  return 2 * p * r / (p + r);
}

template <class T>
size_t lcs_length(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<size_t> row(b.size() + 1, 0);
  for (const auto& x : a) {
    size_t diag = 0;  // row[j-1] of the previous row
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = x == b[j - 1] ? diag + 1 : std::max(row[j], row[j - 1]);
      diag = up;
    }
  }
  return row[b.size()];
}

double lcs_f1(const std::vector<std::string>& pred, const std::vector<std::string>& ref) {
  if (pred.empty() || ref.empty()) return 0;
  const double l = static_cast<double>(lcs_length(pred, ref));
  if (l == 0) return 0;
  const double p = l / static_cast<double>(pred.size()), r = l / static_cast<double>(ref.size());
  return 2 * p * r / (p + r);
}

// Full-width and CJK punctuation that the Chinese normalisation drops, besides ASCII's.
const std::unordered_set<std::string>& cjk_punctuation() {
  static const std::unordered_set<std::string> set = [] {
    std::unordered_set<std::string> s;
    for (const auto& cp : code_points("！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏"))
      s.insert(cp);
    return s;
  }();
  return set;
}

// The Chinese normalisation, one token per remaining code point.
std::vector<std::string> zh_characters(const std::string& text) {
  std::vector<std::string> out;
  for (auto& cp : code_points(lower_ascii(text))) {
    if (cp.size() == 1 && (std::ispunct(static_cast<unsigned char>(cp[0])) || std::isspace(static_cast<unsigned char>(cp[0]))))
      continue;
    if (cjk_punctuation().count(cp)) continue;
    out.push_back(std::move(cp));
  }
  return out;
}

}  // namespace

std::vector<std::string> code_points(const std::string& text) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + len > text.size()) len = 1;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) len = 1;
    out.push_back(text.substr(i, len));
    i += len;
  }
  return out;
}

std::vector<std::string> normalized_words(const std::string& text) {
  std::string s;
  for (char c : lower_ascii(text))
    if (!std::ispunct(static_cast<unsigned char>(c))) s += c;
  std::vector<std::string> words;
  for (auto& w : split_whitespace(s))
    if (w != "a" && w != "an" && w != "the") words.push_back(std::move(w));
  return words;
}

double qa_f1(const std::string& prediction, const std::string& reference) {
  return overlap_f1(normalized_words(prediction), normalized_words(reference));
}

double qa_f1_zh(const std::string& prediction, const std::string& reference) {
  return overlap_f1(zh_characters(prediction), zh_characters(reference));
}

double rouge_l(const std::string& prediction, const std::string& reference) {
  return lcs_f1(split_whitespace(lower_ascii(prediction)), split_whitespace(lower_ascii(reference)));
}

double rouge_l_zh(const std::string& prediction, const std::string& reference) {
  return lcs_f1(zh_characters(prediction), zh_characters(reference));
}

double classification_accuracy(const std::string& prediction, const std::string& reference,
                               const std::vector<std::string>& all_classes) {
  std::vector<std::string> named;
  for (const auto& c : all_classes)
    if (!c.empty() && prediction.find(c) != std::string::npos) named.push_back(c);
  // "Human being" should not be held against the answer "Human being, individual".
  std::erase_if(named, [&](const std::string& c) { return c != reference && reference.find(c) != std::string::npos; });
  if (std::find(named.begin(), named.end(), reference) == named.end()) return 0;
  return 1.0 / static_cast<double>(named.size());
}

std::vector<std::string> numbers_in(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      cur += c;
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

namespace {
double share_equal(const std::vector<std::string>& numbers, const std::string& want) {
  if (numbers.empty()) return 0;
  const auto hits = std::count(numbers.begin(), numbers.end(), want);
  return static_cast<double>(hits) / static_cast<double>(numbers.size());
}
}  // namespace

double retrieval_accuracy(const std::string& prediction, const std::string& reference, bool chinese) {
  const std::string marker = chinese ? "段落" : "Paragraph ";
  const size_t at = reference.find(marker);
  if (at == std::string::npos) return 0;
  const auto ids = numbers_in(reference.substr(at + marker.size()));
  if (ids.empty() || !std::isdigit(static_cast<unsigned char>(reference[at + marker.size()]))) return 0;
  return share_equal(numbers_in(prediction), ids.front());
}

double count_accuracy(const std::string& prediction, const std::string& reference) {
  return share_equal(numbers_in(prediction), reference);
}

double code_edit_similarity(const std::string& prediction, const std::string& reference) {
  size_t start = prediction.find_first_not_of('\n');
  std::string line;
  while (start != std::string::npos && start <= prediction.size()) {
    const size_t end = prediction.find('\n', start);
    std::string candidate = prediction.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (candidate.find('`') == std::string::npos && candidate.find('#') == std::string::npos &&
        candidate.find("//") == std::string::npos) {
      line = std::move(candidate);
      break;
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  const auto a = code_points(line), b = code_points(reference);
  if (a.empty() && b.empty()) return 1;
  const double ratio = 2.0 * static_cast<double>(lcs_length(a, b)) / static_cast<double>(a.size() + b.size());
  return static_cast<double>(static_cast<int>(ratio * 100 + 0.5)) / 100;
}

double string_match_all(const std::string& prediction, const std::vector<std::string>& references) {
  if (references.empty()) return 0;
  const std::string p = lower_ascii(prediction);
  double hits = 0;
  for (const auto& r : references) hits += p.find(lower_ascii(r)) != std::string::npos;
  return hits / static_cast<double>(references.size());
}

}  // namespace kvsqueeze::eval
