#include "press/scorers.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "kernels/fast_exp.h"
#include "press/score_memo.h"
#include "tensor/quant.h"

namespace kvsqueeze {
namespace {

// Eight independent partial sums, so the compiler can vectorise without -ffast-math
// (one chain of float adds cannot be reordered).
float dot(const float* a, const float* b, int64_t n) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += a[i + k] * b[i + k];
  float s = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Adds the softmax attention of query q (at pass index qi) over keys 0..qi of KV head
// kh, times `weight`, into acc[j] for j < limit. Softmax in float32 over all visible
// keys, as the reference implementations do.
void add_attention(const LayerSnapshot& s, const float* q, int64_t qi, int kh, int64_t limit, float weight,
                   std::vector<float>& logits, float* acc) {
  const ModelConfig& c = *s.cfg;
  const int64_t hd = c.head_dim, k_w = int64_t{c.n_head_kv} * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t m = qi + 1;
  logits.resize(static_cast<size_t>(m));
  float mx = -INFINITY;
  for (int64_t j = 0; j < m; ++j) {
    logits[static_cast<size_t>(j)] = dot(q, s.k + j * k_w + kh * hd, hd) * scale;
    mx = std::max(mx, logits[static_cast<size_t>(j)]);
  }
  double sum = 0;
  for (int64_t j = 0; j < m; ++j) {
    logits[static_cast<size_t>(j)] = fast_exp(logits[static_cast<size_t>(j)] - mx);  // rel. error ~2e-7
    sum += logits[static_cast<size_t>(j)];
  }
  const float inv = weight / static_cast<float>(sum);
  for (int64_t j = 0; j < std::min(limit, m); ++j) acc[j] += logits[static_cast<size_t>(j)] * inv;
}

// Reduces per-query-head rows [n_head][prefix] to per-KV-head rows by mean or max.
std::vector<float> reduce_groups(const std::vector<float>& per_q, const ModelConfig& c, int64_t prefix, bool use_max) {
  const int G = c.group();
  std::vector<float> out(static_cast<size_t>(c.n_head_kv * prefix));
  for (int h = 0; h < c.n_head_kv; ++h)
    for (int64_t j = 0; j < prefix; ++j) {
      float r = use_max ? -INFINITY : 0.0f;
      for (int g = 0; g < G; ++g) {
        const float v = per_q[static_cast<size_t>((h * G + g) * prefix + j)];
        r = use_max ? std::max(r, v) : r + v / static_cast<float>(G);
      }
      out[static_cast<size_t>(h * prefix + j)] = r;
    }
  return out;
}

}  // namespace

void pool1d(float* x, int64_t n, int kernel, bool use_max) {
  if (kernel <= 1 || n == 0) return;
  const int64_t pad = kernel / 2;
  std::vector<float> src(x, x + n);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t lo = std::max<int64_t>(0, j - pad), hi = std::min<int64_t>(n - 1, j + pad);
    float r = use_max ? -INFINITY : 0.0f;
    for (int64_t i = lo; i <= hi; ++i) r = use_max ? std::max(r, src[static_cast<size_t>(i)]) : r + src[static_cast<size_t>(i)];
    x[j] = use_max ? r : r / static_cast<float>(kernel);
  }
}

namespace {
// Per query head, the summed attention (times `weight`) that `count` queries give to each
// prefix key: query i sits at pass index first + i and its row is queries + i * q_w.
// Returns [n_head][prefix].
std::vector<float> accumulated_attention(const LayerSnapshot& s, int64_t prefix, const float* queries, int64_t first,
                                         int64_t count, float weight) {
  const ModelConfig& cfg = *s.cfg;
  const int64_t hd = cfg.head_dim, q_w = int64_t{cfg.n_head} * hd;
  std::vector<float> per_q(static_cast<size_t>(cfg.n_head * prefix), 0.0f);
#pragma omp parallel
  {
    std::vector<float> logits;
#pragma omp for schedule(dynamic)
    for (int hq = 0; hq < cfg.n_head; ++hq)
      for (int64_t i = 0; i < count; ++i)
        add_attention(s, queries + i * q_w + hq * hd, first + i, hq / cfg.group(), prefix, weight, logits,
                      &per_q[static_cast<size_t>(hq * prefix)]);
  }
  return per_q;
}
}  // namespace

