#include "kernels/quant_dot.h"

#include <immintrin.h>
#ifdef KVS_EMULATE_AVX512
#include "avx512_emulation.h"  // a test build: the AVX-512 kernels below run through SIMDe
#endif

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized inside their own cast/reduce
// intrinsics (a known false positive); nothing in this file reads uninitialised data.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/avx2_helpers.h"
#include "tensor/cpu_features.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace kvsqueeze {
namespace {

using avx2::bits_to_0x10;
using avx2::hsum;
using avx2::hsum_i32;
using avx2::unpack_nibbles;

#define KVS_AVX2 KVS_TARGET_AVX2

#define KVS_VNNI KVS_TARGET_AVX512
#define KVS_AVX2VNNI KVS_TARGET_AVX2VNNI

// ---- activation quantization (portable) -------------------------------------------

void quantize_act32(const float* x, ActBlock32* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::nearbyint(x[j] * id));
      y[i].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    y[i].d = d;
    y[i].sum = d * static_cast<float>(sum);
  }
}

void quantize_act256(const float* x, ActBlock256* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 256) {
    float amax = 0;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) {
        const int q = static_cast<int>(std::nearbyint(x[16 * g + j] * id));
        y[i].qs[16 * g + j] = static_cast<int8_t>(q);
        sum += q;
      }
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = d;
  }
}

// ---- activation quantization (SIMD) ----------------------------------------------
// Bit-identical to the portable versions: the same float products, and conversion in
// the default rounding mode (nearest, ties to even) is what std::nearbyint does.

// 32 int32 values (four vectors of eight) to 32 int8 in order.
KVS_AVX2 inline __m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  // The packs work per 128-bit lane: restore the order of the eight 4-byte groups.
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

KVS_AVX2 inline float amax_avx2(const float* x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

KVS_AVX2 void quantize_act32_avx2(const float* x, ActBlock32* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const float d = amax_avx2(x, 32) / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    y[i].d = d;
    y[i].sum = d * static_cast<float>(sum);
  }
}

KVS_AVX2 void quantize_act256_avx2(const float* x, ActBlock256* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 256) {
    const float d = amax_avx2(x, 256) / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int g = 0; g < 16; g += 2) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g + 8 * k), vid));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + 16 * g), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
      y[i].bsums[g] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      y[i].bsums[g + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
    }
    y[i].d = d;
  }
}

KVS_VNNI void quantize_act32_avx512(const float* x, ActBlock32* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const float d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b))) / 127.0f;
    const __m512 vid = _mm512_set1_ps(d > 0 ? 1.0f / d : 0.0f);
    const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid)), qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, vid));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs), _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16), _mm512_cvtepi32_epi8(qb));
    y[i].d = d;
    y[i].sum = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb)));
  }
}

KVS_VNNI void quantize_act256_avx512(const float* x, ActBlock256* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 256) {
    __m512 m = _mm512_setzero_ps();
    for (int g = 0; g < 16; ++g) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * g)));
    const float d = _mm512_reduce_max_ps(m) / 127.0f;
    const __m512 vid = _mm512_set1_ps(d > 0 ? 1.0f / d : 0.0f);
    for (int g = 0; g < 16; ++g) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), vid));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16 * g), _mm512_cvtepi32_epi8(q));
      y[i].bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    y[i].d = d;
  }
}

// ---- AVX2 helpers -----------------------------------------------------------------

// 8 int32 sums of products of signed bytes a and b (maddubs needs one unsigned side,
// so move a's sign onto b).
KVS_AVX2 inline __m256i dot_s8(__m256i a, __m256i b) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// 8 int32 sums of products of unsigned bytes u (< 128) and signed bytes s.
KVS_AVX2 inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// ---- 32-wide formats --------------------------------------------------------------
//
// Each kernel takes one weight row and T activation rows: a weight block is loaded and
// unpacked once for all T, and each activation row's sum runs exactly the instructions
// of T = 1 in the same order, so a column of a decode batch equals the product alone.

// Q8_0: block value d * (signed byte).
template <int T>
KVS_AVX2 void dot_q8_0_rows(const void* w_row, const ActBlock32* const* x, int64_t nb, float* out, int64_t out_stride) {
  const auto* w = static_cast<const BlockQ8_0*>(w_row);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
    const float dw = _cvtsh_ss(w[i].d);
    for (int t = 0; t < T; ++t) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].qs));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[t][i].d), _mm256_cvtepi32_ps(dot_s8(a, b)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) out[t * out_stride] = hsum(acc[t]);
}

