#include "kernels/attention.h"

#include <immintrin.h>

// GCC 12 flags its own AVX-512 conversion intrinsics as reading uninitialised data (false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernels/avx2_helpers.h"
#include "kernels/fast_exp.h"
#include "kernels/vec16.h"
#include "tensor/cpu_features.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"


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

// Rows of a short view are fetched into L2 in software, kPrefetchRows ahead: the hardware
// prefetchers pick a stream of a few hundred rows up too late. From kHardwareStreamRows
// rows on, the view is left to them: they follow a long stream on their own, and the
// prefetch instructions would cost a tenth of the in-cache speed.
constexpr int64_t kPrefetchRows = 48, kHardwareStreamRows = 1024;

// Asks for key and value rows [first, min(first + n, m)) to be brought into L2.
KVS_INLINE void prefetch_rows(const RowsView& v, int64_t first, int64_t n, int64_t m) {
  n = std::min(n, m - first);
  if (n <= 0) return;
  const uint8_t* k = v.k + first * v.k_stride;
  const uint8_t* val = v.v + first * v.v_stride;
  for (int64_t b = 0; b < n * v.k_stride; b += 64) __builtin_prefetch(k + b, 0, 2);
  for (int64_t b = 0; b < n * v.v_stride; b += 64) __builtin_prefetch(val + b, 0, 2);
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

// ---- the vectorised path: hd and hdv whole 16-float vectors, hdv <= 128 ----------------
// Compiled for AVX-512 only: it leans on two-input 16-lane shuffles (sum16) and 16-wide
// half conversion, which narrower targets would emulate slowly.

using namespace vec16;

#define KVS_AVX512_INLINE KVS_TARGET_AVX512 inline __attribute__((always_inline))

inline bool use_vector_path(int64_t hd, int64_t hdv) {
  return active_isa() == Isa::Avx512 && hd % kLanes == 0 && hdv % kLanes == 0 && hdv <= 8 * kLanes;
}

// Everything the AVX-512 path calls with vectors is compiled for AVX-512, vec16's
// helpers included (vec16_ops.inc says why).
namespace avx512_path {
KVS_BEGIN_TARGET_AVX512
#include "kernels/fast_exp_poly.inc"
#include "kernels/vec16_ops.inc"
KVS_END_TARGET

// 16 IEEE halves to floats: one vcvtph2ps.
KVS_AVX512_INLINE v16 load_f16(const uint16_t* p) {
  return (v16)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Values c .. c+15 (c a multiple of 16) of a Q8_0 row: half of one block, scaled.
KVS_AVX512_INLINE v16 load_q8_0(const uint8_t* row, int64_t c) {
  const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + c / 32;
  const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs + c % 32))));
  return (v16)q * _cvtsh_ss(blk->d);
}

// Values c .. c+15 of a stored row of an in-register type (F16, Q8_0).
KVS_AVX512_INLINE v16 load_stored(DType type, const uint8_t* row, int64_t c) {
  return type == DType::F16 ? load_f16(reinterpret_cast<const uint16_t*>(row) + c) : load_q8_0(row, c);
}

// One view's scores for head g: p[j] = qs · key j for j < m, sixteen keys per sum16.
// Writes up to 15 floats past p + m (the caller's padding).
KVS_AVX512_INLINE void score_view(const float* qs, const RowsView& v, int64_t m, int64_t hd, float* p, float* buf) {
  if (v.type == DType::F16 || v.type == DType::Q8_0) {  // the cache's rows: converted in registers
    for (int64_t jb = 0; jb < m; jb += kLanes) {
      v16 part[kLanes];
      for (int64_t jj = 0; jj < kLanes; ++jj) {
        v16 acc = {};
        if (jb + jj < m) {
          const uint8_t* row = v.k + (jb + jj) * v.k_stride;
          for (int64_t c = 0; c < hd; c += kLanes) acc += load_stored(v.type, row, c) * load(qs + c);
        }
        part[jj] = acc;
      }
      store(p + jb, sum16(part));
    }
    return;
  }
  for (int64_t j0 = 0; j0 < m; j0 += kRowChunk) {
    const int64_t count = std::min(kRowChunk, m - j0);
    int64_t rs = 0;
    const float* k = rows_f32(v.type, v.k, v.k_stride, j0, count, hd, buf, rs);
    for (int64_t jb = 0; jb < count; jb += kLanes) {
      v16 part[kLanes];
      for (int64_t jj = 0; jj < kLanes; ++jj) {
        v16 acc = {};
        if (jb + jj < count) {
          const float* row = k + (jb + jj) * rs;
          for (int64_t c = 0; c < hd; c += kLanes) acc += load(row + c) * load(qs + c);
        }
        part[jj] = acc;
      }
      store(p + j0 + jb, sum16(part));
    }
  }
}

