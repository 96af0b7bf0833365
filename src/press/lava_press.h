// LAVa (METHODS.md §5): one score comparable across the heads of a layer, Ada-KV head
// budgets on it, and layer budgets proportional to each layer's score entropy, applied
// as a cascade while the prompt is read: after every layer all finished layers get their
// budget from the entropies seen so far and earlier layers shrink to it.
#pragma once

#include <cstdint>
#include <vector>

#include "press/compression_press.h"

namespace kvsqueeze {

// e = H(p) / log N for p = scores / sum(scores) over all N entries (1 for N <= 1 or an
// all-zero row: nothing distinguishes the entries).
double normalized_entropy(const std::vector<float>& scores);

// Prefix budget per layer: floor(T * e_l / sum(e)), capped by each layer's prefix.
std::vector<int64_t> entropy_layer_budgets(const std::vector<double>& entropies, int64_t total,
                                           const std::vector<int64_t>& prefixes);

class LavaPress : public CompressionPress {
 public:
  explicit LavaPress(PressConfig config);

  int64_t window() const override { return config_.window; }
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override;
  const PressConfig& config() const override { return config_; }
  const std::vector<std::vector<int64_t>>& head_budgets() const override { return budgets_; }
  double seconds() const override { return seconds_; }

  // Per finished pressed layer (in cfg.press_layers order): normalised score entropy and
  // current prefix budget per KV head.
  const std::vector<double>& entropies() const { return entropies_; }
  const std::vector<int64_t>& layer_budgets() const { return layer_prefix_budget_; }
  int64_t total_budget() const { return total_; }  // T = L * (B - w) per KV head, L pressed layers

 private:
  struct LayerState {
    int layer = 0;                   // the model layer (cache index)
    std::vector<float> scores;       // [H][prefix]
    int64_t prefix = 0, n = 0;
    int32_t pos0 = 0;                // position of the pass's first token
    std::vector<int64_t> kept;       // prefix entries each head keeps now
  };
  // j: the layer's index among the pressed layers.
  std::vector<int64_t> head_allocation(const LayerState& st, int H, int64_t layer_budget, int j) const;
  // Shrinks finished pressed layer j's heads to new budgets (evicting from the cache).
  void shrink_layer(const LayerSnapshot& s, int j, int64_t layer_budget);

  PressConfig config_;
  std::vector<LayerState> layers_;
  std::vector<double> entropies_;
  std::vector<int64_t> layer_prefix_budget_;
  std::vector<std::vector<int64_t>> budgets_;
  int64_t total_ = 0;
  double seconds_ = 0;
};

}  // namespace kvsqueeze
