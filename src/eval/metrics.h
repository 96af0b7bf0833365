// Answer metrics of the long-context benchmarks: LongBench's per-dataset scorers and
// RULER's string matching. Every function returns a score in [0, 1] for one prediction
// against one reference (callers take the best over several references).
#pragma once

#include <string>
#include <vector>

namespace kvsqueeze::eval {

// Lower case, ASCII punctuation removed, the articles a/an/the dropped, then split on
// whitespace: the answer normalisation the QA F1 metrics use.
std::vector<std::string> normalized_words(const std::string& text);
// Token-overlap F1 between the normalised words of prediction and reference.
double qa_f1(const std::string& prediction, const std::string& reference);
// Chinese QA F1: lower case, ASCII and CJK punctuation and whitespace removed, then one
// token per character (LongBench segments words with jieba, which Debian lacks).
double qa_f1_zh(const std::string& prediction, const std::string& reference);
// ROUGE-L F1 (longest common subsequence of lower-cased whitespace words).
double rouge_l(const std::string& prediction, const std::string& reference);
// ROUGE-L over characters for Chinese text (same stand-in for word segmentation).
double rouge_l_zh(const std::string& prediction, const std::string& reference);
// The classes named in the prediction (a class inside the reference's own name does not
// count against it); 1/k when the reference is among the k named, else 0.
double classification_accuracy(const std::string& prediction, const std::string& reference,
                               const std::vector<std::string>& all_classes);
// Passage retrieval: the paragraph number in the reference ("Paragraph 12", or "段落12"
// for the Chinese set) against every number in the prediction: the share of them that match.
double retrieval_accuracy(const std::string& prediction, const std::string& reference, bool chinese);
// Passage count: the share of the prediction's numbers equal to the reference.
double count_accuracy(const std::string& prediction, const std::string& reference);
// Code edit similarity: the prediction's first line that is not a comment or a fence,
// compared character by character with the reference (2·LCS / total length, rounded to
// whole percent as LongBench's fuzzy ratio is).
double code_edit_similarity(const std::string& prediction, const std::string& reference);
// RULER: the share of references that occur in the prediction (case-insensitive).
double string_match_all(const std::string& prediction, const std::vector<std::string>& references);

// Runs of ASCII digits in text, in order.
std::vector<std::string> numbers_in(const std::string& text);
// UTF-8 text as one string per code point (invalid bytes stand alone).
std::vector<std::string> code_points(const std::string& text);

}  // namespace kvsqueeze::eval
