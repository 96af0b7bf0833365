// Hyper-parameters of a decoder model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

namespace kvsqueeze {

class GgufFile;

enum class Arch { Llama, Qwen2, Qwen3 };

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
  bool rope_neox = false;  // halves (qwen2/qwen3) instead of adjacent pairs (llama)

  int group() const { return n_head / n_head_kv; }  // query heads per KV head
  // Reads and validates the config; throws naming the missing or bad key.
  static ModelConfig from_gguf(const GgufFile& f);
};

const char* arch_name(Arch a);

}  // namespace kvsqueeze
