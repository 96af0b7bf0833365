// The narrow hook between the decoder and the compression methods: after a layer has
// run its attention over the whole prompt, the press sees that layer's fresh K/V and the
// observation-window queries and says which rows each KV head keeps.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "tensor/tensor_view.h"

namespace kvsqueeze {

class KvCache;
class ScoreMemo;

struct LayerSnapshot {
  int layer = 0;                      // the model layer (cache index)
  int press_layer = 0;                // its index among the layers presses see (cfg->press_layers)
  int n_press_layers = 0;             // how many layers presses see: sliding-window layers are left out
  const ModelConfig* cfg = nullptr;
  int64_t n = 0;                      // prompt tokens of this pass
  const int32_t* pos = nullptr;       // their true positions
  const float* k = nullptr;           // [n][n_head_kv * head_dim], post-RoPE
  const float* v = nullptr;           // [n][n_head_kv * head_dim_v]
  int64_t window = 0;                 // w: queries kept for the observation window
  const float* q_window = nullptr;    // [window][n_head * head_dim], the last w tokens, post-RoPE
  const float* q_all = nullptr;       // [n][n_head * head_dim] when the press asked for it
  const MatrixView* wo = nullptr;     // the layer's output projection
  KvCache* cache = nullptr;           // rows already cached (a press may evict from them)
  ScoreMemo* memo = nullptr;          // shared prefill: scores other presses computed for this layer
};

class LayerPress {
 public:
  virtual ~LayerPress() = default;
  // Observation window the press wants queries for (0: none).
  virtual int64_t window() const = 0;
  virtual bool needs_all_queries() const { return false; }
  // For each KV head, the ascending indices (into the n fresh rows) to keep.
  virtual std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) = 0;
};

}  // namespace kvsqueeze
