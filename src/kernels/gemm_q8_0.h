// Prompt-sized products of Q8_0 weights on AVX-512 VNNI. Both operands are laid out once
// per call in the shape the inner loop wants, so that loop is four vector instructions
// per 64 multiply-adds: activations as unsigned bytes (x + 128) with their block scales
// spread over the lanes, weights with their scales and the -128·Σw correction beside
// them. Decoding (one token) keeps the plain kernel: there each weight is used once.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace kvsqueeze {

// True when this path applies: AVX-512 active, Q8_0 weights, at least a few tokens.
bool use_q8_0_gemm(DType weights, int64_t n_tokens);

// Bytes of one packed activation row of n values (n a multiple of 32).
int64_t q8_0_gemm_act_bytes(int64_t n);
// Quantizes one activation row (the same 8-bit blocks as quantize_activations) and packs it.
void q8_0_gemm_pack_activations(const float* x, uint8_t* out, int64_t n);

// y[t * y_stride + r] = W[r] · x[t] for r < n_rows, t < n_tokens; W rows are Q8_0 at
// w + r * w_stride, n values each; acts holds n_tokens packed rows. scratch holds the
// packed weights (grown as needed; reuse it across calls of one thread).
void q8_0_gemm_rows(const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts, int64_t n_tokens, int64_t n,
                    float* y, int64_t y_stride, std::vector<uint8_t>& scratch);

}  // namespace kvsqueeze
