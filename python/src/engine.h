// What the Python module holds on the C++ side: an opened model (Engine), one generation
// in progress (Generation) and a compressed context that answers questions (Context).
// The Python package (python/kvsqueeze) wraps these in its public classes.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "press/press_options.h"
#include "runtime/chat_template.h"
#include "runtime/generator.h"
#include "runtime/loaded_model.h"
#include "server/stream_text.h"

namespace kvsqueeze::python {

struct Sampling {
  int max_tokens = 64;
  float temperature = 0.8f;  // 0: greedy
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::vector<std::string> stop;
};

class Generation;
class Context;

class Engine {
 public:
  Engine(const std::string& path_or_name, int threads, const std::string& kv_type);

  const Model& model() const { return *m_.model; }
  const Tokenizer& tokenizer() const { return *m_.tokenizer; }
  const std::string& path() const { return path_; }
  DType kv_type() const { return kv_type_; }
  int threads() const { return threads_; }
  void set_threads(int n);
  // Storage of a new cache: the press's own kv_type when it names one, else the model's.
  DType cache_type(const PressOptions* press) const;
  // Makes this call's OpenMP regions use the engine's thread count (0: all cores).
  void use_threads() const;

  std::vector<int32_t> tokenize(const std::string& text, bool add_bos, bool parse_special) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool special) const;
  // The GGUF carries a chat template (what "auto" chat modes look at).
  bool has_chat_template() const { return has_template_; }
  // The template's family; throws the reason when this model has none kvsqueeze renders.
  const ChatTemplate& chat_template() const;
  std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Token ids of the rendered chat: markup special, message contents plain text.
  std::vector<int32_t> chat_ids(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // Logits after every id ([n][vocab]); with compress_at the first compress_at ids are
  // one prompt pressed by `press`, the rest are fed one by one against its cache.
  std::vector<float> logits(const std::vector<int32_t>& ids, int64_t compress_at, const PressOptions* press) const;
  // Reads a prompt (through the press) and returns the generation that continues it.
  std::unique_ptr<Generation> start(const std::vector<int32_t>& prompt, const PressOptions* press,
                                    const Sampling& sampling) const;
  // Reads a context alone through the press (question-agnostic) and keeps its cache.
  std::unique_ptr<Context> compress(const std::vector<int32_t>& ids, const PressOptions* press) const;
  std::unique_ptr<Context> load_context(const std::string& path) const;

 private:
  std::string path_;
  LoadedModel m_;
  int threads_ = 0;
  DType kv_type_ = DType::F16;
  bool has_template_ = false;
  std::optional<ChatTemplate> chat_;
  std::string chat_error_;
};

// One generation: the prompt has been read; each next_piece() decodes until it has text
// to hand on (UTF-8 complete, not a possible start of a stop string) or the end.
class Generation {
 public:
  Generation(const Engine& e, Generator gen, std::vector<float> logits, const Sampling& s,
             std::unique_ptr<CompressionPress> press, std::unique_ptr<DecodePress> step_press);
  // The next piece of text; nothing once the generation has ended.
  std::optional<std::string> next_piece();
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // "" while running, then "stop" (end-of-generation token or stop string) or "length".
  const std::string& finish_reason() const { return finish_; }
  struct Report {
    GenerationStats stats;
    size_t kv_bytes_after_prompt = 0;
    double press_seconds = 0;
    std::vector<std::vector<int64_t>> head_budgets;  // what the press gave each (layer, head)
  };
  Report report() const;

 private:
  const Engine& e_;
  std::unique_ptr<CompressionPress> press_;
  std::unique_ptr<DecodePress> step_press_;
  Generator gen_;
  size_t kv_bytes_after_prompt_;
  DecodeStream stream_;
  StreamText text_;
  std::vector<int32_t> tokens_;
  std::string finish_;
  bool flushed_ = false;
  mutable std::mutex mu_;  // one Python thread at a time
};

// A compressed context kept in memory: each question runs against a copy of its cache.
class Context {
 public:
  Context(const Engine& e, KvCache cache, std::vector<float> logits, size_t bytes_uncompressed, double press_seconds,
          std::vector<std::vector<int64_t>> head_budgets);
  // A generation reading `question` after the context (it may be empty when the context
  // was compressed in this process: decoding then starts right after the context).
  std::unique_ptr<Generation> ask(const std::vector<int32_t>& question, const Sampling& s) const;
  const KvCache& cache() const { return cache_; }
  size_t bytes_uncompressed() const { return bytes_uncompressed_; }
  double press_seconds() const { return press_seconds_; }
  const std::vector<std::vector<int64_t>>& head_budgets() const { return head_budgets_; }
  void save(const std::string& path) const;

 private:
  const Engine& e_;
  KvCache cache_;
  std::vector<float> logits_;
  size_t bytes_uncompressed_;
  double press_seconds_;
  std::vector<std::vector<int64_t>> head_budgets_;
};

}  // namespace kvsqueeze::python
