#include "model/model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "cache/kv_cache.h"
#include "gguf/gguf_file.h"
#include "kernels/attention.h"
#include "kernels/flash_attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "press/press.h"
#include "press/score_memo.h"
#include "tensor/quant.h"

namespace kvsqueeze {

namespace {
// True when KVSQUEEZE_MMAP=1 asks to compute from the file's mapping (pages loaded on
// first use, shared with other processes, dropped under memory pressure) instead of a
// resident copy in huge pages; throws on a value other than 0 or 1.
bool weights_stay_mapped() {
  const char* v = std::getenv("KVSQUEEZE_MMAP");
  if (!v || std::string_view(v) == "0") return false;
  if (std::string_view(v) == "1") return true;
  throw std::runtime_error(fmt::format("KVSQUEEZE_MMAP must be 0 or 1, not '{}'", v));
}
}  // namespace

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
  // The RoPE frequencies depend on the model only: once here, per base.
  {
    const std::vector<float> factors = small_vector("rope_freqs.weight", cfg_.n_rot / 2, false);
    const float* ff = factors.empty() ? nullptr : factors.data();
    rope_freqs_.resize(static_cast<size_t>(cfg_.n_rot / 2));
    rope_frequencies(cfg_.n_rot, cfg_.rope_base, ff, rope_freqs_.data());
    rope_freqs_sliding_.resize(rope_freqs_.size());
    rope_frequencies(cfg_.n_rot, cfg_.rope_base_sliding, ff, rope_freqs_sliding_.data());
  }

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
    w.bq = small_vector(p + "attn_q.bias", q_out, cfg_.qkv_bias);
    w.bk = small_vector(p + "attn_k.bias", k_out, cfg_.qkv_bias);
    w.bv = small_vector(p + "attn_v.bias", v_out, cfg_.qkv_bias);
    w.q_norm = small_vector(p + "attn_q_norm.weight", cfg_.head_dim, cfg_.qk_norm);
    w.k_norm = small_vector(p + "attn_k_norm.weight", cfg_.head_dim, cfg_.qk_norm);
    if (cfg_.post_norms) {
      w.post_attn_norm = small_vector(p + "post_attention_norm.weight", cfg_.dim, true);
      w.post_ffn_norm = small_vector(p + "post_ffw_norm.weight", cfg_.dim, true);
    }
  }
  if (!weights_stay_mapped()) make_weights_resident();
}

void Model::make_weights_resident() {
  std::vector<MatrixView*> views{&output_};
  for (LayerWeights& w : layers_)
    for (MatrixView* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.gate, &w.up, &w.down}) views.push_back(m);
  // One copy per tensor, however many views share it; sized by its largest view, so a
  // file whose tensors overlap cannot make a view reach past its copy.
  std::map<const uint8_t*, std::pair<size_t, size_t>> copies;  // source -> (bytes, offset)
  for (const MatrixView* v : views) {
    size_t& bytes = copies[v->data].first;
    bytes = std::max(bytes, static_cast<size_t>(v->rows * v->row_stride()));
  }
  size_t total = 0;
  for (auto& [src, c] : copies) {
    c.second = total;
    total += (c.first + 63) / 64 * 64;  // each matrix on a cache line
  }
  weights_ = HugePageBuffer(total);
  for (const auto& [src, c] : copies) file_->read_bytes(src, c.first, weights_.data() + c.second);
  const uint8_t* mapped_output = output_.data;
  for (MatrixView* v : views) v->data = weights_.data() + copies.at(v->data).second;
  if (tok_embd_.data == mapped_output) tok_embd_.data = output_.data;  // tied: the embedding is that copy too
}

KvCache Model::make_cache(DType kv_type) const {
  return KvCache(cfg_.n_layer, cfg_.n_head_kv, cfg_.head_dim, cfg_.head_dim_v, kv_type);
}

uint64_t Model::fingerprint() const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&h](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
  };
  const int32_t shape[] = {cfg_.n_layer, cfg_.dim, cfg_.ffn, cfg_.n_head, cfg_.n_head_kv, cfg_.head_dim, cfg_.head_dim_v, cfg_.vocab};
  mix(shape, sizeof shape);
  for (const auto& t : file_->tensors()) {
    mix(t.name.data(), t.name.size());
    mix(t.dims.data(), t.dims.size() * sizeof(int64_t));
    mix(&t.type, sizeof t.type);
    if (t.dims.size() == 1) mix(t.data, static_cast<size_t>(t.n_bytes));
  }
  return h;
}

