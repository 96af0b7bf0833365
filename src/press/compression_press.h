// What the front ends hold: a prefill press that also reports the budgets it gave and the
// time it took, made from a PressConfig.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "press/press.h"
#include "press/press_config.h"

namespace kvsqueeze {

class CompressionPress : public LayerPress {
 public:
  virtual const PressConfig& config() const = 0;
  // Rows each head of each layer keeps (window included), as chosen so far.
  virtual const std::vector<std::vector<int64_t>>& head_budgets() const = 0;
  // Wall time spent scoring and selecting (the compression's share of prefill).
  virtual double seconds() const = 0;
  // Largest KV cache (bytes, the cache's own accounting) seen while layers were handed
  // to the press: what the finished layers held before each new layer was added.
  size_t peak_cache_bytes() const { return peak_cache_bytes_; }

 protected:
  void note_cache(const LayerSnapshot& s);

 private:
  size_t peak_cache_bytes_ = 0;
};

// BudgetPress for the score-and-allocate presets, LavaPress for the lava family; null
// for "none". Throws for impossible settings.
std::unique_ptr<CompressionPress> make_compression_press(const PressConfig& config);

}  // namespace kvsqueeze
