#include "kernels/matmul.h"

#include <omp.h>

#include <vector>

#include "kernels/quant_dot.h"
#include "tensor/cpu_features.h"
#include "tensor/quant.h"

namespace kvsqueeze {

namespace {

// Sixteen independent partial sums let the compiler vectorise without reassociating.
// The body is compiled once per instruction set (it inlines into each wrapper) and
// dot_f32 calls the one active_isa() selects.
inline float dot_f32_body(const float* a, const float* b, int64_t n) {
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

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return dot_f32_avx512(a, b, n);
    case Isa::Avx2: return dot_f32_avx2(a, b, n);
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

// Quantized weights: activations go to 8-bit blocks once, then integer dot products.
void matmul_quantized(const MatrixView& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t arb = act_row_bytes(w.type, w.cols);
  std::vector<uint8_t> act(static_cast<size_t>(n_tokens * arb));
#pragma omp parallel for schedule(static) if (n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) quantize_activations(w.type, x + t * w.cols, act.data() + t * arb, w.cols);
  // Rows in blocks so a block's weights stay in L1 while every token passes over them;
  // inside a block, register tiles of kRows x kTokens (4 x 1 when decoding one token).
  constexpr int64_t kRowBlock = 16;
  const int kRows = 4, kTokens = n_tokens < 4 ? 1 : 4;
  const int64_t n_blocks = (w.rows + kRowBlock - 1) / kRowBlock;
  const int64_t stride = w.row_stride();
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t r0 = blk * kRowBlock, r1 = std::min(w.rows, r0 + kRowBlock);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(kTokens, n_tokens - t0));
      const void* a[4];
      for (int k = 0; k < nt; ++k) a[k] = act.data() + (t0 + k) * arb;
      for (int64_t r = r0; r < r1; r += kRows) {
        const int nr = static_cast<int>(std::min<int64_t>(kRows, r1 - r));
        const void* rows[4];
        for (int k = 0; k < nr; ++k) rows[k] = w.data + (r + k) * stride;
        // Decoding streams each weight once: fetch the next tile's rows ahead of use.
        if (n_tokens < 4 && r + 2 * kRows <= w.rows) {
          const char* next = reinterpret_cast<const char*>(w.data + (r + kRows) * stride);
          for (int64_t off = 0; off < kRows * stride; off += 64) __builtin_prefetch(next + off);
        }
        quant_dot_tile(w.type, rows, nr, a, nt, w.cols, y + t0 * w.rows + r, w.rows);
      }
    }
  }
}

}  // namespace

void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y) {
  if (has_quant_dot(w.type)) {
    matmul_quantized(w, x, n_tokens, y);
    return;
  }
  constexpr int64_t kRowBlock = 8;
  const int64_t n_blocks = (w.rows + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    std::vector<float> rows(static_cast<size_t>(kRowBlock * w.cols));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t r0 = blk * kRowBlock, r1 = std::min(w.rows, r0 + kRowBlock);
      for (int64_t r = r0; r < r1; ++r) dequantize_row(w.type, w.row(r), rows.data() + (r - r0) * w.cols, w.cols);
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t r = r0; r < r1; ++r)
          y[t * w.rows + r] = dot_f32(rows.data() + (r - r0) * w.cols, x + t * w.cols, w.cols);
    }
  }
}

}  // namespace kvsqueeze