CacheIdentity Model::cache_identity() const {
  return CacheIdentity{fingerprint(), cfg_.n_layer, cfg_.n_head_kv, cfg_.head_dim, cfg_.head_dim_v};
}

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

// Rows [begin, end) of a view.
RowsView rows_between(RowsView v, int64_t begin, int64_t end) {
  v.k += begin * v.k_stride;
  v.v += begin * v.v_stride;
  v.pos += begin;
  v.n = end - begin;
  return v;
}

// The rows of a view from the first one at or after min_pos (rows ascend by position).
RowsView from_position(RowsView v, int32_t min_pos) {
  return rows_between(v, std::lower_bound(v.pos, v.pos + v.n, min_pos) - v.pos, v.n);
}

// RoPE angles depend on the position only, and each tile's are used by every layer (and
// head) that shares a base (gemma3's sliding layers have their own). A pass of up to
// kRopeHeldTokens tokens computes them once for all its layers; a longer one recomputes
// them per tile and layer (a fraction of a percent of its time) rather than hold n_rot
// floats per prompt token for the whole pass.
constexpr int64_t kRopeHeldTokens = 1024;
struct RopeTable {
  int64_t first = 0, count = 0;   // the pass's tokens the table holds
  std::vector<float> cos, sin;  // [count][n_rot / 2]
  void fill(int64_t n_rot, const std::vector<int32_t>& positions, int64_t from, int64_t n, const double* freqs,
            float pos_scale) {
    const int64_t half = n_rot / 2;
    first = from;
    count = n;
    cos.resize(static_cast<size_t>(n * half));
    sin.resize(cos.size());
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t t = 0; t < n; ++t)
      rope_angles_from(n_rot, static_cast<double>(positions[static_cast<size_t>(from + t)]) * pos_scale, freqs,
                       &cos[t * half], &sin[t * half]);
  }
  bool holds(int64_t from, int64_t n) const { return from >= first && from + n <= first + count; }
};

constexpr int64_t kTile = 256;  // tokens per step inside a layer: bounds activation memory
constexpr int64_t kQueryBlock = 32;  // query tokens per flash-attention work item
// A sliding layer's head is trimmed back to its window once it holds this many rows
// more, so decoding moves rows in batches rather than one per token.
constexpr int64_t kSlidingSlack = 64;
}  // namespace

struct Model::Pass {
  int64_t n = 0, tile = 0;
  int32_t pos0 = 0;
  // A decode batch: token t is the next token of targets[t] alone, attends to that
  // cache and its own fresh row only, and its columns are computed as if it were alone.
  // Otherwise the tokens are one prompt extending every target (attention reads the
  // first: the others hold the same rows).
  bool batch = false;
  Columns columns = Columns::Fastest;
  std::vector<PressTarget> targets;
  AttentionTap* tap = nullptr;
  int layer = 0;      // where step_pass goes on
  int64_t t0 = 0;
  bool finished = false;
  // Persist across layers: the hidden state of every token and, per layer, its fresh
  // K/V (all n rows, float32) until the press has chosen what the cache keeps.
  std::vector<float> x, fresh_k, fresh_v;
  std::vector<int32_t> positions;
  int64_t window = 0;                      // the widest observation window a press asked for
  std::vector<float> q_window, q_all;      // q_all: every token's queries (a batch: its presses' windows)
  bool share_scores = false;               // several targets: presses that score alike compute once
  ScoreMemo memo;                          // this layer's scores when shared
  RopeTable rope, rope_sliding;
  // Per tile.
  std::vector<float> xn, q, att, proj, g, u;
  // Decode attention work: parts of each (token, KV head)'s rows; a head cut in several
  // parts writes them to part_out/part_lse, merged into att afterwards.
  struct AttentionPart {
    int64_t t;
    int kh;
    int64_t begin, end;  // cached rows (the last part also takes the fresh rows)
    int64_t slot;        // -1: the only part, written to att directly
  };
  struct PartMerge {
    int64_t t;
    int kh;
    int64_t first_slot, n_parts;
  };
  std::vector<AttentionPart> parts;
  std::vector<PartMerge> merges;
  std::vector<float> part_out, part_lse;