// out[g0 + g] = Σ_j p[g0 + g][j] · value j over every view, for up to G_MAX heads at once:
// G_MAX x NV accumulators stay in registers while the value rows stream past once.
template <int NV>
KVS_AVX512_INLINE void mix_heads(const float* p, int64_t p_stride, int g0, int ng, const RowsView* views, const int64_t* visible,
                          int n_views, float* out, int64_t out_stride, float* buf) {
  constexpr int kMaxG = NV <= 4 ? 4 : 2;
  v16 acc[kMaxG][NV] = {};
  for (int i = 0, off = 0; i < n_views; off += static_cast<int>(visible[i]), ++i) {
    const RowsView& v = views[i];
    if (v.type == DType::F16 || v.type == DType::Q8_0) {
      for (int64_t r = 0; r < visible[i]; ++r) {
        const uint8_t* row = v.v + r * v.v_stride;
        v16 vr[NV];
        for (int c = 0; c < NV; ++c) vr[c] = load_stored(v.type, row, c * kLanes);
        for (int g = 0; g < kMaxG; ++g) {
          if (g >= ng) break;
          const float w = p[(g0 + g) * p_stride + off + r];
          for (int c = 0; c < NV; ++c) acc[g][c] += vr[c] * w;
        }
      }
      continue;
    }
    for (int64_t j0 = 0; j0 < visible[i]; j0 += kRowChunk) {
      const int64_t count = std::min(kRowChunk, visible[i] - j0);
      int64_t rs = 0;
      const float* vals = rows_f32(v.type, v.v, v.v_stride, j0, count, NV * kLanes, buf, rs);
      for (int64_t r = 0; r < count; ++r) {
        v16 vr[NV];
        for (int c = 0; c < NV; ++c) vr[c] = load(vals + r * rs + c * kLanes);
        for (int g = 0; g < kMaxG; ++g) {
          if (g >= ng) break;
          const float w = p[(g0 + g) * p_stride + off + j0 + r];
          for (int c = 0; c < NV; ++c) acc[g][c] += vr[c] * w;
        }
      }
    }
  }
  for (int g = 0; g < ng; ++g)
    for (int c = 0; c < NV; ++c) store(out + (g0 + g) * out_stride + c * kLanes, acc[g][c]);
}

template <int NV>
KVS_AVX512_INLINE void mix_all_heads(const float* p, int64_t p_stride, int G, const RowsView* views, const int64_t* visible,
                              int n_views, float* out, int64_t out_stride, float* buf) {
  constexpr int kMaxG = NV <= 4 ? 4 : 2;
  for (int g0 = 0; g0 < G; g0 += kMaxG)
    mix_heads<NV>(p, p_stride, g0, std::min(kMaxG, G - g0), views, visible, n_views, out, out_stride, buf);
}

}  // namespace avx512_path

// Turns one head's scores pg[0, total) into probabilities in place and returns the
// log-sum-exp of the scores. pg has room for whole 16-float vectors plus one more.
KVS_INLINE float softmax_in_place(float* pg, int64_t total) {
  const int64_t whole = total / kLanes * kLanes;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t j = total; j < whole + kLanes; ++j) pg[j] = neg_inf;  // lanes past `total` count as -inf
  v16 mv = splat(neg_inf);
  for (int64_t j = 0; j < total; j += kLanes) mv = vmax(mv, load(pg + j));
  float mx = mv[0];
  for (int l = 1; l < kLanes; ++l) mx = std::max(mx, mv[l]);
  v16 sum = {};
  for (int64_t j = 0; j < total; j += kLanes) {
    const v16 e = vexp(load(pg + j) - mx);
    const v16 kept = load(pg + j) > neg_inf ? e : splat(0.0f);
    store(pg + j, kept);
    sum += kept;
  }
  float total_sum = 0;
  for (int l = 0; l < kLanes; ++l) total_sum += sum[l];
  const float inv = 1.0f / total_sum;
  for (int64_t j = 0; j < total; j += kLanes) store(pg + j, load(pg + j) * inv);
  return mx + std::log(total_sum);
}

