#include "press/allocation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace kvsqueeze {

std::vector<int64_t> top_k_ascending(const float* x, int64_t n, int64_t k) {
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [x](int64_t a, int64_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int64_t> ada_head_budgets(const std::vector<float>& scores, int H, int64_t prefix, int64_t b, double alpha) {
  if (static_cast<int64_t>(scores.size()) != H * prefix) throw std::logic_error("ada_head_budgets: score shape");
  b = std::clamp<int64_t>(b, 0, prefix);
  const int64_t total = H * b;
  std::vector<int64_t> f(static_cast<size_t>(H), 0);
  for (int64_t i : top_k_ascending(scores.data(), H * prefix, total)) f[static_cast<size_t>(i / prefix)]++;
  const auto floor_a = static_cast<int64_t>(std::floor(alpha * static_cast<double>(b)));
  std::vector<int64_t> B(static_cast<size_t>(H));
  int64_t sum = 0;
  for (int h = 0; h < H; ++h) {
    const double raw = (1.0 - alpha) * static_cast<double>(f[static_cast<size_t>(h)]) + static_cast<double>(floor_a);
    B[static_cast<size_t>(h)] = std::clamp<int64_t>(std::llround(raw), floor_a, prefix);
    sum += B[static_cast<size_t>(h)];
  }
  // Rounding repair: heads that the global top-k favoured most gain (or lose) first.
  std::vector<int> order(static_cast<size_t>(H));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return f[static_cast<size_t>(a)] > f[static_cast<size_t>(c)]; });
  while (sum < total) {
    bool moved = false;
    for (int h : order)
      if (sum < total && B[static_cast<size_t>(h)] < prefix) ++B[static_cast<size_t>(h)], ++sum, moved = true;
    if (!moved) break;
  }
  while (sum > total) {
    bool moved = false;
    for (auto it = order.rbegin(); it != order.rend(); ++it)
      if (sum > total && B[static_cast<size_t>(*it)] > floor_a) --B[static_cast<size_t>(*it)], --sum, moved = true;
    if (!moved) break;
  }
  return B;
}

std::vector<int64_t> pyramid_budgets(int n_layer, int64_t b, int64_t prefix, double beta) {
  std::vector<int64_t> out(static_cast<size_t>(n_layer), std::min(b, prefix));
  if (n_layer <= 1) return out;
  int64_t lo = static_cast<int64_t>(std::floor(static_cast<double>(b) / beta));
  int64_t hi = 2 * b - lo;
  if (hi >= prefix) {
    hi = prefix;
    lo = 2 * b - hi;
  }
  const int64_t step = (hi - lo) / (n_layer - 1);
  for (int l = 0; l < n_layer; ++l) out[static_cast<size_t>(l)] = std::clamp<int64_t>(hi - l * step, 0, prefix);
  return out;
}

}  // namespace kvsqueeze
