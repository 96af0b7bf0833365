// LongBench (v1 and LongBench-E) from its JSONL files: the per-dataset prompt templates,
// answer lengths and metrics, so scores are comparable with published tables.
#pragma once

#include <string>
#include <vector>

#include "eval/qa_sample.h"

namespace kvsqueeze::eval {

struct LongBenchDataset {
  std::string name;
  std::string prompt;   // with {context} and {input}
  AnswerMetric metric;
  int max_new_tokens;
  bool first_line_only;  // few-shot sets: the answer is the first line
};

// The 21 datasets; "_e" names (LongBench-E) use their base dataset's entry.
const std::vector<LongBenchDataset>& longbench_datasets();
// Throws naming the known datasets when `name` is not one.
const LongBenchDataset& longbench_dataset(const std::string& name);

// Every line of every file; `limit` > 0 keeps the first `limit` lines of each file.
// Throws "FILE:LINE: ..." for malformed JSON, a missing or mistyped field, or an
// unknown dataset.
std::vector<QaSample> longbench_samples(const std::vector<std::string>& files, int limit);

}  // namespace kvsqueeze::eval
