#include "tensor/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include <immintrin.h>

#include "tensor/cpu_features.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace kvsqueeze {
namespace {

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }

// F16 rows convert on the F16C unit when there is one (KV rows are stored as f16).
__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = fp16_to_fp32(s[i]);
}

__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) d[i] = fp32_to_fp16(s[i]);
}
inline uint16_t f2h(float f) { return fp32_to_fp16(f); }

// ---- decoding -------------------------------------------------------------------

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((b[i].qs[j] & 0xF) - 8) * d;
      y[j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(b[i].qs[j] & 0xF) * d + m;
      y[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

template <typename Block>
void dequant_q5(const Block* b, float* y, int64_t nb, bool has_min) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    float m = -16.0f * d;
    if constexpr (requires { b[i].m; }) m = has_min ? h2f(b[i].m) : m;
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(lo) * d + m;
      y[j + 16] = static_cast<float>(hi) * d + m;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {
      uint8_t sc0, m0, sc1, m1;
      k_scale_min(2 * c, b[i].scales, sc0, m0);
      k_scale_min(2 * c + 1, b[i].scales, sc1, m1);
      const float d0 = d * sc0, n0 = dmin * m0, d1 = d * sc1, n1 = dmin * m1;
      for (int l = 0; l < 32; ++l) *y++ = d0 * static_cast<float>(q[l] & 0xF) - n0;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] >> 4) - n1;
    }
  }
}

void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    const uint8_t* qh = b[i].qh;
    for (int c = 0; c < 4; ++c, q += 32) {
      uint8_t sc0, m0, sc1, m1;
      k_scale_min(2 * c, b[i].scales, sc0, m0);
      k_scale_min(2 * c + 1, b[i].scales, sc1, m1);
      const float d0 = d * sc0, n0 = dmin * m0, d1 = d * sc1, n1 = dmin * m1;
      const uint8_t u0 = static_cast<uint8_t>(1u << (2 * c)), u1 = static_cast<uint8_t>(2u << (2 * c));
      for (int l = 0; l < 32; ++l)
        *y++ = d0 * static_cast<float>((q[l] & 0xF) + ((qh[l] & u0) ? 16 : 0)) - n0;
      for (int l = 0; l < 32; ++l)
        *y++ = d1 * static_cast<float>((q[l] >> 4) + ((qh[l] & u1) ? 16 : 0)) - n1;
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n = 0; n < 2; ++n, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

// ---- encoding -------------------------------------------------------------------

inline int nearest(float x) { return static_cast<int>(std::lround(x)); }

// The value of largest magnitude, sign kept (the symmetric formats map it to -levels).
float signed_absmax(const float* x, int n) {
  float amax = 0, vmax = 0;
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), vmax = x[j];
  return vmax;
}

void quant_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < 16; ++j) {
      const int a = std::clamp(nearest(x[j] * id) + 8, 0, 15);
      const int c = std::clamp(nearest(x[j + 16] * id) + 8, 0, 15);
      b[i].qs[j] = static_cast<uint8_t>(a | c << 4);
    }
  }
}

// Shared by the "scale + min" 32-wide formats: levels is 15 (Q4_1) or 31 (Q5_1).
void min_max(const float* x, int n, float& lo, float& hi) {
  lo = *std::min_element(x, x + n);
  hi = *std::max_element(x, x + n);
}

void quant_q4_1(const float* x, BlockQ4_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float lo, hi;
    min_max(x, kQK, lo, hi);
    const float d = (hi - lo) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    for (int j = 0; j < 16; ++j) {
      const int a = std::clamp(nearest((x[j] - lo) * id), 0, 15);
      const int c = std::clamp(nearest((x[j + 16] - lo) * id), 0, 15);
      b[i].qs[j] = static_cast<uint8_t>(a | c << 4);
    }
  }
}

template <typename Block>
void pack_q5(Block& b, const int* q) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(b.qh, &qh, 4);
}

void quant_q5_0(const float* x, BlockQ5_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::clamp(nearest(x[j] * id) + 16, 0, 31);
    pack_q5(b[i], q);
  }
}

void quant_q5_1(const float* x, BlockQ5_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float lo, hi;
    min_max(x, kQK, lo, hi);
    const float d = (hi - lo) / 31.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::clamp(nearest((x[j] - lo) * id), 0, 31);
    pack_q5(b[i], q);
  }
}

void quant_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < kQK; ++j) b[i].qs[j] = static_cast<int8_t>(std::clamp(nearest(x[j] * id), -127, 127));
  }
}

