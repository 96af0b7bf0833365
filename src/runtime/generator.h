// The generation loop: one layer-major pass over the prompt (optionally compressed by a
// press), then one token at a time against the cache.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "cache/kv_cache.h"
#include "runtime/sampler.h"

namespace kvsqueeze {

class LayerPress;
class Model;
class Tokenizer;

struct GenerationStats {
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0;
  int64_t generated_tokens = 0;
  int64_t decode_passes = 0;     // one-token forward passes (the last sampled token needs none)
  double decode_seconds = 0;
  size_t kv_bytes_uncompressed = 0;  // what the cache would hold with every prompt row
  size_t kv_bytes = 0;               // bytes held by the KV rows at the end
  size_t kv_bytes_reserved = 0;      // including growth slack
  double prompt_tps() const { return prompt_seconds > 0 ? static_cast<double>(prompt_tokens) / prompt_seconds : 0; }
  double decode_tps() const { return decode_seconds > 0 ? static_cast<double>(decode_passes) / decode_seconds : 0; }
};

struct GenerationOptions {
  int n_predict = 64;
  bool stop_at_eog = true;
  SamplerOptions sampling;
};

class Generator {
 public:
  Generator(const Model& model, const Tokenizer* tokenizer, DType kv_type = DType::F16);
  // Continues from an existing cache (e.g. one loaded from disk).
  Generator(const Model& model, const Tokenizer* tokenizer, KvCache cache);

  // Reads tokens into the cache (after whatever it holds) and returns the logits after
  // the last one. With a press, each layer keeps only what the press selects.
  std::vector<float> prefill(const std::vector<int32_t>& tokens, LayerPress* press = nullptr);
  // Samples up to n tokens starting from `logits`; on_token sees each id as produced.
  // step_press (e.g. a DecodePress) runs on every one-token step.
  std::vector<int32_t> decode(std::vector<float> logits, const GenerationOptions& opt,
                              const std::function<void(int32_t)>& on_token = {}, LayerPress* step_press = nullptr);
  // prefill + decode.
  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, const GenerationOptions& opt,
                                const std::function<void(int32_t)>& on_token = {}, LayerPress* press = nullptr);

  const GenerationStats& stats() const { return stats_; }
  KvCache& cache() { return cache_; }

 private:
  friend class DecodeStream;
  const Model& model_;
  const Tokenizer* tok_;
  KvCache cache_;
  GenerationStats stats_;
};

// What `cache` would hold if no row had been evicted: every position up to next_pos() in
// every head (sliding-window layers never hold more than their window).
size_t uncompressed_kv_bytes(const Model& model, const KvCache& cache);

// decode() one token at a time, for callers that hand each token on as it comes (the
// Python package's streams) and may stop early. A token is fed to the model only when
// the next one is asked for, so stopping costs no wasted pass. The generator must
// outlive the stream.
class DecodeStream {
 public:
  DecodeStream(Generator& gen, std::vector<float> logits, const GenerationOptions& opt, LayerPress* step_press = nullptr);
  // The next token, or nothing once n_predict tokens or an end-of-generation token (when
  // stop_at_eog) have been produced.
  std::optional<int32_t> next();
  bool done() const { return done_; }

 private:
  Generator& gen_;
  std::vector<float> logits_;
  GenerationOptions opt_;
  LayerPress* step_press_;
  Sampler sampler_;
  int produced_ = 0;
  std::optional<int32_t> unfed_;  // the last token handed out, not yet run through the model
  bool done_ = false;
};

}  // namespace kvsqueeze
