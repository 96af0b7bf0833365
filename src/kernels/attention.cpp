#include "kernels/attention.h"

#include <algorithm>
#include <cmath>


namespace kvsqueeze {

// scores[g][j] = dot(q[g], keys[j]) * scale for g < G, j < m: each key row is loaded once
// for the whole group of query heads.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void score_rows(const float* q, int64_t q_stride, int G, const float* keys, int64_t m, int64_t hd, float scale,
                       float* scores) {
  for (int64_t j = 0; j < m; ++j) {
    const float* k = keys + j * hd;
    for (int g = 0; g < G; ++g) {
      const float* qg = q + g * q_stride;
      float acc[16] = {};
      int64_t d = 0;
      for (; d + 16 <= hd; d += 16)
        for (int u = 0; u < 16; ++u) acc[u] += qg[d + u] * k[d + u];
      float s = 0;
      for (; d < hd; ++d) s += qg[d] * k[d];
      for (float a : acc) s += a;
      scores[g * m + j] = s * scale;
    }
  }
}

// out[g] += Σ_j p[g][j] * values[j] for g < G (p already normalised).
__attribute__((target_clones("avx512f", "avx2", "default")))
static void mix_values(const float* p, int G, const float* values, int64_t m, int64_t hdv, float* out,
                       int64_t out_stride) {
  for (int64_t j = 0; j < m; ++j) {
    const float* v = values + j * hdv;
    for (int g = 0; g < G; ++g) {
      const float w = p[g * m + j];
      float* o = out + g * out_stride;
      for (int64_t i = 0; i < hdv; ++i) o[i] += w * v[i];
    }
  }
}

// p[j] = exp(p[j] - mx) for j < n; returns the sum. exp is computed as 2^k * e^r with
// |r| <= ln2/2 and a degree-6 polynomial (relative error ~2e-7), written so the compiler
// vectorises it (a libm call per element would not be).
__attribute__((target_clones("avx512f", "avx2", "default")))
static float exp_shifted(float* p, int64_t n, float mx) {
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    float x = p[j] - mx;
    x = x < -87.0f ? -87.0f : x;  // below this the result underflows to ~0 anyway
    const float kf = __builtin_rintf(x * 1.44269504088896341f);
    const float r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
    float y = 1.0f / 720 ;
    y = y * r + 1.0f / 120;
    y = y * r + 1.0f / 24;
    y = y * r + 1.0f / 6;
    y = y * r + 0.5f;
    y = y * r + 1.0f;
    y = y * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
    float scale;
    __builtin_memcpy(&scale, &bits, 4);
    p[j] = y * scale;
    sum += p[j];
  }
  return sum;
}

void attend_group(const float* q, int64_t q_stride, int G, const float* keys, const float* values,
                  const int32_t* pos, int64_t m, int64_t hd, int64_t hdv, int32_t q_pos, float scale, float* out,
                  int64_t out_stride, std::vector<float>& scratch) {
  // Rows are kept in ascending position order, so the visible rows are a prefix.
  const int64_t visible = std::upper_bound(pos, pos + m, q_pos) - pos;
  for (int g = 0; g < G; ++g)
    for (int64_t i = 0; i < hdv; ++i) out[g * out_stride + i] = 0.0f;
  if (visible == 0) return;
  scratch.resize(static_cast<size_t>(G * visible));
  float* p = scratch.data();
  score_rows(q, q_stride, G, keys, visible, hd, scale, p);
  for (int g = 0; g < G; ++g) {
    float* pg = p + g * visible;
    const float mx = *std::max_element(pg, pg + visible);
    const float inv = 1.0f / exp_shifted(pg, visible, mx);
    for (int64_t j = 0; j < visible; ++j) pg[j] *= inv;
  }
  mix_values(p, G, values, visible, hdv, out, out_stride);
}

}  // namespace kvsqueeze
