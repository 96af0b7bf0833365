#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "gguf/gguf_file.h"

namespace kvsqueeze {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Gemma3: return "gemma3";
  }
  return "?";
}

namespace {
int positive(const GgufFile& f, const std::string& key, int64_t v, int64_t max) {
  if (v <= 0 || v > max) throw std::runtime_error(fmt::format("'{}': metadata '{}' = {} is out of range (1..{})",
                                                              f.path(), key, v, max));
  return static_cast<int>(v);
}
}  // namespace

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.arch_name = f.get_string_or("general.architecture", "");
  if (c.arch_name.empty()) throw std::runtime_error(fmt::format("'{}': missing metadata 'general.architecture'", f.path()));
  if (c.arch_name == "llama") c.arch = Arch::Llama;
  else if (c.arch_name == "qwen2") c.arch = Arch::Qwen2;
  else if (c.arch_name == "qwen3") c.arch = Arch::Qwen3;
  else if (c.arch_name == "gemma3") c.arch = Arch::Gemma3;
  else
    throw std::runtime_error(fmt::format("'{}': unsupported architecture '{}' (supported: llama, qwen2, qwen3, gemma3)",
                                         f.path(), c.arch_name));
  const std::string p = c.arch_name + ".";
  auto req = [&](const std::string& k, int64_t max) { return positive(f, p + k, f.get_int(p + k), max); };
  auto opt = [&](const std::string& k, int64_t def, int64_t max) {
    return positive(f, p + k, f.get_int_or(p + k, def), max);
  };
  c.n_layer = req("block_count", 4096);
  c.dim = req("embedding_length", 1 << 20);
  c.ffn = req("feed_forward_length", 1 << 22);
  c.n_head = req("attention.head_count", 1 << 14);
  c.n_head_kv = opt("attention.head_count_kv", c.n_head, c.n_head);
  if (c.n_head % c.n_head_kv != 0)
    throw std::runtime_error(fmt::format("'{}': {} query heads are not a multiple of {} KV heads", f.path(), c.n_head,
                                         c.n_head_kv));
  if (c.dim % c.n_head != 0 && !f.has(p + "attention.key_length"))
    throw std::runtime_error(fmt::format("'{}': embedding_length {} is not divisible by {} heads", f.path(), c.dim,
                                         c.n_head));
  c.head_dim = opt("attention.key_length", c.dim / c.n_head, 1 << 14);
  c.head_dim_v = opt("attention.value_length", c.head_dim, 1 << 14);
  c.n_rot = opt("rope.dimension_count", c.head_dim, c.head_dim);
  if (c.n_rot % 2 != 0) throw std::runtime_error(fmt::format("'{}': rope.dimension_count {} is odd", f.path(), c.n_rot));
  c.context = opt("context_length", 4096, int64_t{1} << 30);
  c.rope_base = static_cast<float>(f.get_float_or(p + "rope.freq_base", 10000.0));
  c.rms_eps = static_cast<float>(f.get_float_or(p + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.rope_base > 0) || !(c.rms_eps > 0))
    throw std::runtime_error(fmt::format("'{}': rope.freq_base and layer_norm_rms_epsilon must be positive", f.path()));
  c.rope_neox = c.arch != Arch::Llama;
  if (f.get_string_or(p + "rope.scaling.type", "none") == "linear") {
    const double factor = f.get_float_or(p + "rope.scaling.factor", 1.0);
    if (!(factor > 0)) throw std::runtime_error(fmt::format("'{}': rope.scaling.factor must be positive", f.path()));
    c.rope_pos_scale = static_cast<float>(1.0 / factor);
  }
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  c.qkv_bias = c.arch == Arch::Qwen2;
  c.qk_norm = c.arch == Arch::Qwen3 || c.arch == Arch::Gemma3;
  c.layer_sliding.assign(static_cast<size_t>(c.n_layer), 0);
  if (c.arch == Arch::Gemma3) {
    // As llama.cpp reads these files: the stored norm weights already include Gemma's +1,
    // so the norms are plain RMSNorms; sliding layers use RoPE base 10000 and every sixth
    // layer (5, 11, 17, ...) is global.
    c.embed_scaled = true;
    c.post_norms = true;
    c.ffn_act = FfnActivation::GeluTanh;
    c.sliding_window = opt("attention.sliding_window", 512, int64_t{1} << 30);
    c.rope_base_sliding = static_cast<float>(f.get_float_or(p + "rope.freq_base_swa", 10000.0));
    constexpr int kPattern = 6;
    for (int l = 0; l < c.n_layer; ++l) c.layer_sliding[static_cast<size_t>(l)] = (l + 1) % kPattern != 0;
  }
  for (int l = 0; l < c.n_layer; ++l)
    if (!c.is_sliding(l)) c.press_layers.push_back(l);
  return c;
}

int ModelConfig::press_index(int layer) const {
  const auto it = std::lower_bound(press_layers.begin(), press_layers.end(), layer);
  return it != press_layers.end() && *it == layer ? static_cast<int>(it - press_layers.begin()) : -1;
}

int64_t ModelConfig::full_cache_rows(int64_t n_tokens) const {
  int64_t rows = 0;
  for (int l = 0; l < n_layer; ++l) rows += is_sliding(l) ? std::min<int64_t>(n_tokens, sliding_window) : n_tokens;
  return rows;
}

}  // namespace kvsqueeze
