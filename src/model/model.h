// A decoder model bound to the weights of a GGUF file, and its forward pass.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/cache_file.h"
#include "model/config.h"
#include "tensor/dtype.h"
#include "tensor/tensor_view.h"

namespace kvsqueeze {

class GgufFile;
class KvCache;
class LayerPress;

// Sees each layer's attention output (after the output projection, before the residual
// add) for a run of tokens: what the eviction bound of METHODS.md section 1 is about.
class AttentionTap {
 public:
  virtual ~AttentionTap() = default;
  // out: [n][dim] for the pass's tokens first .. first+n-1.
  virtual void attention_output(int layer, int64_t first, int64_t n, const float* out) = 0;
};

// A cache and the press that fills it (null: the cache keeps every row).
struct PressTarget {
  KvCache* cache = nullptr;
  LayerPress* press = nullptr;
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  std::vector<float> post_attn_norm, post_ffn_norm;  // gemma3 only
  std::vector<float> q_norm, k_norm;   // qwen3, gemma3 (per-head RMSNorm weights)
  std::vector<float> bq, bk, bv;       // qwen2 (optional elsewhere)
  MatrixView wq, wk, wv, wo, gate, up, down;
};

class Model {
 public:
  // Opens the file and binds every tensor; throws naming the missing or misshapen tensor.
  static std::unique_ptr<Model> load(const std::string& path);
  explicit Model(std::shared_ptr<const GgufFile> file);

  const ModelConfig& config() const { return cfg_; }
  const GgufFile& file() const { return *file_; }
  std::shared_ptr<const GgufFile> file_ptr() const { return file_; }
  // An empty cache for this model; f16 storage unless told otherwise (f32, q8_0).
  KvCache make_cache(DType kv_type = DType::F16) const;

  // Runs n tokens at positions cache.next_pos() .. +n-1, layer by layer: the whole pass
  // goes through layer l (in token tiles) before layer l+1, attending to the cached rows
  // and its own causal rows. After each layer the press (if any) picks the rows each KV
  // head keeps; only those are stored, so peak KV memory is the compressed cache plus
  // one layer's full K/V. Sliding-window layers are not pressed: they keep the rows
  // their window can still reach. Writes logits for every token ([n][vocab]) when all_logits,
  // else for the last one ([vocab]). Throws if a token id is outside the vocabulary.
  // A tap (if any) sees every layer's attention output.
  void forward(KvCache& cache, const int32_t* tokens, int64_t n, float* logits, bool all_logits,
               LayerPress* press = nullptr, AttentionTap* tap = nullptr) const;

  // One pass over a prompt feeding several empty caches, each through its own press. A
  // press acts only after a layer's attention over the whole prompt, so the hidden states
  // never depend on what any press keeps: each cache ends exactly as if forward() had
  // filled it alone, for the price of one prefill. The logits are those of that pass.
  // Throws unless every cache is empty and made for this model.
  void forward_shared(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n, float* logits,
                      bool all_logits) const;

  // Identifies the model a cache was made with: its shape, every tensor's name, type and
  // shape, and the bytes of the small tensors (norms, biases), which differ between
  // models of one shape.
  uint64_t fingerprint() const;
  // The fingerprint and cache shape a saved cache must match (load_cache).
  CacheIdentity cache_identity() const;

  // Bytes of weight data the model maps.
  int64_t weight_bytes() const;

 private:
  struct Pass;  // one forward call's buffers (model.cpp)
  // The blocks of the forward pass, in order; the config says which parts each runs.
  void embed(Pass& p, const int32_t* tokens) const;
  void attention_block(Pass& p, int layer, int64_t t0, int64_t nt, const KvCache& cache, AttentionTap* tap) const;
  void ffn_block(Pass& p, int layer, int64_t t0, int64_t nt) const;
  void run_pass(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n, float* logits,
                bool all_logits, AttentionTap* tap) const;
  void store_layer(Pass& p, int layer, const PressTarget& target) const;  // the press hook
  void output_logits(Pass& p, float* logits, bool all_logits) const;

  std::vector<float> small_vector(const std::string& name, int64_t expect, bool required) const;
  MatrixView matrix(const std::string& name, int64_t cols, int64_t rows, bool required) const;

  std::shared_ptr<const GgufFile> file_;
  ModelConfig cfg_;
  MatrixView tok_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<float> rope_freqs_;  // Llama 3.1 frequency factors, empty when absent
  std::vector<LayerWeights> layers_;
};

}  // namespace kvsqueeze