KVS_AVX2 float dot_q8_0(const BlockQ8_0* w, const ActBlock32* x, int64_t nb) {
  float out;
  dot_q8_0_rows<1>(w, &x, nb, &out, 0);
  return out;
}

// The nibble formats: Q4_0 (d * (q - 8)), Q5_0 (d * (q - 16), q with a fifth bit), Q4_1
// and Q5_1 (d * q + m). The stored codes q (0..31) go into vpmaddubsw unsigned as they
// are; the offset comes back per block through the activations' sums (sum = d_x · Σ x_q):
// m · sum, with m = -8 d or -16 d for the _0 formats (a power of two times d: exact).
template <typename Block, int T>
KVS_AVX2 void dot_nibbles32(const void* w_row, const ActBlock32* const* x, int64_t nb, float* out, int64_t out_stride) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
  constexpr bool kMin = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;
  constexpr float kOffset = kFive ? -16.0f : -8.0f;  // the _0 formats' m, in units of d
  const auto* w = static_cast<const Block*>(w_row);
  __m256 acc[T];
  float offs[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps(), offs[t] = 0;
  for (int64_t i = 0; i < nb; ++i) {
    __m256i a = unpack_nibbles(w[i].qs);
    if constexpr (kFive) a = _mm256_or_si256(a, bits_to_0x10(w[i].qh));
    const float dw = _cvtsh_ss(w[i].d);
    float mw;
    if constexpr (kMin) mw = _cvtsh_ss(w[i].m);
    else mw = kOffset * dw;
    for (int t = 0; t < T; ++t) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].qs));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[t][i].d), _mm256_cvtepi32_ps(dot_u8s8(a, b)), acc[t]);
      offs[t] = std::fma(mw, x[t][i].sum, offs[t]);  // one rounding, whatever the compiler contracts
    }
  }
  for (int t = 0; t < T; ++t) out[t * out_stride] = hsum(acc[t]) + offs[t];
}

// The same at avx2vnni (AVX-512 VL, BW and VNNI on 256-bit vectors), with the same
// integer sums and float operations in the same order, so the same bits: Q5's fifth bits
// go in as a byte mask (one masked add, not a shuffle, a compare and two ands), vpdpbusd
// makes the four-byte sums in one instruction (vpmaddubsw + vpmaddwd before), and the
// weight scale is converted from f16 already broadcast. Fewer instructions per block
// matter here: the one-token products of these formats are bound by their count.
template <typename Block, int T>
KVS_AVX2VNNI void dot_nibbles32_vnni256(const void* w_row, const ActBlock32* const* x, int64_t nb, float* out,
                                        int64_t out_stride) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
  constexpr bool kMin = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;
  constexpr float kOffset = kFive ? -16.0f : -8.0f;
  const auto* w = static_cast<const Block*>(w_row);
  const __m256i bit5 = _mm256_set1_epi8(0x10);
  __m256 acc[T];
  float offs[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps(), offs[t] = 0;
  for (int64_t i = 0; i < nb; ++i) {
    __m256i a = unpack_nibbles(w[i].qs);
    if constexpr (kFive) {
      uint32_t bits;
      std::memcpy(&bits, w[i].qh, 4);
      a = _mm256_mask_add_epi8(a, static_cast<__mmask32>(bits), a, bit5);
    }
    int16_t d16;
    std::memcpy(&d16, &w[i].d, 2);
    const __m256 dwv = _mm256_cvtph_ps(_mm_set1_epi16(d16));
    const float dw = _mm256_cvtss_f32(dwv);
    float mw;
    if constexpr (kMin) mw = _cvtsh_ss(w[i].m);
    else mw = kOffset * dw;
    for (int t = 0; t < T; ++t) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].qs));
      const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, _mm256_set1_ps(x[t][i].d)), _mm256_cvtepi32_ps(p), acc[t]);
      offs[t] = std::fma(mw, x[t][i].sum, offs[t]);  // one rounding, whatever the compiler contracts
    }
  }
  for (int t = 0; t < T; ++t) out[t * out_stride] = hsum(acc[t]) + offs[t];
}

