// The VNNI integer kernels, checked on machines without AVX-512: this executable builds
// quant_dot.cpp and gemm_packed_avx2.cpp with KVS_EMULATE_AVX512, where SIMDe runs the
// kernels' own intrinsics lane for lane (tests/avx512_emulation.h) and the CPU reports the
// AVX-512 level. Every product must agree with the AVX2 kernels, which the main suite holds
// to exact arithmetic. Speed is not measured here: only an AVX-512 machine can.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gemm_packed_avx2.h"
#include "kernels/quant_dot.h"
#include "tensor/cpu_features.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace kvsqueeze {
namespace {

template <typename Block>
void set_scales(uint8_t* data, int64_t blocks, std::mt19937& rng) {
  std::uniform_real_distribution<float> scale(0.001f, 0.05f), offset(-0.3f, 0.3f);
  auto* b = reinterpret_cast<Block*>(data);
  for (int64_t i = 0; i < blocks; ++i) {
    b[i].d = fp32_to_fp16(scale(rng));
    if constexpr (requires { b[i].m; }) b[i].m = fp32_to_fp16(offset(rng));
    if constexpr (requires { b[i].dmin; }) b[i].dmin = fp32_to_fp16(scale(rng));
  }
}

// `rows` weight rows of n values of type t: random bytes (every bit pattern is a valid
// block) with finite, moderate f16 scales.
std::vector<uint8_t> random_rows(DType t, int rows, int64_t n, std::mt19937& rng) {
  int64_t block_bytes = 0, block_elems = 32;
  switch (t) {
    case DType::Q8_0: block_bytes = sizeof(BlockQ8_0); break;
    case DType::Q4_0: block_bytes = sizeof(BlockQ4_0); break;
    case DType::Q4_1: block_bytes = sizeof(BlockQ4_1); break;
    case DType::Q5_0: block_bytes = sizeof(BlockQ5_0); break;
    case DType::Q5_1: block_bytes = sizeof(BlockQ5_1); break;
    case DType::Q4_K: block_bytes = sizeof(BlockQ4_K), block_elems = 256; break;
    case DType::Q5_K: block_bytes = sizeof(BlockQ5_K), block_elems = 256; break;
    case DType::Q6_K: block_bytes = sizeof(BlockQ6_K), block_elems = 256; break;
    default: ADD_FAILURE() << "no quantized type"; return {};
  }
  const int64_t blocks = rows * (n / block_elems);
  std::vector<uint8_t> data(static_cast<size_t>(blocks * block_bytes));
  for (uint8_t& byte : data) byte = static_cast<uint8_t>(rng());
  switch (t) {
    case DType::Q8_0: set_scales<BlockQ8_0>(data.data(), blocks, rng); break;
    case DType::Q4_0: set_scales<BlockQ4_0>(data.data(), blocks, rng); break;
    case DType::Q4_1: set_scales<BlockQ4_1>(data.data(), blocks, rng); break;
    case DType::Q5_0: set_scales<BlockQ5_0>(data.data(), blocks, rng); break;
    case DType::Q5_1: set_scales<BlockQ5_1>(data.data(), blocks, rng); break;
    case DType::Q4_K: set_scales<BlockQ4_K>(data.data(), blocks, rng); break;
    case DType::Q5_K: set_scales<BlockQ5_K>(data.data(), blocks, rng); break;
    default: set_scales<BlockQ6_K>(data.data(), blocks, rng); break;
  }
  return data;
}

std::vector<float> random_floats(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = g(rng);
  return x;
}

TEST(Avx512Emulated, TheEmulatedLevelIsActive) {
  ASSERT_EQ(cpu_isa(), Isa::Avx512) << "this build reports the emulated AVX-512 level";
}

// The activation quantizers of the two levels write the same bytes (scales, sums, codes).
TEST(Avx512Emulated, ActivationsQuantizeAsOnAvx2) {
  std::mt19937 rng(7);
  for (DType t : {DType::Q8_0, DType::Q4_K}) {
    const int64_t n = 2048;
    const std::vector<float> x = random_floats(n, rng);
    std::vector<uint8_t> a2(static_cast<size_t>(act_row_bytes(t, n))), a5(a2.size());
    {
      IsaScope isa(Isa::Avx2);
      quantize_activations(t, x.data(), a2.data(), n);
    }
    {
      IsaScope isa(Isa::Avx512);
      quantize_activations(t, x.data(), a5.data(), n);
    }
    EXPECT_EQ(std::memcmp(a2.data(), a5.data(), a2.size()), 0) << "type " << dtype_name(t);
  }
}

// Every tile shape the dispatch has (4 rows x 1-4 tokens, edge rows, more tokens than a
// tile), with odd block counts so the kernels' one-block tails run too.
TEST(Avx512Emulated, ProductsAgreeWithTheAvx2Kernels) {
  std::mt19937 rng(11);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_1, DType::Q5_1, DType::Q4_K, DType::Q5_K,
                  DType::Q6_K}) {
    const bool k_format = act_block_elems(t) == 256;
    for (int64_t n : k_format ? std::vector<int64_t>{256, 768, 2048} : std::vector<int64_t>{32, 96, 608, 2048}) {
      for (int rows : {1, 3, 4, 7, 9}) {
        for (int n_act : {1, 2, 3, 4, 5, 8}) {
          const std::vector<uint8_t> w = random_rows(t, rows, n, rng);
          const int64_t row_bytes = static_cast<int64_t>(w.size()) / rows, arb = act_row_bytes(t, n);
          std::vector<uint8_t> act(static_cast<size_t>(n_act * arb));
          {
            IsaScope isa(Isa::Avx2);
            for (int k = 0; k < n_act; ++k) {
              const std::vector<float> x = random_floats(n, rng);
              quantize_activations(t, x.data(), act.data() + k * arb, n);
            }
          }
          std::vector<const void*> w_rows, a_rows;
          for (int r = 0; r < rows; ++r) w_rows.push_back(w.data() + r * row_bytes);
          for (int k = 0; k < n_act; ++k) a_rows.push_back(act.data() + k * arb);
          std::vector<float> y2(static_cast<size_t>(rows * n_act)), y5(y2.size());
          {
            IsaScope isa(Isa::Avx2);
            quant_dot_tile(t, w_rows.data(), rows, a_rows.data(), n_act, n, y2.data(), rows);
          }
          {
            IsaScope isa(Isa::Avx512);
            quant_dot_tile(t, w_rows.data(), rows, a_rows.data(), n_act, n, y5.data(), rows);
          }
          // Q6_K's kernels share the integer total and float steps of each super-block:
          // the same bits.
          if (t == DType::Q6_K)
            ASSERT_EQ(std::memcmp(y5.data(), y2.data(), y2.size() * sizeof(float)), 0)
                << "n=" << n << " rows=" << rows << " tokens=" << n_act;
          // Elsewhere the integer sums are exact at both levels; only the float accumulation
          // of the per-block scaled sums runs in another order.
          double scale = 0;
          for (float v : y2) scale = std::max(scale, static_cast<double>(std::fabs(v)));
          for (size_t i = 0; i < y2.size(); ++i)
            ASSERT_NEAR(y5[i], y2[i], 1e-5 * scale + 1e-6)
                << dtype_name(t) << " n=" << n << " rows=" << rows << " tokens=" << n_act << " at " << i;
          // A column of a tile equals that column's product alone (what decode batches rely on).
          for (int k = 0; k < n_act; ++k)
            for (int r = 0; r < rows; ++r) {
              IsaScope isa(Isa::Avx512);
              const void* one_w[1] = {w_rows[static_cast<size_t>(r)]};
              const void* one_a[1] = {a_rows[static_cast<size_t>(k)]};
              float alone = 0;
              quant_dot_tile(t, one_w, 1, one_a, 1, n, &alone, 1);
              ASSERT_EQ(alone, y5[static_cast<size_t>(k * rows + r)])
                  << dtype_name(t) << " n=" << n << " rows=" << rows << " tokens=" << n_act << " row " << r << " token " << k;
            }
        }
      }
    }
  }
}

