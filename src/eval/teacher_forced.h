// The fidelity and ppl tasks: compress a prompt, then teacher-force its true continuation
// and compare every next-token distribution and every layer's attention output with the
// full cache's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace kvsqueeze {
class KvCache;
class LayerPress;
class Model;
class Tokenizer;
}  // namespace kvsqueeze

namespace kvsqueeze::eval {

struct TextWindow {
  std::string id;
  std::vector<int32_t> prompt;        // BOS first when the tokenizer adds one
  std::vector<int32_t> continuation;  // the text's next tokens
};

// Tokens of the text (no BOS).
int64_t text_tokens(const Tokenizer& tok, const std::string& text);
// `samples` windows of prompt + continuation tokens, evenly spaced over the text (they
// overlap when the text is short). Throws when the text is shorter than one window.
std::vector<TextWindow> text_windows(const Tokenizer& tok, const std::string& text, int64_t prompt_tokens,
                                     int64_t continuation_tokens, int samples);

struct TeacherForcedRun {
  // Next-token logits for each continuation token: from the prompt's last token, then
  // from each continuation token but the last.
  std::vector<std::vector<float>> logits;
  // Per layer, the attention outputs of the continuation tokens ([tokens][dim]).
  std::vector<std::vector<float>> attention;
  size_t kv_bytes = 0;       // cache bytes after the prompt (compressed when pressed)
  double seconds = 0;
};

// Compresses the window's prompt through `press` (null: full cache), then reads the continuation.
TeacherForcedRun teacher_forced(const Model& model, const TextWindow& w, LayerPress* press, DType kv_type);
// The second half alone: the continuation read against a cache that already holds the
// prompt, whose last next-token logits are `prompt_logits`.
TeacherForcedRun read_continuation(const Model& model, KvCache& cache, const TextWindow& w,
                                   std::vector<float> prompt_logits);

struct FidelityMetrics {
  double kl = 0;        // mean KL(full || run), nats
  double top1 = 0;      // share of positions whose argmax matches the full cache's, in %
  double nll = 0;       // mean negative log-likelihood of the true continuation
  double ppl = 0;       // exp(nll)
  double attn_l1 = 0;   // mean over layers of attn_l1_layers
  std::vector<double> attn_l1_layers;  // Σ|y - ŷ|₁ / Σ|y|₁ over the continuation, per layer
};

FidelityMetrics compare_runs(const TeacherForcedRun& full, const TeacherForcedRun& run,
                             const std::vector<int32_t>& continuation);

}  // namespace kvsqueeze::eval
