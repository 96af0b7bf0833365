// The gemma3 architecture on tiny random models: the engine against an independent,
// naive double-precision forward pass written from the architecture's definition, the
// sliding-window cache (bounded, released as the window moves) and the presses, which
// compress the global layers only.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "press/compression_press.h"
#include "press/press_config.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {

constexpr int kWindow = 8;

// 6 layers: 0-4 slide over 8 positions with RoPE base 10000, layer 5 is global (base 1e6).
ModelSpec tiny_gemma3() {
  ModelSpec s;
  s.arch = Arch::Gemma3;
  s.n_layer = 6;
  s.dim = 64;
  s.n_head = 2;
  s.n_head_kv = 1;
  s.head_dim = 32;
  s.ffn = 96;
  s.vocab = 300;
  s.rope_base = 1e6f;
  s.rms_eps = 1e-6f;
  s.sliding_window = kWindow;
  s.seed = 5;
  return s;
}

std::string tiny_gemma3_path() {
  const std::string path = test::temp_path("gemma3-tiny.gguf");
  make_random_model(tiny_gemma3(), path);
  return path;
}

std::vector<int32_t> test_ids(int n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = (i * 37 + 11) % 300;
  return ids;
}

// The definition, step by step, in doubles: no tiling, no caching, no shared code with
// the engine beyond reading the file.
class ReferenceGemma3 {
 public:
  explicit ReferenceGemma3(const GgufFile& f) : f_(f) {}

  std::vector<std::vector<double>> logits(const std::vector<int32_t>& ids) const {
    const int n = static_cast<int>(ids.size());
    std::vector<std::vector<double>> x(static_cast<size_t>(n));
    const float* emb = weights("token_embd.weight");
    for (int t = 0; t < n; ++t) {
      x[static_cast<size_t>(t)].resize(kDim);
      for (int i = 0; i < kDim; ++i) x[static_cast<size_t>(t)][i] = emb[ids[static_cast<size_t>(t)] * kDim + i] * std::sqrt(double(kDim));
    }
    for (int l = 0; l < kLayers; ++l) layer(l, x);
    std::vector<std::vector<double>> out;
    for (const auto& xt : x) out.push_back(matvec(emb, kDim, kVocab, rms(xt, weights("output_norm.weight"))));
    return out;
  }

 private:
  static constexpr int kDim = 64, kHeads = 2, kHd = 32, kFfn = 96, kVocab = 300, kLayers = 6;

  const float* weights(const std::string& name) const {
    const GgufTensor* t = f_.tensor(name);
    EXPECT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, DType::F32) << name;
    return reinterpret_cast<const float*>(t->data);
  }
  static std::vector<double> matvec(const float* w, int cols, int rows, const std::vector<double>& x) {
    std::vector<double> y(static_cast<size_t>(rows), 0.0);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) y[r] += w[r * cols + c] * x[c];
    return y;
  }
  static std::vector<double> rms(const std::vector<double>& x, const float* w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + 1e-6);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
    return y;
  }
  // NeoX rotation: dimension i pairs with i + hd/2.
  static void rope(double* v, int pos, double base) {
    for (int i = 0; i < kHd / 2; ++i) {
      const double th = pos * std::pow(base, -2.0 * i / kHd);
      const double a = v[i], b = v[i + kHd / 2];
      v[i] = a * std::cos(th) - b * std::sin(th);
      v[i + kHd / 2] = a * std::sin(th) + b * std::cos(th);
    }
  }

  void layer(int l, std::vector<std::vector<double>>& x) const {
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool sliding = (l + 1) % 6 != 0;
    const double base = sliding ? 10000.0 : 1e6;
    const int n = static_cast<int>(x.size());
    std::vector<std::vector<double>> q(static_cast<size_t>(n)), k(q.size()), v(q.size());
    for (int t = 0; t < n; ++t) {
      const auto h = rms(x[t], weights(p + "attn_norm.weight"));
      q[t] = matvec(weights(p + "attn_q.weight"), kDim, kHeads * kHd, h);
      k[t] = matvec(weights(p + "attn_k.weight"), kDim, kHd, h);
      v[t] = matvec(weights(p + "attn_v.weight"), kDim, kHd, h);
      for (int hh = 0; hh < kHeads; ++hh) {
        std::vector<double> qh(q[t].begin() + hh * kHd, q[t].begin() + (hh + 1) * kHd);
        qh = rms(qh, weights(p + "attn_q_norm.weight"));
        rope(qh.data(), t, base);
        std::copy(qh.begin(), qh.end(), q[t].begin() + hh * kHd);
      }
      k[t] = rms(k[t], weights(p + "attn_k_norm.weight"));
      rope(k[t].data(), t, base);
    }
    for (int t = 0; t < n; ++t) {
      std::vector<double> att(static_cast<size_t>(kHeads * kHd), 0.0);
      const int first = sliding ? std::max(0, t - kWindow + 1) : 0;
      for (int hh = 0; hh < kHeads; ++hh) {
        std::vector<double> s;
        for (int j = first; j <= t; ++j) {
          double d = 0;
          for (int e = 0; e < kHd; ++e) d += q[t][hh * kHd + e] * k[j][e];
          s.push_back(d / std::sqrt(double(kHd)));
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int j = first; j <= t; ++j)
          for (int e = 0; e < kHd; ++e) att[hh * kHd + e] += s[j - first] / z * v[j][e];
      }
      const auto o = rms(matvec(weights(p + "attn_output.weight"), kHeads * kHd, kDim, att), weights(p + "post_attention_norm.weight"));
      for (int i = 0; i < kDim; ++i) x[t][i] += o[i];
      const auto h = rms(x[t], weights(p + "ffn_norm.weight"));
      auto g = matvec(weights(p + "ffn_gate.weight"), kDim, kFfn, h);
      const auto u = matvec(weights(p + "ffn_up.weight"), kDim, kFfn, h);
      for (int i = 0; i < kFfn; ++i) {
        const double a = g[i];
        g[i] = 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a))) * u[i];
      }
      const auto d = rms(matvec(weights(p + "ffn_down.weight"), kFfn, kDim, g), weights(p + "post_ffw_norm.weight"));
      for (int i = 0; i < kDim; ++i) x[t][i] += d[i];
    }
  }

  const GgufFile& f_;
};

