#include "kernels/flash_attention.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/vec16.h"
#include "tensor/cpu_features.h"
#include "tensor/quant.h"

namespace kvsqueeze {
namespace {

using namespace vec16;

#define KVS_INLINE inline __attribute__((always_inline))

constexpr int64_t kKeyTile = 64;  // key rows per tile
constexpr float kMasked = -std::numeric_limits<float>::infinity();

// The pieces of one call's scratch memory. Rows m = i * G + g (token i, head g) run
// along the vectors: Mp rows, padded to whole vectors.
struct Buffers {
  float* qt;    // [hd][Mp] queries, transposed and pre-scaled
  int32_t* qp;  // [Mp] each row's position
  float* st;    // [kKeyTile][Mp] scores, then probabilities (key-major)
  float* kbuf;  // [kKeyTile][hd] decoded key rows (+ one zero row for padding)
  float* vbuf;  // [kKeyTile][hdvp] decoded value rows, padded to whole vectors
  float* o;     // [Mp][hdvp] unnormalised outputs
  float* mx;    // [Mp] running maxima
  float* l;     // [Mp] running sums
  float* fac;   // [Mp] this tile's rescaling factors
};

// The register tiles run on V, a vector the target holds in one register (v16 under
// AVX-512, 8 floats under AVX2): GCC keeps arrays of wider vectors on the stack.
template <typename V>
KVS_INLINE V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V>
KVS_INLINE void vstore(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

// st[j][m] = Σ_d k[j][d] · qt[d][m] for keys j0..j0+NK-1 and NW vectors of rows from r0.
template <typename V, int NW, int NK>
KVS_INLINE void score_block(const float* const* k, const float* qt, int64_t Mp, int64_t hd, int64_t r0, float* st,
                            int64_t j0) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  V acc[NK][NW] = {};
  for (int64_t d = 0; d < hd; ++d) {
    V qv[NW];
    for (int w = 0; w < NW; ++w) qv[w] = vload<V>(qt + d * Mp + r0 + w * L);
    for (int jj = 0; jj < NK; ++jj) {
      const float kd = k[jj][d];
      for (int w = 0; w < NW; ++w) acc[jj][w] += qv[w] * kd;
    }
  }
  for (int jj = 0; jj < NK; ++jj)
    for (int w = 0; w < NW; ++w) vstore(st + (j0 + jj) * Mp + r0 + w * L, acc[jj][w]);
}

// o[m][c0 ..] += Σ_j st[j][m] · v[j][c0 ..] for rows m0..m0+NR-1, NW vectors of columns.
template <typename V, int NW, int NR>
KVS_INLINE void mix_block(const float* st, int64_t Mp, const float* vals, int64_t vs, int64_t cnt, float* o,
                          int64_t hdvp, int64_t m0, int64_t c0) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  V acc[NR][NW];
  for (int r = 0; r < NR; ++r)
    for (int w = 0; w < NW; ++w) acc[r][w] = vload<V>(o + (m0 + r) * hdvp + c0 + w * L);
  for (int64_t j = 0; j < cnt; ++j) {
    V vj[NW];
    for (int w = 0; w < NW; ++w) vj[w] = vload<V>(vals + j * vs + c0 + w * L);
    for (int r = 0; r < NR; ++r) {
      const float p = st[j * Mp + m0 + r];
      for (int w = 0; w < NW; ++w) acc[r][w] += vj[w] * p;
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int w = 0; w < NW; ++w) vstore(o + (m0 + r) * hdvp + c0 + w * L, acc[r][w]);
}

// The widest tile of at most MaxNW vectors that `avail` vectors allow (and, mixing, of at
// most NR rows that `rows` allow).
template <typename V, int MaxNW, int NK>
KVS_INLINE void score_tile(int64_t avail, const float* const* k, const float* qt, int64_t Mp, int64_t hd, int64_t r0,
                           float* st, int64_t j0) {
  if constexpr (MaxNW > 1)
    if (avail < MaxNW) return score_tile<V, MaxNW - 1, NK>(avail, k, qt, Mp, hd, r0, st, j0);
  score_block<V, MaxNW, NK>(k, qt, Mp, hd, r0, st, j0);
}
template <typename V, int MaxNW, int NR>
KVS_INLINE void mix_tile(int64_t avail, int64_t rows, const float* st, int64_t Mp, const float* vals, int64_t vs,
                         int64_t cnt, float* o, int64_t hdvp, int64_t m0, int64_t c0) {
  if constexpr (NR > 1)
    if (rows < NR) return mix_tile<V, MaxNW, NR - 1>(avail, rows, st, Mp, vals, vs, cnt, o, hdvp, m0, c0);
  if constexpr (MaxNW > 1)
    if (avail < MaxNW) return mix_tile<V, MaxNW - 1, NR>(avail, rows, st, Mp, vals, vs, cnt, o, hdvp, m0, c0);
  mix_block<V, MaxNW, NR>(st, Mp, vals, vs, cnt, o, hdvp, m0, c0);
}

// Register tiles of up to MaxNW vectors V per key (scores) or per row (mixing), NK keys
// or rows at a time: 4 keys × 4 × 16 floats fill AVX-512's 32 registers; AVX2 takes
// 6 × 2 × 8 (12 of its 16 registers: 8 sums would be just the fused multiply-adds that
// two pipes of 4 cycles' latency keep in flight, with no slack). Results do not depend
// on the tiles: each sum runs in the same order whatever they are.
template <typename V, int MaxNW, int NK>
KVS_INLINE void flash_body(const float* q, int64_t q_stride, int G, int nq, const int32_t* q_pos, const RowsView* views,
                           int n_views, int64_t hd, int64_t hdv, float scale, int32_t window, float* out,
                           int64_t out_stride, FlashScratch& scratch) {
  const int64_t M = int64_t{G} * nq, Mv = (M + kLanes - 1) / kLanes, Mp = Mv * kLanes;
  const int64_t hdvp = (hdv + kLanes - 1) / kLanes * kLanes;
  // st has room for the key groups' padding rows past kKeyTile (scores of zero rows).
  const int64_t st_rows = (kKeyTile + NK - 1) / NK * NK;
  scratch.buf.resize(static_cast<size_t>(hd * Mp + Mp + st_rows * Mp + (kKeyTile + 1) * hd + kKeyTile * hdvp +
                                         Mp * hdvp + 3 * Mp));
  Buffers b;
  b.qt = scratch.buf.data();
  b.qp = reinterpret_cast<int32_t*>(b.qt + hd * Mp);
  b.st = b.qt + hd * Mp + Mp;
  b.kbuf = b.st + st_rows * Mp;
  b.vbuf = b.kbuf + (kKeyTile + 1) * hd;
  b.o = b.vbuf + kKeyTile * hdvp;
  b.mx = b.o + Mp * hdvp;
  b.l = b.mx + Mp;
  b.fac = b.l + Mp;
  // No window: a span longer than any position difference (positions stay below 2^30).
  const int32_t win = window > 0 ? window : int32_t{1} << 30;
  int32_t q_min = q_pos[0], q_max = q_pos[0];
  for (int i = 1; i < nq; ++i) {
    q_min = std::min(q_min, q_pos[i]);
    q_max = std::max(q_max, q_pos[i]);
  }
  for (int64_t m = 0; m < Mp; ++m) {
    const bool real = m < M;
    const float* src = real ? q + (m / G) * q_stride + (m % G) * hd : nullptr;
    for (int64_t d = 0; d < hd; ++d) b.qt[d * Mp + m] = real ? src[d] * scale : 0.0f;
    b.qp[m] = real ? q_pos[m / G] : q_max;  // padding rows: harmless, never written out
  }
  const float* zero_row = b.kbuf + kKeyTile * hd;
  std::fill(b.kbuf + kKeyTile * hd, b.kbuf + (kKeyTile + 1) * hd, 0.0f);
  std::fill(b.o, b.o + Mp * hdvp, 0.0f);
  std::fill(b.mx, b.mx + Mp, kMasked);
  std::fill(b.l, b.l + Mp, 0.0f);

  for (int vi = 0; vi < n_views; ++vi) {
    const RowsView& view = views[vi];
    const int64_t n_vis = std::upper_bound(view.pos, view.pos + view.n, q_max) - view.pos;
    for (int64_t j0 = 0; j0 < n_vis; j0 += kKeyTile) {
      const int64_t cnt = std::min(kKeyTile, n_vis - j0);
      const int32_t* pos = view.pos + j0;
      // Key rows as float32: in place for f32 views, else decoded.
      const float* keys;
      int64_t ks;
      if (view.type == DType::F32) {
        keys = reinterpret_cast<const float*>(view.k + j0 * view.k_stride);
        ks = view.k_stride / static_cast<int64_t>(sizeof(float));
      } else {
        dequantize_row(view.type, view.k + j0 * view.k_stride, b.kbuf, cnt * hd);
        keys = b.kbuf;
        ks = hd;
      }
      // Scores, key-major: NK keys at a time (missing keys read a zero row).
      for (int64_t jq = 0; jq < cnt; jq += NK) {
        const float* krow[NK];
        for (int jj = 0; jj < NK; ++jj) krow[jj] = jq + jj < cnt ? keys + (jq + jj) * ks : zero_row;
        constexpr int64_t L = sizeof(V) / sizeof(float);
        for (int64_t r0 = 0; r0 < Mp; r0 += MaxNW * L)
          score_tile<V, MaxNW, NK>((Mp - r0) / L, krow, b.qt, Mp, hd, r0, b.st, jq);
      }
      // Causal (and sliding-window) mask and online softmax, one vector V of rows at a
      // time (lane by lane: the same values whatever V's width).
      const bool all_visible = pos[cnt - 1] <= q_min && q_max - pos[0] < win;
      constexpr int64_t L = sizeof(V) / sizeof(float);
      using VI = typename IntLanes<V>::type;
      const V masked = V{} + kMasked, zero = V{};
      for (int64_t v = 0; v < Mp; v += L) {
        VI qp;
        std::memcpy(&qp, b.qp + v, sizeof qp);
        V tile_max = masked;
        for (int64_t j = 0; j < cnt; ++j) {
          float* sp = b.st + j * Mp + v;
          V sv = vload<V>(sp);
          if (!all_visible) {
            const VI pj = VI{} + pos[j];
            sv = ((pj > qp) | (pj + win <= qp)) ? masked : sv;
            vstore(sp, sv);
          }
          tile_max = tile_max > sv ? tile_max : sv;
        }
        const V old_max = vload<V>(b.mx + v);
        const V new_max = old_max > tile_max ? old_max : tile_max;
        const V seen = new_max > kMasked ? new_max : zero;  // a finite reference
        V sum = zero;
        for (int64_t j = 0; j < cnt; ++j) {
          float* sp = b.st + j * Mp + v;
          const V sv = vload<V>(sp);
          const V p = sv > kMasked ? vexp_lanes<V, VI>(sv - seen) : zero;
          vstore(sp, p);
          sum += p;
        }
        const V fac = old_max > kMasked ? vexp_lanes<V, VI>(old_max - seen) : zero;
        vstore(b.l + v, vload<V>(b.l + v) * fac + sum);
        vstore(b.mx + v, new_max);
        vstore(b.fac + v, fac);
      }
      for (int64_t m = 0; m < Mp; ++m) {
        const float f = b.fac[m];
        if (f != 1.0f)
          for (int64_t c = 0; c < hdvp; ++c) b.o[m * hdvp + c] *= f;
      }
      // Value rows as float32, padded to whole vectors when hdv needs it.
      const float* vals;
      int64_t vs;
      if (view.type == DType::F32 && hdv == hdvp) {
        vals = reinterpret_cast<const float*>(view.v + j0 * view.v_stride);
        vs = view.v_stride / static_cast<int64_t>(sizeof(float));
      } else {
        for (int64_t j = 0; j < cnt; ++j) {
          float* dst = b.vbuf + j * hdvp;
          if (view.type == DType::F32) std::memcpy(dst, view.v + (j0 + j) * view.v_stride, static_cast<size_t>(hdv) * 4);
          else dequantize_row(view.type, view.v + (j0 + j) * view.v_stride, dst, hdv);
          std::fill(dst + hdv, dst + hdvp, 0.0f);
        }
        vals = b.vbuf;
        vs = hdvp;
      }
      for (int64_t c0 = 0; c0 < hdvp; c0 += MaxNW * L)
        for (int64_t m0 = 0; m0 < Mp; m0 += NK)
          mix_tile<V, MaxNW, NK>((hdvp - c0) / L, Mp - m0, b.st, Mp, vals, vs, cnt, b.o, hdvp, m0, c0);
    }
  }

  for (int64_t m = 0; m < M; ++m) {
    float* dst = out + (m / G) * out_stride + (m % G) * hdv;
    const float inv = b.l[m] > 0 ? 1.0f / b.l[m] : 0.0f;
    for (int64_t c = 0; c < hdv; ++c) dst[c] = b.o[m * hdvp + c] * inv;
  }
}

#define KVS_FLASH_ARGS                                                                                         \
  const float *q, int64_t q_stride, int G, int nq, const int32_t *q_pos, const RowsView *views, int n_views, \
      int64_t hd, int64_t hdv, float scale, int32_t window, float *out, int64_t out_stride, FlashScratch &scratch
#define KVS_FLASH_CALL(V, max_nw, nk) \
  flash_body<V, max_nw, nk>(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, window, out, out_stride, scratch)

void flash_generic(KVS_FLASH_ARGS) { KVS_FLASH_CALL(v8, 2, 4); }
KVS_TARGET_AVX2 void flash_avx2(KVS_FLASH_ARGS) { KVS_FLASH_CALL(v8, 2, 6); }
KVS_TARGET_AVX512 void flash_avx512(KVS_FLASH_ARGS) { KVS_FLASH_CALL(v16, 4, 4); }

}  // namespace

void flash_attend(KVS_FLASH_ARGS) {
  if (nq <= 0) return;
  switch (active_isa()) {
    case Isa::Avx512: return flash_avx512(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, window, out, out_stride, scratch);
    case Isa::Avx2: case Isa::Avx2Vnni: return flash_avx2(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, window, out, out_stride, scratch);
    default: return flash_generic(q, q_stride, G, nq, q_pos, views, n_views, hd, hdv, scale, window, out, out_stride, scratch);
  }
}

}  // namespace kvsqueeze
