// For the test build that checks the AVX-512 kernels on machines without AVX-512
// (KVS_EMULATE_AVX512, tests/CMakeLists.txt): SIMDe gives the _mm512_* intrinsics portable
// bodies, so the kernels' own source runs here, lane for lane. Debian's SIMDe (0.7.4)
// lacks a few that the kernels use; they are written below from their definitions in
// Intel's intrinsics guide. Nothing here is fast, and none of it is in the product.
#pragma once

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cmath>
#include <cstdint>

namespace kvs_emulation {

struct I32x16 {
  int32_t v[16];
  explicit I32x16(__m512i a) { _mm512_storeu_si512(v, a); }
};
struct F32x16 {
  float v[16];
  explicit F32x16(__m512 a) { _mm512_storeu_ps(v, a); }
};

inline __m512 cvtepi32_ps(__m512i a) {
  const I32x16 in(a);
  float out[16];
  for (int k = 0; k < 16; ++k) out[k] = static_cast<float>(in.v[k]);
  return _mm512_loadu_ps(out);
}

// Round to nearest even (the default rounding mode); out of range gives INT32_MIN.
inline __m512i cvtps_epi32(__m512 a) {
  const F32x16 in(a);
  int32_t out[16];
  for (int k = 0; k < 16; ++k) {
    const float r = std::nearbyint(in.v[k]);
    out[k] = (r >= -2147483648.0f && r < 2147483648.0f) ? static_cast<int32_t>(r) : INT32_MIN;
  }
  return _mm512_loadu_si512(out);
}

// Keeps the low byte of each 32-bit lane.
inline __m128i cvtepi32_epi8(__m512i a) {
  const I32x16 in(a);
  int8_t out[16];
  for (int k = 0; k < 16; ++k) out[k] = static_cast<int8_t>(in.v[k] & 0xFF);
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(out));
}

inline int32_t reduce_add_epi32(__m512i a) {
  const I32x16 in(a);
  uint32_t s = 0;
  for (int32_t x : in.v) s += static_cast<uint32_t>(x);
  return static_cast<int32_t>(s);
}

// Halves added pairwise (8, 4, 2, 1 lanes apart), the order GCC's own reduction uses.
inline float reduce_add_ps(__m512 a) {
  F32x16 in(a);
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) in.v[k] += in.v[k + w];
  return in.v[0];
}

inline float reduce_max_ps(__m512 a) {
  const F32x16 in(a);
  float m = in.v[0];
  for (float x : in.v) m = x > m ? x : m;
  return m;
}

// Bytes of a + b where k's bit is set, of src elsewhere.
inline __m256i mask_add_epi8(__m256i src, __mmask32 k, __m256i a, __m256i b) {
  return _mm256_mask_mov_epi8(src, k, _mm256_add_epi8(a, b));
}

}  // namespace kvs_emulation

#define _mm512_cvtepi32_ps kvs_emulation::cvtepi32_ps
#define _mm512_cvtps_epi32 kvs_emulation::cvtps_epi32
#define _mm512_cvtepi32_epi8 kvs_emulation::cvtepi32_epi8
#define _mm512_reduce_add_epi32 kvs_emulation::reduce_add_epi32
#define _mm512_reduce_add_ps kvs_emulation::reduce_add_ps
#define _mm512_reduce_max_ps kvs_emulation::reduce_max_ps
#define _mm256_mask_add_epi8 kvs_emulation::mask_add_epi8
#define _mm512_shuffle_i64x2 simde_mm512_shuffle_i64x2
