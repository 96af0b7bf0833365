// Matrix products of a (possibly quantized) weight matrix with float activations.
#pragma once

#include <cstdint>

#include "tensor/tensor_view.h"

namespace kvsqueeze {

// Y[t][r] = sum_c W[r][c] * X[t][c] for t < n_tokens, r < W.rows.
// X is [n_tokens][W.cols], Y is [n_tokens][W.rows]; both row-major float32.
// Parallel over output rows with the current OpenMP thread count.
void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y);

// The same product computed by decoding each weight row to float32 first: slow, exact
// with respect to the stored weights. The reference the fast kernels are tested against.
void matmul_reference(const MatrixView& w, const float* x, int64_t n_tokens, float* y);

// Dot product of two float vectors (vectorised, runtime ISA dispatch).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace kvsqueeze
