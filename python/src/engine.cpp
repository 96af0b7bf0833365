#include "engine.h"

#include <omp.h>

#include <stdexcept>

#include <fmt/format.h>

#include "cache/cache_file.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze::python {
namespace {

GenerationOptions generation_options(const Sampling& s) {
  if (s.max_tokens < 0) throw std::invalid_argument(fmt::format("max_tokens must be >= 0 (got {})", s.max_tokens));
  if (!(s.temperature >= 0)) throw std::invalid_argument(fmt::format("temperature must be >= 0 (got {})", s.temperature));
  if (s.top_k < 0) throw std::invalid_argument(fmt::format("top_k must be >= 0 (got {})", s.top_k));
  if (!(s.top_p > 0 && s.top_p <= 1)) throw std::invalid_argument(fmt::format("top_p must be in (0, 1] (got {})", s.top_p));
  for (const std::string& stop : s.stop)
    if (stop.empty()) throw std::invalid_argument("a stop string must not be empty");
  GenerationOptions g;
  g.n_predict = s.max_tokens;
  g.stop_at_eog = !s.ignore_eos;
  g.sampling.greedy = s.temperature == 0;
  g.sampling.temperature = s.temperature;
  g.sampling.top_k = s.top_k;
  g.sampling.top_p = s.top_p;
  g.sampling.seed = s.seed;
  return g;
}

void check_ids(const std::vector<int32_t>& ids, const Model& model) {
  for (int32_t id : ids)
    if (id < 0 || id >= model.config().vocab)
      throw std::invalid_argument(fmt::format("token id {} is outside the vocabulary (0..{})", id, model.config().vocab - 1));
}

}  // namespace

Engine::Engine(const std::string& path_or_name, int threads, const std::string& kv_type)
    : path_(resolve_model_path(path_or_name)), m_(load_model(path_)), kv_type_(kv_type_from_name(kv_type)) {
  set_threads(threads);
  (void)m_.model->make_cache(kv_type_);  // a storage type this model's heads cannot use fails here
  const std::string text = m_.model->file().get_string_or("tokenizer.chat_template", "");
  has_template_ = !text.empty();
  try {
    chat_ = chat_template_for(text, *m_.tokenizer);
  } catch (const std::exception& e) {
    chat_error_ = e.what();
  }
}

void Engine::set_threads(int n) {
  if (n < 0) throw std::invalid_argument(fmt::format("threads must be >= 1 (got {})", n));
  threads_ = n;
}

DType Engine::cache_type(const PressOptions* press) const {
  return press && !press->kv_type.empty() ? kv_type_from_name(press->kv_type) : kv_type_;
}

void Engine::use_threads() const {
  omp_set_num_threads(threads_ > 0 ? threads_ : omp_get_num_procs());
}

std::vector<int32_t> Engine::tokenize(const std::string& text, bool add_bos, bool parse_special) const {
  return m_.tokenizer->encode(text, add_bos, parse_special);
}

std::string Engine::detokenize(const std::vector<int32_t>& ids, bool special) const {
  for (int32_t id : ids)
    if (id < 0 || id >= m_.tokenizer->n_vocab())
      throw std::invalid_argument(fmt::format("token id {} is outside the vocabulary (0..{})", id, m_.tokenizer->n_vocab() - 1));
  return m_.tokenizer->decode(ids, special);
}

const ChatTemplate& Engine::chat_template() const {
  if (!chat_) throw std::invalid_argument(chat_error_);
  return *chat_;
}

std::string Engine::render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return kvsqueeze::render_chat(chat_template(), messages, add_generation_prompt);
}

std::vector<int32_t> Engine::chat_ids(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return encode_chat(tokenizer(), render_chat_parts(chat_template(), messages, add_generation_prompt), true);
}

std::vector<float> Engine::logits(const std::vector<int32_t>& ids, int64_t compress_at, const PressOptions* press) const {
  if (ids.empty()) throw std::invalid_argument("no token ids given");
  check_ids(ids, model());
  std::unique_ptr<CompressionPress> p = press ? press->make_press() : nullptr;
  if (p && compress_at == 0) throw std::invalid_argument("a press needs compress_at (the prompt length)");
  if (compress_at < 0 || compress_at > static_cast<int64_t>(ids.size()))
    throw std::invalid_argument(fmt::format("compress_at {} is outside the {} ids", compress_at, ids.size()));
  use_threads();
  const auto vocab = static_cast<size_t>(model().config().vocab);
  KvCache cache = model().make_cache(cache_type(press));
  std::vector<float> out(ids.size() * vocab);
  const int64_t head = compress_at > 0 ? compress_at : static_cast<int64_t>(ids.size());
  model().forward(cache, ids.data(), head, out.data(), true, p.get());
  for (size_t i = static_cast<size_t>(head); i < ids.size(); ++i)
    model().forward(cache, &ids[i], 1, out.data() + i * vocab, false);
  return out;
}