  const KvCache& attended(int64_t t) const { return *targets[batch ? static_cast<size_t>(t) : 0].cache; }
};

struct PromptPass::State {
  const Model* model = nullptr;
  std::unique_ptr<Model::Pass> pass;
  float* logits = nullptr;
  bool all_logits = false;
};

PromptPass::PromptPass(std::unique_ptr<State> s) : s_(std::move(s)) {}
PromptPass::~PromptPass() = default;
bool PromptPass::step() { return s_->model->step_pass(*s_->pass, s_->logits, s_->all_logits); }
bool PromptPass::done() const { return s_->pass->finished; }

void Model::embed(Pass& p, const int32_t* tokens) const {
  const int64_t dim = cfg_.dim;
  const float scale = cfg_.embed_scaled ? std::sqrt(static_cast<float>(dim)) : 1.0f;
  for (int64_t t = 0; t < p.n; ++t) {
    float* row = &p.x[t * dim];
    dequantize_row(tok_embd_.type, tok_embd_.row(tokens[t]), row, dim);
    if (scale != 1.0f)
      for (int64_t i = 0; i < dim; ++i) row[i] *= scale;
  }
}

void Model::attention_block(Pass& p, int l, int64_t t0, int64_t nt) const {
  const ModelConfig& c = cfg_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int64_t dim = c.dim, hd = c.head_dim, hdv = c.head_dim_v, G = c.group(), n = p.n;
  const int64_t q_w = c.n_head * hd, k_w = c.n_head_kv * hd, v_w = c.n_head_kv * hdv, o_w = c.n_head * hdv;
  float* xt = &p.x[t0 * dim];
  float* kt = &p.fresh_k[t0 * k_w];
  float* vt = &p.fresh_v[t0 * v_w];
  float* xn = p.xn.data();
  float* q = p.q.data();
  // Per-token work runs in parallel over a prompt tile (one token: serial, no fork).
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) rms_norm(&xt[t * dim], w.attn_norm.data(), &xn[t * dim], dim, c.rms_eps);
  matmul_shared_input({{&w.wq, q}, {&w.wk, kt}, {&w.wv, vt}}, xn, nt, p.columns);
  add_bias(q, w.bq, nt, q_w);
  add_bias(kt, w.bk, nt, k_w);
  add_bias(vt, w.bv, nt, v_w);
  const bool sliding = c.is_sliding(l);
  RopeTable& rope = sliding ? p.rope_sliding : p.rope;
  if (!rope.holds(t0, nt)) {
    const int64_t n_pass = static_cast<int64_t>(p.positions.size());
    const int64_t from = n_pass <= kRopeHeldTokens ? 0 : t0, n = n_pass <= kRopeHeldTokens ? n_pass : nt;
    if (sliding) rope.fill(c.n_rot, p.positions, from, n, rope_freqs_sliding_.data(), 1.0f);
    else rope.fill(c.n_rot, p.positions, from, n, rope_freqs_.data(), c.rope_pos_scale);
  }
  const int64_t half_rot = c.n_rot / 2;
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) {
    const float* rc = &rope.cos[(t0 + t - rope.first) * half_rot];
    const float* rs = &rope.sin[(t0 + t - rope.first) * half_rot];
    for (int h = 0; h < c.n_head; ++h) {
      float* qh = &q[t * q_w + h * hd];
      if (!w.q_norm.empty()) rms_norm(qh, w.q_norm.data(), qh, hd, c.rms_eps);
      rope_apply(qh, c.n_rot, c.rope_neox, rc, rs);
    }
    for (int h = 0; h < c.n_head_kv; ++h) {
      float* kh = &kt[t * k_w + h * hd];
      if (!w.k_norm.empty()) rms_norm(kh, w.k_norm.data(), kh, hd, c.rms_eps);
      rope_apply(kh, c.n_rot, c.rope_neox, rc, rs);
    }
    const int64_t gt = t0 + t;  // index in the whole pass
    if (gt >= n - p.window) std::copy_n(&q[t * q_w], q_w, &p.q_window[(gt - (n - p.window)) * q_w]);
    if (!p.q_all.empty()) std::copy_n(&q[t * q_w], q_w, &p.q_all[gt * q_w]);
  }
  // Attention: the G query heads of a group read the cached rows of their KV head
  // (whatever subset survived compression) and then this pass's fresh rows, from the
  // first position the tile's earliest query can see (in a batch: its own cache and its
  // own fresh row). Single tokens take the row-at-a-time kernel, one work item per
  // (token, KV head); a prompt tile goes in blocks of query tokens through the tiled
  // flash kernel, so each key tile is loaded once per block.
  const int32_t window = sliding ? c.sliding_window : 0;
  const auto views_for = [&](int kh, int64_t gt, int32_t first_query_pos, std::array<RowsView, 2>& views) {
    views[0] = p.attended(gt).view(l, kh);
    const int64_t f0 = p.batch ? gt : 0, f1 = p.batch ? gt + 1 : t0 + nt;  // fresh rows it may see
    views[1] = RowsView{DType::F32, reinterpret_cast<const uint8_t*>(&p.fresh_k[f0 * k_w + kh * hd]),
                        reinterpret_cast<const uint8_t*>(&p.fresh_v[f0 * v_w + kh * hdv]), &p.positions[static_cast<size_t>(f0)],
                        f1 - f0, k_w * static_cast<int64_t>(sizeof(float)), v_w * static_cast<int64_t>(sizeof(float))};
    if (window > 0)
      for (auto& v : views) v = from_position(v, first_query_pos - window + 1);
  };
  float* att = p.att.data();
  if (nt == 1 || p.batch) {
    // One work item per part of a (token, KV head)'s cached rows. The parts depend on the
    // row count alone, so a session's result depends neither on the threads nor on what
    // it is batched with; several parts are merged exactly through their log-sum-exp.
    p.parts.clear();
    p.merges.clear();
    int64_t slots = 0;
    for (int64_t t = 0; t < nt; ++t)
      for (int kh = 0; kh < c.n_head_kv; ++kh) {
        std::array<RowsView, 2> views;
        views_for(kh, t0 + t, p.positions[static_cast<size_t>(t0 + t)], views);
        const int64_t rows = views[0].n, n_parts = decode_part_count(rows);
        if (n_parts == 1) {
          p.parts.push_back({t, kh, 0, rows, -1});
          continue;
        }
        p.merges.push_back({t, kh, slots, n_parts});
        for (int64_t i = 0; i < n_parts; ++i)
          p.parts.push_back({t, kh, decode_part_begin(i, n_parts, rows), decode_part_begin(i + 1, n_parts, rows), slots++});
      }
    p.part_out.resize(static_cast<size_t>(slots * G * hdv));
    p.part_lse.resize(static_cast<size_t>(slots * G));
#pragma omp parallel
    {
      std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
      for (size_t i = 0; i < p.parts.size(); ++i) {
        const Pass::AttentionPart& part = p.parts[i];
        std::array<RowsView, 2> views;
        const int32_t qpos = p.positions[static_cast<size_t>(t0 + part.t)];
        views_for(part.kh, t0 + part.t, qpos, views);
        const int n_views = part.end == views[0].n ? 2 : 1;
        views[0] = rows_between(views[0], part.begin, part.end);
        const bool alone = part.slot < 0;
        float* out = alone ? &att[part.t * o_w + part.kh * G * hdv] : &p.part_out[part.slot * G * hdv];
        attend_group(&q[part.t * q_w + part.kh * G * hd], hd, static_cast<int>(G), views.data(), n_views, hd, hdv, qpos,
                     c.attn_scale, out, hdv, alone ? nullptr : &p.part_lse[part.slot * G], scratch);
      }
#pragma omp for schedule(static)
      for (size_t m = 0; m < p.merges.size(); ++m) {
        const Pass::PartMerge& pm = p.merges[m];
        merge_attention(&p.part_out[pm.first_slot * G * hdv], &p.part_lse[pm.first_slot * G], static_cast<int>(pm.n_parts),
                        static_cast<int>(G), hdv, &att[pm.t * o_w + pm.kh * G * hdv], hdv);
      }
    }
  } else {
    const int64_t n_blocks = (nt + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel
    {
      FlashScratch scratch;
#pragma omp for collapse(2) schedule(dynamic, 1)
      for (int64_t blk = n_blocks - 1; blk >= 0; --blk)  // later blocks see more keys: start them first
        for (int kh = 0; kh < c.n_head_kv; ++kh) {
          const int64_t tb = blk * kQueryBlock, nb = std::min(kQueryBlock, nt - tb);
          const int32_t* qpos = &p.positions[static_cast<size_t>(t0 + tb)];
          std::array<RowsView, 2> views;
          views_for(kh, t0 + tb, qpos[0], views);
          flash_attend(&q[tb * q_w + kh * G * hd], q_w, static_cast<int>(G), static_cast<int>(nb), qpos, views.data(),
                       2, hd, hdv, c.attn_scale, window, &att[tb * o_w + kh * G * hdv], o_w, scratch);
        }
    }
  }
  float* proj = p.proj.data();
  matmul(w.wo, att, nt, proj, p.columns);
  if (p.tap) p.tap->attention_output(l, t0, nt, proj);
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) {
    float* pt = &proj[t * dim];
    if (!w.post_attn_norm.empty()) rms_norm(pt, w.post_attn_norm.data(), pt, dim, c.rms_eps);
    for (int64_t i = 0; i < dim; ++i) xt[t * dim + i] += pt[i];
  }
}

