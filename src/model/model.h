// A decoder model bound to the weights of a GGUF file, and its forward pass.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/cache_file.h"
#include "model/config.h"
#include "tensor/dtype.h"
#include "tensor/huge_page_buffer.h"
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

// One session's next token in a batched decode step: the cache it extends and the step
// press (e.g. a DecodePress) that runs on it, if any.
struct DecodeRow {
  KvCache* cache = nullptr;
  int32_t token = 0;
  LayerPress* press = nullptr;
};

class Model;

// A layer-major pass over a prompt, run a piece at a time so that a server can put other
// work (decode steps of running sessions) between the pieces. Made by Model::begin_pass;
// the model, the targets and the logits buffer must outlive it, and nothing else may
// touch the targets' caches until it is done.
class PromptPass {
 public:
  ~PromptPass();
  PromptPass(const PromptPass&) = delete;
  PromptPass& operator=(const PromptPass&) = delete;
  // Runs the next piece: one token tile of one layer (and, after a layer's last tile, the
  // presses choosing what the caches keep), or at the end the logits. Returns true while
  // pieces remain.
  bool step();
  bool done() const;

 private:
  friend class Model;
  struct State;
  explicit PromptPass(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
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

  // forward(), or forward_shared() when there are several targets, as a pass run piece by
  // piece (PromptPass::step; a piece is a 256-token tile of one layer). The tokens are
  // read at once; logits are written by the last step.
  std::unique_ptr<PromptPass> begin_pass(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n,
                                         float* logits, bool all_logits) const;

  // One token for each of several caches (sessions) in one pass: every weight matrix is
  // streamed once for the whole batch, each token attends to its own cache. Row b's
  // logits ([vocab]) go to logits + b * vocab and equal, bit for bit, those of forward()
  // on that token alone. Throws unless the caches are distinct and made for this model.
  void decode_batch(const std::vector<DecodeRow>& rows, float* logits) const;

  // Identifies the model a cache was made with: its shape, every tensor's name, type and
  // shape, and the bytes of the small tensors (norms, biases), which differ between
  // models of one shape.
  uint64_t fingerprint() const;
  // The fingerprint and cache shape a saved cache must match (load_cache).
  CacheIdentity cache_identity() const;

  // Bytes of weight data the model maps.
  int64_t weight_bytes() const;
  // Bytes of it copied into resident huge-page memory (the streamed matrices), 0 when
  // KVSQUEEZE_MMAP=1 keeps them mapped.
  int64_t resident_weight_bytes() const { return static_cast<int64_t>(weights_.size()); }

 private:
  friend class PromptPass;
  struct Pass;  // one forward call's buffers (model.cpp)
  // The blocks of the forward pass, in order; the config says which parts each runs.
  void embed(Pass& p, const int32_t* tokens) const;
  void attention_block(Pass& p, int layer, int64_t t0, int64_t nt) const;
  void ffn_block(Pass& p, int layer, int64_t t0, int64_t nt) const;
  std::unique_ptr<Pass> start_pass(const std::vector<PressTarget>& targets, const int32_t* tokens, int64_t n,
                                   bool batch, AttentionTap* tap) const;
  bool step_pass(Pass& p, float* logits, bool all_logits) const;  // false once finished
  void store_layer(Pass& p, int layer, const PressTarget& target, int64_t first, int64_t n) const;  // the press hook
  void output_logits(Pass& p, float* logits, bool all_logits) const;

  std::vector<float> small_vector(const std::string& name, int64_t expect, bool required) const;
  MatrixView matrix(const std::string& name, int64_t cols, int64_t rows, bool required) const;
  // Copies the matrices every step streams (the layers' and the output matrix) from the
  // file into weights_ and points the views there. The token embedding stays mapped
  // unless it is the output matrix too: a lookup reads one row of it per token.
  void make_weights_resident();

  std::shared_ptr<const GgufFile> file_;
  ModelConfig cfg_;
  MatrixView tok_embd_, output_;
  std::vector<float> output_norm_;
  // RoPE frequencies of the global and the sliding layers' base ([n_rot / 2]; Llama 3.1's
  // frequency factors, when the file has them, already divided in).
  std::vector<double> rope_freqs_, rope_freqs_sliding_;
  std::vector<LayerWeights> layers_;
  HugePageBuffer weights_;  // the streamed matrices, unless KVSQUEEZE_MMAP=1 keeps them mapped
};

}  // namespace kvsqueeze
