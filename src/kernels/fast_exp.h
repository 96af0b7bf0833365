// e^x for float, written so loops around it vectorise at any instruction set (a libm call
// per element would not): x = k ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial
// (relative error ~2e-7), 2^k through the exponent bits.
#pragma once

// The templates below are also instantiated on 16-float vectors (vec16.h), always inline,
// so no vector crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

namespace kvsqueeze {

// e^r for |r| <= ln2/2 and the reduced argument r = x - k ln2 (ln2 split in two for
// precision), for a float or a vector of floats (the vector form is in vec16.h).
template <typename T>
inline __attribute__((always_inline)) T exp_reduce(T x, T kf) {
  return x - kf * 0.693359375f + kf * 2.12194440e-4f;
}
template <typename T>
inline __attribute__((always_inline)) T exp_poly(T r) {
  T y = r * (1.0f / 720) + 1.0f / 120;
  y = y * r + 1.0f / 24;
  y = y * r + 1.0f / 6;
  y = y * r + 0.5f;
  y = y * r + 1.0f;
  return y * r + 1.0f;
}

inline __attribute__((always_inline)) float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;  // below this the result underflows to ~0 anyway
  x = x > 88.0f ? 88.0f : x;    // above this float overflows
  const float kf = __builtin_rintf(x * 1.44269504088896341f);
  const float y = exp_poly(exp_reduce(x, kf));
  const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, 4);
  return y * scale;
}

}  // namespace kvsqueeze