void Model::ffn_block(Pass& p, int l, int64_t t0, int64_t nt) const {
  const ModelConfig& c = cfg_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int64_t dim = c.dim;
  float* xt = &p.x[t0 * dim];
  float* xn = p.xn.data();
  float* proj = p.proj.data();
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) rms_norm(&xt[t * dim], w.ffn_norm.data(), &xn[t * dim], dim, c.rms_eps);
  matmul_shared_input({{&w.gate, p.g.data()}, {&w.up, p.u.data()}}, xn, nt, p.columns);
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) {
    float* gt = &p.g[t * c.ffn];
    const float* ut = &p.u[t * c.ffn];
    if (c.ffn_act == FfnActivation::GeluTanh) gelu_mul(gt, ut, c.ffn);
    else silu_mul(gt, ut, c.ffn);
  }
  matmul(w.down, p.g.data(), nt, proj, p.columns);
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) {
    float* pt = &proj[t * dim];
    if (!w.post_ffn_norm.empty()) rms_norm(pt, w.post_ffn_norm.data(), pt, dim, c.rms_eps);
    for (int64_t i = 0; i < dim; ++i) xt[t * dim + i] += pt[i];
  }
}

void Model::store_layer(Pass& p, int l, const PressTarget& target, int64_t first, int64_t n) const {
  const ModelConfig& c = cfg_;
  KvCache& cache = *target.cache;
  LayerPress* press = target.press;
  const int64_t hd = c.head_dim, hdv = c.head_dim_v, q_w = c.n_head * hd;
  const int64_t k_w = c.n_head_kv * hd, v_w = c.n_head_kv * hdv;
  const int32_t pos0 = p.positions[static_cast<size_t>(first)];
  // Which fresh rows each head stores: a sliding layer those its window can still reach
  // (positions from next_pos - window + 1 on), a pressed layer the press's choice, else all.
  std::vector<std::vector<int64_t>> keep;
  int64_t from = 0;
  if (c.is_sliding(l)) {
    const int32_t min_pos = pos0 + static_cast<int32_t>(n) - c.sliding_window + 1;
    from = std::max<int64_t>(0, min_pos - pos0);
  } else if (press) {
    LayerSnapshot snap;
    snap.layer = l;
    snap.press_layer = c.press_index(l);
    snap.n_press_layers = static_cast<int>(c.press_layers.size());
    snap.cfg = &cfg_;
    snap.n = n;
    snap.pos = &p.positions[static_cast<size_t>(first)];
    snap.k = &p.fresh_k[first * k_w];
    snap.v = &p.fresh_v[first * v_w];
    snap.window = std::min<int64_t>(press->window(), n);
    // A prompt pass holds the widest window any target asked for, and this press sees its
    // own tail; a batch holds every token's queries.
    snap.q_window = p.batch ? &p.q_all[(first + n - snap.window) * q_w] : p.q_window.data() + (p.window - snap.window) * q_w;
    snap.q_all = p.q_all.empty() ? nullptr : &p.q_all[first * q_w];
    snap.wo = &layers_[static_cast<size_t>(l)].wo;
    snap.cache = &cache;
    snap.memo = p.share_scores ? &p.memo : nullptr;
    keep = press->select(snap);
    if (static_cast<int>(keep.size()) != c.n_head_kv) throw std::logic_error("press returned a wrong number of heads");
  }
  for (int h = 0; h < c.n_head_kv; ++h) {
    const int64_t kept = keep.empty() ? n - from : static_cast<int64_t>(keep[static_cast<size_t>(h)].size());
    cache.reserve_more(l, kept);
    for (int64_t i = 0; i < kept; ++i) {
      const int64_t t = first + (keep.empty() ? from + i : keep[static_cast<size_t>(h)][static_cast<size_t>(i)]);
      cache.append(l, h, &p.fresh_k[t * k_w + h * hd], &p.fresh_v[t * v_w + h * hdv], p.positions[static_cast<size_t>(t)]);
    }
    if (c.is_sliding(l) && cache.head(l, h).size() >= c.sliding_window + kSlidingSlack)
      cache.drop_before(l, h, pos0 + static_cast<int32_t>(n) - c.sliding_window + 1);
  }
}

