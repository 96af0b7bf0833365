#include "runtime/generator.h"

#include <chrono>
#include <stdexcept>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {
namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

size_t uncompressed_kv_bytes(const Model& model, const KvCache& cache) {
  const size_t row = static_cast<size_t>(cache.k_row_bytes() + cache.v_row_bytes()) + sizeof(int32_t);
  const ModelConfig& c = model.config();
  return static_cast<size_t>(c.full_cache_rows(cache.next_pos())) * row * static_cast<size_t>(c.n_head_kv);
}

Generator::Generator(const Model& model, const Tokenizer* tokenizer, DType kv_type)
    : model_(model), tok_(tokenizer), cache_(model.make_cache(kv_type)) {}

Generator::Generator(const Model& model, const Tokenizer* tokenizer, KvCache cache)
    : model_(model), tok_(tokenizer), cache_(std::move(cache)) {}

std::vector<float> Generator::prefill(const std::vector<int32_t>& tokens, LayerPress* press) {
  if (tokens.empty()) throw std::invalid_argument("the prompt is empty");
  std::vector<float> logits(static_cast<size_t>(model_.config().vocab));
  const double t0 = now();
  // One layer-major pass over all of it (the model tiles it internally), so a press sees
  // each layer's full prompt K/V once.
  model_.forward(cache_, tokens.data(), static_cast<int64_t>(tokens.size()), logits.data(), false, press);
  stats_.prompt_tokens += static_cast<int64_t>(tokens.size());
  stats_.prompt_seconds += now() - t0;
  stats_.kv_bytes_uncompressed = uncompressed_kv_bytes(model_, cache_);
  stats_.kv_bytes = cache_.bytes_used();
  stats_.kv_bytes_reserved = cache_.bytes_reserved();
  return logits;
}

std::vector<int32_t> Generator::decode(std::vector<float> logits, const GenerationOptions& opt,
                                       const std::function<void(int32_t)>& on_token, LayerPress* step_press) {
  DecodeStream stream(*this, std::move(logits), opt, step_press);
  std::vector<int32_t> out;
  while (const std::optional<int32_t> next = stream.next()) {
    out.push_back(*next);
    if (on_token) on_token(*next);
  }
  return out;
}

DecodeStream::DecodeStream(Generator& gen, std::vector<float> logits, const GenerationOptions& opt,
                           LayerPress* step_press)
    : gen_(gen), logits_(std::move(logits)), opt_(opt), step_press_(step_press), sampler_(opt.sampling),
      done_(opt.n_predict <= 0) {
  if (logits_.size() != static_cast<size_t>(gen.model_.config().vocab))
    throw std::invalid_argument("decoding needs the logits of one position");
}

std::optional<int32_t> DecodeStream::next() {
  if (done_) return std::nullopt;
  const double t0 = now();
  GenerationStats& stats = gen_.stats_;
  if (unfed_) {
    gen_.model_.forward(gen_.cache_, &*unfed_, 1, logits_.data(), false, step_press_);
    ++stats.decode_passes;
  }
  const int32_t next = sampler_.sample(logits_.data(), gen_.model_.config().vocab);
  unfed_ = next;
  ++produced_;
  done_ = produced_ >= opt_.n_predict || (opt_.stop_at_eog && gen_.tok_ && gen_.tok_->is_end_of_generation(next));
  ++stats.generated_tokens;
  stats.decode_seconds += now() - t0;
  stats.kv_bytes = gen_.cache_.bytes_used();
  stats.kv_bytes_reserved = gen_.cache_.bytes_reserved();
  return next;
}

std::vector<int32_t> Generator::generate(const std::vector<int32_t>& prompt, const GenerationOptions& opt,
                                         const std::function<void(int32_t)>& on_token, LayerPress* press) {
  return decode(prefill(prompt, press), opt, on_token);
}

}  // namespace kvsqueeze
