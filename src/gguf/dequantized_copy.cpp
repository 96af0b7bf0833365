#include "gguf/dequantized_copy.h"

#include <stdexcept>
#include <vector>

#include "gguf/gguf_writer.h"
#include "tensor/quant.h"

namespace kvsqueeze {

void write_dequantized_copy(const GgufFile& src, const std::string& path, DType matrix_type) {
  if (matrix_type != DType::F16 && matrix_type != DType::F32)
    throw std::invalid_argument("a dequantized copy holds F16 or F32 matrices");
  GgufWriter w;
  // general.file_type: 0 all F32, 1 mostly F16 (llama.cpp's numbering).
  const uint32_t file_type = matrix_type == DType::F16 ? 1 : 0;
  for (const auto& [key, value] : src.metadata()) w.set(key, key == "general.file_type" ? GgufValue::u32(file_type) : value);
  std::vector<float> row;
  for (const auto& t : src.tensors()) {
    const DType type = t.dims.size() >= 2 ? matrix_type : DType::F32;
    const int64_t cols = t.cols(), rows = t.rows();
    std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes(type, cols)));
    row.resize(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t.type, t.data + r * row_bytes(t.type, cols), row.data(), cols);
      quantize_row(type, row.data(), out.data() + r * row_bytes(type, cols), cols);
    }
    w.add_tensor(t.name, t.dims, type, std::move(out));
  }
  w.write(path);
}

}  // namespace kvsqueeze