void Model::output_logits(Pass& p, float* logits, bool all_logits) const {
  const int64_t dim = cfg_.dim, n = p.n;
  const int64_t first = all_logits ? 0 : n - 1;
  for (int64_t t0 = first; t0 < n; t0 += p.tile) {
    const int64_t nt = std::min(p.tile, n - t0);
    for (int64_t t = 0; t < nt; ++t) rms_norm(&p.x[(t0 + t) * dim], output_norm_.data(), &p.xn[t * dim], dim, cfg_.rms_eps);
    matmul(output_, p.xn.data(), nt, logits + (t0 - first) * cfg_.vocab, p.columns);
  }
}

void Model::forward(KvCache& cache, const int32_t* tokens, int64_t n, float* logits, bool all_logits,
                    LayerPress* press, AttentionTap* tap) const {
  if (n <= 0) return;
  const auto p = start_pass({PressTarget{&cache, press}}, tokens, n, false, tap);
  while (step_pass(*p, logits, all_logits)) {
  }
}

void Model::forward_shared(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n, float* logits,
                           bool all_logits) const {
  if (targets.empty()) throw std::invalid_argument("forward_shared needs at least one cache");
  for (const PressTarget& t : targets)
    if (!t.cache || t.cache->next_pos() != 0 || t.cache->bytes_used() != 0)
      throw std::invalid_argument("forward_shared fills empty caches only");
  if (n <= 0) return;
  const auto p = start_pass(targets, tokens, n, false, nullptr);
  while (step_pass(*p, logits, all_logits)) {
  }
}

