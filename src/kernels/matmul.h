// Matrix products of a (possibly quantized) weight matrix with float activations.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "tensor/tensor_view.h"

namespace kvsqueeze {

// How the columns (tokens) of a product may be computed. A prompt takes the fastest
// kernel for its width; a decode batch asks for every column bit for bit as the product
// of that column alone, so that a session's tokens never depend on who it is batched with.
enum class Columns { Fastest, AsAlone };

// Y[t][r] = sum_c W[r][c] * X[t][c] for t < n_tokens, r < W.rows.
// X is [n_tokens][W.cols], Y is [n_tokens][W.rows]; both row-major float32.
// Parallel over output rows with the current OpenMP thread count.
void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y, Columns columns = Columns::Fastest);

// Several products of the same activations (Q, K and V; gate and up): the activations
// are quantized once per block format and all row blocks of all products share one
// parallel loop, so short products do not each pay a fork and a barrier.
struct MatmulOut {
  const MatrixView* w;
  float* y;  // [n_tokens][w->rows]
};
void matmul_shared_input(std::initializer_list<MatmulOut> products, const float* x, int64_t n_tokens,
                         Columns columns = Columns::Fastest);

// The same product computed by decoding each weight row to float32 first: slow, exact
// with respect to the stored weights. The reference the fast kernels are tested against.
void matmul_reference(const MatrixView& w, const float* x, int64_t n_tokens, float* y);

// Dot product of two float vectors (vectorised, runtime ISA dispatch).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace kvsqueeze
