// Decode-time compression: once a head holds more than its budget plus `every` rows,
// re-score its rows with the most recent queries (SnapKV-style window attention, or
// sinks + recency for streamingllm) and evict back to its budget, so long generations
// stay bounded. Used as the press of one-token decode steps.
#pragma once

#include <cstdint>
#include <vector>

#include "press/press.h"
#include "press/press_config.h"

namespace kvsqueeze {

class DecodePress : public LayerPress {
 public:
  // budgets[l][h]: rows head h of layer l may keep (window included), e.g. what the
  // prefill press chose; every: how far past its budget a head may grow.
  DecodePress(PressConfig config, std::vector<std::vector<int64_t>> budgets, int64_t every);

  int64_t window() const override { return 1; }  // this step's query, kept in a ring
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override;
  int64_t evictions() const { return evictions_; }

 private:
  void compress_head(const LayerSnapshot& s, int h, int64_t budget);

  PressConfig config_;
  std::vector<std::vector<int64_t>> budgets_;
  int64_t every_;
  std::vector<std::vector<float>> recent_q_;  // per layer: the last w queries [w][n_head*hd]
  int64_t evictions_ = 0;
};

}  // namespace kvsqueeze
