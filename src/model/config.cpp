#include "model/config.h"

#include <stdexcept>

#include <fmt/format.h>

#include "gguf/gguf_file.h"

namespace kvsqueeze {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
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
  else
    throw std::runtime_error(fmt::format("'{}': unsupported architecture '{}' (supported: llama, qwen2, qwen3)",
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
  return c;
}

}  // namespace kvsqueeze
