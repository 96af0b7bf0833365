#include "runtime/batch_scheduler.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr double kMinPromptSlice = 0.005;  // seconds of prompt work per turn at least, while streams run
constexpr double kIdlePromptSlice = 0.05;  // with nothing decoding: how often to look for new sessions
}  // namespace

BatchSession::BatchSession(BatchJob job, BatchScheduler* owner)
    : job_(std::move(job)), owner_(owner), sampler_(job_.gen.sampling) {}

std::optional<int32_t> BatchSession::next() {
  std::unique_lock l(m_);
  cv_.wait(l, [&] { return !ready_.empty() || ended_; });
  if (!ready_.empty()) {
    const int32_t t = ready_.front();
    ready_.pop_front();
    return t;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

void BatchSession::cancel() {
  if (!cancelled_.exchange(true)) owner_->wake();
}

void BatchScheduler::wake() {
  { std::lock_guard l(m_); }  // the loop is either waiting (and sees the flag) or will look again
  cv_.notify_all();
}

BatchScheduler::BatchScheduler(const Model& model, const Tokenizer* tokenizer, SchedulerOptions options)
    : model_(model), tok_(tokenizer), opt_(options) {
  if (opt_.width < 1) throw std::invalid_argument("the batch width must be at least 1");
  thread_ = std::thread([this] { loop(); });
}

BatchScheduler::~BatchScheduler() {
  {
    std::lock_guard l(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<BatchSession> BatchScheduler::submit(BatchJob job) {
  if (job.first.empty()) throw std::invalid_argument("the prompt is empty");
  auto s = std::shared_ptr<BatchSession>(new BatchSession(std::move(job), this));
  {
    std::lock_guard l(m_);
    if (static_cast<int>(queue_.size()) >= opt_.max_queue && static_cast<int>(running_.size()) >= opt_.width)
      throw SchedulerFull("the queue is full");
    queue_.push_back(s);
  }
  cv_.notify_all();
  return s;
}

size_t BatchScheduler::steady_bytes(const KvCache& cache, int64_t n_predict) const {
  const ModelConfig& c = model_.config();
  const size_t row = static_cast<size_t>(cache.k_row_bytes() + cache.v_row_bytes()) + sizeof(int32_t);
  const size_t per_token = row * static_cast<size_t>(c.n_layer) * static_cast<size_t>(c.n_head_kv);
  return cache.bytes_reserved() + per_token * static_cast<size_t>(std::max<int64_t>(n_predict, 0)) +
         static_cast<size_t>(c.vocab) * sizeof(float);
}

size_t BatchScheduler::memory_in_use() const {
  std::lock_guard l(m_);
  return in_use_;
}
int BatchScheduler::running() const {
  std::lock_guard l(m_);
  return static_cast<int>(running_.size());
}
int BatchScheduler::queued() const {
  std::lock_guard l(m_);
  return static_cast<int>(queue_.size());
}

// In arrival order: the first waiting session is admitted once it fits, and nothing
// behind it overtakes it (a big request is not starved by a stream of small ones).
void BatchScheduler::admit_locked() {
  std::erase_if(queue_, [&](const std::shared_ptr<BatchSession>& s) {
    if (!s->cancelled_) return false;
    end(*s);
    return true;
  });
  while (!queue_.empty() && static_cast<int>(running_.size()) < opt_.width) {
    const std::shared_ptr<BatchSession>& s = queue_.front();
    const size_t need = s->job_.prefill_bytes;
    const bool fits = opt_.memory_budget == 0 || running_.empty() || in_use_ + need <= opt_.memory_budget;
    if (!fits) break;
    s->reserved_ = need;
    s->admitted_ = true;
    in_use_ += need;
    s->phase_ = BatchSession::Phase::First;
    running_.push_back(s);
    queue_.pop_front();
  }
}

void BatchScheduler::loop() {
  for (;;) {
    std::vector<std::shared_ptr<BatchSession>> sessions;
    {
      std::unique_lock l(m_);
      cv_.wait(l, [&] {
        admit_locked();
        return stop_ || !running_.empty();
      });
      if (stop_) break;
      sessions = running_;
    }
    for (const auto& s : sessions)
      if (s->cancelled_) end(*s);
    // Prompts get as much time as the last decode step took (at least one piece), the
    // oldest prompt first, then every decoding session gets one token: a long prompt
    // arriving halves the running streams' speed instead of stopping them, and short
    // prompts are read whole in one turn.
    const bool streams = std::any_of(sessions.begin(), sessions.end(), [](const auto& s) {
      return s->phase_ == BatchSession::Phase::Decode && !s->cancelled_;
    });
    const double slice = streams ? std::max(last_step_seconds_, kMinPromptSlice) : kIdlePromptSlice;
    const double slice_start = now();
    for (const auto& s : sessions) {
      while (s->phase_ == BatchSession::Phase::First || s->phase_ == BatchSession::Phase::Second) {
        try {
          prompt_piece(*s);
        } catch (...) {
          end(*s, std::current_exception());
        }
        if (now() - slice_start >= slice) break;
      }
      if (now() - slice_start >= slice) break;
    }
    std::vector<std::shared_ptr<BatchSession>> decoding;
    for (const auto& s : sessions)
      if (s->phase_ == BatchSession::Phase::Decode) decoding.push_back(s);
    if (!decoding.empty()) decode_step(decoding);
    for (const auto& s : sessions)
      if (s->phase_ != BatchSession::Phase::Ended && s->cache_) {
        const auto bytes = static_cast<int64_t>(s->cache_->bytes_used());
        kv_bytes_ += bytes - s->counted_kv_;
        s->counted_kv_ = bytes;
      }
  }
  // Shutting down: whoever still waits learns that their session will not finish.
  std::vector<std::shared_ptr<BatchSession>> left;
  {
    std::lock_guard l(m_);
    left.assign(running_.begin(), running_.end());
    left.insert(left.end(), queue_.begin(), queue_.end());
    queue_.clear();
  }
  const auto gone = std::make_exception_ptr(std::runtime_error("the server is shutting down"));
  for (const auto& s : left) end(*s, gone);
}

void BatchScheduler::prompt_piece(BatchSession& s) {
  BatchJob& job = s.job_;
  const double t0 = now();
  const bool first = s.phase_ == BatchSession::Phase::First;
  if (!s.pass_) {
    if (!s.cache_) s.cache_.emplace(job.base ? KvCache(*job.base) : model_.make_cache(job.kv_type));
    s.logits_.assign(static_cast<size_t>(model_.config().vocab), 0.0f);
    const std::vector<int32_t>& tokens = first ? job.first : job.second;
    s.pass_ = model_.begin_pass({PressTarget{&*s.cache_, first ? job.press.get() : nullptr}}, tokens.data(),
                                static_cast<int64_t>(tokens.size()), s.logits_.data(), false);
    s.stats_.prompt_tokens += static_cast<int64_t>(tokens.size());
  }
  const bool more = s.pass_->step();
  s.stats_.prompt_seconds += now() - t0;
  if (more) return;
  s.pass_.reset();
  if (first) {
    s.stats_.kv_bytes_uncompressed = uncompressed_kv_bytes(model_, *s.cache_);
    s.kv_after_prompt_ = s.cache_->bytes_used();
    if (!job.second.empty()) {
      s.phase_ = BatchSession::Phase::Second;  // read in the next piece
      return;
    }
  }
  // The prompt is read: the session now holds its (compressed) cache and room to grow.
  s.stats_.kv_bytes = s.cache_->bytes_used();
  s.stats_.kv_bytes_reserved = s.cache_->bytes_reserved();
  {
    std::lock_guard l(m_);
    const size_t steady = steady_bytes(*s.cache_, job.gen.n_predict);
    in_use_ = in_use_ - s.reserved_ + steady;
    s.reserved_ = steady;
  }
  cv_.notify_all();
  if (job.gen.n_predict <= 0) {
    end(s);
    return;
  }
  s.phase_ = BatchSession::Phase::Decode;
  hand_out(s, s.sampler_.sample(s.logits_.data(), model_.config().vocab));
}

void BatchScheduler::decode_step(const std::vector<std::shared_ptr<BatchSession>>& sessions) {
  const double t0 = now();
  std::vector<DecodeRow> rows;
  for (const auto& s : sessions) rows.push_back({&*s->cache_, s->unfed_, s->job_.step_press.get()});
  const auto vocab = static_cast<size_t>(model_.config().vocab);
  std::vector<float>& logits = step_logits_;  // kept: a large vocabulary's rows are megabytes
  logits.resize(rows.size() * vocab);
  try {
    model_.decode_batch(rows, logits.data());
  } catch (...) {
    for (const auto& s : sessions) end(*s, std::current_exception());
    return;
  }
  const double seconds = now() - t0;
  last_step_seconds_ = seconds;
  ++decode_steps_;
  decode_rows_ += static_cast<int64_t>(rows.size());
  for (size_t b = 0; b < sessions.size(); ++b) {
    BatchSession& s = *sessions[b];
    ++s.stats_.decode_passes;
    s.stats_.decode_seconds += seconds;
    s.stats_.kv_bytes = s.cache_->bytes_used();
    s.stats_.kv_bytes_reserved = s.cache_->bytes_reserved();
    hand_out(s, s.sampler_.sample(&logits[b * vocab], static_cast<int32_t>(vocab)));
  }
}

void BatchScheduler::hand_out(BatchSession& s, int32_t token) {
  ++s.produced_;
  ++s.stats_.generated_tokens;
  s.unfed_ = token;
  {
    std::lock_guard l(s.m_);
    s.ready_.push_back(token);
  }
  s.cv_.notify_all();
  const bool eog = s.job_.gen.stop_at_eog && tok_ && tok_->is_end_of_generation(token);
  if (s.produced_ >= s.job_.gen.n_predict || eog) end(s);
}

// Called on the scheduler thread (with m_ held only for sessions never admitted). A
// running session gives its memory and its place back before its caller hears that it
// ended, so whatever the caller does next sees the scheduler without it.
void BatchScheduler::end(BatchSession& s, std::exception_ptr error) {
  s.phase_ = BatchSession::Phase::Ended;
  s.pass_.reset();
  kv_bytes_ -= s.counted_kv_;
  s.counted_kv_ = 0;
  if (s.admitted_) {
    std::lock_guard l(m_);
    in_use_ -= s.reserved_;
    s.reserved_ = 0;
    s.admitted_ = false;
    std::erase_if(running_, [&](const std::shared_ptr<BatchSession>& r) { return r.get() == &s; });
  }
  cv_.notify_all();  // its memory may admit a waiting session
  {
    std::lock_guard l(s.m_);
    s.ended_ = true;
    if (!s.error_) s.error_ = error;
  }
  s.cv_.notify_all();
}

}  // namespace kvsqueeze
