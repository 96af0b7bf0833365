// Attention of one query head over the rows of its KV head (ragged-ready: the rows carry
// their own positions and the mask compares positions, not indices).
#pragma once

#include <cstdint>
#include <vector>

namespace kvsqueeze {

// out[hdv] = softmax(q·K^T * scale, masked to rows with pos <= q_pos) · V.
// keys [m][hd], values [m][hdv]; scratch is resized as needed.
void attend(const float* q, const float* keys, const float* values, const int32_t* pos, int64_t m, int64_t hd,
            int64_t hdv, int32_t q_pos, float scale, float* out, std::vector<float>& scratch);

}  // namespace kvsqueeze
