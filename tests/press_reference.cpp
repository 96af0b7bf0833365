#include "press_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "tensor/quant.h"

namespace kvsqueeze::test {

std::vector<std::vector<int64_t>> RecordingPress::select(const LayerSnapshot& s) {
  const ModelConfig& c = *s.cfg;
  RecordedLayer r;
  r.layer = s.layer;
  r.n = s.n;
  r.n_head = c.n_head;
  r.n_head_kv = c.n_head_kv;
  r.head_dim = c.head_dim;
  r.head_dim_v = c.head_dim_v;
  r.dim = c.dim;
  if (!s.q_all) throw std::logic_error("RecordingPress needs every query");
  r.k.assign(s.k, s.k + s.n * c.n_head_kv * c.head_dim);
  r.v.assign(s.v, s.v + s.n * c.n_head_kv * c.head_dim_v);
  r.q.assign(s.q_all, s.q_all + s.n * c.n_head * c.head_dim);
  const int64_t o_in = int64_t{c.n_head} * c.head_dim_v;
  std::vector<float> row(static_cast<size_t>(o_in));
  r.wo.resize(static_cast<size_t>(c.dim * o_in));
  for (int64_t i = 0; i < c.dim; ++i) {
    dequantize_row(s.wo->type, s.wo->row(i), row.data(), o_in);
    std::copy(row.begin(), row.end(), r.wo.begin() + i * o_in);
  }
  layers_.push_back(std::move(r));
  std::vector<std::vector<int64_t>> keep(static_cast<size_t>(c.n_head_kv), std::vector<int64_t>(static_cast<size_t>(s.n)));
  for (auto& k : keep) std::iota(k.begin(), k.end(), 0);
  return keep;
}

namespace {

using Rows = std::vector<std::vector<double>>;  // [head][prefix position]

// The layer's memo entry `key`, computed by make() the first time.
template <typename F>
const Rows& memo(const RecordedLayer& r, const std::string& key, F make) {
  auto it = r.memo.find(key);
  if (it == r.memo.end()) it = r.memo.emplace(key, make()).first;
  return it->second;
}

// Softmax attention of query i (query head hq) over keys 0..i, scaled by 1/sqrt(d).
std::vector<double> attention(const RecordedLayer& r, int hq, int64_t i) {
  const int d = r.head_dim, kh = hq / (r.n_head / r.n_head_kv);
  const double* q = &r.q[static_cast<size_t>((i * r.n_head + hq) * d)];
  std::vector<double> a(static_cast<size_t>(i + 1));
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j <= i; ++j) {
    const double* k = &r.k[static_cast<size_t>((j * r.n_head_kv + kh) * d)];
    double dot = 0;
    for (int x = 0; x < d; ++x) dot += q[x] * k[x];
    a[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(d));
    mx = std::max(mx, a[static_cast<size_t>(j)]);
  }
  double sum = 0;
  for (double& x : a) sum += (x = std::exp(x - mx));
  for (double& x : a) x /= sum;
  return a;
}

// torch's 1-D pooling, stride 1, padding kernel/2: max ignores the padding, avg counts it as 0.
std::vector<double> pool(const std::vector<double>& x, int kernel, bool use_max) {
  const auto n = static_cast<int64_t>(x.size());
  const int64_t half = kernel / 2;
  std::vector<double> out(x.size());
  for (int64_t j = 0; j < n; ++j) {
    double acc = use_max ? -std::numeric_limits<double>::infinity() : 0.0;
    for (int64_t i = j - half; i <= j + half; ++i) {
      if (i < 0 || i >= n) continue;
      acc = use_max ? std::max(acc, x[static_cast<size_t>(i)]) : acc + x[static_cast<size_t>(i)];
    }
    out[static_cast<size_t>(j)] = use_max ? acc : acc / kernel;
  }
  return out;
}

// Query-head rows [n_head][prefix] to KV-head rows by mean or max over each group.
Rows reduce_group(const Rows& per_q, const RecordedLayer& r, bool use_max) {
  const int G = r.n_head / r.n_head_kv;
  Rows out(static_cast<size_t>(r.n_head_kv), std::vector<double>(per_q[0].size()));
  for (int h = 0; h < r.n_head_kv; ++h)
    for (size_t j = 0; j < per_q[0].size(); ++j) {
      double acc = use_max ? -std::numeric_limits<double>::infinity() : 0.0;
      for (int g = 0; g < G; ++g) {
        const double x = per_q[static_cast<size_t>(h * G + g)][j];
        acc = use_max ? std::max(acc, x) : acc + x / G;
      }
      out[static_cast<size_t>(h)][j] = acc;
    }
  return out;
}

// SnapKV: mean attention of the last w queries over the prefix, pooled, group-reduced.
Rows window_scores(const RecordedLayer& r, int64_t w, const ReferenceOptions& o, bool gqa_max) {
  const int64_t prefix = r.n - w;
  Rows per_q(static_cast<size_t>(r.n_head), std::vector<double>(static_cast<size_t>(prefix), 0.0));
  for (int hq = 0; hq < r.n_head; ++hq) {
    for (int64_t i = r.n - w; i < r.n; ++i) {
      const std::vector<double> a = attention(r, hq, i);
      for (int64_t j = 0; j < prefix; ++j) per_q[static_cast<size_t>(hq)][static_cast<size_t>(j)] += a[static_cast<size_t>(j)] / w;
    }
    per_q[static_cast<size_t>(hq)] = pool(per_q[static_cast<size_t>(hq)], o.kernel, o.pool_max);
  }
  return reduce_group(per_q, r, gqa_max);
}

// H2O: the attention every prompt query gave each key, over the queries that could see it.
Rows h2o_scores(const RecordedLayer& r, int64_t prefix, bool gqa_max) {
  Rows per_q(static_cast<size_t>(r.n_head), std::vector<double>(static_cast<size_t>(prefix), 0.0));
  for (int hq = 0; hq < r.n_head; ++hq)
    for (int64_t i = 0; i < r.n; ++i) {
      const std::vector<double> a = attention(r, hq, i);
      for (int64_t j = 0; j < std::min(prefix, i + 1); ++j) per_q[static_cast<size_t>(hq)][static_cast<size_t>(j)] += a[static_cast<size_t>(j)];
    }
  for (auto& row : per_q)
    for (int64_t j = 0; j < prefix; ++j) row[static_cast<size_t>(j)] /= static_cast<double>(r.n - j);
  return reduce_group(per_q, r, gqa_max);
}

// TOVA: the last query's attention averaged over every query head, for every KV head.
Rows tova_scores(const RecordedLayer& r, int64_t prefix) {
  std::vector<double> mean(static_cast<size_t>(prefix), 0.0);
  for (int hq = 0; hq < r.n_head; ++hq) {
    const std::vector<double> a = attention(r, hq, r.n - 1);
    for (int64_t j = 0; j < prefix; ++j) mean[static_cast<size_t>(j)] += a[static_cast<size_t>(j)] / r.n_head;
  }
  return Rows(static_cast<size_t>(r.n_head_kv), mean);
}

Rows knorm_scores(const RecordedLayer& r, int64_t prefix) {
  Rows out(static_cast<size_t>(r.n_head_kv), std::vector<double>(static_cast<size_t>(prefix)));
  for (int h = 0; h < r.n_head_kv; ++h)
    for (int64_t j = 0; j < prefix; ++j) {
      double sq = 0;
      for (int x = 0; x < r.head_dim; ++x) sq += std::pow(r.k[static_cast<size_t>((j * r.n_head_kv + h) * r.head_dim + x)], 2);
      out[static_cast<size_t>(h)][static_cast<size_t>(j)] = -std::sqrt(sq);
    }
  return out;
}

// LAVa: window scores (group max) times the head's largest value L1 norm over the prefix.
Rows lava_scores(const RecordedLayer& r, int64_t w, const ReferenceOptions& o, bool gqa_max) {
  Rows s = window_scores(r, w, o, gqa_max);
  const int64_t prefix = r.n - w;
  for (int h = 0; h < r.n_head_kv; ++h) {
    double vbar = 0;
    for (int64_t j = 0; j < prefix; ++j) {
      double l1 = 0;
      for (int x = 0; x < r.head_dim_v; ++x) l1 += std::fabs(r.v[static_cast<size_t>((j * r.n_head_kv + h) * r.head_dim_v + x)]);
      vbar = std::max(vbar, l1);
    }
    for (double& x : s[static_cast<size_t>(h)]) x *= vbar;
  }
  return s;
}

// ‖v_j W_O^(h)‖₁ averaged over the query heads of KV head h's group.
std::vector<double> value_output_norms(const RecordedLayer& r, int h, int64_t prefix) {
  const int G = r.n_head / r.n_head_kv, dv = r.head_dim_v;
  const int64_t o_in = int64_t{r.n_head} * dv;
  std::vector<double> out(static_cast<size_t>(prefix), 0.0);
  for (int64_t j = 0; j < prefix; ++j) {
    const double* v = &r.v[static_cast<size_t>((j * r.n_head_kv + h) * dv)];
    for (int g = 0; g < G; ++g) {
      const int hq = h * G + g;
      double l1 = 0;
      for (int i = 0; i < r.dim; ++i) {
        double y = 0;
        for (int x = 0; x < dv; ++x) y += r.wo[static_cast<size_t>(i * o_in + hq * dv + x)] * v[x];
        l1 += std::fabs(y);
      }
      out[static_cast<size_t>(j)] += l1 / G;
    }
  }
  return out;
}

// The k highest values (ties to the lower index), ascending by index, and the lowest value kept.
std::vector<int64_t> top(const std::vector<double>& x, int64_t k, double* edge) {
  std::vector<int64_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return x[static_cast<size_t>(a)] > x[static_cast<size_t>(b)]; });
  k = std::clamp<int64_t>(k, 0, static_cast<int64_t>(x.size()));
  idx.resize(static_cast<size_t>(k));
  if (edge) *edge = k > 0 ? x[static_cast<size_t>(idx.back())] : std::numeric_limits<double>::infinity();
  std::sort(idx.begin(), idx.end());
  return idx;
}