std::vector<float> snapkv_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c) {
  const int64_t w = s.window;
  std::vector<float> per_q = accumulated_attention(s, prefix, s.q_window, s.n - w, w, 1.0f / static_cast<float>(w));
  for (int hq = 0; hq < s.cfg->n_head; ++hq) pool1d(&per_q[static_cast<size_t>(hq * prefix)], prefix, c.pool_kernel, c.pool_max);
  return reduce_groups(per_q, *s.cfg, prefix, c.gqa_max);
}

std::vector<float> h2o_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c) {
  if (!s.q_all) throw std::logic_error("h2o needs every prompt query");
  std::vector<float> per_q = accumulated_attention(s, prefix, s.q_all, 0, s.n, 1.0f);
  for (int hq = 0; hq < s.cfg->n_head; ++hq)
    for (int64_t j = 0; j < prefix; ++j) per_q[static_cast<size_t>(hq * prefix + j)] /= static_cast<float>(s.n - j);  // queries that could see j
  return reduce_groups(per_q, *s.cfg, prefix, c.gqa_max);
}

std::vector<float> tova_scores(const LayerSnapshot& s, int64_t prefix) {
  const ModelConfig& cfg = *s.cfg;
  const int64_t hd = cfg.head_dim, q_w = int64_t{cfg.n_head} * hd;
  std::vector<float> mean(static_cast<size_t>(prefix), 0.0f), logits;
  const float* last = s.q_window + (s.window - 1) * q_w;
  for (int hq = 0; hq < cfg.n_head; ++hq)
    add_attention(s, last + hq * hd, s.n - 1, hq / cfg.group(), prefix, 1.0f / static_cast<float>(cfg.n_head), logits,
                  mean.data());
  std::vector<float> out;
  for (int h = 0; h < cfg.n_head_kv; ++h) out.insert(out.end(), mean.begin(), mean.end());
  return out;
}

std::vector<float> knorm_scores(const LayerSnapshot& s, int64_t prefix) {
  const ModelConfig& cfg = *s.cfg;
  const int64_t hd = cfg.head_dim, k_w = int64_t{cfg.n_head_kv} * hd;
  std::vector<float> out(static_cast<size_t>(cfg.n_head_kv * prefix));
  for (int h = 0; h < cfg.n_head_kv; ++h)
    for (int64_t j = 0; j < prefix; ++j) {
      const float* k = s.k + j * k_w + h * hd;
      out[static_cast<size_t>(h * prefix + j)] = -std::sqrt(dot(k, k, hd));
    }
  return out;
}

std::vector<float> streaming_scores(const LayerSnapshot& s, int64_t prefix, int sinks) {
  std::vector<float> out(static_cast<size_t>(s.cfg->n_head_kv * prefix));
  for (int h = 0; h < s.cfg->n_head_kv; ++h)
    for (int64_t j = 0; j < prefix; ++j)
      out[static_cast<size_t>(h * prefix + j)] = j < sinks ? static_cast<float>(prefix + sinks - j) : static_cast<float>(j);
  return out;
}

std::vector<float> lava_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c) {
  std::vector<float> out = snapkv_scores(s, prefix, c);
  const ModelConfig& cfg = *s.cfg;
  const int64_t hdv = cfg.head_dim_v, v_w = int64_t{cfg.n_head_kv} * hdv;
  for (int h = 0; h < cfg.n_head_kv; ++h) {
    float vbar = 0;
    for (int64_t j = 0; j < prefix; ++j) {
      float l1 = 0;
      for (int64_t i = 0; i < hdv; ++i) l1 += std::fabs(s.v[j * v_w + h * hdv + i]);
      vbar = std::max(vbar, l1);
    }
    for (int64_t j = 0; j < prefix; ++j) out[static_cast<size_t>(h * prefix + j)] *= vbar;
  }
  return out;
}

