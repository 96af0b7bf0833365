#include "press/decode_press.h"

#include <cmath>
#include <stdexcept>
#include <numeric>

#include "cache/kv_cache.h"
#include "press/allocation.h"
#include "press/scorers.h"
#include "tensor/quant.h"

namespace kvsqueeze {

DecodePress::DecodePress(PressConfig config, std::vector<std::vector<int64_t>> budgets, int64_t every)
    : config_(std::move(config)), budgets_(std::move(budgets)), every_(every) {
  if (every_ < 1) throw std::invalid_argument("--compress-every must be >= 1");
}

std::vector<std::vector<int64_t>> DecodePress::select(const LayerSnapshot& s) {
  const ModelConfig& cfg = *s.cfg;
  const int64_t q_w = int64_t{cfg.n_head} * cfg.head_dim;
  if (recent_q_.size() < static_cast<size_t>(cfg.n_layer)) recent_q_.resize(static_cast<size_t>(cfg.n_layer));
  auto& ring = recent_q_[static_cast<size_t>(s.layer)];
  ring.insert(ring.end(), s.q_window, s.q_window + s.window * q_w);
  const auto limit = static_cast<size_t>(config_.window * q_w);
  if (ring.size() > limit) ring.erase(ring.begin(), ring.begin() + static_cast<std::ptrdiff_t>(ring.size() - limit));

  for (int h = 0; h < cfg.n_head_kv; ++h) {
    const auto& lb = budgets_[static_cast<size_t>(s.layer)];
    const int64_t budget = lb[static_cast<size_t>(h)];
    // The incoming rows count too: evict before they are stored.
    if (s.cache->head(s.layer, h).size() + s.n > budget + every_) compress_head(s, h, budget - s.n);
  }
  std::vector<std::vector<int64_t>> keep(static_cast<size_t>(cfg.n_head_kv), std::vector<int64_t>(static_cast<size_t>(s.n)));
  for (auto& k : keep) std::iota(k.begin(), k.end(), 0);
  return keep;
}

void DecodePress::compress_head(const LayerSnapshot& s, int h, int64_t target) {
  const ModelConfig& cfg = *s.cfg;
  KvCache& cache = *s.cache;
  const HeadRows& rows = cache.head(s.layer, h);
  const int64_t m = rows.size(), hd = cfg.head_dim, q_w = int64_t{cfg.n_head} * hd, G = cfg.group();
  const auto& ring = recent_q_[static_cast<size_t>(s.layer)];
  const int64_t w = std::min<int64_t>(static_cast<int64_t>(ring.size()) / q_w, m);
  const int64_t recent = std::max<int64_t>(w - s.n, 0);  // cached rows of the window's own tokens
  const int64_t prefix = m - recent;
  target = std::max<int64_t>(target, recent);
  if (target >= m) return;
  std::vector<float> score(static_cast<size_t>(prefix), 0.0f);
  if (config_.scorer == ScorerKind::Streaming) {
    for (int64_t j = 0; j < prefix; ++j)
      score[static_cast<size_t>(j)] = j < config_.sinks ? static_cast<float>(prefix + config_.sinks) : static_cast<float>(j);
  } else {
    // Window attention of the recent queries over this head's rows (position-causal).
    std::vector<float> keys(static_cast<size_t>(m * hd)), logits(static_cast<size_t>(m));
    for (int64_t j = 0; j < m; ++j) dequantize_row(cache.type(), rows.k.data() + j * cache.k_row_bytes(), &keys[static_cast<size_t>(j * hd)], hd);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<float> per_q(static_cast<size_t>(G * prefix), 0.0f);
    const int64_t n_ring = static_cast<int64_t>(ring.size()) / q_w;
    for (int64_t g = 0; g < G; ++g)
      for (int64_t i = n_ring - w; i < n_ring; ++i) {
        const float* q = &ring[static_cast<size_t>(i * q_w + (h * G + g) * hd)];
        // The ring ends with this step's queries, whose positions the snapshot gives.
        const int32_t qpos = s.pos[s.n - 1] - static_cast<int32_t>(n_ring - 1 - i);
        float mx = -INFINITY;
        for (int64_t j = 0; j < m; ++j) {
          float d = -INFINITY;
          if (rows.pos[static_cast<size_t>(j)] <= qpos) {
            d = 0;
            for (int64_t e = 0; e < hd; ++e) d += q[e] * keys[static_cast<size_t>(j * hd + e)];
            d *= scale;
          }
          logits[static_cast<size_t>(j)] = d;
          mx = std::max(mx, d);
        }
        double z = 0;
        for (auto& x : logits) z += (x = std::exp(x - mx));
        for (int64_t j = 0; j < prefix; ++j) per_q[static_cast<size_t>(g * prefix + j)] += static_cast<float>(logits[static_cast<size_t>(j)] / z / static_cast<double>(w));
      }
    for (int64_t g = 0; g < G; ++g) {
      pool1d(&per_q[static_cast<size_t>(g * prefix)], prefix, config_.pool_kernel, config_.pool_max);
      for (int64_t j = 0; j < prefix; ++j) {
        const float v = per_q[static_cast<size_t>(g * prefix + j)];
        score[static_cast<size_t>(j)] = config_.gqa_max ? std::max(score[static_cast<size_t>(j)], v) : score[static_cast<size_t>(j)] + v / static_cast<float>(G);
      }
    }
  }
  std::vector<int64_t> keep = top_k_ascending(score.data(), prefix, target - recent);
  for (int64_t j = prefix; j < m; ++j) keep.push_back(j);
  evictions_ += m - static_cast<int64_t>(keep.size());
  cache.keep_rows(s.layer, h, keep);
}

}  // namespace kvsqueeze
