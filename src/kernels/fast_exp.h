// e^x for float, written so loops around it vectorise at any instruction set (a libm call
// per element would not): x = k ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial
// (relative error ~2e-7), 2^k through the exponent bits.
#pragma once

// The templates below are also instantiated on 16-float vectors (vec16.h), always inline,
// so no vector crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cstdint>

namespace kvsqueeze {

#include "kernels/fast_exp_poly.inc"

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