template <typename Block>
KVS_AVX2 float dot_nibbles32_one(const Block* w, const ActBlock32* x, int64_t nb) {
  float out;
  dot_nibbles32<Block, 1>(w, &x, nb, &out, 0);
  return out;
}

// ---- K formats --------------------------------------------------------------------

// The 8 six-bit scales (bytes 0-7) and 8 mins (bytes 8-15) of a Q4_K / Q5_K super-block,
// unpacked from its 12 bytes in registers. Dwords a0, a1 hold scales and mins 0-3 in
// their low 6 bits and the top 2 bits of 4-7 above them; a2 holds the low 4 bits of
// scales 4-7 (low nibbles) and of mins 4-7 (high nibbles). Reads 16 bytes: in both block
// types the quants follow the 12.
KVS_AVX2 inline __m128i k_scales_mins(const uint8_t* packed) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m128i low = _mm_and_si128(v, _mm_set1_epi8(0x3F));                              // [s0-3, m0-3, ., .]
  const __m128i top = _mm_and_si128(_mm_srli_epi32(v, 2), _mm_set1_epi8(0x30));          // [s4-7, m4-7 top bits]
  const __m128i a2 = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0xAA), _mm_setr_epi32(0, 4, 0, 4));
  const __m128i high = _mm_or_si128(_mm_and_si128(a2, _mm_set1_epi8(0x0F)), top);          // [s4-7, m4-7, ., .]
  return _mm_unpacklo_epi32(low, high);                                                   // [s0-3, s4-7, m0-3, m4-7]
}

// vpshufb controls over k_scales_mins' 16 bytes (in both 128-bit halves): every int16 lane
// = scale j (kKScaleLanes[j]), or int16 lanes 2i and 2i + 1 = min i (kKMinPairs: against
// the activations' 16-value group sums, one min per pair of groups).
alignas(32) constexpr auto kKScaleLanes = [] {
  std::array<std::array<uint8_t, 32>, 8> t{};
  for (int j = 0; j < 8; ++j)
    for (int l = 0; l < 32; ++l) t[j][l] = static_cast<uint8_t>(l % 2 ? 0x80 : j);
  return t;
}();
alignas(32) constexpr auto kKMinPairs = [] {
  std::array<uint8_t, 32> t{};
  for (int l = 0; l < 32; ++l) t[l] = static_cast<uint8_t>(l % 2 ? 0x80 : 8 + l / 4);
  return t;
}();

KVS_AVX2 inline __m256i load_lanes(const std::array<uint8_t, 32>& c) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(c.data()));
}

// Sub-blocks 2c (low nibbles of the 32 bytes at qs + 32c) and 2c + 1 (their high nibbles)
// of a Q4_K / Q5_K super-block as bytes; for Q5_K with the fifth bits from hb, the bit
// plane shifted right by 2c (bit 0 of each byte is sub-block 2c's, bit 1 is 2c + 1's).
template <bool kFive>
KVS_AVX2 inline void k_sub_block_pair(const uint8_t* qs, __m256i hb, int c, __m256i& lo, __m256i& hi) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), bit5 = _mm256_set1_epi8(0x10);
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
  lo = _mm256_and_si256(q, m4);
  hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  if constexpr (kFive) {  // 16-bit shifts: the bit that lands on 0x10 comes from the same byte
    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hb, 4), bit5));
    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hb, 3), bit5));
  }
}

// Half n of a Q6_K super-block as bytes 0..63: q[k] holds values 128n + 32k .. + 31.
KVS_AVX2 inline void q6_k_half(const BlockQ6_K& b, int n, __m256i q[4]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
  const uint8_t* ql = b.ql + 64 * n;
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * n));
  const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
  const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
  q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
  q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
  q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
  q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
}

