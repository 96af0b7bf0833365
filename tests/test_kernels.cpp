// Every compute kernel against a scalar reference on random data, at every instruction
// set this CPU runs (generic, AVX2, AVX-512), with sizes that are not multiples of the
// block or vector width.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>

#include "kernels/attention.h"
#include "kernels/fast_exp.h"
#include "kernels/flash_attention.h"
#include "kernels/gemm_packed.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant_dot.h"
#include "tensor/cpu_features.h"
#include "tensor/half.h"
#include "tensor/quant.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {

std::vector<Isa> all_isas() { return {Isa::Generic, Isa::Avx2, Isa::Avx2Vnni, Isa::Avx512}; }

// Skips (visibly) a level this CPU lacks.
#define REQUIRE_ISA(isa)                                                                  \
  do {                                                                                    \
    if ((isa) > cpu_isa())                                                                \
      GTEST_SKIP() << "this CPU has no " << isa_name(isa) << " (best: " << isa_name(cpu_isa()) << ")"; \
  } while (0)

std::vector<uint8_t> quantized_matrix(DType type, const std::vector<float>& w, int64_t rows, int64_t cols) {
  const int64_t rb = row_bytes(type, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, w.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

}  // namespace

TEST(Isa, NamesRoundTripAndUnsupportedLevelsAreRefused) {
  for (Isa isa : all_isas()) EXPECT_EQ(isa_from_name(isa_name(isa)), isa);
  EXPECT_THROW(isa_from_name("sse9"), std::invalid_argument);
  EXPECT_EQ(supported_isas().front(), Isa::Generic);
  EXPECT_EQ(supported_isas().back(), cpu_isa());
  if (cpu_isa() < Isa::Avx512) {
    EXPECT_THROW(set_active_isa(Isa::Avx512), std::invalid_argument);
  }
  {
    IsaScope scope(Isa::Generic);
    EXPECT_EQ(active_isa(), Isa::Generic);
  }
  EXPECT_EQ(active_isa(), default_isa());
  EXPECT_LE(default_isa(), cpu_isa());
  // Only CPUs that split 512-bit vectors in halves start below their best level.
  if (default_isa() != cpu_isa()) {
    EXPECT_EQ(cpu_isa(), Isa::Avx512);
    EXPECT_EQ(default_isa(), Isa::Avx2Vnni);
  }
}

// ---- matrix products ---------------------------------------------------------------

using MatmulCase = std::tuple<Isa, DType>;
class MatmulKernels : public ::testing::TestWithParam<MatmulCase> {};

// What a kernel should compute exactly (up to float summation order): decoded weights
// times the activations as the kernel sees them, i.e. after its 8-bit block quantization
// when it quantizes them (llama.cpp's scheme), else as given. The packed prompt kernel
// quantizes in blocks of 32 whatever the weight format.
std::vector<float> activations_as_seen(DType type, int64_t n_tokens, const float* x, int64_t n) {
  std::vector<float> out(x, x + n);
  if (use_packed_gemm(type, n_tokens)) type = DType::Q8_0;
  else if (!has_quant_dot(type)) return out;
  std::vector<uint8_t> q(static_cast<size_t>(act_row_bytes(type, n)));
  quantize_activations(type, x, q.data(), n);
  for (int64_t b = 0; b < n / act_block_elems(type); ++b) {
    if (act_block_elems(type) == 256) {
      const auto& blk = reinterpret_cast<const ActBlock256*>(q.data())[b];
      for (int i = 0; i < 256; ++i) out[b * 256 + i] = blk.d * blk.qs[i];
    } else {
      const auto& blk = reinterpret_cast<const ActBlock32*>(q.data())[b];
      for (int i = 0; i < 32; ++i) out[b * 32 + i] = blk.d * blk.qs[i];
    }
  }
  return out;
}

double norm(const float* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return std::sqrt(s);
}

// Each output equals the decoded weights times the activations as the kernel sees them,
// up to float summation order.
void expect_kernel_arithmetic(const MatrixView& mv, const float* x, int64_t tokens, const float* got) {
  const int64_t rows = mv.rows, cols = mv.cols;
  std::vector<float> wrow(static_cast<size_t>(cols));
  for (int64_t t = 0; t < tokens; ++t) {
    const auto xs = activations_as_seen(mv.type, tokens, x + t * cols, cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(mv.type, mv.row(r), wrow.data(), cols);
      double ref = 0;
      for (int64_t c = 0; c < cols; ++c) ref += static_cast<double>(wrow[c]) * xs[c];
      EXPECT_NEAR(got[t * rows + r], ref, 1e-5 * norm(wrow.data(), cols) * norm(xs.data(), cols))
          << dtype_name(mv.type) << " rows " << rows << " tokens " << tokens << " at " << t << "," << r;
    }
  }
}

TEST_P(MatmulKernels, MatchReferenceAtOddSizes) {
  const auto [isa, type] = GetParam();
  REQUIRE_ISA(isa);
  IsaScope scope(isa);
  const int64_t block = traits(type).block_elems;
  // Columns: an odd count of blocks (odd count of values for the float types).
  const int64_t cols = block == 1 ? 67 : block * (block == 256 ? 3 : 7);
  for (int64_t rows : {1, 5, 37, 70})
    for (int64_t tokens : {1, 3, 4, 9, 11, 14}) {
      const auto wf = test::gaussian_vector(static_cast<size_t>(rows * cols), 3);
      auto w = quantized_matrix(type, wf, rows, cols);
      const MatrixView mv{type, w.data(), rows, cols};
      const auto x = test::gaussian_vector(static_cast<size_t>(tokens * cols), 4);
      std::vector<float> got(static_cast<size_t>(tokens * rows)), exact(got.size());
      matmul(mv, x.data(), tokens, got.data());
      matmul_reference(mv, x.data(), tokens, exact.data());
      expect_kernel_arithmetic(mv, x.data(), tokens, got.data());
      // End to end against exact arithmetic: 8-bit activations cost ~1% (up to 3% on the
      // smallest shapes here, where few products are averaged).
      EXPECT_LT(test::rel_l2(got.data(), exact.data(), got.size()), block == 1 ? 1e-5 : 0.03)
          << dtype_name(type) << " rows " << rows << " tokens " << tokens;
    }
}

// Blocks whose integers all sit at the format's extreme (every nibble and high bit set,
// Q8_0 at -128, Q6_K scales at 127) against activations at +-127 after quantization:
// the integer kernels sum pairs of byte products in 16 bits, and a sum that wrapped or
// saturated would be off by thousands of units here.
std::vector<uint8_t> extreme_matrix(DType type, int64_t rows, int64_t cols) {
  const auto& tr = traits(type);
  std::vector<uint8_t> w(static_cast<size_t>(rows * row_bytes(type, cols)), 0xFF);
  const uint16_t one = fp32_to_fp16(1.0f), small = fp32_to_fp16(0.01f);
  for (size_t off = 0; off < w.size(); off += static_cast<size_t>(tr.block_bytes)) {
    uint8_t* b = w.data() + off;
    auto put = [&](size_t at, uint16_t v) { std::memcpy(b + at, &v, 2); };
    switch (type) {
      case DType::Q8_0: put(0, one); std::memset(b + 2, 0x80, 32); break;
      case DType::Q4_0: case DType::Q5_0: put(0, one); break;
      case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: put(0, one); put(2, small); break;
      case DType::Q6_K: std::memset(b + 192, 127, 16); put(208, one); break;
      default: break;
    }
  }
  return w;
}

TEST_P(MatmulKernels, ExtremeIntegersDoNotOverflow) {
  const auto [isa, type] = GetParam();
  REQUIRE_ISA(isa);
  if (traits(type).block_elems == 1) GTEST_SKIP() << "float weights: no integer sums";
  IsaScope scope(isa);
  const int64_t rows = 11, cols = 512;
  const auto w = extreme_matrix(type, rows, cols);
  const MatrixView mv{type, w.data(), rows, cols};
  for (int64_t tokens : {1, 4, 12}) {
    std::vector<float> x(static_cast<size_t>(tokens * cols));
    for (int64_t t = 0; t < tokens; ++t)  // all +1, all -1, then alternating signs
      for (int64_t c = 0; c < cols; ++c) x[t * cols + c] = t % 3 == 0 ? 1.0f : t % 3 == 1 ? -1.0f : (c % 2 ? 1.0f : -1.0f);
    std::vector<float> got(static_cast<size_t>(tokens * rows));
    matmul(mv, x.data(), tokens, got.data());
    expect_kernel_arithmetic(mv, x.data(), tokens, got.data());
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryIsaAndType, MatmulKernels,
    ::testing::Combine(::testing::ValuesIn(all_isas()),
                       ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                                         DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K)),
    [](const auto& info) {
      return std::string(isa_name(std::get<0>(info.param))) + "_" + std::string(dtype_name(std::get<1>(info.param)));
    });

class DotF32 : public ::testing::TestWithParam<Isa> {};

TEST_P(DotF32, MatchesDoubleSumAtEveryLength) {
  REQUIRE_ISA(GetParam());
  IsaScope scope(GetParam());
  const auto a = test::gaussian_vector(300, 5), b = test::gaussian_vector(300, 6);
  for (int64_t n : {0, 1, 15, 16, 17, 63, 64, 65, 300}) {
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(a[i]) * b[i];
    EXPECT_NEAR(dot_f32(a.data(), b.data(), n), ref, 1e-5 * (1 + std::sqrt(static_cast<double>(n)))) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, DotF32, ::testing::ValuesIn(all_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// ---- f16 conversion (KV rows) -------------------------------------------------------

class HalfRows : public ::testing::TestWithParam<Isa> {};

TEST_P(HalfRows, ConvertBitExactlyLikeTheScalarCode) {
  REQUIRE_ISA(GetParam());
  IsaScope scope(GetParam());
  const int64_t n = 37;
  const auto x = test::gaussian_vector(n, 8);
  std::vector<uint16_t> h(n);
  quantize_row(DType::F16, x.data(), h.data(), n);
  std::vector<float> back(n);
  dequantize_row(DType::F16, h.data(), back.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(h[i], fp32_to_fp16(x[i])) << i;
    EXPECT_EQ(back[i], fp16_to_fp32(h[i])) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, HalfRows, ::testing::ValuesIn(all_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// ---- attention over ragged rows -------------------------------------------------------

namespace {

// Stored rows of one type: keys, values and positions, as the cache holds them.
struct StoredRows {
  std::vector<uint8_t> k, v;
  std::vector<int32_t> pos;
  std::vector<float> k_f32, v_f32;  // the decoded values, for the reference
  RowsView view;
};

StoredRows make_rows(DType type, int64_t n, int64_t hd, int64_t hdv, int32_t first_pos, int32_t pos_step, uint32_t seed) {
  StoredRows s;
  const auto kf = test::gaussian_vector(static_cast<size_t>(n * hd), seed);
  const auto vf = test::gaussian_vector(static_cast<size_t>(n * hdv), seed + 1);
  const int64_t kb = row_bytes(type, hd), vb = row_bytes(type, hdv);
  s.k.resize(static_cast<size_t>(n * kb));
  s.v.resize(static_cast<size_t>(n * vb));
  s.k_f32.resize(kf.size());
  s.v_f32.resize(vf.size());
  for (int64_t r = 0; r < n; ++r) {
    quantize_row(type, kf.data() + r * hd, s.k.data() + r * kb, hd);
    quantize_row(type, vf.data() + r * hdv, s.v.data() + r * vb, hdv);
    dequantize_row(type, s.k.data() + r * kb, s.k_f32.data() + r * hd, hd);
    dequantize_row(type, s.v.data() + r * vb, s.v_f32.data() + r * hdv, hdv);
    s.pos.push_back(first_pos + static_cast<int32_t>(r) * pos_step);
  }
  s.view = RowsView{type, s.k.data(), s.v.data(), s.pos.data(), n, kb, vb};
  return s;
}

// softmax(q·K^T * scale over rows with pos <= q_pos) · V in double precision.
// window > 0: only rows with q_pos - pos < window are visible (a sliding-window layer).
std::vector<double> reference_attention(const float* q, const std::vector<const StoredRows*>& parts, int64_t hd,
                                        int64_t hdv, int32_t q_pos, double scale, int32_t window = 0) {
  std::vector<double> logits;
  std::vector<const float*> values;
  for (const auto* p : parts)
    for (size_t r = 0; r < p->pos.size(); ++r) {
      if (p->pos[r] > q_pos || (window > 0 && q_pos - p->pos[r] >= window)) continue;
      double s = 0;
      for (int64_t d = 0; d < hd; ++d) s += static_cast<double>(q[d]) * p->k_f32[r * hd + d];
      logits.push_back(s * scale);
      values.push_back(p->v_f32.data() + r * hdv);
    }
  std::vector<double> out(static_cast<size_t>(hdv), 0.0);
  if (logits.empty()) return out;
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double& l : logits) sum += (l = std::exp(l - mx));
  for (size_t j = 0; j < logits.size(); ++j)
    for (int64_t i = 0; i < hdv; ++i) out[i] += logits[j] / sum * values[j][i];
  return out;
}

}  // namespace

using AttentionCase = std::tuple<Isa, DType>;
class AttentionKernel : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionKernel, MatchesReferenceOverStoredAndFreshRows) {
  const auto [isa, stored_type] = GetParam();
  REQUIRE_ISA(isa);
  IsaScope scope(isa);
  struct Shape {
    int64_t hd, hdv;
    int G;
  };
  // Head sizes off every vector width (the row-at-a-time path), whole vectors with one
  // and two groups of heads (the vectorised path: hdv 64 mixes 4 heads at once, 128 two);
  // q8_0 rows need multiples of 32.
  const std::vector<Shape> shapes = stored_type == DType::Q8_0
                                        ? std::vector<Shape>{{96, 64, 3}, {64, 64, 7}, {128, 128, 3}}
                                        : std::vector<Shape>{{40, 24, 3}, {64, 64, 7}, {96, 128, 3}, {48, 80, 5}};
  for (const Shape& sh : shapes) {
    const int64_t hd = sh.hd, hdv = sh.hdv;
    const int G = sh.G;
    // A compressed cache (sparse positions 0, 3, 6, ...) then this pass's fresh f32 rows:
    // 45 and 13 rows, neither a multiple of 16 or 32.
    const auto stored = make_rows(stored_type, 45, hd, hdv, 0, 3, 11);
    const auto fresh = make_rows(DType::F32, 13, hd, hdv, 135, 1, 21);
    const RowsView views[2] = {stored.view, fresh.view};
    const auto q = test::gaussian_vector(static_cast<size_t>(G * hd), 31);
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<float> scratch;
    for (int32_t q_pos : {-1, 0, 50, 134, 140, 147}) {
      std::vector<float> out(static_cast<size_t>(G * hdv), 99.0f);
      attend_group(q.data(), hd, G, views, 2, hd, hdv, q_pos, static_cast<float>(scale), out.data(), hdv, nullptr, scratch);
      for (int g = 0; g < G; ++g) {
        const auto ref = reference_attention(q.data() + g * hd, {&stored, &fresh}, hd, hdv, q_pos, scale);
        for (int64_t i = 0; i < hdv; ++i)
          ASSERT_NEAR(out[g * hdv + i], ref[i], 2e-5)
              << "hd " << hd << " hdv " << hdv << " q_pos " << q_pos << " head " << g << " dim " << i;
      }
    }
  }
}

// Hundreds of rows, read in blocks whose running softmax is rescaled whenever a later
// block holds a larger score: keys near rows 10 and 250 are made to align with the
// queries (the second more strongly), so the maximum rises late. Shapes: SmolLM2's
// (3 heads by 64), Gemma 3's (4 by 256) and 8 heads by 128.
TEST_P(AttentionKernel, ManyRowsWithTheLargestScoresLateMatchTheReference) {
  const auto [isa, stored_type] = GetParam();
  REQUIRE_ISA(isa);
  IsaScope scope(isa);
  struct Shape {
    int64_t hd;
    int G;
  };
  for (const Shape sh : {Shape{64, 3}, Shape{256, 4}, Shape{128, 8}}) {
    const int64_t hd = sh.hd, n = 300;
    const int G = sh.G;
    auto stored = make_rows(stored_type, n, hd, hd, 0, 1, 41);
    const auto fresh = make_rows(DType::F32, 1, hd, hd, 300, 1, 43);
    const auto q = test::gaussian_vector(static_cast<size_t>(G * hd), 47);
    const int64_t kb = row_bytes(stored_type, hd);
    for (const auto& [row, gain] : {std::pair<int64_t, float>{10, 0.5f}, {250, 1.0f}})
      for (int g = 0; g < G; ++g) {  // one strong key per head, next to each other
        std::vector<float> key(static_cast<size_t>(hd));
        for (int64_t d = 0; d < hd; ++d) key[static_cast<size_t>(d)] = gain * q[static_cast<size_t>(g * hd + d)];
        quantize_row(stored_type, key.data(), stored.k.data() + (row + g) * kb, hd);
        dequantize_row(stored_type, stored.k.data() + (row + g) * kb, stored.k_f32.data() + (row + g) * hd, hd);
      }
    const RowsView views[2] = {stored.view, fresh.view};
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<float> scratch, out(static_cast<size_t>(G * hd)), lse(static_cast<size_t>(G));
    attend_group(q.data(), hd, G, views, 2, hd, hd, 300, static_cast<float>(scale), out.data(), hd, lse.data(), scratch);
    for (int g = 0; g < G; ++g) {
      const auto ref = reference_attention(q.data() + g * hd, {&stored, &fresh}, hd, hd, 300, scale);
      for (int64_t i = 0; i < hd; ++i)
        ASSERT_NEAR(out[g * hd + i], ref[i], 2e-5) << "hd " << hd << " head " << g << " dim " << i;
    }
  }
}

// Rows cut in parts, each attended alone with its log-sum-exp and then merged, give the
// attention over all rows (how decoding spreads one head's rows over the cores).
TEST_P(AttentionKernel, PartsMergedThroughTheirLogSumExpEqualTheWhole) {
  const auto [isa, stored_type] = GetParam();
  REQUIRE_ISA(isa);
  IsaScope scope(isa);
  const int64_t hd = 64, hdv = 64;
  const int G = 3;
  const auto stored = make_rows(stored_type, 70, hd, hdv, 0, 2, 11);
  const auto fresh = make_rows(DType::F32, 1, hd, hdv, 140, 1, 21);
  const auto q = test::gaussian_vector(static_cast<size_t>(G * hd), 31);
  const float scale = 0.125f;
  std::vector<float> scratch, whole(static_cast<size_t>(G * hdv));
  const RowsView all[2] = {stored.view, fresh.view};
  std::vector<float> lse_whole(G);
  attend_group(q.data(), hd, G, all, 2, hd, hdv, 140, scale, whole.data(), hdv, lse_whole.data(), scratch);
  // The log-sum-exp itself, against a double reference.
  for (int g = 0; g < G; ++g) {
    std::vector<double> logits;
    for (const auto* rows : {&stored, &fresh})
      for (size_t j = 0; j < rows->pos.size(); ++j) {
        double s = 0;
        for (int64_t d = 0; d < hd; ++d) s += static_cast<double>(q[g * hd + d]) * rows->k_f32[j * hd + d];
        logits.push_back(s * scale);
      }
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (double l : logits) sum += std::exp(l - mx);
    EXPECT_NEAR(lse_whole[static_cast<size_t>(g)], mx + std::log(sum), 1e-4) << "head " << g;
  }
  // Parts: rows [0, 25), [25, 26), [26, 70) + the fresh row, and an empty part.
  const int64_t cuts[] = {0, 25, 26, 70};
  std::vector<float> parts(static_cast<size_t>(4 * G * hdv)), lses(static_cast<size_t>(4 * G));
  for (int i = 0; i < 4; ++i) {
    RowsView piece[2] = {stored.view, fresh.view};
    const int64_t b = i < 3 ? cuts[i] : 0, e = i < 3 ? cuts[i + 1] : 0;
    piece[0].k += b * piece[0].k_stride;
    piece[0].v += b * piece[0].v_stride;
    piece[0].pos += b;
    piece[0].n = e - b;
    attend_group(q.data(), hd, G, piece, i == 2 ? 2 : 1, hd, hdv, 140, scale, &parts[i * G * hdv], hdv, &lses[i * G],
                 scratch);
  }
  EXPECT_EQ(lses[3 * G], -std::numeric_limits<float>::infinity());
  std::vector<float> merged(static_cast<size_t>(G * hdv), 99.0f);
  merge_attention(parts.data(), lses.data(), 4, G, hdv, merged.data(), hdv);
  for (size_t i = 0; i < merged.size(); ++i) ASSERT_NEAR(merged[i], whole[i], 2e-6) << "value " << i;
}

// A decoding head's rows are cut in parts of about 256 rows, never more than 8 of them,
// and the parts tile the rows exactly.
TEST(DecodeParts, AboutQuarterThousandRowsAtMostEightParts) {
  EXPECT_EQ(decode_part_count(0), 1);
  EXPECT_EQ(decode_part_count(100), 1);
  EXPECT_EQ(decode_part_count(384), 2);
  EXPECT_EQ(decode_part_count(1024), 4);
  EXPECT_EQ(decode_part_count(2048), 8);
  EXPECT_EQ(decode_part_count(16384), 8);
  EXPECT_EQ(decode_part_count(16384, 256, 64), 64);
  for (int64_t rows : {1, 255, 1024, 5000, 16384}) {
    const int64_t n = decode_part_count(rows);
    EXPECT_EQ(decode_part_begin(0, n, rows), 0);
    EXPECT_EQ(decode_part_begin(n, n, rows), rows);
    for (int64_t i = 0; i < n; ++i) EXPECT_LE(decode_part_begin(i, n, rows), decode_part_begin(i + 1, n, rows));
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsaAndKvType, AttentionKernel,
                         ::testing::Combine(::testing::ValuesIn(all_isas()),
                                            ::testing::Values(DType::F32, DType::F16, DType::Q8_0)),
                         [](const auto& info) {
                           return std::string(isa_name(std::get<0>(info.param))) + "_" + std::string(dtype_name(std::get<1>(info.param)));
                         });

// ---- element-wise and row-wise ops ------------------------------------------------------

class RowOps : public ::testing::TestWithParam<Isa> {};

TEST_P(RowOps, RmsNormAndSiluMatchDoubleReferences) {
  REQUIRE_ISA(GetParam());
  IsaScope scope(GetParam());
  for (int64_t n : {1, 7, 67, 576}) {
    auto x = test::gaussian_vector(static_cast<size_t>(n), 41);
    const auto w = test::gaussian_vector(static_cast<size_t>(n), 42);
    for (auto& v : x) v *= 30.0f;  // a wide range: the gate's tails and large activations
    std::vector<float> y(static_cast<size_t>(n));
    rms_norm(x.data(), w.data(), y.data(), n, 1e-5f);
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-5);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i] * scale * w[i], 1e-5 * (1 + std::fabs(x[i] * scale * w[i])));
    auto gate = x;
    silu_mul(gate.data(), w.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))) * w[i];
      EXPECT_NEAR(gate[i], ref, 1e-6 * (1 + std::fabs(ref))) << "x = " << x[i];
    }
    gate = x;
    gelu_mul(gate.data(), w.data(), n);
    for (int64_t i = 0; i < n; ++i) {  // the tanh form, as gemma's GeGLU uses it
      const double v = x[i];
      const double ref = 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) * w[i];
      EXPECT_NEAR(gate[i], ref, 1e-5 * (1 + std::fabs(ref))) << "x = " << x[i];
    }
  }
}

