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

#include "kernels/vec16_ops.inc"

}  // namespace kvsqueeze::vec16