namespace {
std::vector<float> score_uncached(const LayerSnapshot& s, int64_t prefix, const PressConfig& c) {
  switch (c.scorer) {
    case ScorerKind::Lava: return lava_scores(s, prefix, c);
    case ScorerKind::SnapKV: return snapkv_scores(s, prefix, c);
    case ScorerKind::H2O: return h2o_scores(s, prefix, c);
    case ScorerKind::TOVA: return tova_scores(s, prefix);
    case ScorerKind::KNorm: return knorm_scores(s, prefix);
    case ScorerKind::Streaming: return streaming_scores(s, prefix, c.sinks);
    case ScorerKind::None: break;
  }
  throw std::logic_error("compute_scores: no scorer");
}
}  // namespace

std::string score_key(const LayerSnapshot& s, int64_t prefix, const PressConfig& c) {
  // Every setting a scorer reads; the budget and the allocation are not among them.
  return fmt::format("scores/{}/w{}/p{}/k{}{}/g{}/s{}", static_cast<int>(c.scorer), s.window, prefix, c.pool_kernel,
                     c.pool_max ? "max" : "avg", c.gqa_max ? "max" : "mean", c.sinks);
}

std::vector<float> compute_scores(const LayerSnapshot& s, int64_t prefix, const PressConfig& c) {
  if (!s.memo) return score_uncached(s, prefix, c);
  return s.memo->get(score_key(s, prefix, c), [&] { return score_uncached(s, prefix, c); });
}

std::vector<float> value_output_norms(const LayerSnapshot& s, int kv_head, const std::vector<int64_t>& rows,
                                      int64_t prefix) {
  if (!s.memo) return value_output_norms(s, kv_head, rows);
  // Shared: the norms of every prefix row, once per layer and head, then the rows asked for.
  const std::vector<float>& all = s.memo->get(fmt::format("vo_norms/{}/p{}", kv_head, prefix), [&] {
    std::vector<int64_t> every(static_cast<size_t>(prefix));
    for (int64_t j = 0; j < prefix; ++j) every[static_cast<size_t>(j)] = j;
    return value_output_norms(s, kv_head, every);
  });
  std::vector<float> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = all[static_cast<size_t>(rows[i])];
  return out;
}

std::vector<float> value_output_norms(const LayerSnapshot& s, int kv_head, const std::vector<int64_t>& rows) {
  const ModelConfig& cfg = *s.cfg;
  const int64_t hdv = cfg.head_dim_v, v_w = int64_t{cfg.n_head_kv} * hdv, G = cfg.group();
  const MatrixView& wo = *s.wo;  // [dim rows][n_head * hdv cols]
  // The group's column slices of W_O, decoded once: slice[g][o][i] = W_O[o][(h*G+g)*hdv + i].
  std::vector<float> row(static_cast<size_t>(wo.cols)), slice(static_cast<size_t>(G * wo.rows * hdv));
  for (int64_t o = 0; o < wo.rows; ++o) {
    dequantize_row(wo.type, wo.row(o), row.data(), wo.cols);
    for (int64_t g = 0; g < G; ++g)
      std::copy_n(&row[static_cast<size_t>((kv_head * G + g) * hdv)], hdv, &slice[static_cast<size_t>((g * wo.rows + o) * hdv)]);
  }
  std::vector<float> out(rows.size());
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* v = s.v + rows[r] * v_w + kv_head * hdv;
    double total = 0;
    for (int64_t g = 0; g < G; ++g)
      for (int64_t o = 0; o < wo.rows; ++o) total += std::fabs(dot(v, &slice[static_cast<size_t>((g * wo.rows + o) * hdv)], hdv));
    out[r] = static_cast<float>(total / static_cast<double>(G));
  }
  return out;
}

}  // namespace kvsqueeze