std::unique_ptr<PromptPass> Model::begin_pass(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n,
                                              float* logits, bool all_logits) const {
  if (targets.empty()) throw std::invalid_argument("a pass needs at least one cache");
  if (n <= 0) throw std::invalid_argument("a pass needs at least one token");
  if (targets.size() > 1)
    for (const PressTarget& t : targets)
      if (!t.cache || t.cache->next_pos() != 0 || t.cache->bytes_used() != 0)
        throw std::invalid_argument("a pass over several caches fills empty caches only");
  auto s = std::make_unique<PromptPass::State>();
  s->model = this;
  s->pass = start_pass(targets, tokens, n, false, nullptr);
  s->logits = logits;
  s->all_logits = all_logits;
  return std::unique_ptr<PromptPass>(new PromptPass(std::move(s)));
}

void Model::decode_batch(const std::vector<DecodeRow>& rows, float* logits) const {
  if (rows.empty()) return;
  std::vector<PressTarget> targets;
  std::vector<int32_t> tokens;
  for (const DecodeRow& r : rows) {
    if (!r.cache) throw std::invalid_argument("a decode row needs a cache");
    for (const PressTarget& t : targets)
      if (t.cache == r.cache) throw std::invalid_argument("a decode batch holds each cache once");
    targets.push_back({r.cache, r.press});
    tokens.push_back(r.token);
  }
  const auto p = start_pass(targets, tokens.data(), static_cast<int64_t>(tokens.size()), true, nullptr);
  while (step_pass(*p, logits, true)) {
  }
}

