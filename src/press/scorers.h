// Per-token importance scores of the prefix positions (j < prefix = n - w) of one layer,
// one row per KV head: scores[h * prefix + j]. Higher means keep. Formulas: METHODS.md §2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "press/press.h"
#include "press/press_config.h"

namespace kvsqueeze {

// SnapKV: softmax attention of the window queries (causal inside the window), averaged
// over the window, pooled along positions, reduced over each GQA group (mean or max).
std::vector<float> snapkv_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c);
// H2O: attention each key received from every prompt query, divided by how many queries
// could see it. Needs all queries.
std::vector<float> h2o_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c);
// TOVA: attention of the last query, averaged over all heads of the layer (every KV head
// gets the same row).
std::vector<float> tova_scores(const LayerSnapshot& s, int64_t prefix);
// K-norm: -||k_j||_2.
std::vector<float> knorm_scores(const LayerSnapshot& s, int64_t prefix);
// StreamingLLM: the first `sinks` positions first, then the most recent.
std::vector<float> streaming_scores(const LayerSnapshot& s, int64_t prefix, int sinks);

// LAVa: SnapKV window scores (GQA reduced by max) times the head's largest value L1
// norm over the prefix, so entries of different heads are comparable.
std::vector<float> lava_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c);

// The scores of c's scorer; read from / left in s.memo when the pass shares one.
std::vector<float> compute_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c);
// The memo key of those scores: equal keys mean equal scores.
std::string score_key(const LayerSnapshot& s, int64_t prefix, const PressConfig& c);

// 1-D pooling along positions, stride 1, padding kernel/2: max (padding never wins) or
// average (padding counts as zero, divisor = kernel), as torch's pool1d defaults do.
void pool1d(float* x, int64_t n, int kernel, bool use_max);

// CriticalKV: ||v_j W_O^(h)||_1 for the given rows of KV head h, averaged over the
// group's query heads (W_O^(h) = the columns of the output projection that read head h).
std::vector<float> value_output_norms(const LayerSnapshot& s, int kv_head, const std::vector<int64_t>& rows);
// The same for rows below `prefix`, through s.memo when the pass shares one.
std::vector<float> value_output_norms(const LayerSnapshot& s, int kv_head, const std::vector<int64_t>& rows,
                                      int64_t prefix);

}  // namespace kvsqueeze