KVS_TARGET_AVX512 void attend_group_vec(const float* q, int64_t q_stride, int G, const RowsView* views, int n_views,
                                 const int64_t* visible, int64_t total, int64_t hd, int64_t hdv, float scale,
                                 float* out, int64_t out_stride, float* lse, std::vector<float>& scratch) {
  const int64_t stride = (total + kLanes - 1) / kLanes * kLanes + kLanes;  // room for sum16's last store
  scratch.resize(static_cast<size_t>(G * stride + G * hd + kRowChunk * std::max(hd, hdv)));
  float* p = scratch.data();
  float* qs = p + G * stride;
  float* buf = qs + G * hd;
  for (int g = 0; g < G; ++g)
    for (int64_t c = 0; c < hd; ++c) qs[g * hd + c] = q[g * q_stride + c] * scale;
  for (int g = 0; g < G; ++g) {
    float* pg = p + g * stride;
    for (int64_t i = 0, off = 0; i < n_views; off += visible[i], ++i)
      avx512_path::score_view(qs + g * hd, views[i], visible[i], hd, pg + off, buf);
    const float l = softmax_in_place(pg, total);
    if (lse) lse[g] = l;
  }
  switch (hdv / kLanes) {
    case 1: return avx512_path::mix_all_heads<1>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    case 2: return avx512_path::mix_all_heads<2>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    case 3: return avx512_path::mix_all_heads<3>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    case 4: return avx512_path::mix_all_heads<4>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    case 5: return avx512_path::mix_all_heads<5>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    case 6: return avx512_path::mix_all_heads<6>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    case 7: return avx512_path::mix_all_heads<7>(p, stride, G, views, visible, n_views, out, out_stride, buf);
    default: return avx512_path::mix_all_heads<8>(p, stride, G, views, visible, n_views, out, out_stride, buf);
  }
}

// ---- the AVX2 path: hd and hdv whole 8-float vectors -------------------------------
// Stored rows are converted in registers (F16C, or Q8_0 bytes), four keys at a time
// against up to three query heads (four with 32 registers), and value rows stream past
// register tiles of up to four heads by 16 columns (with 32 registers: three heads by 64
// or four by 32). Compiled twice: for AVX2, and for avx2vnni, whose AVX-512VL gives the
// 256-bit code 32 registers.

#define KVS_AVX2_INLINE KVS_TARGET_AVX2 inline __attribute__((always_inline))
#define KVS_AVX2_INLINE_LAMBDA KVS_TARGET_AVX2 __attribute__((always_inline))

// Values c .. c+7 of a row stored as T.
template <DType T>
KVS_AVX2_INLINE __m256 load8(const uint8_t* row, int64_t c) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (T == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + c)));
  } else {
    const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + c / 32;
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk->qs + c % 32));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), _mm256_set1_ps(_cvtsh_ss(blk->d)));
  }
}

// The sums of four vectors' lanes, in order.
KVS_AVX2_INLINE __m128 sum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// p[g * ps + j - j0] = qs[g] · key j for g < GB and j0 <= j < j1 (qs pre-scaled, hd
// apart). Writes up to 3 floats past p + j1 - j0 (the caller's padding).
template <DType T, int GB>
KVS_AVX2_INLINE void score_keys8(const float* qs, int64_t hd, const RowsView& v, int64_t j0, int64_t j1, float* p,
                                 int64_t ps, int64_t m) {
  for (int64_t j = j0; j < j1; j += 4) {
    if (m < kHardwareStreamRows) prefetch_rows(v, j + kPrefetchRows, 4, m);
    const uint8_t* rows[4];
    for (int r = 0; r < 4; ++r) rows[r] = v.k + std::min(j + r, j1 - 1) * v.k_stride;  // past j1: a real row, unused
    __m256 acc[GB][4];
    for (int g = 0; g < GB; ++g)
      for (int r = 0; r < 4; ++r) acc[g][r] = _mm256_setzero_ps();
    for (int64_t c = 0; c < hd; c += 8) {
      __m256 qv[GB];
      for (int g = 0; g < GB; ++g) qv[g] = _mm256_loadu_ps(qs + g * hd + c);
      for (int r = 0; r < 4; ++r) {
        const __m256 kv = load8<T>(rows[r], c);
        for (int g = 0; g < GB; ++g) acc[g][r] = _mm256_fmadd_ps(kv, qv[g], acc[g][r]);
      }
    }
    for (int g = 0; g < GB; ++g) _mm_storeu_ps(p + g * ps + (j - j0), sum4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]));
  }
}

