// The press every preset is made of: score the prefix, give each layer and head its
// budget, keep each head's best entries plus the observation window.
#pragma once

#include <cstdint>
#include <vector>

#include "press/compression_press.h"

namespace kvsqueeze {

class BudgetPress : public CompressionPress {
 public:
  explicit BudgetPress(PressConfig config);

  int64_t window() const override { return config_.window; }
  bool needs_all_queries() const override { return config_.scorer == ScorerKind::H2O; }
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override;

  const PressConfig& config() const override { return config_; }
  const std::vector<std::vector<int64_t>>& head_budgets() const override { return budgets_; }
  double seconds() const override { return seconds_; }

 private:
  PressConfig config_;
  std::vector<std::vector<int64_t>> budgets_;
  double seconds_ = 0;
};

}  // namespace kvsqueeze
