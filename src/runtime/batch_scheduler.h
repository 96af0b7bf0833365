// Continuous batching: many generations share one compute thread. Each step decodes the
// next token of every running session in one pass over the weights
// (Model::decode_batch), each session over its own compressed cache; new prompts are
// read layer by layer in pieces (a token tile of one layer), as many between two decode
// steps as fit in the time the last step took, so a long prompt arriving slows the
// running streams instead of freezing them.
// Sessions join and leave between steps. Admission: at most `width` sessions run; a
// session is admitted in arrival order once the memory it needs fits beside the others'
// (the whole budget when nothing runs); until then it waits in the queue.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cache/kv_cache.h"
#include "model/model.h"
#include "press/compression_press.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"

namespace kvsqueeze {

class Tokenizer;
class BatchScheduler;

// What one session runs: a prompt read into a cache (a copy of `base`, or an empty one),
// then up to gen.n_predict sampled tokens.
struct BatchJob {
  std::shared_ptr<const KvCache> base;  // a saved context to continue (copied), or null
  DType kv_type = DType::F16;           // the new cache's storage when there is no base
  std::vector<int32_t> first;           // read first, through `press`
  std::vector<int32_t> second;          // then read uncompressed (a question after a context)
  std::unique_ptr<CompressionPress> press;
  std::unique_ptr<LayerPress> step_press;  // runs on every decode step (e.g. a DecodePress)
  GenerationOptions gen;                // n_predict 0: read the prompt only, the cache is the result
  size_t prefill_bytes = 0;             // memory held from admission until the prompt is read
};

// The queue is full: the caller answers "busy".
struct SchedulerFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A submitted job as its caller sees it. Tokens come in order through next(); the
// scheduler keeps going without waiting for them to be taken.
class BatchSession {
 public:
  // The next token, waiting for it; nothing once the session has ended. Rethrows what
  // made the session fail.
  std::optional<int32_t> next();
  // The caller is gone or has what it wants: the session leaves at the next step.
  void cancel();

  // Once next() has returned nothing:
  const GenerationStats& stats() const { return stats_; }
  bool has_cache() const { return cache_.has_value(); }  // false when it ended before starting
  KvCache& cache() { return *cache_; }
  const CompressionPress* press() const { return job_.press.get(); }
  size_t kv_after_prompt() const { return kv_after_prompt_; }  // bytes after reading `first`

 private:
  friend class BatchScheduler;
  enum class Phase { Queued, First, Second, Decode, Ended };
  BatchSession(BatchJob job, BatchScheduler* owner);

  BatchJob job_;
  BatchScheduler* owner_;
  // The scheduler thread's own state.
  Phase phase_ = Phase::Queued;
  std::optional<KvCache> cache_;
  std::unique_ptr<PromptPass> pass_;
  std::vector<float> logits_;
  Sampler sampler_;
  int produced_ = 0;
  int32_t unfed_ = 0;  // the last token handed out, fed by the next decode step
  bool admitted_ = false;  // in the scheduler's running list
  size_t reserved_ = 0;    // memory admission handed to it
  int64_t counted_kv_ = 0; // its cache bytes as the scheduler's kv_bytes() counts them
  size_t kv_after_prompt_ = 0;
  GenerationStats stats_;
  // Shared with the caller.
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<int32_t> ready_;
  bool ended_ = false;
  std::exception_ptr error_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int width = 4;              // sessions running at once: the widest decode batch
  int max_queue = 64;         // sessions waiting beyond these: submit() throws SchedulerFull
  size_t memory_budget = 0;   // bytes running sessions may hold together (0: no limit)
};

class BatchScheduler {
 public:
  // The tokenizer (may be null) says which tokens end a generation.
  BatchScheduler(const Model& model, const Tokenizer* tokenizer, SchedulerOptions options);
  ~BatchScheduler();  // ends every session (their callers see an error) and joins the thread
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  std::shared_ptr<BatchSession> submit(BatchJob job);

  size_t memory_in_use() const;
  int64_t kv_bytes() const { return kv_bytes_; }  // held by the running sessions' caches
  // Decode steps run, and the session tokens they decoded (rows / steps: the mean width).
  int64_t decode_steps() const { return decode_steps_; }
  int64_t decode_rows() const { return decode_rows_; }
  int running() const;
  int queued() const;

 private:
  friend class BatchSession;
  // The bytes a running session holds once its prompt is read, for `n_predict` more tokens.
  size_t steady_bytes(const KvCache& cache, int64_t n_predict) const;
  void loop();
  void admit_locked();
  void prompt_piece(BatchSession& s);
  void decode_step(const std::vector<std::shared_ptr<BatchSession>>& sessions);
  void hand_out(BatchSession& s, int32_t token);  // a sampled token to its caller
  void end(BatchSession& s, std::exception_ptr error = nullptr);
  void wake();  // a session was cancelled: a queued one is ended at once

  const Model& model_;
  const Tokenizer* tok_;
  SchedulerOptions opt_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<BatchSession>> queue_;
  std::vector<std::shared_ptr<BatchSession>> running_;  // in admission order
  std::vector<float> step_logits_;  // the scheduler thread's: [width][vocab]
  double last_step_seconds_ = 0;    // the last decode step's time: the next prompt slice
  size_t in_use_ = 0;
  std::atomic<int64_t> kv_bytes_{0}, decode_steps_{0}, decode_rows_{0};
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvsqueeze
