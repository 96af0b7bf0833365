#include "kernels/matmul.h"

#include <omp.h>

#include <stdexcept>
#include <vector>

#include "kernels/gemm_packed.h"
#include "kernels/quant_dot.h"
#include "kernels/vec16.h"
#include "tensor/cpu_features.h"
#include "tensor/quant.h"

namespace kvsqueeze {

namespace {

// Sixteen independent partial sums let the compiler vectorise without reassociating.
// The body is compiled once per instruction set (it inlines into each wrapper) and
// dot_f32 calls the one active_isa() selects.
inline __attribute__((always_inline)) float dot_f32_body(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (float v : acc) s += v;
  return s;
}
float dot_f32_generic(const float* a, const float* b, int64_t n) { return dot_f32_body(a, b, n); }
KVS_TARGET_AVX2 float dot_f32_avx2(const float* a, const float* b, int64_t n) { return dot_f32_body(a, b, n); }
KVS_TARGET_AVX512 float dot_f32_avx512(const float* a, const float* b, int64_t n) { return dot_f32_body(a, b, n); }

// Four weight rows times four tokens: sixteen vector accumulators, summed at the end by
// one shuffle tree; every loaded row and token vector serves four products.
// With `add`, the products are added to y (a later slice of the columns).
inline __attribute__((always_inline)) void dot_tile4x4_body(const float* w, int64_t w_stride, const float* x, int64_t x_stride, int64_t n, float* y,
                             int64_t y_stride, bool add) {
  using namespace vec16;
  v16 acc[16] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    v16 wv[4], xv[4];
    for (int r = 0; r < 4; ++r) wv[r] = load(w + r * w_stride + c);
    for (int t = 0; t < 4; ++t) xv[t] = load(x + t * x_stride + c);
    for (int r = 0; r < 4; ++r)
      for (int t = 0; t < 4; ++t) acc[r * 4 + t] += wv[r] * xv[t];
  }
  const v16 sums = sum16(acc);
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < 4; ++t) {
      float v = sums[r * 4 + t];
      for (int64_t k = c; k < n; ++k) v += w[r * w_stride + k] * x[t * x_stride + k];
      y[t * y_stride + r] = add ? y[t * y_stride + r] + v : v;
    }
}
#define KVS_TILE_ARGS \
  const float *w, int64_t w_stride, const float *x, int64_t x_stride, int64_t n, float *y, int64_t y_stride, bool add
void dot_tile4x4_generic(KVS_TILE_ARGS) { dot_tile4x4_body(w, w_stride, x, x_stride, n, y, y_stride, add); }
KVS_TARGET_AVX2 void dot_tile4x4_avx2(KVS_TILE_ARGS) { dot_tile4x4_body(w, w_stride, x, x_stride, n, y, y_stride, add); }
KVS_TARGET_AVX512 void dot_tile4x4_avx512(KVS_TILE_ARGS) { dot_tile4x4_body(w, w_stride, x, x_stride, n, y, y_stride, add); }

void dot_tile4x4(KVS_TILE_ARGS) {
  switch (active_isa()) {
    case Isa::Avx512: return dot_tile4x4_avx512(w, w_stride, x, x_stride, n, y, y_stride, add);
    case Isa::Avx2: case Isa::Avx2Vnni: return dot_tile4x4_avx2(w, w_stride, x, x_stride, n, y, y_stride, add);
    default: return dot_tile4x4_generic(w, w_stride, x, x_stride, n, y, y_stride, add);
  }
}
#undef KVS_TILE_ARGS

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return dot_f32_avx512(a, b, n);
    case Isa::Avx2: case Isa::Avx2Vnni: return dot_f32_avx2(a, b, n);
    default: return dot_f32_generic(a, b, n);
  }
}

void matmul_reference(const MatrixView& w, const float* x, int64_t n_tokens, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w.type, w.row(r), row.data(), w.cols);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c) s += static_cast<double>(row[c]) * x[t * w.cols + c];
      y[t * w.rows + r] = static_cast<float>(s);
    }
  }
}

namespace {

constexpr int64_t kRowBlock = 16;  // rows whose weights stay in L1 while every token passes over them

// One block of rows of a quantized product, for every token, from quantized activations:
// register tiles of 4 rows x up to 4 tokens. Each (row, token) product runs the same
// instructions in the same order whatever the tile, so a column equals its product alone.
void quantized_row_block(const MatrixView& w, const uint8_t* act, int64_t arb, int64_t n_tokens, float* y,
                         int64_t blk) {
  const int kRows = 4, kTokens = static_cast<int>(std::min<int64_t>(4, n_tokens));
  const int64_t stride = w.row_stride();
  const int64_t r0 = blk * kRowBlock, r1 = std::min(w.rows, r0 + kRowBlock);
  // Decoding streams each weight once. The AVX-512 tiles read four rows side by side, four
  // short streams the hardware prefetchers do not follow: fetch the next tile ahead. The
  // AVX2 kernels read one row after another, one long stream they do follow, and there
  // software prefetches only stall on full miss queues (both measured on Zen 4).
  const bool prefetch = n_tokens < 8 && use_avx512();
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokens) {
    const int nt = static_cast<int>(std::min<int64_t>(kTokens, n_tokens - t0));
    const void* a[4];
    for (int k = 0; k < nt; ++k) a[k] = act + (t0 + k) * arb;
    for (int64_t r = r0; r < r1; r += kRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kRows, r1 - r));
      const void* rows[4];
      for (int k = 0; k < nr; ++k) rows[k] = w.data + (r + k) * stride;
      if (prefetch && r + 2 * kRows <= w.rows) {
        const char* next = reinterpret_cast<const char*>(w.data + (r + kRows) * stride);
        for (int64_t off = 0; off < kRows * stride; off += 64) __builtin_prefetch(next + off);
      }
      quant_dot_tile(w.type, rows, nr, a, nt, w.cols, y + t0 * w.rows + r, w.rows);
    }
  }
}

// Activations in the layout one kind of product reads: 8-bit blocks of 32 or 256
// (quant_dot), or the packed rows of the prompt kernel (whose columns are exact but not
// equal to a one-token product's: it sums in another order).
bool packed(DType t, int64_t n_tokens, Columns columns) {
  return columns == Columns::Fastest && use_packed_gemm(t, n_tokens);
}
int activation_layout(DType t, int64_t n_tokens, Columns columns) {
  return packed(t, n_tokens, columns) ? 0 : act_block_elems(t);
}
int64_t activation_row_bytes(DType t, int64_t n_tokens, int64_t cols, Columns columns) {
  return packed(t, n_tokens, columns) ? packed_gemm_act_bytes(cols) : act_row_bytes(t, cols);
}

// Products with quantized weights: each distinct activation layout is made once, then
// one parallel loop runs over the row blocks of every product.
void matmul_quantized(const MatmulOut* products, size_t n_products, const float* x, int64_t n_tokens, Columns columns) {
  const int64_t cols = products[0].w->cols;
  struct Layout {
    DType type;  // any weight type that reads this layout
    uint8_t* act;
  };
  // The buffers are kept between calls: freeing and re-faulting their pages on every
  // product was a measurable share of a prompt (the heap gives large blocks back).
  thread_local std::vector<std::vector<uint8_t>> buffers;
  std::vector<Layout> layouts;
  std::vector<size_t> layout_of(n_products);
  std::vector<int64_t> first_block(n_products + 1, 0);
  for (size_t p = 0; p < n_products; ++p) {
    const DType t = products[p].w->type;
    size_t k = 0;
    while (k < layouts.size() &&
           activation_layout(layouts[k].type, n_tokens, columns) != activation_layout(t, n_tokens, columns))
      ++k;
    if (k == layouts.size()) {
      if (buffers.size() <= k) buffers.resize(k + 1);
      buffers[k].resize(static_cast<size_t>(n_tokens * activation_row_bytes(t, n_tokens, cols, columns)));
      layouts.push_back({t, buffers[k].data()});
    }
    layout_of[p] = k;
    first_block[p + 1] = first_block[p] + (products[p].w->rows + kRowBlock - 1) / kRowBlock;
  }
  for (Layout& lay : layouts) {
    const int64_t arb = activation_row_bytes(lay.type, n_tokens, cols, columns);
    const bool pack = packed(lay.type, n_tokens, columns);
#pragma omp parallel for schedule(static) if (n_tokens > 1)
    for (int64_t t = 0; t < n_tokens; ++t) {
      if (pack) packed_gemm_pack_activations(x + t * cols, lay.act + t * arb, cols);
      else quantize_activations(lay.type, x + t * cols, lay.act + t * arb, cols);
    }
  }
  const int64_t n_blocks = first_block[n_products];
#pragma omp parallel
  {
    std::vector<uint8_t> packed_weights;  // per thread, reused across row blocks
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      size_t p = 0;
      while (first_block[p + 1] <= b) ++p;
      const MatrixView& w = *products[p].w;
      const uint8_t* act = layouts[layout_of[p]].act;
      const int64_t blk = b - first_block[p];
      if (packed(w.type, n_tokens, columns)) {
        const int64_t r0 = blk * kRowBlock;
        packed_gemm_rows(w.type, w.data + r0 * w.row_stride(), w.row_stride(), static_cast<int>(std::min(kRowBlock, w.rows - r0)),
                       act, n_tokens, cols, products[p].y + r0, w.rows, packed_weights);
      } else {
        quantized_row_block(w, act, act_row_bytes(w.type, cols), n_tokens, products[p].y, blk);
      }
    }
  }
}