// Q4_K and Q5_K share everything but Q5_K's fifth bit (one bit plane per 32 values).
// Sub-block j's values times its 6-bit scale come from vpmaddubsw (pair sums, |.| <=
// 2 · 31 · 127, no saturation) and vpmaddwd against the scale in every int16 lane, summed
// in 32 bits. The mins come off through the activations' group sums (Σ_j min_j · Σ x in
// sub-block j, in 32 bits), into the same float accumulator.
template <typename Block, int T>
KVS_AVX2 void dot_k_scale_min(const void* w_row, const ActBlock256* const* x, int64_t nb, float* out, int64_t out_stride) {
  constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
  const auto* w = static_cast<const Block*>(w_row);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const Block& b = w[i];
    const __m256i sm = _mm256_broadcastsi128_si256(k_scales_mins(b.scales));
    __m256i hb = _mm256_setzero_si256();
    if constexpr (kFive) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
    __m256i sumi[T];
    for (int t = 0; t < T; ++t) sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      __m256i lo, hi;
      k_sub_block_pair<kFive>(b.qs, hb, c, lo, hi);
      if constexpr (kFive) hb = _mm256_srli_epi16(hb, 2);
      const __m256i s_lo = _mm256_shuffle_epi8(sm, load_lanes(kKScaleLanes[2 * c]));
      const __m256i s_hi = _mm256_shuffle_epi8(sm, load_lanes(kKScaleLanes[2 * c + 1]));
      for (int t = 0; t < T; ++t) {
        const __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].qs + 64 * c)));
        const __m256i p1 =
            _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].qs + 64 * c + 32)));
        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(_mm256_madd_epi16(p0, s_lo), _mm256_madd_epi16(p1, s_hi)));
      }
    }
    const __m256i mins = _mm256_shuffle_epi8(sm, load_lanes(kKMinPairs));
    const float dw = _cvtsh_ss(b.d), dmin = _cvtsh_ss(b.dmin);
    for (int t = 0; t < T; ++t) {
      const float dx = x[t][i].d;
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].bsums));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * dx), _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, mins)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) out[t * out_stride] = hsum(acc[t]);
}

// vpshufb control: int16 lane 0 of each dword in the low 128 bits, lane 1 in the high.
alignas(32) constexpr std::array<uint8_t, 32> kLowWordThenHighWord = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                                                      2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3};

// Q6_K: 16-value groups with int8 scales. Pair p of groups (values 32p .. 32p + 31, one
// register) takes scale 2p in its low 128 bits and 2p + 1 in its high: dword p of the
// widened scales, broadcast, then split by vpshufb. The super-block's integer total and
// its float step are the AVX-512 kernel's too.
template <int T>
KVS_AVX2 void dot_q6_k(const void* w_row, const ActBlock256* const* x, int64_t nb, float* out, int64_t out_stride) {
  const auto* w = static_cast<const BlockQ6_K*>(w_row);
  float acc[T];
  for (int t = 0; t < T; ++t) acc[t] = 0;
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales)));
    __m256i sumi[T];
    for (int t = 0; t < T; ++t) sumi[t] = _mm256_setzero_si256();
    for (int n = 0; n < 2; ++n) {
      __m256i q[4];
      q6_k_half(w[i], n, q);
      for (int k = 0; k < 4; ++k) {
        const __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(4 * n + k));
        const __m256i scales = _mm256_shuffle_epi8(pair, load_lanes(kLowWordThenHighWord));
        for (int t = 0; t < T; ++t) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].qs + 128 * n + 32 * k));
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), scales));
        }
      }
    }
    const float dw = _cvtsh_ss(w[i].d);
    for (int t = 0; t < T; ++t) {
      // Values are stored +32: remove 32 · Σ scale_g · (sum of the activations in group g).
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].bsums));
      const __m256i total = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32(_mm256_madd_epi16(sc16, bsums), 5));
      acc[t] += dw * x[t][i].d * static_cast<float>(hsum_i32(total));
    }
  }
  for (int t = 0; t < T; ++t) out[t * out_stride] = acc[t];
}

// One weight row against T (<= 4) activation rows: the kernel of one type and level
// behind one signature, chosen once per tile rather than per row.
using RowKernel = void (*)(const void* w, const void* const* act, int64_t n, float* out, int64_t out_stride);

template <auto kKernel, typename Act, int kBlock>
KVS_AVX2 void row_avx2(const void* w, const void* const* act, int64_t n, float* out, int64_t out_stride) {
  kKernel(w, reinterpret_cast<const Act* const*>(act), n / kBlock, out, out_stride);
}
template <auto kKernel>
KVS_AVX2VNNI void row_vnni256(const void* w, const void* const* act, int64_t n, float* out, int64_t out_stride) {
  kKernel(w, reinterpret_cast<const ActBlock32* const*>(act), n / 32, out, out_stride);
}

// The row kernel of type t at the active level (the AVX2 ones, or at avx2vnni the nibble
// formats' own); nullptr for a type without one.
template <int T>
RowKernel row_kernel_for(DType t) {
  if (active_isa() == Isa::Avx2Vnni) switch (t) {
      case DType::Q4_0: return &row_vnni256<&dot_nibbles32_vnni256<BlockQ4_0, T>>;
      case DType::Q5_0: return &row_vnni256<&dot_nibbles32_vnni256<BlockQ5_0, T>>;
      case DType::Q4_1: return &row_vnni256<&dot_nibbles32_vnni256<BlockQ4_1, T>>;
      case DType::Q5_1: return &row_vnni256<&dot_nibbles32_vnni256<BlockQ5_1, T>>;
      default: break;
    }
  switch (t) {
    case DType::Q8_0: return &row_avx2<&dot_q8_0_rows<T>, ActBlock32, 32>;
    case DType::Q4_0: return &row_avx2<&dot_nibbles32<BlockQ4_0, T>, ActBlock32, 32>;
    case DType::Q5_0: return &row_avx2<&dot_nibbles32<BlockQ5_0, T>, ActBlock32, 32>;
    case DType::Q4_1: return &row_avx2<&dot_nibbles32<BlockQ4_1, T>, ActBlock32, 32>;
    case DType::Q5_1: return &row_avx2<&dot_nibbles32<BlockQ5_1, T>, ActBlock32, 32>;
    case DType::Q4_K: return &row_avx2<&dot_k_scale_min<BlockQ4_K, T>, ActBlock256, 256>;
    case DType::Q5_K: return &row_avx2<&dot_k_scale_min<BlockQ5_K, T>, ActBlock256, 256>;
    case DType::Q6_K: return &row_avx2<&dot_q6_k<T>, ActBlock256, 256>;
    default: return nullptr;
  }
}

RowKernel row_kernel(DType t, int n_act) {
  switch (n_act) {
    case 4: return row_kernel_for<4>(t);
    case 3: return row_kernel_for<3>(t);
    case 2: return row_kernel_for<2>(t);
    default: return row_kernel_for<1>(t);
  }
}

// Two consecutive 32-value activation blocks as one register of codes, and their scales
// as lanes 0-7 (first block) and 8-15 (second).
KVS_VNNI inline void load_act_pair(const ActBlock32* a, __m512i& codes, __m512& scales) {
  codes = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[0].qs))),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[1].qs)), 1);
  scales = _mm512_insertf32x8(_mm512_set1_ps(a[0].d), _mm256_set1_ps(a[1].d), 1);
}

// AVX-512 VNNI micro-kernel: R weight rows x T activation rows. Two 32-value blocks fill
// one 512-bit register; each weight block is loaded once for T tokens and each
// activation block once for R rows. vpdpbusd multiplies unsigned by signed bytes: the
// activations go in offset by 128 (x ^ 0x80 = x + 128 as u8), and each weight row's
// accumulator starts at -128 * (its sum of weights), so the sum comes out exact.
template <int R, int T>
KVS_VNNI void dot_q8_0_vnni(const BlockQ8_0* const* w, const ActBlock32* const* x, int64_t nb, float* out,
                            int64_t out_stride) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8(static_cast<char>(0x80));
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    __m512i xu[T];
    __m512 dx[T];
    for (int t = 0; t < T; ++t) {
      load_act_pair(x[t] + i, xu[t], dx[t]);
      xu[t] = _mm512_xor_si512(xu[t], bias);
    }
    for (int r = 0; r < R; ++r) {
      const BlockQ8_0* b = w[r] + i;
      const __m512i wv =
          _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs))),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
      const __m512i start =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, wv), 7));
      const __m512 dw = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(b[0].d)), _mm256_set1_ps(_cvtsh_ss(b[1].d)), 1);
      for (int t = 0; t < T; ++t) {
        const __m512i p = _mm512_dpbusd_epi32(start, xu[t], wv);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[t]), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float s = _mm512_reduce_add_ps(acc[r][t]);
      if (i < nb) s += dot_q8_0(w[r] + i, x[t] + i, nb - i);
      out[t * out_stride + r] = s;
    }
}

