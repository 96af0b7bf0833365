#include "eval/qa_sample.h"

#include <algorithm>

#include "eval/metrics.h"

namespace kvsqueeze::eval {

const char* metric_name(AnswerMetric m) {
  switch (m) {
    case AnswerMetric::StringMatchAll: return "string_match_all";
    case AnswerMetric::QaF1: return "qa_f1";
    case AnswerMetric::QaF1Zh: return "qa_f1_zh";
    case AnswerMetric::RougeL: return "rouge_l";
    case AnswerMetric::RougeLZh: return "rouge_l_zh";
    case AnswerMetric::Classification: return "classification";
    case AnswerMetric::Retrieval: return "retrieval";
    case AnswerMetric::RetrievalZh: return "retrieval_zh";
    case AnswerMetric::Count: return "count";
    case AnswerMetric::CodeSimilarity: return "code_sim";
  }
  return "?";
}

namespace {
double one_reference(const QaSample& s, const std::string& p, const std::string& ref) {
  switch (s.metric) {
    case AnswerMetric::StringMatchAll: return string_match_all(p, {ref});
    case AnswerMetric::QaF1: return qa_f1(p, ref);
    case AnswerMetric::QaF1Zh: return qa_f1_zh(p, ref);
    case AnswerMetric::RougeL: return rouge_l(p, ref);
    case AnswerMetric::RougeLZh: return rouge_l_zh(p, ref);
    case AnswerMetric::Classification: return classification_accuracy(p, ref, s.all_classes);
    case AnswerMetric::Retrieval: return retrieval_accuracy(p, ref, false);
    case AnswerMetric::RetrievalZh: return retrieval_accuracy(p, ref, true);
    case AnswerMetric::Count: return count_accuracy(p, ref);
    case AnswerMetric::CodeSimilarity: return code_edit_similarity(p, ref);
  }
  return 0;
}
}  // namespace

double score_answer(const QaSample& s, const std::string& prediction) {
  std::string p = prediction;
  if (s.first_line_only) {
    p.erase(0, p.find_first_not_of('\n') == std::string::npos ? p.size() : p.find_first_not_of('\n'));
    p = p.substr(0, p.find('\n'));
  }
  if (s.metric == AnswerMetric::StringMatchAll) return 100 * string_match_all(p, s.answers);
  double best = 0;
  for (const auto& ref : s.answers) best = std::max(best, one_reference(s, p, ref));
  return 100 * best;
}

}  // namespace kvsqueeze::eval
