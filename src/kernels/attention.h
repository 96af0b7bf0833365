// Attention of the G query heads that share one KV head over that head's rows
// (ragged-ready: rows carry their own positions; the mask compares positions).
#pragma once

#include <cstdint>
#include <vector>

namespace kvsqueeze {

// For g < G: out[g][hdv] = softmax(q[g]·K^T * scale over rows with pos <= q_pos) · V.
// q is [G][hd] with rows q_stride apart; out is [G][hdv] with rows out_stride apart.
// keys [m][hd], values [m][hdv]; rows must be in ascending position order (the cache
// keeps them so), which makes the visible rows a prefix. scratch is resized as needed.
void attend_group(const float* q, int64_t q_stride, int G, const float* keys, const float* values,
                  const int32_t* pos, int64_t m, int64_t hd, int64_t hdv, int32_t q_pos, float scale, float* out,
                  int64_t out_stride, std::vector<float>& scratch);

}  // namespace kvsqueeze
