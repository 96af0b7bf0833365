#include "runtime/divergence.h"

#include <algorithm>
#include <cmath>

namespace kvsqueeze {

std::vector<double> probabilities(const std::vector<float>& logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double z = 0;
  for (size_t i = 0; i < p.size(); ++i) z += (p[i] = std::exp(static_cast<double>(logits[i]) - mx));
  for (auto& x : p) x /= z;
  return p;
}

double kl_divergence(const std::vector<double>& p, const std::vector<double>& q) {
  double s = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) s += p[i] * std::log(p[i] / std::max(q[i], 1e-30));
  return s;
}

double next_token_kl(const std::vector<float>& reference, const std::vector<float>& logits) {
  return std::max(0.0, kl_divergence(probabilities(reference), probabilities(logits)));
}

}  // namespace kvsqueeze