std::unique_ptr<Generation> Engine::start(const std::vector<int32_t>& prompt, const PressOptions* press,
                                          const Sampling& sampling) const {
  if (prompt.empty()) throw std::invalid_argument("the prompt tokenizes to nothing");
  check_ids(prompt, model());
  const GenerationOptions g = generation_options(sampling);
  std::unique_ptr<CompressionPress> p = press ? press->make_press() : nullptr;
  use_threads();
  Generator gen(model(), &tokenizer(), cache_type(press));
  std::vector<float> logits = gen.prefill(prompt, p.get());
  std::unique_ptr<DecodePress> step =
      press ? press->make_decode_press(p.get(), model().config().n_layer, model().config().n_head_kv) : nullptr;
  return std::make_unique<Generation>(*this, std::move(gen), std::move(logits), sampling, std::move(p), std::move(step));
}

std::unique_ptr<Context> Engine::compress(const std::vector<int32_t>& ids, const PressOptions* press) const {
  if (ids.empty()) throw std::invalid_argument("the context tokenizes to nothing");
  check_ids(ids, model());
  std::unique_ptr<CompressionPress> p = press ? press->make_press() : nullptr;
  if (press && press->compress_every > 0)
    throw std::invalid_argument("compress_every applies to generation, not to a saved context");
  use_threads();
  Generator gen(model(), &tokenizer(), cache_type(press));
  std::vector<float> logits = gen.prefill(ids, p.get());
  return std::make_unique<Context>(*this, std::move(gen.cache()), std::move(logits), gen.stats().kv_bytes_uncompressed,
                                   p ? p->seconds() : 0.0,
                                   p ? p->head_budgets() : std::vector<std::vector<int64_t>>{});
}

std::unique_ptr<Context> Engine::load_context(const std::string& path) const {
  KvCache cache = load_cache(path, model().cache_identity());
  const size_t full = uncompressed_kv_bytes(model(), cache);
  return std::make_unique<Context>(*this, std::move(cache), std::vector<float>{}, full, 0.0,
                                   std::vector<std::vector<int64_t>>{});
}

Generation::Generation(const Engine& e, Generator gen, std::vector<float> logits, const Sampling& s,
                       std::unique_ptr<CompressionPress> press, std::unique_ptr<DecodePress> step_press)
    : e_(e),
      press_(std::move(press)),
      step_press_(std::move(step_press)),
      gen_(std::move(gen)),
      kv_bytes_after_prompt_(gen_.cache().bytes_used()),
      stream_(gen_, std::move(logits), generation_options(s), step_press_.get()),
      text_(s.stop) {}

std::optional<std::string> Generation::next_piece() {
  std::lock_guard<std::mutex> lock(mu_);
  if (flushed_) return std::nullopt;
  e_.use_threads();
  while (!text_.stopped()) {
    const std::optional<int32_t> id = stream_.next();
    if (!id) break;
    tokens_.push_back(*id);
    std::string out = text_.add(e_.tokenizer().piece(*id));
    if (!out.empty()) return out;
  }
  // The end: what the stream still holds back, then nothing.
  flushed_ = true;
  const bool eog = !tokens_.empty() && e_.tokenizer().is_end_of_generation(tokens_.back());
  finish_ = text_.stopped() || (eog && stream_.done()) ? "stop" : "length";
  std::string rest = text_.stopped() ? std::string() : text_.flush();
  if (rest.empty()) return std::nullopt;
  return rest;
}

Generation::Report Generation::report() const {
  std::lock_guard<std::mutex> lock(mu_);
  Report r;
  r.stats = gen_.stats();
  r.kv_bytes_after_prompt = kv_bytes_after_prompt_;
  if (press_) {
    r.press_seconds = press_->seconds();
    r.head_budgets = press_->head_budgets();
  }
  return r;
}

Context::Context(const Engine& e, KvCache cache, std::vector<float> logits, size_t bytes_uncompressed,
                 double press_seconds, std::vector<std::vector<int64_t>> head_budgets)
    : e_(e),
      cache_(std::move(cache)),
      logits_(std::move(logits)),
      bytes_uncompressed_(bytes_uncompressed),
      press_seconds_(press_seconds),
      head_budgets_(std::move(head_budgets)) {}

std::unique_ptr<Generation> Context::ask(const std::vector<int32_t>& question, const Sampling& s) const {
  check_ids(question, e_.model());
  if (question.empty() && logits_.empty())
    throw std::invalid_argument("a context loaded from a file needs a question (its last logits are not saved)");
  e_.use_threads();
  Generator gen(e_.model(), &e_.tokenizer(), cache_);  // a copy: the context answers again
  std::vector<float> logits = question.empty() ? logits_ : gen.prefill(question);
  return std::make_unique<Generation>(e_, std::move(gen), std::move(logits), s, nullptr, nullptr);
}

void Context::save(const std::string& path) const { save_cache(path, cache_, e_.model().fingerprint()); }

}  // namespace kvsqueeze::python
