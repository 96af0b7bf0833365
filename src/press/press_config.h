// A compression method as a composition (Scorer x HeadAllocator x LayerBudget), chosen
// by preset name and tuned by options. Defaults follow ../shared/docs/METHODS.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvsqueeze {

enum class ScorerKind { None, SnapKV, H2O, TOVA, KNorm, Streaming, Lava };

struct PressConfig {
  std::string preset = "none";
  ScorerKind scorer = ScorerKind::None;
  bool ada = false;        // head budgets from a global top-k (Ada-KV), else uniform
  bool pyramid = false;    // linear pyramid of layer budgets (PyramidKV), else uniform
  bool critical = false;   // CriticalKV two-stage refinement inside each head's budget
  bool dynamic_layers = false;  // LAVa: layer budgets by score entropy, cascaded in prefill
  int64_t budget = 0;      // entries per KV head, window included (0: use ratio)
  double ratio = 0;        // fraction of the prompt kept (0: use budget)
  int64_t window = 32;     // observation window w (always kept)
  int pool_kernel = 7;
  bool pool_max = true;    // max-pool (default) or avg-pool of the scores along positions
  bool gqa_max = false;    // reduce the G query heads of a group by max (default mean)
  double alpha = 0.2;      // Ada-KV safeguard
  double pyramid_beta = 20;
  int skip_layers = 0;     // layers below this use uniform head budgets
  int sinks = 4;           // StreamingLLM attention sinks

  // The preset's composition with default options; throws for unknown names.
  static PressConfig from_preset(const std::string& name);
  static const std::vector<std::string>& preset_names();
  bool enabled() const { return scorer != ScorerKind::None; }
  // Throws std::invalid_argument naming the impossible setting.
  void validate() const;
  // Per-head budget B for a prompt of n tokens (window included; >= n means keep all).
  int64_t budget_for(int64_t n) const;
};

}  // namespace kvsqueeze
