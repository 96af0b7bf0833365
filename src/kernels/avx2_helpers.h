// Small AVX2 helpers the kernel files share: horizontal sums and the unpacking of
// ggml's 4- and 5-bit blocks. Each is compiled for AVX2 only, so callers must be too.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "tensor/cpu_features.h"

namespace kvsqueeze::avx2 {

KVS_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

KVS_TARGET_AVX2 inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// 16 packed nibbles -> 32 bytes: low nibbles first (elements 0..15), then high.
// The 16 bytes go to both halves in one load; a per-lane shift moves the upper half's
// high nibbles down (three instructions, none on the shuffle ports).
KVS_TARGET_AVX2 inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
}

// Bit j of the 32-bit word -> byte j = 0x10 when set.
KVS_TARGET_AVX2 inline __m256i bits_to_0x10(const uint8_t* qh4) {
  uint32_t bits;
  std::memcpy(&bits, qh4, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  v = _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

}  // namespace kvsqueeze::avx2