double rel_l2(const float* a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST(Gemma3, ConfigReadsSlidingLayersAndTheirRopeBase) {
  const auto model = Model::load(tiny_gemma3_path());
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(c.sliding_window, kWindow);
  EXPECT_EQ(c.press_layers, std::vector<int>{5});
  for (int l = 0; l < 5; ++l) EXPECT_TRUE(c.is_sliding(l)) << l;
  EXPECT_FALSE(c.is_sliding(5));
  EXPECT_FLOAT_EQ(c.rope_base, 1e6f);
  EXPECT_FLOAT_EQ(c.rope_base_sliding, 10000.0f);
  EXPECT_EQ(c.press_index(5), 0);
  EXPECT_EQ(c.press_index(2), -1);
  EXPECT_EQ(c.full_cache_rows(100), 5 * kWindow + 100);
}

// 40 tokens: five windows' worth, so the sliding layers' masks and both RoPE bases matter.
TEST(Gemma3, LogitsEqualAnIndependentReferenceForward) {
  const auto file = std::make_shared<const GgufFile>(tiny_gemma3_path());
  const Model model(file);
  const auto ids = test_ids(40);
  KvCache cache = model.make_cache(DType::F32);
  const size_t V = 300;
  std::vector<float> got(ids.size() * V);
  model.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), got.data(), true);
  const auto want = ReferenceGemma3(*file).logits(ids);
  for (size_t t = 0; t < ids.size(); ++t) EXPECT_LT(rel_l2(&got[t * V], want[t]), 1e-4) << "position " << t;
}

TEST(Gemma3, DecodeEqualsPrefillAndSlidingLayersKeepOnlyTheirWindow) {
  const auto model = Model::load(tiny_gemma3_path());
  const auto ids = test_ids(150);  // past window + slack, so decoding trims the sliding layers
  const size_t V = 300;
  KvCache whole = model->make_cache(DType::F32);
  std::vector<float> batch(ids.size() * V);
  model->forward(whole, ids.data(), static_cast<int64_t>(ids.size()), batch.data(), true);
  for (int l = 0; l < 5; ++l) {
    EXPECT_EQ(whole.head(l, 0).size(), kWindow - 1) << "layer " << l;  // what the next query can see
    EXPECT_EQ(whole.head(l, 0).pos.front(), 150 - kWindow + 1);
  }
  EXPECT_EQ(whole.head(5, 0).size(), 150);

  KvCache cache = model->make_cache(DType::F32);
  std::vector<float> one(V);
  int64_t most = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    model->forward(cache, &ids[i], 1, one.data(), false);
    ASSERT_LT(test::rel_l2(one.data(), &batch[i * V], V), 1e-4) << "position " << i;
    for (int l = 0; l < 5; ++l) most = std::max(most, cache.head(l, 0).size());
  }
  EXPECT_GT(most, kWindow);        // rows accumulate a little between trims ...
  EXPECT_LE(most, kWindow + 64);   // ... but never past the window and its slack
  EXPECT_EQ(cache.head(5, 0).size(), 150);
  // A second prompt pass after a cache (a question after a context) sees the same rows.
  KvCache split = model->make_cache(DType::F32);
  std::vector<float> tail(50 * V);
  model->forward(split, ids.data(), 100, tail.data(), false);
  model->forward(split, ids.data() + 100, 50, tail.data(), true);
  for (size_t t = 0; t < 50; ++t) EXPECT_LT(test::rel_l2(&tail[t * V], &batch[(100 + t) * V], V), 1e-4) << t;
}

TEST(Gemma3, PressesCompressTheGlobalLayersOnly) {
  const auto model = Model::load(tiny_gemma3_path());
  const auto ids = test_ids(120);
  for (const char* preset : {"snapkv", "ada-snapkv", "pyramidkv", "lava", "streamingllm"}) {
    PressConfig pc = PressConfig::from_preset(preset);
    pc.budget = 24;
    pc.window = 8;
    auto press = make_compression_press(pc);
    KvCache cache = model->make_cache();
    std::vector<float> logits(300);
    model->forward(cache, ids.data(), static_cast<int64_t>(ids.size()), logits.data(), false, press.get());
    for (int l = 0; l < 5; ++l) {
      EXPECT_EQ(cache.head(l, 0).size(), kWindow - 1) << preset << " layer " << l;
      EXPECT_TRUE(press->head_budgets().size() <= static_cast<size_t>(l) || press->head_budgets()[l].empty()) << preset;
    }
    // One KV head in one pressed layer: every preset keeps exactly the budget there.
    EXPECT_EQ(cache.head(5, 0).size(), 24) << preset;
    EXPECT_EQ(press->head_budgets().at(5), std::vector<int64_t>{24}) << preset;
    // Decoding goes on over the compressed cache.
    const int32_t next = 7;
    model->forward(cache, &next, 1, logits.data(), false);
    EXPECT_EQ(cache.head(5, 0).size(), 25) << preset;
    EXPECT_TRUE(std::isfinite(logits[0])) << preset;
  }
}
