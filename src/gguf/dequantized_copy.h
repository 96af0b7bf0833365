// A copy of a GGUF model with every matrix dequantized to F16 or F32 (vectors F32,
// metadata as it is): the same weights without quantized arithmetic, to tell what the
// quantization (and the 8-bit activations it brings) changes from what the method does.
#pragma once

#include <string>

#include "gguf/gguf_file.h"
#include "tensor/dtype.h"

namespace kvsqueeze {

// matrix_type: DType::F16 or DType::F32; throws std::invalid_argument otherwise.
void write_dequantized_copy(const GgufFile& src, const std::string& path, DType matrix_type);

}  // namespace kvsqueeze
