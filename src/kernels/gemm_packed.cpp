#include "kernels/gemm_packed.h"

#include <immintrin.h>

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized inside their own intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cstring>

#include "kernels/block_unpack.h"
#include "kernels/gemm_packed_avx2.h"
#include "kernels/quant_dot.h"
#include "tensor/cpu_features.h"

namespace kvsqueeze {
namespace {

using block_unpack::Unpacked;
using block_unpack::unpack_block;

#define KVS_VNNI KVS_TARGET_AVX512

// Below this many tokens, packing the weights costs more than the faster loop saves.
constexpr int64_t kMinTokens = 8;

// Two 32-value blocks per 512-bit register ("a pair"); an odd last block is paired with
// zeros. Packed activation pair: 64 unsigned bytes, 16 float scales (8 per block), then
// the blocks' sums (scale · Σq) in lanes 0 and 8 of 16 floats. Packed weight pair: 64
// signed bytes, 16 int32 start values (-128 · the sum of the weights under each lane),
// 16 float lane scales and, for formats with offsets, the block offsets in lanes 0 and 8.
constexpr int64_t kActPair = 192;
constexpr int64_t kWeightPair = 192, kWeightPairOffset = 256;

int64_t n_pairs(int64_t n) { return (n / 32 + 1) / 2; }

constexpr bool has_offset(DType t) {
  return t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K;
}

template <DType type>
KVS_VNNI void pack_weights(const uint8_t* w, int64_t w_stride, int n_rows, int64_t n, int64_t pair_bytes,
                           uint8_t* out) {
  const int64_t nb = n / 32, np = n_pairs(n);
  const __m512i ones = _mm512_set1_epi8(1);
  for (int r = 0; r < n_rows; ++r) {
    const uint8_t* row = w + r * w_stride;
    for (int64_t p = 0; p < np; ++p) {
      uint8_t* dst = out + (r * np + p) * pair_bytes;
      alignas(64) int8_t qs[64] = {};
      alignas(64) float d[16] = {};
      alignas(64) float o[16] = {};
      for (int h = 0; h < 2 && 2 * p + h < nb; ++h) {
        Unpacked u;
        unpack_block<type>(row, 2 * p + h, u);
        std::memcpy(qs + 32 * h, u.q, 32);
        std::copy(u.s, u.s + 8, d + 8 * h);
        o[8 * h] = u.o;
      }
      const __m512i wv = _mm512_load_si512(qs);
      const __m512i start =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, wv), 7));
      _mm512_storeu_si512(dst, wv);
      _mm512_storeu_si512(dst + 64, start);
      _mm512_storeu_ps(dst + 128, _mm512_load_ps(d));
      if (pair_bytes == kWeightPairOffset) _mm512_storeu_ps(dst + 192, _mm512_load_ps(o));
    }
  }
}

KVS_VNNI inline __m256 fold_halves(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// Sums of four accumulators, one per lane of the result.
KVS_VNNI inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m256 ab = _mm256_hadd_ps(fold_halves(a), fold_halves(b)), cd = _mm256_hadd_ps(fold_halves(c), fold_halves(d));
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // per 128-bit lane: a, b, c, d partial sums
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// R packed weight rows x T packed activation rows over np pairs.
template <bool Offset, int R, int T>
KVS_VNNI void tile(const uint8_t* wp, int64_t w_row_bytes, const uint8_t* ap, int64_t a_row_bytes, int64_t np,
                   float* out, int64_t out_stride) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    constexpr int64_t pair = Offset ? kWeightPairOffset : kWeightPair;
    __m512i xu[T];
    __m512 dx[T];
    for (int t = 0; t < T; ++t) {
      const uint8_t* a = ap + t * a_row_bytes + p * kActPair;
      xu[t] = _mm512_loadu_si512(a);
      dx[t] = _mm512_loadu_ps(a + 64);
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = wp + r * w_row_bytes + p * pair;
      const __m512i wv = _mm512_loadu_si512(b);
      const __m512i start = _mm512_loadu_si512(b + 64);
      const __m512 dw = _mm512_loadu_ps(b + 128);
      for (int t = 0; t < T; ++t) {
        const __m512i s = _mm512_dpbusd_epi32(start, xu[t], wv);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx[t]), acc[r][t]);
      }
      if constexpr (Offset) {  // + offset · Σx per block (lanes 0 and 8; the rest are zero)
        const __m512 off = _mm512_loadu_ps(b + 192);
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(off, _mm512_loadu_ps(ap + t * a_row_bytes + p * kActPair + 128), acc[r][t]);
      }
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int t = 0; t < T; ++t) {
    const __m128 sums = reduce4(acc[0][t], R > 1 ? acc[R > 1 ? 1 : 0][t] : zero, R > 2 ? acc[R > 2 ? 2 : 0][t] : zero,
                                R > 3 ? acc[R > 3 ? 3 : 0][t] : zero);
    _mm_mask_storeu_ps(out + t * out_stride, static_cast<__mmask8>((1u << R) - 1), sums);
  }
}

