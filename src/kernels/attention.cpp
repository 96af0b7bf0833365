#include "kernels/attention.h"

#include <cmath>

#include "kernels/matmul.h"

namespace kvsqueeze {

__attribute__((target_clones("avx512f", "avx2", "default")))
static void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void attend(const float* q, const float* keys, const float* values, const int32_t* pos, int64_t m, int64_t hd,
            int64_t hdv, int32_t q_pos, float scale, float* out, std::vector<float>& scratch) {
  scratch.resize(static_cast<size_t>(m));
  float mx = -INFINITY;
  for (int64_t j = 0; j < m; ++j) {
    const float s = pos[j] <= q_pos ? dot_f32(q, keys + j * hd, hd) * scale : -INFINITY;
    scratch[static_cast<size_t>(j)] = s;
    mx = s > mx ? s : mx;
  }
  for (int64_t i = 0; i < hdv; ++i) out[i] = 0.0f;
  if (mx == -INFINITY) return;  // no visible row
  float sum = 0;
  for (int64_t j = 0; j < m; ++j) {
    const float e = std::exp(scratch[static_cast<size_t>(j)] - mx);
    scratch[static_cast<size_t>(j)] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < m; ++j) {
    const float p = scratch[static_cast<size_t>(j)] * inv;
    if (p != 0.0f) axpy(p, values + j * hdv, out, hdv);
  }
}

}  // namespace kvsqueeze