// The prompt GEMM at avx2vnni (vpdpbusd) against plain AVX2 (maddubs), same packed
// activations: both integer sums are exact, and every format but Q8_0 then runs the same
// float steps, so the bits agree; Q8_0 (signed bytes at AVX2, stored +128 with an offset
// at avx2vnni) agrees within float rounding. Row counts leave partial 8-row tiles, token
// counts every tile width of either level.
TEST(Avx512Emulated, PromptGemmAtAvx2VnniAgreesWithAvx2) {
  std::mt19937 rng(23);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_1, DType::Q5_1, DType::Q4_K, DType::Q5_K,
                  DType::Q6_K}) {
    const bool k_format = act_block_elems(t) == 256;
    for (int64_t n : k_format ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{64, 608}) {
      for (int rows : {5, 8, 19}) {
        const std::vector<uint8_t> w = random_rows(t, rows, n, rng);
        const int64_t row_bytes = static_cast<int64_t>(w.size()) / rows, arb = gemm_avx2::act_bytes(n);
        for (int64_t tokens : {1, 5, 6, 13}) {
          std::vector<uint8_t> act(static_cast<size_t>(tokens * arb));
          for (int64_t k = 0; k < tokens; ++k)
            gemm_avx2::pack_activations(random_floats(n, rng).data(), act.data() + k * arb, n);
          std::vector<float> plain(static_cast<size_t>(tokens * rows)), vnni(plain.size());
          std::vector<uint8_t> scratch;
          {
            IsaScope isa(Isa::Avx2);
            gemm_avx2::gemm_rows(t, w.data(), row_bytes, rows, act.data(), tokens, n, plain.data(), rows, scratch);
          }
          {
            IsaScope isa(Isa::Avx2Vnni);
            gemm_avx2::gemm_rows(t, w.data(), row_bytes, rows, act.data(), tokens, n, vnni.data(), rows, scratch);
          }
          double scale = 0;
          for (float v : plain) scale = std::max(scale, static_cast<double>(std::fabs(v)));
          for (size_t i = 0; i < plain.size(); ++i) {
            if (t == DType::Q8_0)
              ASSERT_NEAR(vnni[i], plain[i], 1e-5 * scale + 1e-6) << "n=" << n << " rows=" << rows << " tokens=" << tokens;
            else
              ASSERT_EQ(vnni[i], plain[i]) << dtype_name(t) << " n=" << n << " rows=" << rows << " tokens=" << tokens
                                           << " at " << i;
          }
        }
      }
    }
  }
}