// Ada-KV (METHODS §3): per-head budgets from one global top-(H·b); the global edge too.
std::vector<int64_t> ada_budgets(const Rows& s, int64_t b, double alpha, double* global_edge) {
  const auto H = static_cast<int64_t>(s.size());
  const auto prefix = static_cast<int64_t>(s[0].size());
  b = std::min(b, prefix);
  std::vector<double> flat;
  for (const auto& row : s) flat.insert(flat.end(), row.begin(), row.end());
  std::vector<int64_t> f(static_cast<size_t>(H), 0);
  for (int64_t i : top(flat, H * b, global_edge)) ++f[static_cast<size_t>(i / prefix)];
  const auto floor_a = static_cast<int64_t>(std::floor(alpha * static_cast<double>(b)));
  std::vector<int64_t> B(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h)
    B[static_cast<size_t>(h)] = std::clamp<int64_t>(std::llround((1 - alpha) * static_cast<double>(f[static_cast<size_t>(h)]) + static_cast<double>(floor_a)), floor_a, prefix);
  // Repair the sum to H·b: the most favoured heads (by f, then index) gain first and lose last.
  std::vector<int64_t> order(static_cast<size_t>(H));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return f[static_cast<size_t>(a)] > f[static_cast<size_t>(c)]; });
  int64_t sum = std::accumulate(B.begin(), B.end(), int64_t{0});
  for (bool moved = true; sum < H * b && moved;) {
    moved = false;
    for (int64_t h : order)
      if (sum < H * b && B[static_cast<size_t>(h)] < prefix) ++B[static_cast<size_t>(h)], ++sum, moved = true;
  }
  for (bool moved = true; sum > H * b && moved;) {
    moved = false;
    for (auto it = order.rbegin(); it != order.rend(); ++it)
      if (sum > H * b && B[static_cast<size_t>(*it)] > floor_a) --B[static_cast<size_t>(*it)], --sum, moved = true;
  }
  return B;
}

