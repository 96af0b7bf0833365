#include "eval/teacher_forced.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "cache/kv_cache.h"
#include "model/model.h"
#include "runtime/divergence.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze::eval {

int64_t text_tokens(const Tokenizer& tok, const std::string& text) {
  return static_cast<int64_t>(tok.encode(text, false, false).size());
}

std::vector<TextWindow> text_windows(const Tokenizer& tok, const std::string& text, int64_t prompt_tokens,
                                     int64_t continuation_tokens, int samples) {
  if (prompt_tokens < 1 || continuation_tokens < 1 || samples < 1)
    throw std::invalid_argument("prompt tokens, continuation tokens and samples must be positive");
  const auto ids = tok.encode(text, false, false);
  const bool bos = tok.adds_bos() && tok.bos() >= 0;
  const int64_t body = prompt_tokens - (bos ? 1 : 0), need = body + continuation_tokens;
  if (static_cast<int64_t>(ids.size()) < need)
    throw std::invalid_argument(fmt::format("the text has {} tokens; {} prompt + {} continuation tokens need {}",
                                            ids.size(), prompt_tokens, continuation_tokens, need + (bos ? 1 : 0)));
  const int64_t spare = static_cast<int64_t>(ids.size()) - need;
  std::vector<TextWindow> out;
  for (int s = 0; s < samples; ++s) {
    const int64_t at = samples == 1 ? 0 : spare * s / (samples - 1);
    TextWindow w;
    w.id = fmt::format("offset{}", at);
    if (bos) w.prompt.push_back(tok.bos());
    w.prompt.insert(w.prompt.end(), ids.begin() + at, ids.begin() + at + body);
    w.continuation.assign(ids.begin() + at + body, ids.begin() + at + need);
    out.push_back(std::move(w));
  }
  return out;
}

namespace {

class KeepAttention : public AttentionTap {
 public:
  KeepAttention(int layers, int64_t width, int64_t tokens)
      : width_(width), out_(static_cast<size_t>(layers), std::vector<float>(static_cast<size_t>(width * tokens))) {}
  void attention_output(int layer, int64_t first, int64_t n, const float* out) override {
    std::copy_n(out, n * width_, out_[static_cast<size_t>(layer)].begin() + first * width_);
  }
  std::vector<std::vector<float>> take() { return std::move(out_); }

 private:
  int64_t width_;
  std::vector<std::vector<float>> out_;
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

TeacherForcedRun read_continuation(const Model& model, KvCache& cache, const TextWindow& w,
                                   std::vector<float> prompt_logits) {
  const auto& c = model.config();
  const auto n = static_cast<int64_t>(w.continuation.size());
  const double t0 = now();
  TeacherForcedRun r;
  r.kv_bytes = cache.bytes_used();
  std::vector<float> all(static_cast<size_t>(n * c.vocab));
  KeepAttention tap(c.n_layer, c.dim, n);
  model.forward(cache, w.continuation.data(), n, all.data(), true, nullptr, &tap);
  r.attention = tap.take();
  r.logits.push_back(std::move(prompt_logits));
  for (int64_t i = 0; i + 1 < n; ++i) r.logits.emplace_back(all.begin() + i * c.vocab, all.begin() + (i + 1) * c.vocab);
  r.seconds = now() - t0;
  return r;
}

TeacherForcedRun teacher_forced(const Model& model, const TextWindow& w, LayerPress* press, DType kv_type) {
  const double t0 = now();
  KvCache cache = model.make_cache(kv_type);
  std::vector<float> last(static_cast<size_t>(model.config().vocab));
  model.forward(cache, w.prompt.data(), static_cast<int64_t>(w.prompt.size()), last.data(), false, press);
  TeacherForcedRun r = read_continuation(model, cache, w, std::move(last));
  r.seconds = now() - t0;
  return r;
}

FidelityMetrics compare_runs(const TeacherForcedRun& full, const TeacherForcedRun& run,
                             const std::vector<int32_t>& continuation) {
  FidelityMetrics m;
  const size_t n = run.logits.size();
  for (size_t i = 0; i < n; ++i) {
    const auto& ref = full.logits[i];
    const auto& got = run.logits[i];
    m.kl += next_token_kl(ref, got);
    const auto vocab = static_cast<int32_t>(got.size());
    m.top1 += argmax(ref.data(), vocab) == argmax(got.data(), vocab);
    const auto p = probabilities(got);
    m.nll -= std::log(std::max(p[static_cast<size_t>(continuation[i])], 1e-300));
  }
  m.kl /= static_cast<double>(n);
  m.top1 *= 100.0 / static_cast<double>(n);
  m.nll /= static_cast<double>(n);
  m.ppl = std::exp(m.nll);
  for (size_t l = 0; l < run.attention.size(); ++l) {
    double diff = 0, size = 0;
    for (size_t i = 0; i < run.attention[l].size(); ++i) {
      diff += std::fabs(static_cast<double>(run.attention[l][i]) - full.attention[l][i]);
      size += std::fabs(static_cast<double>(full.attention[l][i]));
    }
    m.attn_l1_layers.push_back(size > 0 ? diff / size : diff);
    m.attn_l1 += m.attn_l1_layers.back() / static_cast<double>(run.attention.size());
  }
  return m;
}

}  // namespace kvsqueeze::eval
