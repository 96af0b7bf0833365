#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/ops.h"

namespace kvsqueeze {

int32_t argmax(const float* logits, int32_t n) { return static_cast<int32_t>(argmax_f32(logits, n)); }

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {
  if (!o.greedy) {
    if (!(o.temperature >= 0)) throw std::invalid_argument("temperature must be >= 0");
    if (o.top_k < 0) throw std::invalid_argument("top-k must be >= 0");
    if (!(o.top_p > 0 && o.top_p <= 1)) throw std::invalid_argument("top-p must be in (0, 1]");
  }
}

int32_t Sampler::sample(const float* logits, int32_t n) {
  if (o_.greedy || o_.temperature == 0.0f) return argmax(logits, n);
  cand_.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) cand_[static_cast<size_t>(i)] = {logits[i], i};
  size_t k = (o_.top_k > 0 && o_.top_k < n) ? static_cast<size_t>(o_.top_k) : static_cast<size_t>(n);
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k), cand_.end(),
                    [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  cand_.resize(k);
  const float mx = cand_[0].first;
  double sum = 0;
  for (auto& c : cand_) {
    c.first = std::exp((c.first - mx) / o_.temperature);
    sum += c.first;
  }
  // Keep the smallest prefix whose mass reaches top_p.
  double cum = 0;
  size_t keep = cand_.size();
  for (size_t i = 0; i < cand_.size(); ++i) {
    cum += cand_[i].first / sum;
    if (cum >= o_.top_p) {
      keep = i + 1;
      break;
    }
  }
  cand_.resize(keep);
  double total = 0;
  for (auto& c : cand_) total += c.first;
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (auto& c : cand_) {
    r -= c.first;
    if (r <= 0) return c.second;
  }
  return cand_.back().second;
}

}  // namespace kvsqueeze
