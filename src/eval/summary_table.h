// The Markdown table `kvsqueeze eval` prints after a grid.
#pragma once

#include <set>
#include <string>

namespace kvsqueeze::eval {

struct EvalOptions;
class ResultsFile;

// Mean of one value per (subtask, preset) row and budget (or ratio) column over the
// results of this model, task and mode whose preset is in `presets` (earlier runs in the
// file included). `key` is "score" or a name inside each line's "metrics".
void print_summary(const EvalOptions& o, const std::set<std::string>& presets, const ResultsFile& results,
                   const std::string& key, const std::string& title);

}  // namespace kvsqueeze::eval
