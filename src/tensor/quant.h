// Row conversion between float32 and every supported storage type.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace kvsqueeze {

// Decodes n elements (a multiple of the type's block size) of type t into dst.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Encodes n floats into type t. Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q4_K, Q5_K, Q6_K. Quantizers are simple round-to-nearest schemes: good enough
// for test models, not tuned for accuracy like an imatrix quantizer.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace kvsqueeze
