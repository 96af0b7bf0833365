// kvsqueeze demo: the README's main job. Runs a long synthetic prompt through a model
// (by default a SmolLM2-135M-shaped random model made once and cached) and prints a table.
#include <filesystem>

#include <fmt/format.h>

#include "cli/common.h"
#include "model/model.h"
#include "model/model_maker.h"
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

}  // namespace

void add_demo_command(CLI::App& app) {
  struct Opts {
    std::string model;
    int prompt_tokens = 1024, n = 32, threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("demo", "Run a long prompt and print prompt length, KV cache size and speed");
  cmd->add_option("-m,--model", o->model, "GGUF model (default: a cached SmolLM2-135M-shaped random model)");
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "approximate prompt length")->check(CLI::Range(16, 1 << 20));
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->check(CLI::Range(1, 1 << 16));
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

    GenerationOptions g;
    g.n_predict = o->n;
    g.stop_at_eog = false;
    Generator gen(*m.model, m.tokenizer.get());
    const std::vector<int32_t> out = gen.generate(prompt, g);
    const GenerationStats& s = gen.stats();
    fmt::print("model: {}\n\n", path);
    fmt::print("| press | prompt tokens | KV cache MB | prompt tok/s | decode tok/s |\n");
    fmt::print("|-------|--------------:|------------:|-------------:|-------------:|\n");
    fmt::print("| none  | {:>13} | {:>11.2f} | {:>12.1f} | {:>12.1f} |\n", s.prompt_tokens,
               static_cast<double>(s.kv_bytes) / 1e6, s.prompt_tps(), s.decode_tps());
    if (own_model) fmt::print("\ngenerated: {}\n", m.tokenizer->decode(out));
  });
}

}  // namespace kvsqueeze
