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

Generator::Generator(const Model& model, const Tokenizer* tokenizer)
    : model_(model), tok_(tokenizer), cache_(model.make_cache()) {}

std::vector<float> Generator::prefill(const std::vector<int32_t>& prompt) {
  if (prompt.empty()) throw std::invalid_argument("the prompt is empty");
  const int64_t vocab = model_.config().vocab;
  std::vector<float> logits(static_cast<size_t>(vocab));
  const double t0 = now();
  // One layer-major pass over the whole prompt (the model tiles it internally), so a
  // press sees each layer's full prompt K/V once.
  model_.forward(cache_, prompt.data(), static_cast<int64_t>(prompt.size()), logits.data(), false);
  stats_.prompt_tokens += static_cast<int64_t>(prompt.size());
  stats_.prompt_seconds += now() - t0;
  return logits;
}

std::vector<int32_t> Generator::generate(const std::vector<int32_t>& prompt, const GenerationOptions& opt,
                                         const std::function<void(int32_t)>& on_token) {
  Sampler sampler(opt.sampling);
  std::vector<float> logits = prefill(prompt);
  std::vector<int32_t> out;
  const double t0 = now();
  for (int i = 0; i < opt.n_predict; ++i) {
    const int32_t next = sampler.sample(logits.data(), model_.config().vocab);
    out.push_back(next);
    if (on_token) on_token(next);
    if (opt.stop_at_eog && tok_ && tok_->is_end_of_generation(next)) break;
    if (i + 1 == opt.n_predict) break;  // the last token needs no forward pass
    model_.forward(cache_, &next, 1, logits.data(), false);
    ++stats_.decode_passes;
  }
  stats_.generated_tokens += static_cast<int64_t>(out.size());
  stats_.decode_seconds += now() - t0;
  stats_.kv_bytes = cache_.bytes_used();
  stats_.kv_bytes_reserved = cache_.bytes_reserved();
  return out;
}

}  // namespace kvsqueeze