// The scores of every head for keys [j0, j1): heads in groups as large as the registers
// allow (four keys' sums of GB heads, GB query vectors and a key in flight).
template <DType T, int kRegs>
KVS_AVX2_INLINE void score_block8(const float* qs, int G, int64_t hd, const RowsView& v, int64_t j0, int64_t j1, float* p,
                                  int64_t ps, int64_t m) {
  constexpr int kMaxGB = kRegs >= 32 ? 4 : 3;
  for (int g0 = 0; g0 < G; g0 += kMaxGB) {
    const float* qg = qs + g0 * hd;
    float* pg = p + g0 * ps;
    switch (std::min(kMaxGB, G - g0)) {
      case 1: score_keys8<T, 1>(qg, hd, v, j0, j1, pg, ps, m); break;
      case 2: score_keys8<T, 2>(qg, hd, v, j0, j1, pg, ps, m); break;
      case 3: score_keys8<T, 3>(qg, hd, v, j0, j1, pg, ps, m); break;
      default: score_keys8<T, kMaxGB>(qg, hd, v, j0, j1, pg, ps, m); break;
    }
  }
}

// out[g][c0, c0 + 8 NC) += Σ_j p[g * ps + j - j0] · value j [c0, c0 + 8 NC) for g < GB,
// j0 <= j < j1. When the registers hold two sets of accumulators (besides the GB weights
// and a value vector), even and odd rows use separate ones: twice the independent
// multiply-add chains for narrow tiles.
template <DType T, int GB, int NC, int kRegs>
KVS_AVX2_INLINE void mix_tile8(const float* p, int64_t ps, const RowsView& v, int64_t j0, int64_t j1, int64_t c0, float* out,
                               int64_t out_stride) {
  constexpr int kSets = 2 * GB * NC + GB + 1 <= kRegs ? 2 : 1;
  __m256 acc[kSets][GB][NC];
  for (int s = 0; s < kSets; ++s)
    for (int g = 0; g < GB; ++g)
      for (int c = 0; c < NC; ++c)
        acc[s][g][c] = s == 0 ? _mm256_loadu_ps(out + g * out_stride + c0 + 8 * c) : _mm256_setzero_ps();
  const auto add_row = [&](int s, int64_t j) KVS_AVX2_INLINE_LAMBDA {
    const uint8_t* row = v.v + j * v.v_stride;
    __m256 w[GB];
    for (int g = 0; g < GB; ++g) w[g] = _mm256_broadcast_ss(p + g * ps + (j - j0));
    for (int c = 0; c < NC; ++c) {
      const __m256 x = load8<T>(row, c0 + 8 * c);
      for (int g = 0; g < GB; ++g) acc[s][g][c] = _mm256_fmadd_ps(x, w[g], acc[s][g][c]);
    }
  };
  int64_t j = j0;
  for (; j + kSets <= j1; j += kSets)
    for (int s = 0; s < kSets; ++s) add_row(s, j + s);
  for (; j < j1; ++j) add_row(0, j);
  for (int g = 0; g < GB; ++g)
    for (int c = 0; c < NC; ++c) {
      __m256 sum = acc[0][g][c];
      for (int s = 1; s < kSets; ++s) sum = _mm256_add_ps(sum, acc[s][g][c]);
      _mm256_storeu_ps(out + g * out_stride + c0 + 8 * c, sum);
    }
}