// PyramidKV (METHODS §4): prefix budget of each of L layers.
std::vector<int64_t> pyramid(int L, int64_t b, int64_t prefix, double beta) {
  if (L <= 1) return std::vector<int64_t>(static_cast<size_t>(L), std::min(b, prefix));
  auto lo = static_cast<int64_t>(std::floor(static_cast<double>(b) / beta));
  int64_t hi = 2 * b - lo;
  if (hi >= prefix) {
    hi = prefix;
    lo = 2 * b - hi;
  }
  const int64_t step = (hi - lo) / (L - 1);
  std::vector<int64_t> out;
  for (int l = 0; l < L; ++l) out.push_back(std::clamp<int64_t>(hi - l * step, 0, prefix));
  return out;
}

// Normalised entropy of a layer's flattened (non-negative) scores.
double entropy(const Rows& s) {
  double sum = 0, n = 0, h = 0;
  for (const auto& row : s)
    for (double x : row) sum += std::max(0.0, x), ++n;
  if (n <= 1 || sum <= 0) return 1;
  for (const auto& row : s)
    for (double x : row)
      if (x > 0) h -= x / sum * std::log(x / sum);
  return h / std::log(n);
}

ReferenceHead head_selection(const std::vector<double>& s, int64_t b, int64_t prefix, int64_t n) {
  ReferenceHead out;
  double edge = 0;
  out.keep = top(s, b, &edge);
  out.rankings.push_back({s, edge});
  for (int64_t j = prefix; j < n; ++j) out.keep.push_back(j);
  return out;
}

}  // namespace

