// An independent reference for what every compression preset keeps: a small float64
// implementation written from ../shared/docs/METHODS.md (and the decisions
// docs/ARCHITECTURE.md lists where METHODS.md is silent). It shares no code with
// src/press; tests compare the engine's kept rows with it on real prompts.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "press/press.h"

namespace kvsqueeze::test {

// What a press sees after one pressed layer, copied to float64.
struct RecordedLayer {
  int layer = 0;
  int64_t n = 0;
  int n_head = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0, dim = 0;
  std::vector<double> k, v;  // [n][n_head_kv * head_dim(_v)], post-RoPE keys
  std::vector<double> q;     // [n][n_head * head_dim]: every query, post-RoPE
  std::vector<double> wo;    // [dim][n_head * head_dim_v]: the output projection
  // Scores and norms already computed for this layer (by kind and setting), so that many
  // presets and budgets compare against one recording cheaply.
  mutable std::map<std::string, std::vector<std::vector<double>>> memo;
};

// A press that records every layer it is shown and keeps all rows (so the hidden states
// and what later layers see are those of any press: presses act after the layer).
class RecordingPress : public LayerPress {
 public:
  int64_t window() const override { return int64_t{1} << 40; }
  bool needs_all_queries() const override { return true; }
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override;
  const std::vector<RecordedLayer>& layers() const { return layers_; }

 private:
  std::vector<RecordedLayer> layers_;
};

struct ReferenceOptions {
  std::string preset;      // a preset name of PressConfig::preset_names()
  int64_t budget = 0;      // B per KV head, window included
  int64_t window = 32;
  int kernel = 7;
  bool pool_max = true;
  std::optional<bool> gqa_max;  // unset: max for LAVa, mean otherwise
  double alpha = 0.2;
  double beta = 20;
  int sinks = 4;
};

// One ranking a head's selection came from: each prefix position's value and the value
// at the edge of the selection. A position the engine decides differently is a tie when
// one of its values sits at its edge (float32 against float64).
struct Ranking {
  std::vector<double> value;  // [prefix]
  double edge = 0;
};

struct ReferenceHead {
  std::vector<int64_t> keep;  // ascending pass indices, the window included
  std::vector<Ranking> rankings;
};

// [recorded layer][KV head]. n_press_layers: how many layers the press saw.
std::vector<std::vector<ReferenceHead>> reference_selection(const std::vector<RecordedLayer>& layers,
                                                            const ReferenceOptions& o);

}  // namespace kvsqueeze::test

namespace kvsqueeze::test {

// Decode-time re-scoring (`--compress-every`): of a head's m cached rows (keys [m][d],
// ascending positions), keep the newest rows of the re-scoring window and the best of the
// rest by the window attention of the most recent decode queries (queries[i] is
// [n_head][d] at position qpos[i]), pooled and group-reduced; `keep` rows in all.
// StreamingLLM keeps its sinks and the most recent rows instead.
ReferenceHead reference_decode_head(const std::vector<double>& keys, const std::vector<int32_t>& pos,
                                    const std::vector<std::vector<double>>& queries, const std::vector<int32_t>& qpos,
                                    int kv_head, int n_head, int n_head_kv, int head_dim, int64_t keep,
                                    const ReferenceOptions& o);

}  // namespace kvsqueeze::test
