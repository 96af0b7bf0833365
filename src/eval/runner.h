// `kvsqueeze eval`: runs a grid of presets x budgets (or ratios) over a task's samples,
// appends one JSON line per run to a results file (skipping runs already there), shows
// progress and prints a summary table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "press/press_config.h"
#include "tensor/dtype.h"

namespace kvsqueeze::eval {

struct EvalOptions {
  std::string task;  // fidelity | ppl | niah | ruler | longbench
  std::string model_path;
  std::vector<std::string> presets;  // "none" (the full-cache reference) always runs too
  std::vector<int64_t> budgets;      // budgets, ratios or both: every preset runs at each
  std::vector<double> ratios;
  PressConfig tuning;                // window, alpha, pooling ... applied to every preset
  std::optional<bool> gqa_max;       // GQA reduction by max (unset: each preset's own, max for LAVa)
  bool question_agnostic = false;
  // QA tasks read each sample's prompt once for every grid point (the hidden states do
  // not depend on any press); true reads it once per point, for comparison.
  bool separate_prefill = false;
  // QA tasks: "on" renders each prompt (context, then question) as one user turn of the
  // model's chat template, "off" uses the raw text, "auto" is on when the GGUF has a
  // template. Question-agnostic compression cuts inside the turn, after the context.
  std::string chat = "auto";
  int samples = 0;                   // 0: the task's default
  uint64_t seed = 0;
  DType kv_type = DType::F16;
  std::string out_path;
  // QA tasks: write every sample (text, answers, the token ids the grid reads) to this
  // JSONL file instead of running the grid.
  std::string export_path;
  // fidelity / ppl
  std::string text_path;             // empty: the built-in story
  int64_t prompt_tokens = 0;         // 0: as much of the text as the context allows, up to 2048
  int64_t continuation_tokens = 64;
  // niah / ruler
  std::string haystack_path;         // empty: generated filler sentences
  std::vector<int64_t> lengths;      // empty: a default set within the model's context
  std::vector<double> depths{0, 25, 50, 75, 100};
  std::vector<std::string> subtasks;
  // longbench
  std::vector<std::string> data_files;
  int64_t max_length = 0;            // prompt tokens kept (middle truncation); 0: context - answer
  bool progress = true;
};

const std::vector<std::string>& eval_tasks();

// Runs the grid; returns the number of runs it performed (0 when everything was done, or
// when only exporting samples).
// Throws std::invalid_argument for bad options before running anything.
int64_t run_eval(const EvalOptions& o);

}  // namespace kvsqueeze::eval