// The columns of GB heads' outputs in tiles of NC vectors (the widest the registers
// hold), single vectors for what is left.
template <DType T, int GB, int kRegs>
KVS_AVX2_INLINE void mix_heads8(const float* p, int64_t ps, const RowsView& v, int64_t j0, int64_t j1, int64_t hdv, float* out,
                                int64_t out_stride) {
  constexpr int NC = kRegs < 32 ? 2 : GB <= 3 ? 8 : 4;
  int64_t c0 = 0;
  for (; c0 + 8 * NC <= hdv; c0 += 8 * NC) mix_tile8<T, GB, NC, kRegs>(p, ps, v, j0, j1, c0, out, out_stride);
  for (; c0 < hdv; c0 += 8) mix_tile8<T, GB, 1, kRegs>(p, ps, v, j0, j1, c0, out, out_stride);
}

template <DType T, int kRegs>
KVS_AVX2_INLINE void mix_block8(const float* p, int64_t ps, int G, const RowsView& v, int64_t j0, int64_t j1, int64_t hdv,
                                float* out, int64_t out_stride) {
  for (int g0 = 0; g0 < G; g0 += 4) {
    const float* pg = p + g0 * ps;
    float* og = out + g0 * out_stride;
    switch (std::min(4, G - g0)) {
      case 1: mix_heads8<T, 1, kRegs>(pg, ps, v, j0, j1, hdv, og, out_stride); break;
      case 2: mix_heads8<T, 2, kRegs>(pg, ps, v, j0, j1, hdv, og, out_stride); break;
      case 3: mix_heads8<T, 3, kRegs>(pg, ps, v, j0, j1, hdv, og, out_stride); break;
      default: mix_heads8<T, 4, kRegs>(pg, ps, v, j0, j1, hdv, og, out_stride); break;
    }
  }
}

// vec16's exponential compiled for AVX2, for the softmax (vec16_ops.inc says why).
namespace avx2_path {
KVS_BEGIN_TARGET_AVX2
#include "kernels/fast_exp_poly.inc"
#include "kernels/vec16_ops.inc"
KVS_END_TARGET
}  // namespace avx2_path

// The running softmax of one head over a new block of n scores pg[0, n) (room up to the
// next multiple of 8): the head's maximum *mx rises to cover them, its output row (hdv
// floats) and running sum *sum are rescaled to the new maximum, and the scores become
// exp(score - *mx), their total added to *sum.
KVS_AVX2_INLINE void softmax_block8(float* pg, int64_t n, float* mx, float* sum, float* out_row, int64_t hdv) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t padded = (n + 7) / 8 * 8;
  for (int64_t j = n; j < padded; ++j) pg[j] = neg_inf;
  __m256 mv = _mm256_set1_ps(neg_inf);
  for (int64_t j = 0; j < padded; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(pg + j));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  const float block_max = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
  if (block_max > *mx) {
    const float f = std::exp(*mx - block_max);  // 0 for the first block (*mx = -inf)
    *sum *= f;
    const __m256 fv = _mm256_set1_ps(f);
    for (int64_t c = 0; c < hdv; c += 8) _mm256_storeu_ps(out_row + c, _mm256_mul_ps(_mm256_loadu_ps(out_row + c), fv));
    *mx = block_max;
  }
  const __m256 shift = _mm256_set1_ps(*mx);
  __m256 total = _mm256_setzero_ps();
  for (int64_t j = 0; j < padded; j += 8) {
    const __m256 s = _mm256_loadu_ps(pg + j);
    // Padding lanes (-inf) give exactly 0 rather than exp(-87).
    const __m256 e = _mm256_and_ps(static_cast<__m256>(avx2_path::vexp_lanes(static_cast<v8>(_mm256_sub_ps(s, shift)))), _mm256_cmp_ps(s, _mm256_set1_ps(neg_inf), _CMP_GT_OQ));
    _mm256_storeu_ps(pg + j, e);
    total = _mm256_add_ps(total, e);
  }
  *sum += avx2::hsum(total);
}

inline bool stored_in_register(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::Q8_0; }

inline bool use_avx2_path(int64_t hd, int64_t hdv, const RowsView* views, int n_views) {
  if (!use_avx2() || use_avx512() || hd % 8 != 0 || hdv % 8 != 0) return false;
  for (int i = 0; i < n_views; ++i)
    if (!stored_in_register(views[i].type) || (views[i].type == DType::Q8_0 && (hd % 32 != 0 || hdv % 32 != 0)))
      return false;
  return true;
}