std::vector<std::vector<ReferenceHead>> reference_selection(const std::vector<RecordedLayer>& layers,
                                                            const ReferenceOptions& o) {
  const std::string& p = o.preset;
  const bool lava = p.rfind("lava", 0) == 0;
  const bool gqa_max = o.gqa_max.value_or(lava);
  const bool ada = p == "ada-snapkv" || p == "ada-pyramidkv" || p == "critical-ada-snapkv" || p == "lava" || p == "lava-heads";
  const bool critical = p == "criticalkv" || p == "critical-ada-snapkv";
  const int L = static_cast<int>(layers.size());
  std::vector<std::vector<ReferenceHead>> out(layers.size());
  std::vector<Rows> scores(layers.size());
  std::vector<int64_t> prefixes(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const RecordedLayer& r = layers[l];
    const int64_t w = std::min(o.window, r.n), prefix = r.n - w;
    prefixes[l] = prefix;
    if (o.budget >= r.n || prefix <= 0) {  // everything fits
      for (int h = 0; h < r.n_head_kv; ++h) {
        ReferenceHead all;
        all.keep.resize(static_cast<size_t>(r.n));
        std::iota(all.keep.begin(), all.keep.end(), 0);
        out[l].push_back(all);
      }
      continue;
    }
    const std::string setting = std::to_string(w) + "/" + std::to_string(o.kernel) + (o.pool_max ? "max" : "avg") +
                                (gqa_max ? "/gmax" : "/gmean");
    if (p == "snapkv" || p == "pyramidkv" || p == "ada-snapkv" || p == "ada-pyramidkv" || critical)
      scores[l] = memo(r, "window/" + setting, [&] { return window_scores(r, w, o, gqa_max); });
    else if (p == "h2o") scores[l] = memo(r, "h2o/" + setting, [&] { return h2o_scores(r, prefix, gqa_max); });
    else if (p == "tova") scores[l] = tova_scores(r, prefix);
    else if (p == "knorm") scores[l] = knorm_scores(r, prefix);
    else if (lava) scores[l] = memo(r, "lava/" + setting, [&] { return lava_scores(r, w, o, gqa_max); });
    else if (p == "streamingllm") {
      // The first `sinks` positions, then the most recent: no scores.
      const int64_t b = o.budget - w, sinks = std::min<int64_t>(o.sinks, b);
      for (int h = 0; h < r.n_head_kv; ++h) {
        ReferenceHead head;
        for (int64_t j = 0; j < prefix; ++j)
          if (j < sinks || j >= prefix - (b - sinks)) head.keep.push_back(j);
        for (int64_t j = prefix; j < r.n; ++j) head.keep.push_back(j);
        out[l].push_back(head);
      }
      continue;
    } else {
      throw std::invalid_argument("reference_selection: unknown preset " + p);
    }
  }

  if (lava && p != "lava-heads") {
    // Entropy layer budgets with the prefill cascade: after layer l, every finished layer
    // shrinks to ⌊T·e_j / Σ_{k≤l} e_k⌋; a head never grows back.
    const int64_t T = static_cast<int64_t>(L) * (o.budget - o.window);
    std::vector<double> e;
    std::vector<std::vector<int64_t>> kept(layers.size());
    std::vector<double> global_edge(layers.size(), 0);
    for (int l = 0; l < L; ++l) {
      if (scores[static_cast<size_t>(l)].empty()) return out;  // the prompt fits: nothing was pressed
      e.push_back(entropy(scores[static_cast<size_t>(l)]));
      const double sum = std::accumulate(e.begin(), e.end(), 0.0);
      for (int j = 0; j <= l; ++j) {
        const int64_t lb = std::min(prefixes[static_cast<size_t>(j)],
                                    static_cast<int64_t>(std::floor(static_cast<double>(T) * e[static_cast<size_t>(j)] / sum)));
        const Rows& s = scores[static_cast<size_t>(j)];
        const std::vector<int64_t> hb =
            p == "lava" ? ada_budgets(s, lb, o.alpha, &global_edge[static_cast<size_t>(j)])
                        : std::vector<int64_t>(s.size(), lb);
        auto& k = kept[static_cast<size_t>(j)];
        if (j == l) k = hb;
        else
          for (size_t h = 0; h < s.size(); ++h) k[h] = std::min(k[h], hb[h]);
      }
    }
    for (int l = 0; l < L; ++l) {
      const RecordedLayer& r = layers[static_cast<size_t>(l)];
      for (int h = 0; h < r.n_head_kv; ++h) {
        ReferenceHead head = head_selection(scores[static_cast<size_t>(l)][static_cast<size_t>(h)],
                                            kept[static_cast<size_t>(l)][static_cast<size_t>(h)], prefixes[static_cast<size_t>(l)], r.n);
        if (p == "lava") head.rankings.push_back({scores[static_cast<size_t>(l)][static_cast<size_t>(h)], global_edge[static_cast<size_t>(l)]});
        out[static_cast<size_t>(l)].push_back(std::move(head));
      }
    }
    return out;
  }

  for (int l = 0; l < L; ++l) {
    const Rows& s = scores[static_cast<size_t>(l)];
    if (s.empty()) continue;  // done above (everything kept, or StreamingLLM)
    const RecordedLayer& r = layers[static_cast<size_t>(l)];
    const int64_t prefix = prefixes[static_cast<size_t>(l)];
    const int64_t b = (p == "pyramidkv" || p == "ada-pyramidkv")
                          ? pyramid(L, o.budget - o.window, prefix, o.beta)[static_cast<size_t>(l)]
                          : std::min(o.budget - o.window, prefix);
    double global_edge = 0;
    const std::vector<int64_t> hb = ada ? ada_budgets(s, b, o.alpha, &global_edge) : std::vector<int64_t>(s.size(), b);
    for (int h = 0; h < r.n_head_kv; ++h) {
      const std::vector<double>& row = s[static_cast<size_t>(h)];
      const int64_t bh = hb[static_cast<size_t>(h)];
      ReferenceHead head;
      if (critical) {
        // Stage 1: half the budget by score; stage 2: the rest by (s + 1e-4)·‖v W_O‖₁.
        double edge1 = 0, edge2 = 0;
        head.keep = top(row, bh / 2, &edge1);
        const std::vector<double>& norms =
            memo(r, "vo_norms/" + std::to_string(prefix), [&] {
              Rows all;
              for (int kh = 0; kh < r.n_head_kv; ++kh) all.push_back(value_output_norms(r, kh, prefix));
              return all;
            })[static_cast<size_t>(h)];
        std::vector<double> crit(static_cast<size_t>(prefix));
        for (int64_t j = 0; j < prefix; ++j) crit[static_cast<size_t>(j)] = (row[static_cast<size_t>(j)] + 1e-4) * norms[static_cast<size_t>(j)];
        std::vector<double> rest = crit;
        for (int64_t j : head.keep) rest[static_cast<size_t>(j)] = -std::numeric_limits<double>::infinity();
        for (int64_t j : top(rest, bh - bh / 2, &edge2)) head.keep.push_back(j);
        std::sort(head.keep.begin(), head.keep.end());
        head.rankings = {{row, edge1}, {crit, edge2}};
        for (int64_t j = prefix; j < r.n; ++j) head.keep.push_back(j);
      } else {
        head = head_selection(row, bh, prefix, r.n);
      }
      if (ada) head.rankings.push_back({row, global_edge});
      out[static_cast<size_t>(l)].push_back(std::move(head));
    }
  }
  return out;
}