// The 32-wide nibble formats on AVX-512 VNNI: R weight rows x T activation rows, each
// weight block pair unpacked once for the T tokens. The weights go in unsigned, as stored
// (0..15, or 0..31 with Q5's fifth bit): vpdpbusd takes them as the unsigned operand and
// the activations as signed. What the stored integers leave out comes back per block
// through the activation sums quantize_act32 keeps (sum = d_x · Σ x_q): Q4_0 / Q5_0 take
// off 8 / 16 · d_w · sum, Q4_1 / Q5_1 add m_w · sum.
template <typename Block>
struct NibblesVnni {
  static constexpr bool kFive = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
  static constexpr bool kMin = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;
  static constexpr float kOffset = kMin ? -1.0f : kFive ? 16.0f : 8.0f;  // minus what one unit of corr adds

  template <int R, int T>
  KVS_VNNI static void run(const void* const* w, const ActBlock32* const* x, int64_t nb, float* out,
                           int64_t out_stride) {
    __m512 acc[R][T];
    float corr[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps(), corr[r][t] = 0.0f;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m512i bit5 = _mm512_set1_epi8(0x10);
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
      __m512i xv[T];
      __m512 dx[T];
      for (int t = 0; t < T; ++t) load_act_pair(x[t] + i, xv[t], dx[t]);
      for (int r = 0; r < R; ++r) {
        const Block* b = static_cast<const Block*>(w[r]) + i;
        // [block0 bytes | block1 bytes] -> lanes [b0 low nibbles, b0 high, b1 low, b1 high].
        const __m256i packed = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)),
                                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs)));
        const __m256i lo = _mm256_and_si256(packed, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        __m512i q = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0));
        if constexpr (kFive) {
          uint32_t h0, h1;
          std::memcpy(&h0, b[0].qh, 4);
          std::memcpy(&h1, b[1].qh, 4);
          q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(static_cast<__mmask64>(h0) | (static_cast<__mmask64>(h1) << 32), bit5));
        }
        const float d0 = _cvtsh_ss(b[0].d), d1 = _cvtsh_ss(b[1].d);
        const __m512 dw = _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
        float c0 = d0, c1 = d1;
        if constexpr (kMin) c0 = _cvtsh_ss(b[0].m), c1 = _cvtsh_ss(b[1].m);
        for (int t = 0; t < T; ++t) {
          const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xv[t]);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[t]), acc[r][t]);
          corr[r][t] += c0 * x[t][i].sum + c1 * x[t][i + 1].sum;
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        float s = _mm512_reduce_add_ps(acc[r][t]) - kOffset * corr[r][t];
        if (i < nb) {  // an odd last block: the AVX2 kernel
          const Block* b = static_cast<const Block*>(w[r]) + i;
          const ActBlock32* tail = x[t] + i;
          s += dot_nibbles32_one(b, tail, nb - i);
        }
        out[t * out_stride + r] = s;
      }
  }
};

