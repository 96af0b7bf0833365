// Matrix products of a (possibly quantized) weight matrix with float activations.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "tensor/tensor_view.h"

namespace kvsqueeze {

// Y[t][r] = sum_c W[r][c] * X[t][c] for t < n_tokens, r < W.rows.
// X is [n_tokens][W.cols], Y is [n_tokens][W.rows]; both row-major float32.
// Parallel over output rows with the current OpenMP thread count.
void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y);

// Several products of the same activations (Q, K and V; gate and up): the activations
// are quantized once per block format and all row blocks of all products share one
// parallel loop, so short products do not each pay a fork and a barrier.
struct MatmulOut {
  const MatrixView* w;
  float* y;  // [n_tokens][w->rows]
};
void matmul_shared_input(std::initializer_list<MatmulOut> products, const float* x, int64_t n_tokens);

// The same product computed by decoding each weight row to float32 first: slow, exact
// with respect to the stored weights. The reference the fast kernels are tested against.
void matmul_reference(const MatrixView& w, const float* x, int64_t n_tokens, float* y);

// Dot product of two float vectors (vectorised, runtime ISA dispatch).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace kvsqueeze