template <bool Offset, int R>
KVS_VNNI void tile_rows(const uint8_t* wp, int64_t wrb, const uint8_t* ap, int64_t arb, int64_t np, int nt, float* out,
                        int64_t out_stride) {
  switch (nt) {
    case 4: return tile<Offset, R, 4>(wp, wrb, ap, arb, np, out, out_stride);
    case 3: return tile<Offset, R, 3>(wp, wrb, ap, arb, np, out, out_stride);
    case 2: return tile<Offset, R, 2>(wp, wrb, ap, arb, np, out, out_stride);
    default: return tile<Offset, R, 1>(wp, wrb, ap, arb, np, out, out_stride);
  }
}

template <DType type>
KVS_VNNI void gemm_rows(const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts,
                        int64_t n_tokens, int64_t n, float* y, int64_t y_stride, std::vector<uint8_t>& scratch) {
  constexpr bool Offset = has_offset(type);
  const int64_t pair = Offset ? kWeightPairOffset : kWeightPair;
  const int64_t np = n_pairs(n), wrb = np * pair, arb = np * kActPair;
  scratch.resize(static_cast<size_t>(n_rows * wrb));
  pack_weights<type>(w, w_stride, n_rows, n, pair, scratch.data());
  for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
    const int nt = static_cast<int>(std::min<int64_t>(4, n_tokens - t0));
    const uint8_t* ap = acts + t0 * arb;
    for (int r = 0; r < n_rows; r += 4) {
      const uint8_t* wp = scratch.data() + r * wrb;
      float* out = y + t0 * y_stride + r;
      switch (std::min(4, n_rows - r)) {
        case 4: tile_rows<Offset, 4>(wp, wrb, ap, arb, np, nt, out, y_stride); break;
        case 3: tile_rows<Offset, 3>(wp, wrb, ap, arb, np, nt, out, y_stride); break;
        case 2: tile_rows<Offset, 2>(wp, wrb, ap, arb, np, nt, out, y_stride); break;
        default: tile_rows<Offset, 1>(wp, wrb, ap, arb, np, nt, out, y_stride); break;
      }
    }
  }
}

KVS_VNNI void pack_acts(const ActBlock32* blocks, int64_t nb, uint8_t* out) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t p = 0; p < n_pairs(nb * 32); ++p) {
    alignas(64) int8_t qs[64] = {};
    alignas(64) float d[16] = {};
    alignas(64) float sums[16] = {};
    for (int h = 0; h < 2 && 2 * p + h < nb; ++h) {
      const ActBlock32& blk = blocks[2 * p + h];
      std::memcpy(qs + 32 * h, blk.qs, 32);
      std::fill(d + 8 * h, d + 8 * h + 8, blk.d);
      sums[8 * h] = blk.sum;
    }
    uint8_t* dst = out + p * kActPair;
    _mm512_storeu_si512(dst, _mm512_xor_si512(_mm512_load_si512(qs), bias));
    _mm512_storeu_ps(dst + 64, _mm512_load_ps(d));
    _mm512_storeu_ps(dst + 128, _mm512_load_ps(sums));
  }
}

}  // namespace

bool use_packed_gemm(DType weights, int64_t n_tokens) {
  switch (weights) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return n_tokens >= kMinTokens && use_avx2();
    default:
      return false;
  }
}

int64_t packed_gemm_act_bytes(int64_t n) {
  return use_avx512() ? n_pairs(n) * kActPair : gemm_avx2::act_bytes(n);
}

void packed_gemm_pack_activations(const float* x, uint8_t* out, int64_t n) {
  if (!use_avx512()) return gemm_avx2::pack_activations(x, out, n);
  thread_local std::vector<ActBlock32> blocks;
  blocks.resize(static_cast<size_t>(n / 32));
  quantize_activations(DType::Q8_0, x, blocks.data(), n);
  pack_acts(blocks.data(), n / 32, out);
}

void packed_gemm_rows(DType type, const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts,
                      int64_t n_tokens, int64_t n, float* y, int64_t y_stride, std::vector<uint8_t>& scratch) {
  if (!use_avx512()) return gemm_avx2::gemm_rows(type, w, w_stride, n_rows, acts, n_tokens, n, y, y_stride, scratch);
  block_unpack::with_format(type, [&](auto t) {
    gemm_rows<decltype(t)::value>(w, w_stride, n_rows, acts, n_tokens, n, y, y_stride, scratch);
  });
}

}  // namespace kvsqueeze
