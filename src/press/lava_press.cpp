#include "press/lava_press.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "cache/kv_cache.h"
#include "press/allocation.h"
#include "press/budget_press.h"
#include "press/scorers.h"

namespace kvsqueeze {

double normalized_entropy(const std::vector<float>& scores) {
  const size_t n = scores.size();
  double sum = 0;
  for (float x : scores) sum += std::max(0.0f, x);
  if (n <= 1 || sum <= 0) return 1.0;
  double h = 0;
  for (float x : scores) {
    const double p = std::max(0.0f, x) / sum;
    if (p > 0) h -= p * std::log(p);
  }
  return h / std::log(static_cast<double>(n));
}

std::vector<int64_t> entropy_layer_budgets(const std::vector<double>& e, int64_t total, const std::vector<int64_t>& prefixes) {
  const double sum = std::accumulate(e.begin(), e.end(), 0.0);
  std::vector<int64_t> out(e.size());
  for (size_t l = 0; l < e.size(); ++l) {
    const double share = sum > 0 ? e[l] / sum : 1.0 / static_cast<double>(e.size());
    out[l] = std::min(prefixes[l], static_cast<int64_t>(std::floor(static_cast<double>(total) * share)));
  }
  return out;
}

LavaPress::LavaPress(PressConfig config) : config_(std::move(config)) {
  config_.validate();
  if (config_.scorer != ScorerKind::Lava) throw std::invalid_argument("LavaPress needs a lava preset");
}

std::vector<int64_t> LavaPress::head_allocation(const LayerState& st, int H, int64_t layer_budget, int j) const {
  if (config_.ada && j >= config_.skip_layers) return ada_head_budgets(st.scores, H, st.prefix, layer_budget, config_.alpha);
  return std::vector<int64_t>(static_cast<size_t>(H), std::min(layer_budget, st.prefix));
}

void LavaPress::shrink_layer(const LayerSnapshot& s, int j, int64_t layer_budget) {
  LayerState& st = layers_[static_cast<size_t>(j)];
  const int H = s.cfg->n_head_kv;
  std::vector<int64_t> hb = head_allocation(st, H, layer_budget, j);
  for (int h = 0; h < H; ++h) {
    // Budgets only shrink: the new top-B_h is a prefix of the old score order.
    const int64_t b = std::min(hb[static_cast<size_t>(h)], st.kept[static_cast<size_t>(h)]);
    if (b == st.kept[static_cast<size_t>(h)]) continue;
    const std::vector<int64_t> top = top_k_ascending(&st.scores[static_cast<size_t>(h * st.prefix)], st.prefix, b);
    const HeadRows& rows = s.cache->head(st.layer, h);
    std::vector<int64_t> keep;
    size_t t = 0;
    for (int64_t i = 0; i < rows.size(); ++i) {
      const int64_t rel = rows.pos[static_cast<size_t>(i)] - st.pos0;  // index in that pass
      if (rel < 0 || rel >= st.prefix) {  // other passes' rows and the window stay
        keep.push_back(i);
        continue;
      }
      while (t < top.size() && top[t] < rel) ++t;
      if (t < top.size() && top[t] == rel) keep.push_back(i);
    }
    s.cache->keep_rows(st.layer, h, keep);
    st.kept[static_cast<size_t>(h)] = b;
    budgets_[static_cast<size_t>(st.layer)][static_cast<size_t>(h)] = b + (st.n - st.prefix);
  }
}

std::vector<std::vector<int64_t>> LavaPress::select(const LayerSnapshot& s) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& cfg = *s.cfg;
  const int H = cfg.n_head_kv, L = s.n_press_layers;
  const int64_t n = s.n, w = s.window, prefix = n - w;
  if (budgets_.size() < static_cast<size_t>(cfg.n_layer)) budgets_.resize(static_cast<size_t>(cfg.n_layer));
  std::vector<std::vector<int64_t>> keep(static_cast<size_t>(H));
  const int64_t B = config_.budget_for(n);
  if (B >= n || prefix <= 0) {
    for (auto& k : keep) {
      k.resize(static_cast<size_t>(n));
      std::iota(k.begin(), k.end(), 0);
    }
    budgets_[static_cast<size_t>(s.layer)].assign(static_cast<size_t>(H), n);
    return keep;
  }
  if (s.press_layer == 0) {  // a new prompt: the cascade starts over
    layers_.clear();
    entropies_.clear();
    layer_prefix_budget_.clear();
  }
  if (static_cast<int>(layers_.size()) != s.press_layer) throw std::logic_error("LavaPress: layers must arrive in order");
  total_ = static_cast<int64_t>(L) * (B - w);

  LayerState st;
  st.layer = s.layer;
  st.scores = compute_scores(s, prefix, config_);
  st.prefix = prefix;
  st.n = n;
  st.pos0 = s.pos[0];
  entropies_.push_back(normalized_entropy(st.scores));
  layers_.push_back(std::move(st));
  LayerState& cur = layers_.back();

  // Layer budgets: from the entropies seen so far (cascade), or uniform B - w.
  std::vector<int64_t> prefixes;
  for (const auto& ls : layers_) prefixes.push_back(ls.prefix);
  const std::vector<int64_t> lb = config_.dynamic_layers ? entropy_layer_budgets(entropies_, total_, prefixes)
                                                         : std::vector<int64_t>(layers_.size(), B - w);
  layer_prefix_budget_ = lb;
  note_cache(s);  // before the cascade shrinks: the high-water mark
  for (int j = 0; j < s.press_layer; ++j) shrink_layer(s, j, lb[static_cast<size_t>(j)]);

  const std::vector<int64_t> hb = head_allocation(cur, H, lb.back(), s.press_layer);
  cur.kept = hb;
  auto& record = budgets_[static_cast<size_t>(s.layer)];
  record.assign(static_cast<size_t>(H), 0);
  for (int h = 0; h < H; ++h) {
    std::vector<int64_t> chosen = top_k_ascending(&cur.scores[static_cast<size_t>(h * prefix)], prefix, hb[static_cast<size_t>(h)]);
    for (int64_t j = prefix; j < n; ++j) chosen.push_back(j);
    record[static_cast<size_t>(h)] = static_cast<int64_t>(chosen.size());
    keep[static_cast<size_t>(h)] = std::move(chosen);
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return keep;
}

void CompressionPress::note_cache(const LayerSnapshot& s) {
  if (s.cache) peak_cache_bytes_ = std::max(peak_cache_bytes_, s.cache->bytes_used());
}

std::unique_ptr<CompressionPress> make_compression_press(const PressConfig& config) {
  if (!config.enabled()) return nullptr;
  if (config.scorer == ScorerKind::Lava) return std::make_unique<LavaPress>(config);
  return std::make_unique<BudgetPress>(config);
}

}  // namespace kvsqueeze
