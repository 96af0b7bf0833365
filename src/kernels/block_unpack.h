// Every 32-value block of the supported weight formats, decoded to small integers with
// their scales and offset: value_j = s[j / 4] * q[j] + o. Both packed prompt kernels
// (AVX-512 VNNI and AVX2) lay their weights out from this; it runs once per row block
// and call, so it is specialised per format and kept branch-light.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "tensor/dtype.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace kvsqueeze::block_unpack {

// One 32-value block as value_j = s[j / 4] * q[j] + o.
struct Unpacked {
  int8_t q[32];
  float s[8];
  float o;
};

template <typename Block>
const Block& block_at(const uint8_t* row, int64_t i) {
  return reinterpret_cast<const Block*>(row)[i];
}

inline int fifth_bit(const uint8_t* qh, int j) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return static_cast<int>((bits >> j) & 1) << 4;
}

// What unpack_block subtracts from the stored integers of type t (its q are the stored
// values plus q_min): the stored values themselves are unsigned, except Q8_0's signed
// bytes (q_min 0).
constexpr int q_min(DType t) {
  switch (t) {
    case DType::Q4_0: return -8;
    case DType::Q5_0: return -16;
    case DType::Q6_K: return -32;
    default: return 0;
  }
}

// The scales and offset of block b (0-based, 32 values each) of a row of type t:
// value_j = s[j / 16] * q_j + o with q_j as unpack_block gives it (only Q6_K's halves
// differ).
struct BlockScales {
  float s[2];
  float o;
};

template <DType t>
inline BlockScales block_scales(const uint8_t* row, int64_t b) {
  switch (t) {
    case DType::Q8_0: { const float d = fp16_to_fp32(block_at<BlockQ8_0>(row, b).d); return {{d, d}, 0.0f}; }
    case DType::Q4_0: { const float d = fp16_to_fp32(block_at<BlockQ4_0>(row, b).d); return {{d, d}, 0.0f}; }
    case DType::Q5_0: { const float d = fp16_to_fp32(block_at<BlockQ5_0>(row, b).d); return {{d, d}, 0.0f}; }
    case DType::Q4_1: {
      const auto& blk = block_at<BlockQ4_1>(row, b);
      const float d = fp16_to_fp32(blk.d);
      return {{d, d}, fp16_to_fp32(blk.m)};
    }
    case DType::Q5_1: {
      const auto& blk = block_at<BlockQ5_1>(row, b);
      const float d = fp16_to_fp32(blk.d);
      return {{d, d}, fp16_to_fp32(blk.m)};
    }
    case DType::Q4_K: case DType::Q5_K: {
      // Sub-block j of a super-block, with its 6-bit scale and min.
      const bool five = t == DType::Q5_K;
      const uint8_t* scales = five ? block_at<BlockQ5_K>(row, b / 8).scales : block_at<BlockQ4_K>(row, b / 8).scales;
      const uint16_t d = five ? block_at<BlockQ5_K>(row, b / 8).d : block_at<BlockQ4_K>(row, b / 8).d;
      const uint16_t dmin = five ? block_at<BlockQ5_K>(row, b / 8).dmin : block_at<BlockQ4_K>(row, b / 8).dmin;
      uint8_t sc, mn;
      k_scale_min(static_cast<int>(b % 8), scales, sc, mn);
      const float s = fp16_to_fp32(d) * sc;
      return {{s, s}, -(fp16_to_fp32(dmin) * mn)};
    }
    case DType::Q6_K: {
      // Values 32j .. 32j+31 of a super-block are its 16-value groups 2j and 2j+1.
      const auto& blk = block_at<BlockQ6_K>(row, b / 8);
      const int j = static_cast<int>(b % 8);
      const float d = fp16_to_fp32(blk.d);
      return {{d * blk.scales[2 * j], d * blk.scales[2 * j + 1]}, 0.0f};
    }
    default:
      return {{0.0f, 0.0f}, 0.0f};
  }
}

