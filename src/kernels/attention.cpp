#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/fast_exp.h"
#include "tensor/cpu_features.h"
#include "tensor/quant.h"


namespace kvsqueeze {

constexpr int64_t kRowChunk = 32;  // stored rows decoded per call

// Rows j0 .. j0+count of a view as floats: a pointer into the view for f32, else decoded
// (in one call; stored rows are contiguous) into buf. Row r is at result + r * row_stride.
inline const float* rows_f32(DType type, const uint8_t* base, int64_t stride, int64_t j0, int64_t count, int64_t n,
                             float* buf, int64_t& row_stride) {
  if (type == DType::F32) {
    row_stride = stride / static_cast<int64_t>(sizeof(float));
    return reinterpret_cast<const float*>(base + j0 * stride);
  }
  dequantize_row(type, base + j0 * stride, buf, count * n);
  row_stride = n;
  return buf;
}

// Every helper below is forced inline into attend_group's body, which is compiled once
// per instruction set (the wrappers at the end); a dispatched call per row would cost
// more than the 64-wide product itself.
#define KVS_INLINE inline __attribute__((always_inline))

KVS_INLINE float dot_inline(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t d = 0;
  for (; d + 16 <= n; d += 16)
    for (int u = 0; u < 16; ++u) acc[u] += a[d + u] * b[d + u];
  float s = 0;
  for (; d < n; ++d) s += a[d] * b[d];
  for (float x : acc) s += x;
  return s;
}

// scores[g * stride + j] = dot(q[g], key j) * scale for j < m: each key row is decoded
// and loaded once for the whole group of query heads.
KVS_INLINE void score_rows(const float* q, int64_t q_stride, int G, const RowsView& v, int64_t m, int64_t hd, float scale,
                       float* scores, int64_t stride, float* buf) {
  for (int64_t j0 = 0; j0 < m; j0 += kRowChunk) {
    const int64_t count = std::min(kRowChunk, m - j0);
    int64_t rs = 0;
    const float* k = rows_f32(v.type, v.k, v.k_stride, j0, count, hd, buf, rs);
    for (int64_t r = 0; r < count; ++r)
      for (int g = 0; g < G; ++g) scores[g * stride + j0 + r] = dot_inline(q + g * q_stride, k + r * rs, hd) * scale;
  }
}

// out[g] += Σ_j p[g][j] * value j for g < G (p already normalised).
KVS_INLINE void mix_values(const float* p, int64_t stride, int G, const RowsView& v, int64_t m, int64_t hdv, float* out,
                       int64_t out_stride, float* buf) {
  for (int64_t j0 = 0; j0 < m; j0 += kRowChunk) {
    const int64_t count = std::min(kRowChunk, m - j0);
    int64_t rs = 0;
    const float* vals = rows_f32(v.type, v.v, v.v_stride, j0, count, hdv, buf, rs);
    for (int64_t r = 0; r < count; ++r)
      for (int g = 0; g < G; ++g) {
        const float w = p[g * stride + j0 + r];
        const float* val = vals + r * rs;
        float* o = out + g * out_stride;
        for (int64_t i = 0; i < hdv; ++i) o[i] += w * val[i];
      }
  }
}

// p[j] = exp(p[j] - mx) for j < n; returns the sum.
// Two loops: an in-order float sum inside the first would stop it vectorising.
KVS_INLINE float exp_shifted(float* p, int64_t n, float mx) {
  for (int64_t j = 0; j < n; ++j) p[j] = fast_exp(p[j] - mx);
  float acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; ++u) acc[u] += p[j + u];
  float sum = 0;
  for (; j < n; ++j) sum += p[j];
  for (float a : acc) sum += a;
  return sum;
}

KVS_INLINE void attend_group_body(const float* q, int64_t q_stride, int G, const RowsView* views, int n_views,
                                  int64_t hd, int64_t hdv, int32_t q_pos, float scale, float* out, int64_t out_stride,
                                  std::vector<float>& scratch) {
  constexpr int kMaxViews = 4;
  if (n_views > kMaxViews) throw std::logic_error("attend_group: too many row views");
  int64_t visible[kMaxViews], total = 0;
  for (int i = 0; i < n_views; ++i) {
    visible[i] = std::upper_bound(views[i].pos, views[i].pos + views[i].n, q_pos) - views[i].pos;
    total += visible[i];
  }
  for (int g = 0; g < G; ++g)
    for (int64_t i = 0; i < hdv; ++i) out[g * out_stride + i] = 0.0f;
  if (total == 0) return;
  const int64_t width = kRowChunk * std::max(hd, hdv);
  scratch.resize(static_cast<size_t>(G * total + width));
  float* p = scratch.data();
  float* buf = p + G * total;
  for (int64_t i = 0, off = 0; i < n_views; off += visible[i], ++i)
    score_rows(q, q_stride, G, views[i], visible[i], hd, scale, p + off, total, buf);
  for (int g = 0; g < G; ++g) {
    float* pg = p + g * total;
    const float mx = *std::max_element(pg, pg + total);
    const float inv = 1.0f / exp_shifted(pg, total, mx);
    for (int64_t j = 0; j < total; ++j) pg[j] *= inv;
  }
  for (int64_t i = 0, off = 0; i < n_views; off += visible[i], ++i)
    mix_values(p + off, total, G, views[i], visible[i], hdv, out, out_stride, buf);
}

#define KVS_ATTEND_ARGS                                                                                       \
  const float *q, int64_t q_stride, int G, const RowsView *views, int n_views, int64_t hd, int64_t hdv, int32_t q_pos, \
      float scale, float *out, int64_t out_stride, std::vector<float> &scratch
#define KVS_ATTEND_CALL attend_group_body(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, scratch)

static void attend_group_generic(KVS_ATTEND_ARGS) { KVS_ATTEND_CALL; }
KVS_TARGET_AVX2 static void attend_group_avx2(KVS_ATTEND_ARGS) { KVS_ATTEND_CALL; }
KVS_TARGET_AVX512 static void attend_group_avx512(KVS_ATTEND_ARGS) { KVS_ATTEND_CALL; }

void attend_group(KVS_ATTEND_ARGS) {
  switch (active_isa()) {
    case Isa::Avx512: return attend_group_avx512(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, scratch);
    case Isa::Avx2: return attend_group_avx2(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, scratch);
    default: return attend_group_generic(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, scratch);
  }
}

}  // namespace kvsqueeze
