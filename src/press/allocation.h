// Budget allocation: which entries each head keeps (METHODS.md §3 and §4).
#pragma once

#include <cstdint>
#include <vector>

namespace kvsqueeze {

// Indices of the k largest of x[0..n), in ascending index order; ties go to the lower
// index, so selections are deterministic.
std::vector<int64_t> top_k_ascending(const float* x, int64_t n, int64_t k);

// Ada-KV: per-head prefix budgets from one global top-(H*b) over the H score rows
// [H][prefix], with safeguard alpha: B_h = round((1-alpha) f_h + floor(alpha b)), then
// fixed so that they sum to exactly H*b, each in [floor(alpha b), prefix].
std::vector<int64_t> ada_head_budgets(const std::vector<float>& scores, int H, int64_t prefix, int64_t b, double alpha);

// PyramidKV: prefix budget per layer (lower layers get more), averaging b.
std::vector<int64_t> pyramid_budgets(int n_layer, int64_t b, int64_t prefix, double beta);

}  // namespace kvsqueeze
