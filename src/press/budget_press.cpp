#include "press/budget_press.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "press/allocation.h"
#include "press/scorers.h"

namespace kvsqueeze {

BudgetPress::BudgetPress(PressConfig config) : config_(std::move(config)) { config_.validate(); }

std::vector<std::vector<int64_t>> BudgetPress::select(const LayerSnapshot& s) {
  const auto t0 = std::chrono::steady_clock::now();
  note_cache(s);
  const ModelConfig& cfg = *s.cfg;
  const int H = cfg.n_head_kv;
  const int64_t n = s.n, w = s.window, prefix = n - w;
  if (budgets_.size() < static_cast<size_t>(cfg.n_layer)) budgets_.resize(static_cast<size_t>(cfg.n_layer));
  std::vector<std::vector<int64_t>> keep(static_cast<size_t>(H));
  const int64_t B = config_.budget_for(n);
  if (B >= n || prefix <= 0) {  // the budget holds the whole prompt: nothing to evict
    for (auto& k : keep) {
      k.resize(static_cast<size_t>(n));
      std::iota(k.begin(), k.end(), 0);
    }
    budgets_[static_cast<size_t>(s.layer)].assign(static_cast<size_t>(H), n);
    return keep;
  }

  const int64_t b = config_.pyramid
                        ? pyramid_budgets(s.n_press_layers, B - w, prefix, config_.pyramid_beta)[static_cast<size_t>(s.press_layer)]
                        : B - w;
  const std::vector<float> scores = compute_scores(s, prefix, config_);
  const std::vector<int64_t> head_b = (config_.ada && s.press_layer >= config_.skip_layers)
                                          ? ada_head_budgets(scores, H, prefix, b, config_.alpha)
                                          : std::vector<int64_t>(static_cast<size_t>(H), b);
  auto& record = budgets_[static_cast<size_t>(s.layer)];
  record.assign(static_cast<size_t>(H), 0);
  for (int h = 0; h < H; ++h) {
    const float* row = &scores[static_cast<size_t>(h * prefix)];
    const int64_t bh = head_b[static_cast<size_t>(h)];
    std::vector<int64_t> chosen;
    if (config_.critical) {
      // CriticalKV: half the budget by score, the rest by score x value-output norm.
      chosen = top_k_ascending(row, prefix, bh / 2);
      std::vector<char> taken(static_cast<size_t>(prefix), 0);
      for (int64_t j : chosen) taken[static_cast<size_t>(j)] = 1;
      std::vector<int64_t> rest;
      for (int64_t j = 0; j < prefix; ++j)
        if (!taken[static_cast<size_t>(j)]) rest.push_back(j);
      const std::vector<float> norms = value_output_norms(s, h, rest, prefix);
      std::vector<float> crit(rest.size());
      for (size_t i = 0; i < rest.size(); ++i) crit[i] = (row[rest[i]] + 1e-4f) * norms[i];
      for (int64_t i : top_k_ascending(crit.data(), static_cast<int64_t>(rest.size()), bh - bh / 2))
        chosen.push_back(rest[static_cast<size_t>(i)]);
      std::sort(chosen.begin(), chosen.end());
    } else {
      chosen = top_k_ascending(row, prefix, bh);
    }
    for (int64_t j = prefix; j < n; ++j) chosen.push_back(j);  // the window is always kept
    record[static_cast<size_t>(h)] = static_cast<int64_t>(chosen.size());
    keep[static_cast<size_t>(h)] = std::move(chosen);
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return keep;
}

}  // namespace kvsqueeze
