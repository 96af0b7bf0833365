// Prompt-sized products of quantized weights, on AVX-512 VNNI (below) or AVX2
// (gemm_packed_avx2.h: another layout, same contract). Both operands are laid out
// once per call in the shape the inner loop wants, so that loop is four vector
// instructions per 64 multiply-adds (five for formats with a per-block offset):
// activations as unsigned bytes (x + 128) with their block scales spread over the lanes,
// weights decoded to signed bytes with their lane scales, the -128·Σw correction and any
// block offset beside them. Decoding (one token) keeps the quant_dot kernels: there each
// weight is read once and packing would cost more than it saves.
//
// Every 32-value block of every supported format is written as value = s·q + o with
// q a small signed integer, s a scale per group of four values (per block, or per 16
// values for Q6_K) and o a per-block offset (Q4_1, Q5_1, Q4_K, Q5_K). Activations are
// quantized in blocks of 32 whatever the weight format (finer than the 256-value blocks
// the K-format decode kernels use).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace kvsqueeze {

// True when this path applies: AVX2 or AVX-512 active, a supported format, at least a few
// tokens. The layouts below are those of the active instruction set.
bool use_packed_gemm(DType weights, int64_t n_tokens);

// Bytes of one packed activation row of n values (n a multiple of 32).
int64_t packed_gemm_act_bytes(int64_t n);
// Quantizes one activation row to 8-bit blocks of 32 (quantize_activations for Q8_0) and packs it.
void packed_gemm_pack_activations(const float* x, uint8_t* out, int64_t n);

// y[t * y_stride + r] = W[r] · x[t] for r < n_rows, t < n_tokens; W rows are of type
// `type` at w + r * w_stride, n values each; acts holds n_tokens packed rows. scratch
// holds the packed weights (grown as needed; reuse it across calls of one thread).
void packed_gemm_rows(DType type, const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts,
                      int64_t n_tokens, int64_t n, float* y, int64_t y_stride, std::vector<uint8_t>& scratch);

}  // namespace kvsqueeze