// Q4_K / Q5_K on AVX-512 VNNI, R rows x T tokens. 64 values per register: the low
// nibbles of 32 stored bytes (sub-block 2c) beside their high nibbles (2c + 1), as the
// activations lie; vpmaddubsw makes the byte pair sums (|sum| <= 2 · 31 · 128, no
// saturation) and vpdpwssd multiplies them by each half's 6-bit scale into 32-bit lanes.
// The mins come off per super-block through the activations' group sums, as on AVX2.
template <typename Block>
struct KScaleMinVnni {
  template <int R, int T>
  KVS_VNNI static void run(const void* const* w, const ActBlock256* const* x, int64_t nb, float* out,
                           int64_t out_stride) {
    constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
    __m512 acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      for (int r = 0; r < R; ++r) {
        const Block& b = static_cast<const Block*>(w[r])[i];
        const __m256i sm = _mm256_broadcastsi128_si256(k_scales_mins(b.scales));
        __m256i hb = _mm256_setzero_si256();
        if constexpr (kFive) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
        __m512i q[4], scales[4];
        for (int c = 0; c < 4; ++c) {
          __m256i lo, hi;
          k_sub_block_pair<kFive>(b.qs, hb, c, lo, hi);
          if constexpr (kFive) hb = _mm256_srli_epi16(hb, 2);
          q[c] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
          scales[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_shuffle_epi8(sm, load_lanes(kKScaleLanes[2 * c]))),
                                         _mm256_shuffle_epi8(sm, load_lanes(kKScaleLanes[2 * c + 1])), 1);
        }
        const __m256i mins = _mm256_shuffle_epi8(sm, load_lanes(kKMinPairs));
        const float dw = _cvtsh_ss(b.d), dmin = _cvtsh_ss(b.dmin);
        for (int t = 0; t < T; ++t) {
          __m512i sumi = _mm512_setzero_si512();
          for (int c = 0; c < 4; ++c)
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[c], _mm512_loadu_si512(x[t][i].qs + 64 * c)),
                                       scales[c]);
          const float dx = x[t][i].d;
          const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][i].bsums));
          const __m512 min_sums = _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, mins)), 0);
          acc[r][t] = _mm512_fmadd_ps(_mm512_set1_ps(dw * dx), _mm512_cvtepi32_ps(sumi), acc[r][t]);
          acc[r][t] = _mm512_fnmadd_ps(_mm512_set1_ps(dmin * dx), min_sums, acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

// Q6_K on AVX-512 VNNI, R rows x T tokens: the 6-bit values rebuilt as on AVX2, two
// 32-value pieces per register, each 16 values' int8 scale spread over its 128-bit lane
// (vpermw), vpmaddubsw + vpdpwssd into 32-bit lanes. The super-block's integer total
// and its float scaling are those of the AVX2 kernel, so the results are the same bits.
// vpermw indices: int16 lane l of table k takes scale group 4k + l / 8.
alignas(64) constexpr auto kQ6KScaleSpread = [] {
  std::array<std::array<int16_t, 32>, 4> t{};
  for (int k = 0; k < 4; ++k)
    for (int l = 0; l < 32; ++l) t[k][l] = static_cast<int16_t>(4 * k + l / 8);
  return t;
}();
struct Q6KVnni {
  template <int R, int T>
  KVS_VNNI static void run(const void* const* w, const ActBlock256* const* x, int64_t nb, float* out,
                           int64_t out_stride) {
    float acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;
    __m512i spread[4];
    for (int k = 0; k < 4; ++k) spread[k] = _mm512_load_si512(kQ6KScaleSpread[k].data());
    for (int64_t i = 0; i < nb; ++i) {
      for (int r = 0; r < R; ++r) {
        const BlockQ6_K& b = static_cast<const BlockQ6_K*>(w[r])[i];
        const __m512i sc16 =
            _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales))));
        __m512i q[4], scales[4];  // values 64k .. 64k + 63
        for (int n = 0; n < 2; ++n) {
          __m256i half[4];
          q6_k_half(b, n, half);
          q[2 * n] = _mm512_inserti64x4(_mm512_castsi256_si512(half[0]), half[1], 1);
          q[2 * n + 1] = _mm512_inserti64x4(_mm512_castsi256_si512(half[2]), half[3], 1);
          scales[2 * n] = _mm512_permutexvar_epi16(spread[2 * n], sc16);
          scales[2 * n + 1] = _mm512_permutexvar_epi16(spread[2 * n + 1], sc16);
        }
        const float dw = _cvtsh_ss(b.d);
        for (int t = 0; t < T; ++t) {
          __m512i sumi = _mm512_setzero_si512();
          for (int k = 0; k < 4; ++k)
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[k], _mm512_loadu_si512(x[t][i].qs + 64 * k)),
                                       scales[k]);
          // Values are stored +32: remove 32 * Σ scale_g * (sum of the activations in group g).
          int offset = 0;
          for (int g = 0; g < 16; ++g) offset += b.scales[g] * x[t][i].bsums[g];
          const int total = _mm512_reduce_add_epi32(sumi) - 32 * offset;
          acc[r][t] += dw * x[t][i].d * static_cast<float>(total);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[t * out_stride + r] = acc[r][t];
  }
};

// Q8_0's kernel above, in the shape the tiler calls.
struct Q8_0Vnni {
  template <int R, int T>
  static void run(const void* const* w, const ActBlock32* const* x, int64_t nb, float* out, int64_t out_stride) {
    dot_q8_0_vnni<R, T>(reinterpret_cast<const BlockQ8_0* const*>(w), x, nb, out, out_stride);
  }
};

