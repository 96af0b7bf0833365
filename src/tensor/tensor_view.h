// A non-owning view of a 2-D weight matrix stored row-major in any supported type.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace kvsqueeze {

struct MatrixView {
  DType type = DType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;  // output features
  int64_t cols = 0;  // input features (contiguous)

  int64_t row_stride() const { return row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return data + r * row_stride(); }
  bool empty() const { return data == nullptr; }
};

}  // namespace kvsqueeze
