// Hyper-parameters of a decoder model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvsqueeze {

class GgufFile;

enum class Arch { Llama, Qwen2, Qwen3, Gemma3 };

// The FFN's gated activation: SwiGLU (llama, qwen) or GeGLU with tanh GELU (gemma3).
enum class FfnActivation { SiLU, GeluTanh };

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;
  int n_layer = 0;
  int dim = 0;
  int ffn = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;    // query/key head size (qwen3 may differ from dim / n_head)
  int head_dim_v = 0;  // value head size
  int n_rot = 0;       // rotated dimensions per head
  int vocab = 0;
  int context = 0;     // trained context length
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool rope_neox = false;  // halves (qwen2/qwen3/gemma3) instead of adjacent pairs (llama)
  float rope_pos_scale = 1.0f;  // linear RoPE scaling: positions times this (1 / factor)

  // The blocks of the forward pass each architecture switches on (Model::forward).
  bool embed_scaled = false;  // token embeddings times sqrt(dim) (gemma3)
  bool post_norms = false;    // RMSNorm on the attention and FFN outputs before each residual add (gemma3)
  bool qk_norm = false;       // per-head RMSNorm on Q and K before RoPE (qwen3, gemma3)
  bool qkv_bias = false;      // Q/K/V biases are required (qwen2; optional elsewhere)
  FfnActivation ffn_act = FfnActivation::SiLU;
  float attn_scale = 0;       // query scale inside the softmax: 1/sqrt(head_dim)

  // Sliding-window layers (gemma3): a query sees only the last `sliding_window` positions
  // (itself included), with their own RoPE base; the cache keeps only those rows. The
  // presses compress the other (global) layers only.
  int sliding_window = 0;               // 0: no sliding layers
  float rope_base_sliding = 10000.0f;
  std::vector<char> layer_sliding;      // [n_layer]
  std::vector<int> press_layers;        // the layers a press compresses, ascending

  int group() const { return n_head / n_head_kv; }  // query heads per KV head
  bool is_sliding(int layer) const { return !layer_sliding.empty() && layer_sliding[static_cast<size_t>(layer)]; }
  // Index of a layer among press_layers, or -1 for a sliding layer.
  int press_index(int layer) const;
  // Rows one KV head holds over all layers with a full (uncompressed) cache of n tokens.
  int64_t full_cache_rows(int64_t n_tokens) const;
  // Reads and validates the config; throws naming the missing or bad key.
  static ModelConfig from_gguf(const GgufFile& f);
};

const char* arch_name(Arch a);

}  // namespace kvsqueeze
