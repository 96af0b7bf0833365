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
  const size_t row = static_cast<size_t>(cache_.k_row_bytes() + cache_.v_row_bytes()) + sizeof(int32_t);
  // What a full cache would hold now (sliding-window layers never hold more than their window).
  const ModelConfig& c = model_.config();
  stats_.kv_bytes_uncompressed =
      static_cast<size_t>(c.full_cache_rows(cache_.next_pos())) * row * static_cast<size_t>(c.n_head_kv);
  stats_.kv_bytes = cache_.bytes_used();
  stats_.kv_bytes_reserved = cache_.bytes_reserved();
  return logits;
}

std::vector<int32_t> Generator::decode(std::vector<float> logits, const GenerationOptions& opt,
                                       const std::function<void(int32_t)>& on_token, LayerPress* step_press) {
  Sampler sampler(opt.sampling);
  std::vector<int32_t> out;
  const double t0 = now();
  for (int i = 0; i < opt.n_predict; ++i) {
    const int32_t next = sampler.sample(logits.data(), model_.config().vocab);
    out.push_back(next);
    if (on_token) on_token(next);
    if (opt.stop_at_eog && tok_ && tok_->is_end_of_generation(next)) break;
    if (i + 1 == opt.n_predict) break;  // the last token needs no forward pass
    model_.forward(cache_, &next, 1, logits.data(), false, step_press);
    ++stats_.decode_passes;
  }
  stats_.generated_tokens += static_cast<int64_t>(out.size());
  stats_.decode_seconds += now() - t0;
  stats_.kv_bytes = cache_.bytes_used();
  stats_.kv_bytes_reserved = cache_.bytes_reserved();
  return out;
}

std::vector<int32_t> Generator::generate(const std::vector<int32_t>& prompt, const GenerationOptions& opt,
                                         const std::function<void(int32_t)>& on_token, LayerPress* press) {
  return decode(prefill(prompt, press), opt, on_token);
}

}  // namespace kvsqueeze