// The vectorised argmax picks std::max_element's index: the first of equal maxima, at
// every length (whole 256-value chunks and a ragged last one) and wherever the maximum
// lies (first element, a chunk edge, the last element, a tie across chunks).
TEST_P(RowOps, ArgmaxIsTheFirstMaximalElement) {
  REQUIRE_ISA(GetParam());
  IsaScope scope(GetParam());
  EXPECT_EQ(argmax_f32(nullptr, 0), 0);
  for (int64_t n : {1, 7, 255, 256, 257, 1000, 262144}) {
    auto x = test::gaussian_vector(static_cast<size_t>(n), 43);
    const auto expect = [&] { return std::max_element(x.begin(), x.end()) - x.begin(); };
    EXPECT_EQ(argmax_f32(x.data(), n), expect()) << n;
    for (int64_t at : {int64_t{0}, std::min<int64_t>(n - 1, 255), std::min<int64_t>(n - 1, 256), n - 1}) {
      auto y = x;
      y[static_cast<size_t>(at)] = 100.0f;
      EXPECT_EQ(argmax_f32(y.data(), n), at) << "n " << n << " max at " << at;
      if (at + 300 < n) {  // an equal maximum in a later chunk: the first one wins
        y[static_cast<size_t>(at + 300)] = 100.0f;
        EXPECT_EQ(argmax_f32(y.data(), n), at) << "n " << n << " tie at " << at;
      }
    }
    std::vector<float> flat(static_cast<size_t>(n), -3.0f);  // all equal: the first
    EXPECT_EQ(argmax_f32(flat.data(), n), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, RowOps, ::testing::ValuesIn(all_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// ---- activation quantization ---------------------------------------------------------

class ActivationQuantization : public ::testing::TestWithParam<Isa> {};

// The SIMD quantizers must write exactly the bytes of the portable one (same products,
// same round-half-to-even), including ties, an all-zero block and odd block counts.
TEST_P(ActivationQuantization, BitIdenticalToPortableVersion) {
  const Isa isa = GetParam();
  REQUIRE_ISA(isa);
  for (DType type : {DType::Q8_0, DType::Q4_K}) {
    const int64_t block = act_block_elems(type), n = block * (block == 256 ? 3 : 7);
    auto x = test::gaussian_vector(static_cast<size_t>(n), 11);
    for (int64_t i = 0; i < block; ++i) x[static_cast<size_t>(block + i)] = 0.0f;  // block 1: all zero
    // Block 2: amax 127, so the scale is 1 and these values sit exactly on ties.
    for (int64_t i = 0; i < block; ++i) x[static_cast<size_t>(2 * block + i)] = static_cast<float>(i % 9) - 4.5f;
    x[static_cast<size_t>(2 * block)] = 127.0f;
    std::vector<uint8_t> want(static_cast<size_t>(act_row_bytes(type, n))), got(want.size());
    {
      IsaScope scope(Isa::Generic);
      quantize_activations(type, x.data(), want.data(), n);
    }
    IsaScope scope(isa);
    quantize_activations(type, x.data(), got.data(), n);
    EXPECT_EQ(got, want) << dtype_name(type);
    if (block == 32) {  // ties went to even: -3.5 -> -4, -2.5 -> -2, 0.5 -> 0
      const auto& tie = reinterpret_cast<const ActBlock32*>(got.data())[2];
      EXPECT_EQ(tie.qs[1], -4);
      EXPECT_EQ(tie.qs[2], -2);
      EXPECT_EQ(tie.qs[5], 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, ActivationQuantization, ::testing::ValuesIn(all_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(FastExp, RelativeErrorBelow1e6AndSaturatesSafely) {
  for (float x = -80.0f; x <= 80.0f; x += 0.37f) {
    const double ref = std::exp(static_cast<double>(x));
    EXPECT_NEAR(fast_exp(x) / ref, 1.0, 1e-6) << x;
  }
  EXPECT_GE(fast_exp(-1000.0f), 0.0f);
  EXPECT_LT(fast_exp(-1000.0f), 1e-37f);
  EXPECT_TRUE(std::isfinite(fast_exp(1000.0f)));
}

// ---- flash-style prompt attention -------------------------------------------------------

using FlashCase = std::tuple<Isa, DType>;
class FlashAttention : public ::testing::TestWithParam<FlashCase> {};

TEST_P(FlashAttention, MatchesReferenceForEveryQueryToken) {
  const auto [isa, stored_type] = GetParam();
  REQUIRE_ISA(isa);
  IsaScope scope(isa);
  const int64_t hd = stored_type == DType::Q8_0 ? 96 : 40, hdv = stored_type == DType::Q8_0 ? 64 : 24;
  const int G = 3;
  // A compressed cache of 45 rows (positions 0, 3, ..., 132), then 150 fresh rows at
  // 135..284: several key tiles, a partial last tile, the causal diagonal inside tiles.
  const auto stored = make_rows(stored_type, 45, hd, hdv, 0, 3, 11);
  const auto fresh = make_rows(DType::F32, 150, hd, hdv, 135, 1, 21);
  const RowsView views[2] = {stored.view, fresh.view};
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  FlashScratch scratch;
  // Query blocks: one token, an odd block crossing tiles, a block that sees only the cache
  // (and a token that sees nothing), and 40 consecutive tokens (120 rows: several row vectors).
  std::vector<std::vector<int32_t>> blocks = {{140}, {135, 150, 199, 200, 201, 250, 284}, {-1, 0, 60, 134}, {}};
  for (int32_t p = 200; p < 240; ++p) blocks.back().push_back(p);
  // Windows: none, one shorter than a key tile, one that ends inside the cached rows.
  for (const int32_t window : {0, 5, 70})
    for (const auto& q_pos : blocks) {
      const int nq = static_cast<int>(q_pos.size());
      const auto q = test::gaussian_vector(static_cast<size_t>(nq * G * hd), 31 + nq);
      std::vector<float> out(static_cast<size_t>(nq * G * hdv), 99.0f);
      flash_attend(q.data(), G * hd, G, nq, q_pos.data(), views, 2, hd, hdv, static_cast<float>(scale), window, out.data(),
                   G * hdv, scratch);
      for (int i = 0; i < nq; ++i)
        for (int g = 0; g < G; ++g) {
          const auto ref =
              reference_attention(q.data() + (i * G + g) * hd, {&stored, &fresh}, hd, hdv, q_pos[i], scale, window);
          for (int64_t c = 0; c < hdv; ++c)
            ASSERT_NEAR(out[(i * G + g) * hdv + c], ref[c], 2e-5)
                << "window " << window << " q_pos " << q_pos[i] << " head " << g << " dim " << c;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(EveryIsaAndKvType, FlashAttention,
                         ::testing::Combine(::testing::ValuesIn(all_isas()),
                                            ::testing::Values(DType::F32, DType::F16, DType::Q8_0)),
                         [](const auto& info) {
                           return std::string(isa_name(std::get<0>(info.param))) + "_" + std::string(dtype_name(std::get<1>(info.param)));
                         });
