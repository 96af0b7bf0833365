#include "kernels/matmul.h"

#include <omp.h>

#include <vector>

#include "tensor/quant.h"

namespace kvsqueeze {

// Sixteen independent partial sums let the compiler vectorise without reassociating;
// target_clones picks the widest ISA the CPU has at load time.
__attribute__((target_clones("avx512f", "avx2", "default")))
float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (float v : acc) s += v;
  return s;
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

void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y) {
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
