// Prompt attention, tiled flash-style: a block of query tokens (all G query heads of one
// KV head) against key/value rows in tiles, with an online softmax, so the scores of a
// long prompt are never held whole and each key tile is loaded once for the whole block.
#pragma once

#include <cstdint>
#include <vector>

#include "cache/kv_cache.h"

namespace kvsqueeze {

struct FlashScratch {
  std::vector<float> buf;
};

// For each query token i < nq and head g < G:
//   out[i][g] = softmax(q[i][g]·K^T * scale over visible rows) · V
// where a row is visible when pos <= q_pos[i] and, if window > 0 (a sliding-window
// layer), q_pos[i] - pos < window. The rows are those of `views` in order (any storage type; e.g. the cache, then this pass's
// fresh rows). q[i][g] is at q + i * q_stride + g * hd, out[i][g] at out + i * out_stride
// + g * hdv. Each view's rows must be in ascending position order. A token that sees no
// row gets zeros. Same result as attend_group per token, up to float summation order.
void flash_attend(const float* q, int64_t q_stride, int G, int nq, const int32_t* q_pos, const RowsView* views,
                  int n_views, int64_t hd, int64_t hdv, float scale, int32_t window, float* out, int64_t out_stride,
                  FlashScratch& scratch);

}  // namespace kvsqueeze
