#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/fast_exp.h"
#include "kernels/vec16.h"
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

#include "kernels/gated_act.inc"

template <bool kGelu>
KVS_INLINE void gated_body(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gated(gate[i], fast_exp(gate_exponent<kGelu>(gate[i])), up[i]);
}

// The same eight lanes at a time: the clamps inside the scalar fast_exp keep GCC from
// vectorising the plain loop for AVX2. vec16's exponential is compiled here for AVX2
// (vec16_ops.inc says why).
namespace avx2_path {
using namespace vec16;
KVS_BEGIN_TARGET_AVX2
#include "kernels/fast_exp_poly.inc"
#include "kernels/gated_act.inc"
#include "kernels/vec16_ops.inc"

template <bool kGelu>
inline void gated_body8(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 x, u;
    std::memcpy(&x, gate + i, sizeof x);
    std::memcpy(&u, up + i, sizeof u);
    const v8 y = gated(x, vexp_lanes<v8>(gate_exponent<kGelu>(x)), u);
    std::memcpy(gate + i, &y, sizeof y);
  }
  gated_body<kGelu>(gate + i, up + i, n - i);
}
KVS_END_TARGET
}  // namespace avx2_path

// Chunks of 256: each chunk's maximum through eight-lane vectors (the comparison and
// select a max instruction makes), then the first element equal to the overall maximum
// inside the first chunk that holds it. A scalar std::max_element took 0.8 ms over Gemma
// 3's 262144 logits (a standalone test at -O2), this 0.05 ms.
KVS_INLINE int64_t argmax_body(const float* x, int64_t n) {
  using vec16::v8;
  constexpr int64_t kChunk = 256;
  int64_t best_chunk = 0;
  float best = n > 0 ? x[0] : 0.0f;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = std::min(kChunk, n - c0);
    float m = x[c0];
    if (len == kChunk) {
      v8 acc[4];
      std::memcpy(acc, x + c0, sizeof acc);
      for (int64_t i = 32; i < kChunk; i += 32) {
        v8 v[4];
        std::memcpy(v, x + c0 + i, sizeof v);
        for (int k = 0; k < 4; ++k) acc[k] = v[k] > acc[k] ? v[k] : acc[k];
      }
      for (const v8& a : acc)
        for (int j = 0; j < 8; ++j) m = a[j] > m ? a[j] : m;
    } else {
      for (int64_t i = 1; i < len; ++i) m = x[c0 + i] > m ? x[c0 + i] : m;
    }
    if (m > best) best = m, best_chunk = c0;
  }
  for (int64_t i = best_chunk; i < std::min(n, best_chunk + kChunk); ++i)
    if (x[i] == best) return i;
  return best_chunk;  // best is a NaN (x[0] was): as std::max_element, the first element
}

void rms_norm_generic(const float* x, const float* w, float* y, int64_t n, float eps) { rms_norm_body(x, w, y, n, eps); }
KVS_TARGET_AVX2 void rms_norm_avx2(const float* x, const float* w, float* y, int64_t n, float eps) {
  rms_norm_body(x, w, y, n, eps);
}
KVS_TARGET_AVX512 void rms_norm_avx512(const float* x, const float* w, float* y, int64_t n, float eps) {
  rms_norm_body(x, w, y, n, eps);
}
void silu_mul_generic(float* gate, const float* up, int64_t n) { gated_body<false>(gate, up, n); }
KVS_TARGET_AVX2 void silu_mul_avx2(float* gate, const float* up, int64_t n) { avx2_path::gated_body8<false>(gate, up, n); }
KVS_TARGET_AVX512 void silu_mul_avx512(float* gate, const float* up, int64_t n) { gated_body<false>(gate, up, n); }
void gelu_mul_generic(float* gate, const float* up, int64_t n) { gated_body<true>(gate, up, n); }
KVS_TARGET_AVX2 void gelu_mul_avx2(float* gate, const float* up, int64_t n) { avx2_path::gated_body8<true>(gate, up, n); }
KVS_TARGET_AVX512 void gelu_mul_avx512(float* gate, const float* up, int64_t n) { gated_body<true>(gate, up, n); }

int64_t argmax_generic(const float* x, int64_t n) { return argmax_body(x, n); }
KVS_TARGET_AVX2 int64_t argmax_avx2(const float* x, int64_t n) { return argmax_body(x, n); }
KVS_TARGET_AVX512 int64_t argmax_avx512(const float* x, int64_t n) { return argmax_body(x, n); }

}  // namespace

int64_t argmax_f32(const float* x, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return argmax_avx512(x, n);
    case Isa::Avx2: case Isa::Avx2Vnni: return argmax_avx2(x, n);
    default: return argmax_generic(x, n);
  }
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  switch (active_isa()) {
    case Isa::Avx512: return rms_norm_avx512(x, w, y, n, eps);
    case Isa::Avx2: case Isa::Avx2Vnni: return rms_norm_avx2(x, w, y, n, eps);
    default: return rms_norm_generic(x, w, y, n, eps);
  }
}

void rope_frequencies(int64_t n_rot, float base, const float* freq_factors, double* freqs_out) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    freqs_out[i] = std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (freq_factors) freqs_out[i] /= freq_factors[i];
  }
}

void rope_angles_from(int64_t n_rot, double pos, const double* freqs, float* cos_out, float* sin_out) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double theta = pos * freqs[i];
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
    case Isa::Avx2: case Isa::Avx2Vnni: return silu_mul_avx2(gate, up, n);
    default: return silu_mul_generic(gate, up, n);
  }
}

void gelu_mul(float* gate, const float* up, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return gelu_mul_avx512(gate, up, n);
    case Isa::Avx2: case Isa::Avx2Vnni: return gelu_mul_avx2(gate, up, n);
    default: return gelu_mul_generic(gate, up, n);
  }
}

}  // namespace kvsqueeze
