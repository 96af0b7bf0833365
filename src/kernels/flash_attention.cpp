#include "kernels/flash_attention.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/fast_exp.h"
#include "tensor/cpu_features.h"
#include "tensor/quant.h"

namespace kvsqueeze {
namespace {

#define KVS_INLINE inline __attribute__((always_inline))

constexpr int64_t kKeyTile = 64;  // key rows per tile: one tile of scores per query row fits in L1
constexpr int64_t kRowGroup = 4;  // query rows sharing each loaded key / value vector
constexpr float kMasked = -std::numeric_limits<float>::infinity();

// The pieces of one call's scratch memory.
struct Buffers {
  float* qs;    // [Mp][hd] queries, pre-scaled, padded with zero rows to a multiple of kRowGroup
  float* kt;    // [hd][kKeyTile] the key tile, transposed so scores vectorise along keys
  float* kbuf;  // [kKeyTile][hd] decoded key rows
  float* vbuf;  // [kKeyTile][hdv] decoded value rows
  float* s;     // [Mp][kKeyTile] scores, then probabilities
  float* o;     // [Mp][hdv] unnormalised outputs
  float* mx;    // [Mp] running maxima
  float* l;     // [Mp] running sums
};

// Rows j0 .. j0+count of a stored view as float32 (pointer into the view for f32 rows,
// else decoded into buf; stored rows are contiguous). Returns the row stride in floats.
KVS_INLINE const float* rows_as_f32(DType type, const uint8_t* base, int64_t stride, int64_t j0, int64_t count,
                                    int64_t width, float* buf, int64_t& row_stride) {
  if (type == DType::F32) {
    row_stride = stride / static_cast<int64_t>(sizeof(float));
    return reinterpret_cast<const float*>(base + j0 * stride);
  }
  dequantize_row(type, base + j0 * stride, buf, count * width);
  row_stride = width;
  return buf;
}

// s[m][j] = qs[m] · kt[:, j] for kRowGroup rows at once.
KVS_INLINE void score_group(const float* qs, const float* kt, int64_t hd, float* s) {
  float acc[kRowGroup][kKeyTile] = {};
  for (int64_t d = 0; d < hd; ++d) {
    const float* k = kt + d * kKeyTile;
    for (int64_t r = 0; r < kRowGroup; ++r) {
      const float qv = qs[r * hd + d];
      for (int64_t j = 0; j < kKeyTile; ++j) acc[r][j] += qv * k[j];
    }
  }
  std::memcpy(s, acc, sizeof acc);
}

// o[m] += Σ_j p[m][j] · v[j] for kRowGroup rows at once.
KVS_INLINE void mix_group(const float* p, const float* v, int64_t v_stride, int64_t count, int64_t hdv, float* o) {
  for (int64_t j = 0; j < count; ++j) {
    const float* vj = v + j * v_stride;
    for (int64_t r = 0; r < kRowGroup; ++r) {
      const float w = p[r * kKeyTile + j];
      if (w == 0.0f) continue;  // masked (future) keys: common on the causal diagonal
      float* orow = o + r * hdv;
      for (int64_t c = 0; c < hdv; ++c) orow[c] += w * vj[c];
    }
  }
}

KVS_INLINE void flash_body(const float* q, int64_t q_stride, int G, int nq, const int32_t* q_pos, const RowsView* views,
                           int n_views, int64_t hd, int64_t hdv, float scale, float* out, int64_t out_stride,
                           FlashScratch& scratch) {
  const int64_t M = int64_t{G} * nq, Mp = (M + kRowGroup - 1) / kRowGroup * kRowGroup;
  scratch.buf.resize(static_cast<size_t>(Mp * hd + hd * kKeyTile + kKeyTile * hd + kKeyTile * hdv + Mp * kKeyTile +
                                         Mp * hdv + 2 * Mp));
  Buffers b;
  b.qs = scratch.buf.data();
  b.kt = b.qs + Mp * hd;
  b.kbuf = b.kt + hd * kKeyTile;
  b.vbuf = b.kbuf + kKeyTile * hd;
  b.s = b.vbuf + kKeyTile * hdv;
  b.o = b.s + Mp * kKeyTile;
  b.mx = b.o + Mp * hdv;
  b.l = b.mx + Mp;
  // Row m = i * G + g: token i, head g.
  for (int64_t m = 0; m < Mp; ++m) {
    float* dst = b.qs + m * hd;
    if (m < M) {
      const float* src = q + (m / G) * q_stride + (m % G) * hd;
      for (int64_t d = 0; d < hd; ++d) dst[d] = src[d] * scale;
    } else {
      std::fill(dst, dst + hd, 0.0f);
    }
  }
  std::fill(b.o, b.o + Mp * hdv, 0.0f);
  std::fill(b.mx, b.mx + Mp, kMasked);
  std::fill(b.l, b.l + Mp, 0.0f);
  int32_t q_min = q_pos[0], q_max = q_pos[0];
  for (int i = 1; i < nq; ++i) {
    q_min = std::min(q_min, q_pos[i]);
    q_max = std::max(q_max, q_pos[i]);
  }

  for (int vi = 0; vi < n_views; ++vi) {
    const RowsView& v = views[vi];
    const int64_t n_vis = std::upper_bound(v.pos, v.pos + v.n, q_max) - v.pos;
    for (int64_t j0 = 0; j0 < n_vis; j0 += kKeyTile) {
      const int64_t cnt = std::min(kKeyTile, n_vis - j0);
      const int32_t* pos = v.pos + j0;
      int64_t ks = 0;
      const float* k = rows_as_f32(v.type, v.k, v.k_stride, j0, cnt, hd, b.kbuf, ks);
      for (int64_t d = 0; d < hd; ++d) {
        float* kt = b.kt + d * kKeyTile;
        for (int64_t j = 0; j < cnt; ++j) kt[j] = k[j * ks + d];
        for (int64_t j = cnt; j < kKeyTile; ++j) kt[j] = 0.0f;
      }
      for (int64_t m0 = 0; m0 < Mp; m0 += kRowGroup) score_group(b.qs + m0 * hd, b.kt, hd, b.s + m0 * kKeyTile);

      // Online softmax: rescale what was accumulated when a row's maximum grows.
      const bool all_visible = cnt == kKeyTile && pos[cnt - 1] <= q_min;
      for (int64_t m = 0; m < M; ++m) {
        float* s = b.s + m * kKeyTile;
        if (!all_visible) {
          const int32_t limit = q_pos[m / G];
          for (int64_t j = 0; j < kKeyTile; ++j)
            if (j >= cnt || pos[j] > limit) s[j] = kMasked;
        }
        float tile_max = kMasked;
        for (int64_t j = 0; j < kKeyTile; ++j) tile_max = std::max(tile_max, s[j]);
        if (tile_max == kMasked) {  // nothing visible to this row in this tile
          std::fill(s, s + kKeyTile, 0.0f);
          continue;
        }
        const float new_max = std::max(b.mx[m], tile_max);
        const float factor = b.mx[m] == kMasked ? 0.0f : fast_exp(b.mx[m] - new_max);
        for (int64_t j = 0; j < kKeyTile; ++j) s[j] = s[j] == kMasked ? 0.0f : fast_exp(s[j] - new_max);
        float sum = 0;
        for (int64_t j = 0; j < kKeyTile; ++j) sum += s[j];
        b.l[m] = b.l[m] * factor + sum;
        b.mx[m] = new_max;
        if (factor != 1.0f)
          for (int64_t c = 0; c < hdv; ++c) b.o[m * hdv + c] *= factor;
      }
      for (int64_t m = M; m < Mp; ++m) std::fill(b.s + m * kKeyTile, b.s + (m + 1) * kKeyTile, 0.0f);

      int64_t vs = 0;
      const float* vals = rows_as_f32(v.type, v.v, v.v_stride, j0, cnt, hdv, b.vbuf, vs);
      for (int64_t m0 = 0; m0 < Mp; m0 += kRowGroup) mix_group(b.s + m0 * kKeyTile, vals, vs, cnt, hdv, b.o + m0 * hdv);
    }
  }

  for (int64_t m = 0; m < M; ++m) {
    float* dst = out + (m / G) * out_stride + (m % G) * hdv;
    const float inv = b.l[m] > 0 ? 1.0f / b.l[m] : 0.0f;
    for (int64_t c = 0; c < hdv; ++c) dst[c] = b.o[m * hdv + c] * inv;
  }
}

#define KVS_FLASH_ARGS                                                                                         \
  const float *q, int64_t q_stride, int G, int nq, const int32_t *q_pos, const RowsView *views, int n_views, \
      int64_t hd, int64_t hdv, float scale, float *out, int64_t out_stride, FlashScratch &scratch
#define KVS_FLASH_CALL flash_body(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, out, out_stride, scratch)

void flash_generic(KVS_FLASH_ARGS) { KVS_FLASH_CALL; }
KVS_TARGET_AVX2 void flash_avx2(KVS_FLASH_ARGS) { KVS_FLASH_CALL; }
KVS_TARGET_AVX512 void flash_avx512(KVS_FLASH_ARGS) { KVS_FLASH_CALL; }

}  // namespace

void flash_attend(KVS_FLASH_ARGS) {
  if (nq <= 0) return;
  switch (active_isa()) {
    case Isa::Avx512: return flash_avx512(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, out, out_stride, scratch);
    case Isa::Avx2: return flash_avx2(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, out, out_stride, scratch);
    default: return flash_generic(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, out, out_stride, scratch);
  }
}

}  // namespace kvsqueeze