// Rows per block of the one-pass attention: a block's scores stay in L1 between the
// scoring and the mix.
constexpr int64_t kBlockRows = 64;

// One pass over the rows in blocks: score a block for every head, fold it into each
// head's running softmax (rescaling the output so far), mix its value rows. The rows are
// read once, in order (prefetched in software only in short views, kHardwareStreamRows).
// kRegs is the target's vector register count (16 for AVX2, 32 with AVX-512VL).
template <int kRegs>
KVS_AVX2_INLINE void attend_group_blocked(const float* q, int64_t q_stride, int G, const RowsView* views, int n_views,
                                          const int64_t* visible, int64_t hd, int64_t hdv, float scale, float* out,
                                          int64_t out_stride, float* lse, std::vector<float>& scratch) {
  const int64_t ps = kBlockRows + 8;  // softmax_block8's padding, score_keys8's overrun
  scratch.resize(static_cast<size_t>(G * ps + G * hd + 2 * G));
  float* p = scratch.data();
  float* qs = p + G * ps;
  float* mx = qs + G * hd;
  float* sums = mx + G;
  for (int g = 0; g < G; ++g) {
    for (int64_t c = 0; c < hd; ++c) qs[g * hd + c] = q[g * q_stride + c] * scale;
    mx[g] = -std::numeric_limits<float>::infinity();
    sums[g] = 0.0f;
  }
  for (int i = 0; i < n_views; ++i) {
    const RowsView& v = views[i];
    const int64_t m = visible[i];
    prefetch_rows(v, 0, kPrefetchRows, m);  // the first rows: ahead of the scoring's prefetches, or of the hardware's
    for (int64_t j0 = 0; j0 < m; j0 += kBlockRows) {
      const int64_t j1 = std::min(m, j0 + kBlockRows);
      const auto block = [&](auto type) KVS_AVX2_INLINE_LAMBDA {
        constexpr DType T = decltype(type)::value;
        score_block8<T, kRegs>(qs, G, hd, v, j0, j1, p, ps, m);
        for (int g = 0; g < G; ++g) softmax_block8(p + g * ps, j1 - j0, &mx[g], &sums[g], out + g * out_stride, hdv);
        mix_block8<T, kRegs>(p, ps, G, v, j0, j1, hdv, out, out_stride);
      };
      switch (v.type) {
        case DType::F32: block(std::integral_constant<DType, DType::F32>{}); break;
        case DType::F16: block(std::integral_constant<DType, DType::F16>{}); break;
        default: block(std::integral_constant<DType, DType::Q8_0>{}); break;
      }
    }
  }
  for (int g = 0; g < G; ++g) {
    const __m256 inv = _mm256_set1_ps(1.0f / sums[g]);
    float* o = out + g * out_stride;
    for (int64_t c = 0; c < hdv; c += 8) _mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_loadu_ps(o + c), inv));
    if (lse) lse[g] = mx[g] + std::log(sums[g]);
  }
}

#define KVS_BLOCKED_ARGS                                                                                     \
  const float *q, int64_t q_stride, int G, const RowsView *views, int n_views, const int64_t *visible, int64_t hd, \
      int64_t hdv, float scale, float *out, int64_t out_stride, float *lse, std::vector<float> &scratch
#define KVS_BLOCKED_PASS q, q_stride, G, views, n_views, visible, hd, hdv, scale, out, out_stride, lse, scratch

KVS_TARGET_AVX2 void attend_group_avx2_vec(KVS_BLOCKED_ARGS) { attend_group_blocked<16>(KVS_BLOCKED_PASS); }
KVS_TARGET_AVX2VNNI void attend_group_avx2vnni_vec(KVS_BLOCKED_ARGS) { attend_group_blocked<32>(KVS_BLOCKED_PASS); }

// ---- entry -------------------------------------------------------------------------

