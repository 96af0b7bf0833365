// Random-weight GGUF models of any shape and weight type, for tests and benchmarks.
// Same tensor names and metadata keys as real llama / qwen2 / qwen3 / gemma3 files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "model/config.h"
#include "tensor/dtype.h"

namespace kvsqueeze {

class GgufWriter;

struct ModelSpec {
  Arch arch = Arch::Llama;
  int n_layer = 2;
  int dim = 64;
  int n_head = 4;
  int n_head_kv = 2;
  int ffn = 128;
  int head_dim = 0;      // 0: dim / n_head
  int vocab = 512;       // used when vocab_from is empty
  std::string vocab_from;  // copy the tokenizer of this GGUF file
  int context = 4096;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  int sliding_window = 512;  // gemma3 only: five of every six layers slide over this many positions
  bool tied_output = true;
  DType type = DType::F32;
  uint64_t seed = 1;
};

// Dimensions of published models: "smollm2-135m", "qwen2.5-0.5b", "llama3.2-1b", "gemma3-270m".
std::optional<ModelSpec> named_shape(const std::string& name);

// Fills a writer with metadata, tokenizer and random tensors. Matrices whose row length
// is not a multiple of the type's block size fall back as llama.cpp's quantizer does
// (Q4_K -> Q5_0, Q5_K -> Q5_1, others -> Q8_0; F16 when not even 32 divides it);
// norms stay F32.
void build_random_model(const ModelSpec& spec, GgufWriter& w);
void make_random_model(const ModelSpec& spec, const std::string& out_path);

}  // namespace kvsqueeze