// The one-token products of the nibble formats at avx2vnni (their own kernels: byte masks
// for Q5's fifth bits, vpdpbusd) against plain AVX2: the same integer sums and the same
// float steps, so the same bits, for 1-8 tokens (each column of a tile its product
// alone) and odd block counts.
TEST(Avx512Emulated, DecodeProductsAtAvx2VnniGiveTheAvx2Bits) {
  std::mt19937 rng(29);
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q4_1, DType::Q5_1}) {
    for (int64_t n : {32, 96, 640}) {
      const int rows = 5;
      const std::vector<uint8_t> w = random_rows(t, rows, n, rng);
      const int64_t row_bytes = static_cast<int64_t>(w.size()) / rows, arb = act_row_bytes(t, n);
      for (int n_act : {1, 3, 4, 8}) {
        std::vector<uint8_t> act(static_cast<size_t>(n_act * arb));
        for (int k = 0; k < n_act; ++k) quantize_activations(t, random_floats(n, rng).data(), act.data() + k * arb, n);
        std::vector<const void*> w_rows, a_rows;
        for (int r = 0; r < rows; ++r) w_rows.push_back(w.data() + r * row_bytes);
        for (int k = 0; k < n_act; ++k) a_rows.push_back(act.data() + k * arb);
        std::vector<float> plain(static_cast<size_t>(rows * n_act)), vnni(plain.size());
        {
          IsaScope isa(Isa::Avx2);
          quant_dot_tile(t, w_rows.data(), rows, a_rows.data(), n_act, n, plain.data(), rows);
        }
        {
          IsaScope isa(Isa::Avx2Vnni);
          quant_dot_tile(t, w_rows.data(), rows, a_rows.data(), n_act, n, vnni.data(), rows);
        }
        ASSERT_EQ(std::memcmp(vnni.data(), plain.data(), plain.size() * sizeof(float)), 0)
            << dtype_name(t) << " n=" << n << " tokens=" << n_act;
        IsaScope isa(Isa::Avx2Vnni);
        EXPECT_EQ(quant_dot(t, w_rows[0], a_rows[0], n), vnni[0]) << dtype_name(t) << " n=" << n;
      }
    }
  }
}

}  // namespace
}  // namespace kvsqueeze
