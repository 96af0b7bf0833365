// The AVX2 flavour of the packed prompt kernel (gemm_packed.h dispatches to it when
// AVX-512 is not active). Its layout differs from the AVX-512 one: eight weight rows are
// interleaved four bytes at a time, so that one register holds the same four columns of
// eight rows and the eight lanes of every sum are eight outputs — no horizontal
// reductions, and each block's scales are applied to eight rows at once. Plain AVX2 sums
// a group through maddubs (16-bit pair sums, widened); at Avx2Vnni one vpdpbusd on the
// same layout does the four products and the widening at once.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace kvsqueeze::gemm_avx2 {

int64_t act_bytes(int64_t n);
void pack_activations(const float* x, uint8_t* out, int64_t n);
void gemm_rows(DType type, const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts, int64_t n_tokens,
               int64_t n, float* y, int64_t y_stride, std::vector<uint8_t>& scratch);

}  // namespace kvsqueeze::gemm_avx2