std::unique_ptr<Model::Pass> Model::start_pass(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n,
                                               bool batch, AttentionTap* tap) const {
  const ModelConfig& c = cfg_;
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      throw std::runtime_error(fmt::format("token id {} is outside the vocabulary (0..{})", tokens[t], c.vocab - 1));
  for (const PressTarget& target : targets) {
    if (!target.cache) throw std::invalid_argument("a pass target needs a cache");
    const KvCache& cache = *target.cache;
    if (cache.n_layer() != c.n_layer || cache.n_head_kv() != c.n_head_kv || cache.head_dim() != c.head_dim ||
        cache.head_dim_v() != c.head_dim_v)
      throw std::invalid_argument("the KV cache was made for a different model shape");
  }
  const int64_t dim = c.dim, hd = c.head_dim, hdv = c.head_dim_v;
  const int64_t q_w = c.n_head * hd, k_w = c.n_head_kv * hd, v_w = c.n_head_kv * hdv, o_w = c.n_head * hdv;

  auto pp = std::make_unique<Pass>();
  Pass& p = *pp;
  p.n = n;
  p.batch = batch;
  p.columns = batch ? Columns::AsAlone : Columns::Fastest;
  p.targets = targets;
  p.tap = tap;
  p.tile = batch ? n : std::min(n, kTile);
  p.pos0 = targets.front().cache->next_pos();
  p.x.resize(static_cast<size_t>(n * dim));
  p.fresh_k.resize(static_cast<size_t>(n * k_w));
  p.fresh_v.resize(static_cast<size_t>(n * v_w));
  p.positions.resize(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t)
    p.positions[static_cast<size_t>(t)] = batch ? targets[static_cast<size_t>(t)].cache->next_pos() : p.pos0 + static_cast<int32_t>(t);
  p.share_scores = !batch && targets.size() > 1;
  bool any_press = false, all_queries = false;
  for (const PressTarget& target : targets)
    if (target.press) {
      any_press = true;
      if (!batch) p.window = std::max(p.window, std::min<int64_t>(target.press->window(), n));
      all_queries = all_queries || target.press->needs_all_queries();
    }
  p.q_window.resize(static_cast<size_t>(p.window * q_w));
  if (all_queries || (batch && any_press)) p.q_all.resize(static_cast<size_t>(n * q_w));
  p.xn.resize(static_cast<size_t>(p.tile * dim));
  p.q.resize(static_cast<size_t>(p.tile * q_w));
  p.att.resize(static_cast<size_t>(p.tile * o_w));
  p.proj.resize(p.xn.size());
  p.g.resize(static_cast<size_t>(p.tile * c.ffn));
  p.u.resize(p.g.size());
  embed(p, tokens);
  return pp;
}

bool Model::step_pass(Pass& p, float* logits, bool all_logits) const {
  if (p.finished) return false;
  if (p.layer < cfg_.n_layer) {
    const int64_t nt = std::min(p.tile, p.n - p.t0);
    attention_block(p, p.layer, p.t0, nt);
    ffn_block(p, p.layer, p.t0, nt);
    p.t0 += nt;
    if (p.t0 == p.n) {  // the layer is done with its full K/V: the presses choose
      p.memo.clear();
      if (p.batch) {
        for (int64_t t = 0; t < p.n; ++t) store_layer(p, p.layer, p.targets[static_cast<size_t>(t)], t, 1);
      } else {
        for (const PressTarget& target : p.targets) store_layer(p, p.layer, target, 0, p.n);
      }
      ++p.layer;
      p.t0 = 0;
    }
    return true;
  }
  for (int64_t t = 0; t < static_cast<int64_t>(p.targets.size()); ++t)
    p.targets[static_cast<size_t>(t)].cache->set_next_pos(p.batch ? p.positions[static_cast<size_t>(t)] + 1
                                                                    : p.pos0 + static_cast<int32_t>(p.n));
  output_logits(p, logits, all_logits);
  p.finished = true;
  return false;
}

}  // namespace kvsqueeze