// Block b of a row of type t, integers and scales.
template <DType t>
inline void unpack_block(const uint8_t* row, int64_t b, Unpacked& u) {
  switch (t) {
    case DType::Q8_0:
      std::memcpy(u.q, block_at<BlockQ8_0>(row, b).qs, 32);
      break;
    case DType::Q4_0: case DType::Q4_1: {
      const uint8_t* qs = t == DType::Q4_0 ? block_at<BlockQ4_0>(row, b).qs : block_at<BlockQ4_1>(row, b).qs;
      const int bias = t == DType::Q4_0 ? 8 : 0;
      for (int j = 0; j < 16; ++j) {
        u.q[j] = static_cast<int8_t>((qs[j] & 0xF) - bias);
        u.q[j + 16] = static_cast<int8_t>((qs[j] >> 4) - bias);
      }
      break;
    }
    case DType::Q5_0: case DType::Q5_1: {
      const bool sym = t == DType::Q5_0;
      const uint8_t* qs = sym ? block_at<BlockQ5_0>(row, b).qs : block_at<BlockQ5_1>(row, b).qs;
      const uint8_t* qh = sym ? block_at<BlockQ5_0>(row, b).qh : block_at<BlockQ5_1>(row, b).qh;
      const int bias = sym ? 16 : 0;
      for (int j = 0; j < 16; ++j) {
        u.q[j] = static_cast<int8_t>(((qs[j] & 0xF) | fifth_bit(qh, j)) - bias);
        u.q[j + 16] = static_cast<int8_t>(((qs[j] >> 4) | fifth_bit(qh, j + 16)) - bias);
      }
      break;
    }
    case DType::Q4_K: case DType::Q5_K: {
      // Sub-block j: the low (even j) or high (odd j) nibbles of 32 bytes, plus bit j of qh.
      const int j = static_cast<int>(b % 8);
      const bool five = t == DType::Q5_K;
      const uint8_t* qs = (five ? block_at<BlockQ5_K>(row, b / 8).qs : block_at<BlockQ4_K>(row, b / 8).qs) + 32 * (j / 2);
      for (int l = 0; l < 32; ++l) {
        int q = j % 2 ? qs[l] >> 4 : qs[l] & 0xF;
        if (five && (block_at<BlockQ5_K>(row, b / 8).qh[l] >> j & 1)) q += 16;
        u.q[l] = static_cast<int8_t>(q);
      }
      break;
    }
    case DType::Q6_K: {
      // Values 32j .. 32j+31 of a super-block (see the Q6_K layout in tensor/quant.cpp).
      const auto& blk = block_at<BlockQ6_K>(row, b / 8);
      const int j = static_cast<int>(b % 8), n = j / 4, k = j % 4;
      const uint8_t* ql = blk.ql + 64 * n + (k % 2 ? 32 : 0);
      const uint8_t* qh = blk.qh + 32 * n;
      for (int l = 0; l < 32; ++l) {
        const int lo = k < 2 ? ql[l] & 0xF : ql[l] >> 4;
        u.q[l] = static_cast<int8_t>((lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32);
      }
      break;
    }
    default:
      break;
  }
  const BlockScales bs = block_scales<t>(row, b);
  for (int g = 0; g < 8; ++g) u.s[g] = bs.s[g / 4];
  u.o = bs.o;
}

// Calls f(std::integral_constant<DType, T>{}) with t as a constant: the formats the
// packed kernels take, each of which they specialise.
template <class F>
void with_format(DType t, F&& f) {
  switch (t) {
#define KVS_FORMAT_CASE(T) \
  case DType::T: return f(std::integral_constant<DType, DType::T>{});
    KVS_FORMAT_CASE(Q8_0) KVS_FORMAT_CASE(Q4_0) KVS_FORMAT_CASE(Q4_1) KVS_FORMAT_CASE(Q5_0) KVS_FORMAT_CASE(Q5_1)
    KVS_FORMAT_CASE(Q4_K) KVS_FORMAT_CASE(Q5_K) KVS_FORMAT_CASE(Q6_K)
#undef KVS_FORMAT_CASE
    default: throw std::logic_error("packed prompt kernel: unsupported weight format");
  }
}

}  // namespace kvsqueeze::block_unpack
