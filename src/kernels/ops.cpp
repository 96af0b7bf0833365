#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/fast_exp.h"
#include "tensor/cpu_features.h"

namespace kvsqueeze {
namespace {

#define KVS_INLINE inline __attribute__((always_inline))

// The bodies are compiled once per instruction set through the wrappers below.
KVS_INLINE void rms_norm_body(const float* x, const float* w, float* y, int64_t n, float eps) {
  double acc[8] = {};  // double partial sums: long rows of large activations stay exact enough
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) acc[u] += static_cast<double>(x[i + u]) * x[i + u];
  double ss = 0;
  for (; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  for (double a : acc) ss += a;
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * scale * w[j];
}

KVS_INLINE void silu_mul_body(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + fast_exp(-gate[i])) * up[i];
}

// 0.5 x (1 + tanh(y)) equals x * sigmoid(2y): one exp instead of a tanh.
KVS_INLINE void gelu_mul_body(float* gate, const float* up, int64_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608f, kCubic = 0.044715f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    const float y = kSqrt2OverPi * (x + kCubic * x * x * x);
    gate[i] = x / (1.0f + fast_exp(-2.0f * y)) * up[i];
  }
}

void rms_norm_generic(const float* x, const float* w, float* y, int64_t n, float eps) { rms_norm_body(x, w, y, n, eps); }
KVS_TARGET_AVX2 void rms_norm_avx2(const float* x, const float* w, float* y, int64_t n, float eps) {
  rms_norm_body(x, w, y, n, eps);
}
KVS_TARGET_AVX512 void rms_norm_avx512(const float* x, const float* w, float* y, int64_t n, float eps) {
  rms_norm_body(x, w, y, n, eps);
}
void silu_mul_generic(float* gate, const float* up, int64_t n) { silu_mul_body(gate, up, n); }
KVS_TARGET_AVX2 void silu_mul_avx2(float* gate, const float* up, int64_t n) { silu_mul_body(gate, up, n); }
KVS_TARGET_AVX512 void silu_mul_avx512(float* gate, const float* up, int64_t n) { silu_mul_body(gate, up, n); }
void gelu_mul_generic(float* gate, const float* up, int64_t n) { gelu_mul_body(gate, up, n); }
KVS_TARGET_AVX2 void gelu_mul_avx2(float* gate, const float* up, int64_t n) { gelu_mul_body(gate, up, n); }
KVS_TARGET_AVX512 void gelu_mul_avx512(float* gate, const float* up, int64_t n) { gelu_mul_body(gate, up, n); }

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  switch (active_isa()) {
    case Isa::Avx512: return rms_norm_avx512(x, w, y, n, eps);
    case Isa::Avx2: return rms_norm_avx2(x, w, y, n, eps);
    default: return rms_norm_generic(x, w, y, n, eps);
  }
}

void rope_angles(int64_t n_rot, double pos, float base, const float* freq_factors, float* cos_out, float* sin_out) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    double freq = std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (freq_factors) freq /= freq_factors[i];
    const double theta = pos * freq;
    cos_out[i] = static_cast<float>(std::cos(theta));
    sin_out[i] = static_cast<float>(std::sin(theta));
  }
}

void rope_apply(float* v, int64_t n_rot, bool neox, const float* cos_v, const float* sin_v) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const int64_t a = neox ? i : 2 * i;
    const int64_t b = neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cos_v[i] - x1 * sin_v[i];
    v[b] = x0 * sin_v[i] + x1 * cos_v[i];
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return silu_mul_avx512(gate, up, n);
    case Isa::Avx2: return silu_mul_avx2(gate, up, n);
    default: return silu_mul_generic(gate, up, n);
  }
}

void gelu_mul(float* gate, const float* up, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return gelu_mul_avx512(gate, up, n);
    case Isa::Avx2: return gelu_mul_avx2(gate, up, n);
    default: return gelu_mul_generic(gate, up, n);
  }
}

}  // namespace kvsqueeze