// A tile through a VNNI kernel: 4 rows x up to 4 tokens at a time, the edge rows one at a
// time against up to four tokens. Every (row, token) sum runs the same instructions
// whatever the call's R and T, so a column equals its product alone.
template <typename Kernel, int R, typename Act>
void run_tokens(int nt, const void* const* w, const Act* const* x, int64_t nb, float* out, int64_t out_stride) {
  switch (nt) {
    case 4: return Kernel::template run<R, 4>(w, x, nb, out, out_stride);
    case 3: return Kernel::template run<R, 3>(w, x, nb, out, out_stride);
    case 2: return Kernel::template run<R, 2>(w, x, nb, out, out_stride);
    default: return Kernel::template run<R, 1>(w, x, nb, out, out_stride);
  }
}
template <typename Kernel, typename Act>
void tile_vnni(const void* const* w_rows, int n_rows, const void* const* act, int n_act, int64_t n, float* out,
               int64_t out_stride) {
  constexpr int64_t kBlock = std::is_same_v<Act, ActBlock256> ? 256 : 32;
  const auto* const* x = reinterpret_cast<const Act* const*>(act);
  for (int t0 = 0; t0 < n_act; t0 += 4) {
    const int nt = std::min(4, n_act - t0);
    float* o = out + t0 * out_stride;
    int r = 0;
    for (; r + 4 <= n_rows; r += 4) run_tokens<Kernel, 4>(nt, w_rows + r, x + t0, n / kBlock, o + r, out_stride);
    for (; r < n_rows; ++r) run_tokens<Kernel, 1>(nt, w_rows + r, x + t0, n / kBlock, o + r, out_stride);
  }
}

}  // namespace

void quant_dot_tile(DType t, const void* const* w_rows, int n_rows, const void* const* act, int n_act, int64_t n,
                    float* out, int64_t out_stride) {
  if (use_avx512()) switch (t) {
      case DType::Q8_0: return tile_vnni<Q8_0Vnni, ActBlock32>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q4_0: return tile_vnni<NibblesVnni<BlockQ4_0>, ActBlock32>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q5_0: return tile_vnni<NibblesVnni<BlockQ5_0>, ActBlock32>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q4_1: return tile_vnni<NibblesVnni<BlockQ4_1>, ActBlock32>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q5_1: return tile_vnni<NibblesVnni<BlockQ5_1>, ActBlock32>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q4_K: return tile_vnni<KScaleMinVnni<BlockQ4_K>, ActBlock256>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q5_K: return tile_vnni<KScaleMinVnni<BlockQ5_K>, ActBlock256>(w_rows, n_rows, act, n_act, n, out, out_stride);
      case DType::Q6_K: return tile_vnni<Q6KVnni, ActBlock256>(w_rows, n_rows, act, n_act, n, out, out_stride);
      default: break;
    }
  for (int k = 0; k < n_act; k += 4) {
    const int nt = std::min(4, n_act - k);
    const RowKernel kernel = row_kernel(t, nt);
    if (!kernel) return;
    for (int r = 0; r < n_rows; ++r) kernel(w_rows[r], act + k, n, out + k * out_stride + r, out_stride);
  }
}

bool has_quant_dot(DType t) {
  if (!use_avx2()) return false;
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

int act_block_elems(DType t) { return traits(t).block_elems == 256 ? 256 : 32; }

int64_t act_row_bytes(DType t, int64_t n) {
  return act_block_elems(t) == 256 ? n / 256 * static_cast<int64_t>(sizeof(ActBlock256))
                                   : n / 32 * static_cast<int64_t>(sizeof(ActBlock32));
}

void quantize_activations(DType t, const float* x, void* out, int64_t n) {
  const bool wide = act_block_elems(t) == 256;
  auto* y256 = static_cast<ActBlock256*>(out);
  auto* y32 = static_cast<ActBlock32*>(out);
  switch (active_isa()) {
    case Isa::Avx512: return wide ? quantize_act256_avx512(x, y256, n / 256) : quantize_act32_avx512(x, y32, n / 32);
    case Isa::Avx2: case Isa::Avx2Vnni: return wide ? quantize_act256_avx2(x, y256, n / 256) : quantize_act32_avx2(x, y32, n / 32);
    default: return wide ? quantize_act256(x, y256, n / 256) : quantize_act32(x, y32, n / 32);
  }
}

float quant_dot(DType t, const void* w, const void* a, int64_t n) {
  float out = 0.0f;
  if (const RowKernel kernel = row_kernel(t, 1)) kernel(w, &a, n, &out, 0);
  return out;
}

}  // namespace kvsqueeze
