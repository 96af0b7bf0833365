#include "model/model.h"

#include <omp.h>

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "cache/kv_cache.h"
#include "gguf/gguf_file.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "tensor/quant.h"

namespace kvsqueeze {

std::unique_ptr<Model> Model::load(const std::string& path) {
  return std::make_unique<Model>(std::make_shared<const GgufFile>(path));
}

std::vector<float> Model::small_vector(const std::string& name, int64_t expect, bool required) const {
  const GgufTensor* t = file_->tensor(name);
  if (!t) {
    if (required) throw std::runtime_error(fmt::format("'{}': missing tensor '{}'", file_->path(), name));
    return {};
  }
  if (t->n_elements() != expect)
    throw std::runtime_error(fmt::format("'{}': tensor '{}' has shape {}, expected {} elements", file_->path(), name,
                                         t->shape_string(), expect));
  if (!traits(t->type).supported)
    throw std::runtime_error(fmt::format("'{}': tensor '{}' has unsupported weight type {}", file_->path(), name,
                                         dtype_name(t->type)));
  std::vector<float> v(static_cast<size_t>(expect));
  dequantize_row(t->type, t->data, v.data(), expect);
  return v;
}

MatrixView Model::matrix(const std::string& name, int64_t cols, int64_t rows, bool required) const {
  const GgufTensor* t = file_->tensor(name);
  if (!t) {
    if (required) throw std::runtime_error(fmt::format("'{}': missing tensor '{}'", file_->path(), name));
    return {};
  }
  if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows)
    throw std::runtime_error(fmt::format("'{}': tensor '{}' has shape {}, expected [{}, {}]", file_->path(), name,
                                         t->shape_string(), cols, rows));
  if (!traits(t->type).supported)
    throw std::runtime_error(fmt::format("'{}': tensor '{}' has weight type {}, which kvsqueeze cannot compute with yet",
                                         file_->path(), name, dtype_name(t->type)));
  return MatrixView{t->type, t->data, rows, cols};
}

Model::Model(std::shared_ptr<const GgufFile> file) : file_(std::move(file)), cfg_(ModelConfig::from_gguf(*file_)) {
  const GgufTensor* emb = file_->tensor("token_embd.weight");
  if (!emb) throw std::runtime_error(fmt::format("'{}': missing tensor 'token_embd.weight'", file_->path()));
  if (emb->dims.size() != 2 || emb->dims[0] != cfg_.dim)
    throw std::runtime_error(fmt::format("'{}': token_embd.weight has shape {}, expected [{}, vocab]", file_->path(),
                                         emb->shape_string(), cfg_.dim));
  if (emb->dims[1] > (int64_t{1} << 24))
    throw std::runtime_error(fmt::format("'{}': vocabulary of {} tokens is absurd", file_->path(), emb->dims[1]));
  cfg_.vocab = static_cast<int>(emb->dims[1]);
  tok_embd_ = matrix("token_embd.weight", cfg_.dim, cfg_.vocab, true);
  output_ = matrix("output.weight", cfg_.dim, cfg_.vocab, false);
  if (output_.empty()) output_ = tok_embd_;  // tied embeddings
  output_norm_ = small_vector("output_norm.weight", cfg_.dim, true);
  rope_freqs_ = small_vector("rope_freqs.weight", cfg_.n_rot / 2, false);

  const int64_t q_out = int64_t{cfg_.n_head} * cfg_.head_dim;
  const int64_t k_out = int64_t{cfg_.n_head_kv} * cfg_.head_dim;
  const int64_t v_out = int64_t{cfg_.n_head_kv} * cfg_.head_dim_v;
  const int64_t o_in = int64_t{cfg_.n_head} * cfg_.head_dim_v;
  layers_.resize(static_cast<size_t>(cfg_.n_layer));
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    LayerWeights& w = layers_[static_cast<size_t>(l)];
    w.attn_norm = small_vector(p + "attn_norm.weight", cfg_.dim, true);
    w.ffn_norm = small_vector(p + "ffn_norm.weight", cfg_.dim, true);
    w.wq = matrix(p + "attn_q.weight", cfg_.dim, q_out, true);
    w.wk = matrix(p + "attn_k.weight", cfg_.dim, k_out, true);
    w.wv = matrix(p + "attn_v.weight", cfg_.dim, v_out, true);
    w.wo = matrix(p + "attn_output.weight", o_in, cfg_.dim, true);
    w.gate = matrix(p + "ffn_gate.weight", cfg_.dim, cfg_.ffn, true);
    w.up = matrix(p + "ffn_up.weight", cfg_.dim, cfg_.ffn, true);
    w.down = matrix(p + "ffn_down.weight", cfg_.ffn, cfg_.dim, true);
    // Biases are what makes qwen2 qwen2; llama files may carry them too (optional).
    const bool need_bias = cfg_.arch == Arch::Qwen2;
    w.bq = small_vector(p + "attn_q.bias", q_out, need_bias);
    w.bk = small_vector(p + "attn_k.bias", k_out, need_bias);
    w.bv = small_vector(p + "attn_v.bias", v_out, need_bias);
    const bool need_qk_norm = cfg_.arch == Arch::Qwen3;
    w.q_norm = small_vector(p + "attn_q_norm.weight", cfg_.head_dim, need_qk_norm);
    w.k_norm = small_vector(p + "attn_k_norm.weight", cfg_.head_dim, need_qk_norm);
  }
}

