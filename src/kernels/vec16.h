// 16-float vectors in GCC's vector extension, for kernels written once for every
// instruction set: one 512-bit register under AVX-512, two under AVX2, four SSE
// registers otherwise. Everything here is forced inline: the kernels that use it are
// compiled once per instruction set, and no vector may cross a call (hence -Wpsabi off).
#pragma once

#include <cstdint>
#include <cstring>

#pragma GCC diagnostic ignored "-Wpsabi"

#include "kernels/fast_exp.h"

namespace kvsqueeze::vec16 {

using v16 = float __attribute__((vector_size(64)));
using vi16 = int32_t __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;
// 8 floats: the vector AVX2 holds in one register.
using v8 = float __attribute__((vector_size(32)));
using vi8 = int32_t __attribute__((vector_size(32)));

// The int vector of a float vector's width.
template <typename V>
struct IntLanes;
template <>
struct IntLanes<v16> {
  using type = vi16;
};
template <>
struct IntLanes<v8> {
  using type = vi8;
};

#define KVS_VEC_INLINE inline __attribute__((always_inline))

KVS_VEC_INLINE v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
KVS_VEC_INLINE void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

KVS_VEC_INLINE v16 splat(float f) { return v16{} + f; }
KVS_VEC_INLINE v16 vmax(v16 a, v16 b) { return a > b ? a : b; }

// fast_exp (kernels/fast_exp.h) lane by lane on any float vector V with its int vector
// VI; rounding by the 1.5·2^23 trick.
template <typename V, typename VI = typename IntLanes<V>::type>
KVS_VEC_INLINE V vexp_lanes(V x) {
  x = x < -87.0f ? V{} - 87.0f : x;
  x = x > 88.0f ? V{} + 88.0f : x;
  const V kf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const V y = exp_poly(exp_reduce(x, kf));
  const VI bits = (__builtin_convertvector(kf, VI) + 127) << 23;
  return y * (V)bits;  // same-size vector cast: reinterprets the bits
}

// On 16 lanes.
KVS_VEC_INLINE v16 vexp(v16 x) { return vexp_lanes<v16, vi16>(x); }

// The 16 lane sums of a[0..15], in order, by a tree of two-input shuffles: about three
// instructions per sum instead of a full horizontal reduction each.
KVS_VEC_INLINE v16 sum16(const v16* a) {
  v16 t[8], u[4], w[2];
  for (int i = 0; i < 8; ++i)  // [a_2i: 8 partial sums][a_2i+1: 8]
    t[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int i = 0; i < 4; ++i)  // four sources, 4 partial sums each
    u[i] = __builtin_shufflevector(t[2 * i], t[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(t[2 * i], t[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int i = 0; i < 2; ++i)  // eight sources, 2 partial sums each
    w[i] = __builtin_shufflevector(u[2 * i], u[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           __builtin_shufflevector(u[2 * i], u[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  return __builtin_shufflevector(w[0], w[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(w[0], w[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

}  // namespace kvsqueeze::vec16