void matmul_dequantized(const MatrixView& w, const float* x, int64_t n_tokens, float* y, Columns columns) {
  // 16 decoded rows at a time; the columns in slices of kSlice so four rows and four
  // tokens of a slice stay in L1 while the 4 x 4 register tiles run over them.
  constexpr int64_t kRowBlock = 16, kSlice = 256;
  const int64_t n_blocks = (w.rows + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    std::vector<float> rows(static_cast<size_t>(kRowBlock * w.cols));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t r0 = blk * kRowBlock, r1 = std::min(w.rows, r0 + kRowBlock);
      for (int64_t r = r0; r < r1; ++r) dequantize_row(w.type, w.row(r), rows.data() + (r - r0) * w.cols, w.cols);
      // Tiles on AVX-512 only: narrower targets emulate sum16's 16-lane shuffles slowly.
      // They sum in another order than dot_f32, so columns that must equal a one-token
      // product take dot_f32 too.
      const bool tiles = active_isa() == Isa::Avx512 && columns == Columns::Fastest;
      const int64_t t4 = tiles ? n_tokens / 4 * 4 : 0, r4 = r0 + (r1 - r0) / 4 * 4;
      for (int64_t c0 = 0; c0 < w.cols; c0 += kSlice) {
        const int64_t nc = std::min(kSlice, w.cols - c0);
        for (int64_t t = 0; t < t4; t += 4)
          for (int64_t r = r0; r < r4; r += 4)
            dot_tile4x4(rows.data() + (r - r0) * w.cols + c0, w.cols, x + t * w.cols + c0, w.cols, nc,
                        y + t * w.rows + r, w.rows, c0 > 0);
      }
      // The ragged edges, one product at a time.
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t r = (t < t4 ? r4 : r0); r < r1; ++r)
          y[t * w.rows + r] = dot_f32(rows.data() + (r - r0) * w.cols, x + t * w.cols, w.cols);
    }
  }
}

}  // namespace

void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y, Columns columns) {
  matmul_shared_input({MatmulOut{&w, y}}, x, n_tokens, columns);
}

void matmul_shared_input(std::initializer_list<MatmulOut> products, const float* x, int64_t n_tokens, Columns columns) {
  std::vector<MatmulOut> quantized;
  for (const MatmulOut& p : products) {
    if (p.w->cols != products.begin()->w->cols) throw std::invalid_argument("products of one input need equal widths");
    if (has_quant_dot(p.w->type)) quantized.push_back(p);
    else matmul_dequantized(*p.w, x, n_tokens, p.y, columns);
  }
  if (!quantized.empty()) matmul_quantized(quantized.data(), quantized.size(), x, n_tokens, columns);
}

}  // namespace kvsqueeze
