// One question of a generative task (niah, ruler, longbench) and how its answer is scored.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvsqueeze::eval {

// How a prediction is scored against the references.
enum class AnswerMetric {
  StringMatchAll,   // RULER: share of the references found in the prediction
  QaF1,
  QaF1Zh,
  RougeL,
  RougeLZh,
  Classification,
  Retrieval,
  RetrievalZh,
  Count,
  CodeSimilarity,
};
const char* metric_name(AnswerMetric m);

struct QaSample {
  std::string id;        // unique within the task and stable across runs (the resume key)
  std::string subtask;   // RULER variant or LongBench dataset ("" for niah)
  // Question-agnostic compression reads the context alone; the question follows it.
  std::string context, question;
  std::vector<std::string> answers;
  std::vector<std::string> all_classes;  // classification only
  AnswerMetric metric = AnswerMetric::StringMatchAll;
  int max_new_tokens = 32;
  bool first_line_only = false;  // score only the prediction's first non-empty line
  nlohmann::json tags = nlohmann::json::object();  // e.g. length, depth: copied to the results
};

// The prediction's score in [0, 100]: the metric's best over the references (all of them
// at once for StringMatchAll).
double score_answer(const QaSample& s, const std::string& prediction);

}  // namespace kvsqueeze::eval
