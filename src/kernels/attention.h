// Attention of the G query heads that share one KV head over that head's rows
// (ragged-ready: rows carry their own positions; the mask compares positions).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cache/kv_cache.h"

namespace kvsqueeze {

// For g < G: out[g][hdv] = softmax(q[g]·K^T * scale over visible rows) · V, where the
// rows are those of `views` in order (e.g. the compressed cache, then a layer's fresh
// rows) and a row is visible when its position <= q_pos. Each view's rows must be in
// ascending position order, which makes its visible rows a prefix.
// q is [G][hd] with rows q_stride floats apart; out is [G][hdv], out_stride apart.
// lse (optional, [G]) receives log Σ_j exp(score j) over the visible rows (-inf when no
// row is visible): with it the rows of one head can be split into parts, attended apart
// (on several threads) and merged exactly by merge_attention.
void attend_group(const float* q, int64_t q_stride, int G, const RowsView* views, int n_views, int64_t hd,
                  int64_t hdv, int32_t q_pos, float scale, float* out, int64_t out_stride, float* lse,
                  std::vector<float>& scratch);

// The attention over the union of n_parts disjoint sets of rows, from each part's output
// (parts + (i * G + g) * hdv) and log-sum-exp (lses[i * G + g]): each part's output
// weighted by its share of the total softmax mass. Heads no part saw get zeros.
void merge_attention(const float* parts, const float* lses, int n_parts, int G, int64_t hdv, float* out,
                     int64_t out_stride);

// A decoding token's rows of one KV head are attended in parts, one work item each, so
// that every core has work when KV heads are few: parts of about kDecodePartRows rows,
// but no more than kDecodeMaxParts of them, since each part restarts the hardware's
// streaming of its rows (on the machine of docs/BENCHMARKS.md a 16k-row head in 64 parts
// of 256 read 20–30% slower than in 8). The count depends on the row count alone, so a
// result does not depend on the threads. decode_part_begin: where part i of n_parts
// begins (it ends where i + 1 begins).
constexpr int64_t kDecodePartRows = 256, kDecodeMaxParts = 8;
inline int64_t decode_part_count(int64_t rows, int64_t part_rows = kDecodePartRows, int64_t max_parts = kDecodeMaxParts) {
  return std::clamp<int64_t>((rows + part_rows / 2) / part_rows, 1, max_parts);
}
inline int64_t decode_part_begin(int64_t i, int64_t n_parts, int64_t rows) { return i * rows / n_parts; }

}  // namespace kvsqueeze
