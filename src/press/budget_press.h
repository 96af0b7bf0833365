// The press every preset is made of: score the prefix, give each layer and head its
// budget, keep each head's best entries plus the observation window.
#pragma once

#include <cstdint>
#include <vector>

#include "press/press.h"
#include "press/press_config.h"

namespace kvsqueeze {

class BudgetPress : public LayerPress {
 public:
  explicit BudgetPress(PressConfig config);

  int64_t window() const override { return config_.window; }
  bool needs_all_queries() const override { return config_.scorer == ScorerKind::H2O; }
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override;

  const PressConfig& config() const { return config_; }
  // Entries each head of each layer kept (window included), as chosen so far.
  const std::vector<std::vector<int64_t>>& head_budgets() const { return budgets_; }
  // Wall time spent scoring and selecting (the compression's share of prefill).
  double seconds() const { return seconds_; }

 private:
  PressConfig config_;
  std::vector<std::vector<int64_t>> budgets_;
  double seconds_ = 0;
};

}  // namespace kvsqueeze
