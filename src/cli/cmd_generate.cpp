// kvsqueeze generate: stream a continuation of a prompt, then report speed and KV bytes.
#include <cstdio>

#include <fmt/format.h>

#include "cli/common.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

void add_generate_command(CLI::App& app) {
  struct Opts {
    std::string model, text, file;
    int n = 64, threads = 0, top_k = 40;
    bool greedy = false, no_parse_special = false;
    float temp = 0.8f, top_p = 0.95f;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt");
  cmd->add_option("-m,--model", o->model, "GGUF model file")->required();
  cmd->add_option("-p,--prompt", o->text, "prompt text");
  cmd->add_option("-f,--file", o->file, "file with the prompt");
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->check(CLI::Range(0, 1 << 24));
  cmd->add_flag("--greedy", o->greedy, "always take the most likely token");
  cmd->add_option("--temp", o->temp, "sampling temperature (0 = greedy)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-k", o->top_k, "keep the k most likely tokens (0 = all)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", o->top_p, "keep the smallest set with this probability mass")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--seed", o->seed, "sampling seed");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "treat special-token text in the prompt as plain text");
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    if (o->greedy && (o->temp != 0.8f || o->top_k != 40 || o->top_p != 0.95f))
      throw std::invalid_argument("--greedy cannot be combined with --temp/--top-k/--top-p");
    if (!(o->top_p > 0.0f)) throw std::invalid_argument("--top-p must be in (0, 1]");
    const std::string text = read_prompt(o->text, o->file);
    LoadedModel m = load_model(o->model);
    const std::vector<int32_t> prompt = m.tokenizer->encode(text, true, !o->no_parse_special);
    if (prompt.empty()) throw std::invalid_argument("the prompt tokenizes to nothing");
    if (static_cast<int64_t>(prompt.size()) + o->n > m.model->config().context)
      fmt::print(stderr, "warning: {} prompt + {} new tokens exceed the model's trained context of {}\n", prompt.size(),
                 o->n, m.model->config().context);
    GenerationOptions g;
    g.n_predict = o->n;
    g.sampling.greedy = o->greedy;
    g.sampling.temperature = o->temp;
    g.sampling.top_k = o->top_k;
    g.sampling.top_p = o->top_p;
    g.sampling.seed = o->seed;
    Generator gen(*m.model, m.tokenizer.get());
    fmt::print("{}", text);
    std::fflush(stdout);
    gen.generate(prompt, g, [&](int32_t id) {
      fmt::print("{}", m.tokenizer->piece(id));
      std::fflush(stdout);
    });
    fmt::print("\n");
    const GenerationStats& s = gen.stats();
    fmt::print(stderr, "\nprompt: {} tokens, {:.1f} tokens/s | decode: {} tokens, {:.1f} tokens/s | KV cache: {:.2f} MiB ({} bytes)\n",
               s.prompt_tokens, s.prompt_tps(), s.generated_tokens, s.decode_tps(),
               static_cast<double>(s.kv_bytes) / (1 << 20), s.kv_bytes);
  });
}

}  // namespace kvsqueeze
