// Integer dot products of quantized weight rows with 8-bit quantized activations.
// Activations are quantized per block (32 or 256 values) to int8 with a float scale,
// the way llama.cpp does it; the products then run on integer SIMD units (AVX2).
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace kvsqueeze {

// Activation block for the 32-wide weight formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
struct ActBlock32 {
  float d;    // scale
  float sum;  // d * sum(qs): the nibble formats add their offset through it
  int8_t qs[32];
};

// Activation super-block for the K formats (Q4_K, Q5_K, Q6_K).
struct ActBlock256 {
  float d;
  int16_t bsums[16];  // sum of each 16-value group of qs
  int8_t qs[256];
};

// True when this CPU runs the SIMD kernels and `t` has one.
bool has_quant_dot(DType t);
// Activation block size (32 or 256) the kernel for `t` expects, and bytes per row of n.
int act_block_elems(DType t);
int64_t act_row_bytes(DType t, int64_t n);
// Quantizes one activation row of n floats into the layout the kernel for `t` expects.
void quantize_activations(DType t, const float* x, void* out, int64_t n);
// Dot product of one weight row (n elements of type t) with one quantized activation row.
float quant_dot(DType t, const void* w_row, const void* act_row, int64_t n);
// A tile of dot products: n_rows weight rows x n_act activation rows, written to
// out[a * out_stride + r]. Uses a register-blocked kernel where one exists (weights and
// activations each loaded once per tile), else loops quant_dot.
void quant_dot_tile(DType t, const void* const* w_rows, int n_rows, const void* const* act_rows, int n_act, int64_t n,
                    float* out, int64_t out_stride);

}  // namespace kvsqueeze