KvCache Model::make_cache() const { return KvCache(cfg_.n_layer, cfg_.n_head_kv, cfg_.head_dim, cfg_.head_dim_v); }

int64_t Model::weight_bytes() const {
  int64_t b = 0;
  for (const auto& t : file_->tensors()) b += t.n_bytes;
  return b;
}

namespace {
void add_bias(float* x, const std::vector<float>& b, int64_t n_tok, int64_t width) {
  if (b.empty()) return;
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t i = 0; i < width; ++i) x[t * width + i] += b[static_cast<size_t>(i)];
}
}  // namespace

void Model::forward(KvCache& cache, const int32_t* tokens, int64_t n, float* logits, bool all_logits) const {
  const ModelConfig& c = cfg_;
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      throw std::runtime_error(fmt::format("token id {} is outside the vocabulary (0..{})", tokens[t], c.vocab - 1));
  if (n <= 0) return;
  const int32_t pos0 = cache.next_pos();
  const int64_t dim = c.dim, hd = c.head_dim, hdv = c.head_dim_v;
  const int64_t q_w = c.n_head * hd, k_w = c.n_head_kv * hd, v_w = c.n_head_kv * hdv, o_w = c.n_head * hdv;
  std::vector<float> x(static_cast<size_t>(n * dim)), xn(x.size());
  std::vector<float> q(static_cast<size_t>(n * q_w)), k(static_cast<size_t>(n * k_w)), v(static_cast<size_t>(n * v_w));
  std::vector<float> att(static_cast<size_t>(n * o_w)), proj(x.size());
  std::vector<float> g(static_cast<size_t>(n * c.ffn)), u(g.size());

  for (int64_t t = 0; t < n; ++t) dequantize_row(tok_embd_.type, tok_embd_.row(tokens[t]), &x[t * dim], dim);
  cache.reserve_more(n);
  const float* ff = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
  // RoPE angles depend on the position only: compute them once for all layers and heads.
  const int64_t half_rot = c.n_rot / 2;
  std::vector<float> rope_cos(static_cast<size_t>(n * half_rot)), rope_sin(rope_cos.size());
  for (int64_t t = 0; t < n; ++t)
    rope_angles(c.n_rot, pos0 + t, c.rope_base, ff, &rope_cos[t * half_rot], &rope_sin[t * half_rot]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& w = layers_[static_cast<size_t>(l)];
    for (int64_t t = 0; t < n; ++t) rms_norm(&x[t * dim], w.attn_norm.data(), &xn[t * dim], dim, c.rms_eps);
    matmul(w.wq, xn.data(), n, q.data());
    matmul(w.wk, xn.data(), n, k.data());
    matmul(w.wv, xn.data(), n, v.data());
    add_bias(q.data(), w.bq, n, q_w);
    add_bias(k.data(), w.bk, n, k_w);
    add_bias(v.data(), w.bv, n, v_w);
    for (int64_t t = 0; t < n; ++t) {
      const int64_t pos = pos0 + t;
      for (int h = 0; h < c.n_head; ++h) {
        float* qh = &q[t * q_w + h * hd];
        if (!w.q_norm.empty()) rms_norm(qh, w.q_norm.data(), qh, hd, c.rms_eps);
        rope_apply(qh, c.n_rot, c.rope_neox, &rope_cos[t * half_rot], &rope_sin[t * half_rot]);
      }
      for (int h = 0; h < c.n_head_kv; ++h) {
        float* kh = &k[t * k_w + h * hd];
        if (!w.k_norm.empty()) rms_norm(kh, w.k_norm.data(), kh, hd, c.rms_eps);
        rope_apply(kh, c.n_rot, c.rope_neox, &rope_cos[t * half_rot], &rope_sin[t * half_rot]);
        cache.append(l, h, kh, &v[t * v_w + h * hdv], static_cast<int32_t>(pos));
      }
    }
    // Attention: the G query heads of a group read the rows of their own KV head
    // (ragged-ready: nothing assumes heads hold the same rows).
    const int G = c.group();
#pragma omp parallel
    {
      std::vector<float> scratch;
#pragma omp for collapse(2) schedule(dynamic, 2)
      for (int64_t t = 0; t < n; ++t)
        for (int kh = 0; kh < c.n_head_kv; ++kh) {
          const HeadRows& rows = cache.head(l, kh);
          attend_group(&q[t * q_w + kh * G * hd], hd, G, rows.k.data(), rows.v.data(), rows.pos.data(), rows.size(),
                       hd, hdv, static_cast<int32_t>(pos0 + t), scale, &att[t * o_w + kh * G * hdv], hdv, scratch);
        }
    }
    matmul(w.wo, att.data(), n, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];

    for (int64_t t = 0; t < n; ++t) rms_norm(&x[t * dim], w.ffn_norm.data(), &xn[t * dim], dim, c.rms_eps);
    matmul(w.gate, xn.data(), n, g.data());
    matmul(w.up, xn.data(), n, u.data());
    silu_mul(g.data(), u.data(), static_cast<int64_t>(g.size()));
    matmul(w.down, g.data(), n, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  }

  const int64_t first = all_logits ? 0 : n - 1;
  const int64_t n_out = n - first;
  for (int64_t t = first; t < n; ++t) rms_norm(&x[t * dim], output_norm_.data(), &xn[(t - first) * dim], dim, c.rms_eps);
  matmul(output_, xn.data(), n_out, logits);
}

}  // namespace kvsqueeze