// Q4_K / Q5_K: per 32-element sub-block a scale and a (non-negative) offset, both
// stored as 6-bit multiples of the super-block's d and dmin.
template <typename Block>
void quant_k_scale_min(const float* x, Block& b, int levels, int* q) {
  float scale[8], offset[8];
  for (int s = 0; s < 8; ++s) {
    float lo, hi;
    min_max(x + 32 * s, 32, lo, hi);
    lo = std::min(lo, 0.0f);
    scale[s] = (hi - lo) / static_cast<float>(levels);
    offset[s] = -lo;
  }
  const float smax = *std::max_element(scale, scale + 8), omax = *std::max_element(offset, offset + 8);
  const float d = smax / 63.0f, dmin = omax / 63.0f;
  b.d = f2h(d);
  b.dmin = f2h(dmin);
  const float dq = h2f(b.d), dminq = h2f(b.dmin);
  uint8_t ls[8], lm[8];
  for (int s = 0; s < 8; ++s) {
    ls[s] = static_cast<uint8_t>(std::clamp(dq > 0 ? nearest(scale[s] / dq) : 0, 0, 63));
    lm[s] = static_cast<uint8_t>(std::clamp(dminq > 0 ? nearest(offset[s] / dminq) : 0, 0, 63));
  }
  std::memset(b.scales, 0, 12);
  for (int s = 0; s < 8; ++s) {
    if (s < 4) {
      b.scales[s] |= ls[s];
      b.scales[s + 4] |= lm[s];
    } else {
      b.scales[s + 4] = static_cast<uint8_t>((ls[s] & 0xF) | (lm[s] & 0xF) << 4);
      b.scales[s - 4] |= static_cast<uint8_t>((ls[s] >> 4) << 6);
      b.scales[s] |= static_cast<uint8_t>((lm[s] >> 4) << 6);
    }
  }
  for (int s = 0; s < 8; ++s) {
    const float step = dq * ls[s], off = dminq * lm[s];
    for (int l = 0; l < 32; ++l)
      q[32 * s + l] = step > 0 ? std::clamp(nearest((x[32 * s + l] + off) / step), 0, levels) : 0;
  }
}

void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    int q[kQKK];
    quant_k_scale_min(x, b[i], 15, q);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | q[64 * c + 32 + l] << 4);
  }
}

void quant_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    int q[kQKK];
    quant_k_scale_min(x, b[i], 31, q);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int a = q[64 * c + l], e = q[64 * c + 32 + l];
        b[i].qs[32 * c + l] = static_cast<uint8_t>((a & 0xF) | (e & 0xF) << 4);
        b[i].qh[l] |= static_cast<uint8_t>(((a >> 4) & 1) << (2 * c) | ((e >> 4) & 1) << (2 * c + 1));
      }
  }
}

void quant_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float sub[16];
    for (int s = 0; s < 16; ++s) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * s + l]));
      sub[s] = amax / 31.0f;
    }
    const float smax = *std::max_element(sub, sub + 16);
    b[i].d = f2h(smax / 127.0f);
    const float d = h2f(b[i].d);
    int q[kQKK];
    for (int s = 0; s < 16; ++s) {
      const int sc = std::clamp(d > 0 ? nearest(sub[s] / d) : 0, -128, 127);
      b[i].scales[s] = static_cast<int8_t>(sc);
      const float step = d * static_cast<float>(sc);
      for (int l = 0; l < 16; ++l)
        q[16 * s + l] = (step != 0 ? std::clamp(nearest(x[16 * s + l] / step), -32, 31) : 0) + 32;
    }
    for (int n = 0; n < 2; ++n)
      for (int l = 0; l < 32; ++l) {
        const int* qq = q + 128 * n;
        b[i].ql[64 * n + l] = static_cast<uint8_t>((qq[l] & 0xF) | (qq[l + 64] & 0xF) << 4);
        b[i].ql[64 * n + l + 32] = static_cast<uint8_t>((qq[l + 32] & 0xF) | (qq[l + 96] & 0xF) << 4);
        b[i].qh[32 * n + l] = static_cast<uint8_t>((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 |
                                                   (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
      }
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const int64_t nb = n / traits(t).block_elems;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      if (use_avx2()) return f16_to_f32_f16c(s, dst, n);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    case DType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb); return;
    case DType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb); return;
    case DType::Q5_0: dequant_q5(static_cast<const BlockQ5_0*>(src), dst, nb, false); return;
    case DType::Q5_1: dequant_q5(static_cast<const BlockQ5_1*>(src), dst, nb, true); return;
    case DType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb); return;
    case DType::Q4_K: dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb); return;
    case DType::Q5_K: dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb); return;
    case DType::Q6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb); return;
    default: break;
  }
  throw std::runtime_error("cannot decode weight type " + std::string(dtype_name(t)));
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const int64_t nb = n / traits(t).block_elems;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      if (use_avx2()) return f32_to_f16_f16c(src, d, n);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
    case DType::Q4_0: quant_q4_0(src, static_cast<BlockQ4_0*>(dst), nb); return;
    case DType::Q4_1: quant_q4_1(src, static_cast<BlockQ4_1*>(dst), nb); return;
    case DType::Q5_0: quant_q5_0(src, static_cast<BlockQ5_0*>(dst), nb); return;
    case DType::Q5_1: quant_q5_1(src, static_cast<BlockQ5_1*>(dst), nb); return;
    case DType::Q8_0: quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb); return;
    case DType::Q4_K: quant_q4_k(src, static_cast<BlockQ4_K*>(dst), nb); return;
    case DType::Q5_K: quant_q5_k(src, static_cast<BlockQ5_K*>(dst), nb); return;
    case DType::Q6_K: quant_q6_k(src, static_cast<BlockQ6_K*>(dst), nb); return;
    default: break;
  }
  throw std::runtime_error("cannot encode weight type " + std::string(dtype_name(t)));
}

}  // namespace kvsqueeze