KVS_INLINE void attend_group_body(const float* q, int64_t q_stride, int G, const RowsView* views, int n_views,
                                  int64_t hd, int64_t hdv, int32_t q_pos, float scale, float* out, int64_t out_stride,
                                  float* lse, std::vector<float>& scratch) {
  constexpr int kMaxViews = 4;
  if (n_views > kMaxViews) throw std::logic_error("attend_group: too many row views");
  int64_t visible[kMaxViews], total = 0;
  for (int i = 0; i < n_views; ++i) {
    visible[i] = std::upper_bound(views[i].pos, views[i].pos + views[i].n, q_pos) - views[i].pos;
    total += visible[i];
  }
  for (int g = 0; g < G; ++g)
    for (int64_t i = 0; i < hdv; ++i) out[g * out_stride + i] = 0.0f;
  if (total == 0) {
    if (lse) std::fill(lse, lse + G, -std::numeric_limits<float>::infinity());
    return;
  }
  if (use_vector_path(hd, hdv))
    return attend_group_vec(q, q_stride, G, views, n_views, visible, total, hd, hdv, scale, out, out_stride, lse, scratch);
  if (use_avx2_path(hd, hdv, views, n_views)) {
    if (active_isa() == Isa::Avx2Vnni)
      return attend_group_avx2vnni_vec(q, q_stride, G, views, n_views, visible, hd, hdv, scale, out, out_stride, lse, scratch);
    return attend_group_avx2_vec(q, q_stride, G, views, n_views, visible, hd, hdv, scale, out, out_stride, lse, scratch);
  }
  const int64_t width = kRowChunk * std::max(hd, hdv);
  scratch.resize(static_cast<size_t>(G * total + width));
  float* p = scratch.data();
  float* buf = p + G * total;
  for (int64_t i = 0, off = 0; i < n_views; off += visible[i], ++i)
    score_rows(q, q_stride, G, views[i], visible[i], hd, scale, p + off, total, buf);
  for (int g = 0; g < G; ++g) {
    float* pg = p + g * total;
    const float mx = *std::max_element(pg, pg + total);
    const float sum = exp_shifted(pg, total, mx);
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < total; ++j) pg[j] *= inv;
    if (lse) lse[g] = mx + std::log(sum);
  }
  for (int64_t i = 0, off = 0; i < n_views; off += visible[i], ++i)
    mix_values(p + off, total, G, views[i], visible[i], hdv, out, out_stride, buf);
}

#define KVS_ATTEND_ARGS                                                                                       \
  const float *q, int64_t q_stride, int G, const RowsView *views, int n_views, int64_t hd, int64_t hdv, int32_t q_pos, \
      float scale, float *out, int64_t out_stride, float *lse, std::vector<float> &scratch
#define KVS_ATTEND_CALL \
  attend_group_body(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, lse, scratch)

static void attend_group_generic(KVS_ATTEND_ARGS) { KVS_ATTEND_CALL; }
KVS_TARGET_AVX2 static void attend_group_avx2(KVS_ATTEND_ARGS) { KVS_ATTEND_CALL; }
KVS_TARGET_AVX512 static void attend_group_avx512(KVS_ATTEND_ARGS) { KVS_ATTEND_CALL; }

void attend_group(KVS_ATTEND_ARGS) {
  switch (active_isa()) {
    case Isa::Avx512: return attend_group_avx512(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, lse, scratch);
    case Isa::Avx2: case Isa::Avx2Vnni: return attend_group_avx2(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, lse, scratch);
    default: return attend_group_generic(q, q_stride, G, views, n_views, hd, hdv, q_pos, scale, out, out_stride, lse, scratch);
  }
}

void merge_attention(const float* parts, const float* lses, int n_parts, int G, int64_t hdv, float* out,
                     int64_t out_stride) {
  for (int g = 0; g < G; ++g) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < n_parts; ++i) mx = std::max(mx, lses[i * G + g]);
    float* o = out + g * out_stride;
    std::fill(o, o + hdv, 0.0f);
    if (mx == -std::numeric_limits<float>::infinity()) continue;  // no part saw a row
    float weights = 0;
    for (int i = 0; i < n_parts; ++i) weights += std::exp(lses[i * G + g] - mx);
    for (int i = 0; i < n_parts; ++i) {
      const float w = std::exp(lses[i * G + g] - mx) / weights;
      const float* part = parts + (static_cast<int64_t>(i) * G + g) * hdv;
      for (int64_t c = 0; c < hdv; ++c) o[c] += w * part[c];
    }
  }
}

}  // namespace kvsqueeze
