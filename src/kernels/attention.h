// Attention of the G query heads that share one KV head over that head's rows
// (ragged-ready: rows carry their own positions; the mask compares positions).
#pragma once

#include <cstdint>
#include <vector>

#include "cache/kv_cache.h"

namespace kvsqueeze {

// For g < G: out[g][hdv] = softmax(q[g]·K^T * scale over visible rows) · V, where the
// rows are those of `views` in order (e.g. the compressed cache, then a layer's fresh
// rows) and a row is visible when its position <= q_pos. Each view's rows must be in
// ascending position order, which makes its visible rows a prefix.
// q is [G][hd] with rows q_stride floats apart; out is [G][hdv], out_stride apart.
void attend_group(const float* q, int64_t q_stride, int G, const RowsView* views, int n_views, int64_t hd,
                  int64_t hdv, int32_t q_pos, float scale, float* out, int64_t out_stride,
                  std::vector<float>& scratch);

}  // namespace kvsqueeze
