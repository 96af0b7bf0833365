// Storage types: conversions and quantize/dequantize round trips.
#include <cmath>
#include <random>

#include "tensor/half.h"
#include "tensor/quant.h"
#include "test_util.h"

using namespace kvsqueeze;

TEST(Half, ExactValuesRoundTrip) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f})
    EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(f)), f) << f;
  EXPECT_TRUE(std::isinf(fp16_to_fp32(fp32_to_fp16(1e6f))));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(fp32_to_fp16(1.0009765625f + 0.00048828125f), 0x3C02);  // tie rounds to even
  EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(3.140625f)), 3.140625f);
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
}

TEST(Half, AllHalfBitPatternsSurviveFloat) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << h;
  }
}

namespace {
struct Bound {
  DType type;
  double max_rel_l2;  // round-trip error bound for Gaussian data
};
}  // namespace

class QuantRoundTrip : public ::testing::TestWithParam<Bound> {};

TEST_P(QuantRoundTrip, ErrorWithinBound) {
  const auto [type, bound] = GetParam();
  const int64_t n = 4096;
  auto x = test::gaussian_vector(n, 7);
  std::vector<uint8_t> q(static_cast<size_t>(row_bytes(type, n)));
  quantize_row(type, x.data(), q.data(), n);
  std::vector<float> y(n);
  dequantize_row(type, q.data(), y.data(), n);
  const double err = test::rel_l2(y.data(), x.data(), n);
  EXPECT_LT(err, bound) << dtype_name(type);
  // Re-quantizing the decoded values must reproduce them closely (stable grid).
  std::vector<uint8_t> q2(q.size());
  quantize_row(type, y.data(), q2.data(), n);
  std::vector<float> y2(n);
  dequantize_row(type, q2.data(), y2.data(), n);
  EXPECT_LT(test::rel_l2(y2.data(), y.data(), n), bound / 2) << dtype_name(type);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantRoundTrip,
                         ::testing::Values(Bound{DType::F32, 1e-9}, Bound{DType::F16, 1e-3}, Bound{DType::BF16, 5e-3},
                                           Bound{DType::Q8_0, 0.01}, Bound{DType::Q5_0, 0.06}, Bound{DType::Q5_1, 0.06},
                                           Bound{DType::Q4_0, 0.12}, Bound{DType::Q4_1, 0.12}, Bound{DType::Q6_K, 0.03},
                                           Bound{DType::Q5_K, 0.06}, Bound{DType::Q4_K, 0.12}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST(QuantLayout, Q4_0DecodesKnownBlock) {
  // d = 0.5 (fp16 0x3800); nibble j low = j % 16, high = 15 - j % 16.
  std::vector<uint8_t> b(18);
  b[0] = 0x00;
  b[1] = 0x38;
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
  float y[32];
  dequantize_row(DType::Q4_0, b.data(), y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f);
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f);
  }
}

TEST(QuantLayout, Q5_0HighBitsComeFromQh) {
  std::vector<uint8_t> b(22, 0);
  b[1] = 0x3C;  // d = 1
  b[2] = 0x01;  // qh bit 0 -> element 0 gets +16
  b[5] = 0x80;  // qh bit 31 -> element 31 gets +16
  float y[32];
  dequantize_row(DType::Q5_0, b.data(), y, 32);
  EXPECT_EQ(y[0], 0.0f);     // 16 - 16
  EXPECT_EQ(y[1], -16.0f);
  EXPECT_EQ(y[31], 0.0f);
  EXPECT_EQ(y[16], -16.0f);
}