ReferenceHead reference_decode_head(const std::vector<double>& keys, const std::vector<int32_t>& pos,
                                    const std::vector<std::vector<double>>& queries, const std::vector<int32_t>& qpos,
                                    int kv_head, int n_head, int n_head_kv, int head_dim, int64_t keep,
                                    const ReferenceOptions& o) {
  const auto m = static_cast<int64_t>(pos.size());
  // The rows of the window's own earlier tokens stay; this step's row is not cached yet.
  const int64_t w = std::min<int64_t>(static_cast<int64_t>(queries.size()), m);
  const int64_t recent = std::max<int64_t>(w - 1, 0), prefix = m - recent;
  keep = std::max(keep, recent);
  ReferenceHead out;
  std::vector<double> score(static_cast<size_t>(prefix), 0.0);
  if (o.preset == "streamingllm") {
    for (int64_t j = 0; j < prefix; ++j) score[static_cast<size_t>(j)] = j < o.sinks ? 1e9 : static_cast<double>(j);
  } else {
    const int G = n_head / n_head_kv;
    const bool gqa_max = o.gqa_max.value_or(false);
    std::vector<double> reduced(static_cast<size_t>(prefix), gqa_max ? -std::numeric_limits<double>::infinity() : 0.0);
    for (int g = 0; g < G; ++g) {
      const int hq = kv_head * G + g;
      std::vector<double> acc(static_cast<size_t>(prefix), 0.0);
      for (size_t i = queries.size() - static_cast<size_t>(w); i < queries.size(); ++i) {
        const double* q = &queries[i][static_cast<size_t>(hq * head_dim)];
        std::vector<double> a(static_cast<size_t>(m), 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < m; ++j) {
          if (pos[static_cast<size_t>(j)] > qpos[i]) continue;  // a query sees only what came before it
          double dot = 0;
          for (int x = 0; x < head_dim; ++x) dot += q[x] * keys[static_cast<size_t>(j * head_dim + x)];
          a[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(head_dim));
          mx = std::max(mx, a[static_cast<size_t>(j)]);
        }
        double z = 0;
        for (int64_t j = 0; j < m; ++j)
          z += a[static_cast<size_t>(j)] = pos[static_cast<size_t>(j)] > qpos[i] ? 0.0 : std::exp(a[static_cast<size_t>(j)] - mx);
        for (int64_t j = 0; j < prefix; ++j) acc[static_cast<size_t>(j)] += a[static_cast<size_t>(j)] / z / static_cast<double>(w);
      }
      acc = pool(acc, o.kernel, o.pool_max);
      for (int64_t j = 0; j < prefix; ++j)
        reduced[static_cast<size_t>(j)] = gqa_max ? std::max(reduced[static_cast<size_t>(j)], acc[static_cast<size_t>(j)])
                                                  : reduced[static_cast<size_t>(j)] + acc[static_cast<size_t>(j)] / G;
    }
    score = reduced;
  }
  double edge = 0;
  for (int64_t j : top(score, keep - recent, &edge)) out.keep.push_back(pos[static_cast<size_t>(j)]);
  for (int64_t j = prefix; j < m; ++j) out.keep.push_back(pos[static_cast<size_t>(j)]);
  out.rankings.push_back({score, edge});
  return out;
}

}  // namespace kvsqueeze::test
