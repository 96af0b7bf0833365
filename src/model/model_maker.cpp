#include "model/model_maker.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"

namespace kvsqueeze {
namespace {

// splitmix64: tiny, fast, identical on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(static_cast<double>(next() >> 11) * 0x1.0p-53) * 2.0f - 1.0f; }

 private:
  uint64_t s_;
};

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// llama.cpp's fallbacks for rows that a 256-wide K format cannot hold, so made models
// carry the same type mix as downloaded Q4_K_M / Q5_K_M files of the same shape.
DType type_for(DType wanted, int64_t cols) {
  if (cols % traits(wanted).block_elems == 0) return wanted;
  if (cols % 32 != 0) return DType::F16;
  switch (wanted) {
    case DType::Q4_K: return DType::Q5_0;
    case DType::Q5_K: return DType::Q5_1;
    default: return DType::Q8_0;
  }
}

// Each tensor draws from its own stream (seed, name), so shapes elsewhere do not
// change its values.
std::vector<float> random_values(uint64_t seed, const std::string& name, int64_t n, float amp, float offset = 0) {
  Rng rng(seed ^ name_hash(name));
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = offset + amp * rng.uniform();
  return v;
}

void add_tokenizer(const ModelSpec& s, GgufWriter& w, int& vocab) {
  if (!s.vocab_from.empty()) {
    GgufFile src(s.vocab_from);
    for (const auto& [k, v] : src.metadata())
      if (k.rfind("tokenizer.", 0) == 0) w.set(k, v);
    const GgufArray* toks = src.get_array("tokenizer.ggml.tokens");
    if (!toks) throw std::runtime_error(fmt::format("'{}' has no tokenizer.ggml.tokens", s.vocab_from));
    vocab = static_cast<int>(toks->items.size());
    return;
  }
  // A SentencePiece-style vocabulary: specials, the 256 byte tokens, then letters and
  // letter pairs so ordinary text does not fall back to bytes everywhere.
  if (s.vocab < 259) throw std::runtime_error(fmt::format("--vocab {} is too small (at least 259: 3 specials + 256 bytes)", s.vocab));
  std::vector<std::string> texts{"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types{2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    texts.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);
  }
  const std::string sp = "\xE2\x96\x81";
  std::vector<std::string> extra;
  for (char c = 'a'; c <= 'z'; ++c) extra.push_back(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) extra.push_back(sp + c);
  for (char a = 'a'; a <= 'z'; ++a)
    for (char b = 'a'; b <= 'z'; ++b) extra.push_back(std::string(1, a) + b);
  for (size_t i = 0; static_cast<int>(texts.size()) < s.vocab; ++i) {
    // Filler pieces are normal tokens so a random model's output is visible text.
    texts.push_back(i < extra.size() ? extra[i] : fmt::format("<extra_{}>", i));
    types.push_back(1);
  }
  std::vector<float> scores(texts.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
  w.set_spm_tokenizer(texts, scores, types);
  vocab = s.vocab;
}

}  // namespace

std::optional<ModelSpec> named_shape(const std::string& name) {
  ModelSpec s;
  if (name == "smollm2-135m") {
    s.arch = Arch::Llama; s.n_layer = 30; s.dim = 576; s.n_head = 9; s.n_head_kv = 3; s.ffn = 1536;
    s.vocab = 49152; s.context = 8192; s.rope_base = 100000.0f;
  } else if (name == "qwen2.5-0.5b") {
    s.arch = Arch::Qwen2; s.n_layer = 24; s.dim = 896; s.n_head = 14; s.n_head_kv = 2; s.ffn = 4864;
    s.vocab = 151936; s.context = 32768; s.rope_base = 1000000.0f; s.rms_eps = 1e-6f;
  } else if (name == "llama3.2-1b") {
    s.arch = Arch::Llama; s.n_layer = 16; s.dim = 2048; s.n_head = 32; s.n_head_kv = 8; s.ffn = 8192;
    s.vocab = 128256; s.context = 131072; s.rope_base = 500000.0f;
  } else if (name == "gemma3-270m") {
    s.arch = Arch::Gemma3; s.n_layer = 18; s.dim = 640; s.n_head = 4; s.n_head_kv = 1; s.ffn = 2048; s.head_dim = 256;
    s.vocab = 262144; s.context = 32768; s.rope_base = 1000000.0f; s.rms_eps = 1e-6f; s.sliding_window = 512;
  } else {
    return std::nullopt;
  }
  return s;
}

void build_random_model(const ModelSpec& s, GgufWriter& w) {
  if (s.n_layer <= 0 || s.dim <= 0 || s.n_head <= 0 || s.n_head_kv <= 0 || s.ffn <= 0)
    throw std::runtime_error("layers, dim, heads, kv-heads and ffn must be positive");
  if (s.n_head % s.n_head_kv != 0)
    throw std::runtime_error(fmt::format("--heads {} is not a multiple of --kv-heads {}", s.n_head, s.n_head_kv));
  const int hd = s.head_dim > 0 ? s.head_dim : s.dim / s.n_head;
  if (s.head_dim <= 0 && s.dim % s.n_head != 0)
    throw std::runtime_error(fmt::format("--dim {} is not divisible by --heads {} (give --head-dim)", s.dim, s.n_head));
  if (hd % 2 != 0) throw std::runtime_error(fmt::format("head dim {} must be even for RoPE", hd));

  const std::string a = arch_name(s.arch);
  int vocab = 0;
  w.set("general.architecture", GgufValue::str(a));
  w.set("general.name", GgufValue::str(fmt::format("kvsqueeze random {}", a)));
  w.set("general.alignment", GgufValue::u32(static_cast<uint32_t>(GgufWriter::kAlignment)));
  w.set(a + ".context_length", GgufValue::u32(static_cast<uint32_t>(s.context)));
  w.set(a + ".embedding_length", GgufValue::u32(static_cast<uint32_t>(s.dim)));
  w.set(a + ".block_count", GgufValue::u32(static_cast<uint32_t>(s.n_layer)));
  w.set(a + ".feed_forward_length", GgufValue::u32(static_cast<uint32_t>(s.ffn)));
  w.set(a + ".attention.head_count", GgufValue::u32(static_cast<uint32_t>(s.n_head)));
  w.set(a + ".attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(s.n_head_kv)));
  w.set(a + ".rope.freq_base", GgufValue::f32(s.rope_base));
  w.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(s.rms_eps));
  if (s.arch == Arch::Gemma3) {
    if (s.sliding_window <= 0) throw std::runtime_error("--sliding-window must be positive");
    w.set(a + ".attention.sliding_window", GgufValue::u32(static_cast<uint32_t>(s.sliding_window)));
  }
  if (hd != s.dim / s.n_head || s.arch == Arch::Qwen3 || s.arch == Arch::Gemma3) {
    w.set(a + ".attention.key_length", GgufValue::u32(static_cast<uint32_t>(hd)));
    w.set(a + ".attention.value_length", GgufValue::u32(static_cast<uint32_t>(hd)));
  }
  w.set(a + ".rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(hd)));
  add_tokenizer(s, w, vocab);

  // Uniform(-a, a) with a = sqrt(3 / fan_in) keeps activations at unit scale.
  auto matrix = [&](const std::string& name, int64_t cols, int64_t rows) {
    const float amp = std::sqrt(3.0f / static_cast<float>(cols));
    w.add_tensor_f32(name, {cols, rows}, type_for(s.type, cols), random_values(s.seed, name, cols * rows, amp));
  };
  auto norm = [&](const std::string& name, int64_t n) {
    w.add_tensor_f32(name, {n}, DType::F32, random_values(s.seed, name, n, 0.1f, 1.0f));
  };
  auto bias = [&](const std::string& name, int64_t n) {
    w.add_tensor_f32(name, {n}, DType::F32, random_values(s.seed, name, n, 0.1f));
  };
  // Embeddings at unit scale per element, like the real models' RMS-normalised inputs.
  w.add_tensor_f32("token_embd.weight", {s.dim, vocab}, type_for(s.type, s.dim),
                   random_values(s.seed, "token_embd.weight", int64_t{s.dim} * vocab, 1.0f));
  norm("output_norm.weight", s.dim);
  if (!s.tied_output) matrix("output.weight", s.dim, vocab);
  const int64_t q_w = int64_t{s.n_head} * hd, kv_w = int64_t{s.n_head_kv} * hd;
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    norm(p + "attn_norm.weight", s.dim);
    matrix(p + "attn_q.weight", s.dim, q_w);
    matrix(p + "attn_k.weight", s.dim, kv_w);
    matrix(p + "attn_v.weight", s.dim, kv_w);
    matrix(p + "attn_output.weight", q_w, s.dim);
    if (s.arch == Arch::Qwen2) {
      bias(p + "attn_q.bias", q_w);
      bias(p + "attn_k.bias", kv_w);
      bias(p + "attn_v.bias", kv_w);
    }
    if (s.arch == Arch::Qwen3 || s.arch == Arch::Gemma3) {
      norm(p + "attn_q_norm.weight", hd);
      norm(p + "attn_k_norm.weight", hd);
    }
    if (s.arch == Arch::Gemma3) {
      norm(p + "post_attention_norm.weight", s.dim);
      norm(p + "post_ffw_norm.weight", s.dim);
    }
    norm(p + "ffn_norm.weight", s.dim);
    matrix(p + "ffn_gate.weight", s.dim, s.ffn);
    matrix(p + "ffn_up.weight", s.dim, s.ffn);
    matrix(p + "ffn_down.weight", s.ffn, s.dim);
  }
}

void make_random_model(const ModelSpec& spec, const std::string& out_path) {
  GgufWriter w;
  build_random_model(spec, w);
  w.write(out_path);
}

}  // namespace kvsqueeze
