#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

namespace kvsqueeze {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

void rope_angles(int64_t n_rot, int64_t pos, float base, const float* freq_factors, float* cos_out, float* sin_out) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    double freq = std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (freq_factors) freq /= freq_factors[i];
    const double theta = static_cast<double>(pos) * freq;
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
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace kvsqueeze
