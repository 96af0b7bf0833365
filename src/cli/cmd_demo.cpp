// kvsqueeze demo: the README's main job. Runs a long synthetic prompt through a model
// (by default a SmolLM2-135M-shaped random model made once and cached) with the full
// cache and with each compression preset, and prints one table row per preset.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "cli/common.h"
#include "cli/press_options.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "runtime/divergence.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

#ifndef KVSQUEEZE_CACHE_DIR
#define KVSQUEEZE_CACHE_DIR "."
#endif

namespace kvsqueeze {
namespace {

std::string default_model() {
  const std::filesystem::path dir = std::filesystem::path(KVSQUEEZE_CACHE_DIR) / "models";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "smollm2-135m-random-q8_0.gguf").string();
  if (!std::filesystem::exists(path)) {
    fmt::print(stderr, "making a SmolLM2-135M-shaped random model (q8_0) at {} (once) ...\n", path);
    ModelSpec s = *named_shape("smollm2-135m");
    s.type = DType::Q8_0;
    make_random_model(s, path);
  }
  return path;
}

// A long, varied prompt: numbered facts, so it tokenizes to many distinct tokens.
std::string synthetic_prompt(int n_sentences) {
  std::string s = "Here is a long record of facts about a small town.";
  const char* things[] = {"bakery", "river", "library", "garden", "station", "market", "school", "bridge"};
  for (int i = 0; i < n_sentences; ++i)
    s += fmt::format(" Fact {}: the {} opened in year {} and has {} visitors.", i, things[i % 8], 1900 + (i * 37) % 120,
                     (i * 7919) % 1000);
  return s + " Now, what opened first?";
}

struct Row {
  double prompt_tps = 0, decode_tps = 0;
  size_t kv_bytes = 0;  // after the prompt (compressed) and the continuation
  std::vector<std::vector<float>> logits;  // next-token logits along the continuation
  std::vector<int32_t> tokens;
};

// Prefill (compressed by `press` if any), then the continuation: the model's own greedy
// choice when `forced` is empty, else those tokens (teacher forcing, so every preset is
// compared on the same path).
Row run(const Model& model, const Tokenizer& tok, const std::vector<int32_t>& prompt, int n,
        const std::vector<int32_t>& forced, LayerPress* press, DType kv_type) {
  Row r;
  Generator gen(model, &tok, kv_type);
  std::vector<float> logits = gen.prefill(prompt, press);
  r.prompt_tps = gen.stats().prompt_tps();
  r.logits.push_back(logits);
  GenerationOptions g;
  g.n_predict = 1;
  g.stop_at_eog = false;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    const int32_t next = forced.empty() ? gen.decode(logits, g).front() : forced[static_cast<size_t>(i)];
    r.tokens.push_back(next);
    if (i + 1 == n) break;
    logits = gen.prefill({next});
    r.logits.push_back(logits);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.decode_tps = n > 1 && secs > 0 ? (n - 1) / secs : 0;
  r.kv_bytes = gen.cache().bytes_used();
  return r;
}

}  // namespace

void add_demo_command(CLI::App& app) {
  struct Opts {
    std::string model, presets = "none,snapkv,ada-snapkv,pyramidkv,ada-pyramidkv,criticalkv,streamingllm,lava";
    int prompt_tokens = 1024, n = 32, threads = 0;
    PressOptions press;
  };
  auto o = std::make_shared<Opts>();
  o->press.budget = 128;
  auto* cmd = app.add_subcommand("demo", "Run a long prompt with the full cache and with each compression preset; "
                                         "print KV size, speed and next-token KL versus the full cache");
  add_model_option(cmd, o->model, "GGUF model (default: a cached SmolLM2-135M-shaped random model)");
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "approximate prompt length")->check(CLI::Range(16, 1 << 20));
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--presets", o->presets, "comma-separated presets for the table");
  add_press_options(cmd, o->press);
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    const bool own_model = !o->model.empty();
    const std::string path = own_model ? o->model : default_model();
    LoadedModel m = load_model(path);
    int sentences = 8;
    std::vector<int32_t> prompt;
    do {
      sentences *= 2;
      prompt = m.tokenizer->encode(synthetic_prompt(sentences), true, false);
    } while (static_cast<int>(prompt.size()) < o->prompt_tokens && sentences < (1 << 20));
    prompt.resize(static_cast<size_t>(std::min<int>(o->prompt_tokens, static_cast<int>(prompt.size()))));
    const DType kv_type = kv_type_from_name(o->press.kv_type);

    // The full cache first: its greedy tokens are the path every preset is scored on.
    const Row full = run(*m.model, *m.tokenizer, prompt, o->n, {}, nullptr, kv_type);
    fmt::print("model: {}\nprompt: {} tokens, budget {} entries per KV head (window {})\n\n", path, prompt.size(),
               o->press.budget, o->press.window);
    fmt::print("| press | KV cache MB | prompt tok/s | decode tok/s | next-token KL vs full |\n");
    fmt::print("|-------|------------:|-------------:|-------------:|----------------------:|\n");
    std::stringstream list(o->presets);
    for (std::string name; std::getline(list, name, ',');) {
      Row row;
      if (name == "none") {
        row = full;
      } else {
        auto press = make_compression_press(o->press.config(name));
        row = run(*m.model, *m.tokenizer, prompt, o->n, full.tokens, press.get(), kv_type);
      }
      double kl = 0;
      for (size_t i = 0; i < row.logits.size(); ++i)
        kl += next_token_kl(full.logits[i], row.logits[i]) / static_cast<double>(row.logits.size());
      fmt::print("| {:<13} | {:>11.2f} | {:>12.1f} | {:>12.1f} | {:>21.4f} |\n", name, static_cast<double>(row.kv_bytes) / 1e6,
                 row.prompt_tps, row.decode_tps, kl);
    }
    if (own_model) fmt::print("\ngenerated (full cache): {}\n", m.tokenizer->decode(full.tokens));
  });
}

}  // namespace kvsqueeze
