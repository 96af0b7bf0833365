// kvsqueeze generate: stream a continuation of a prompt (optionally with a compressed
// KV cache), then report speed, KV bytes and per-layer head budgets.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "cli/common.h"
#include "cache/cache_file.h"
#include "cli/press_cli.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

void add_generate_command(CLI::App& app) {
  struct Opts {
    std::string model, text, file, context, question, dump, save_cache, load_cache;
    int n = 64, threads = 0, top_k = 40;
    bool greedy = false, no_parse_special = false, ignore_eos = false;
    float temp = 0.8f, top_p = 0.95f;
    uint64_t seed = 0;
    PressOptions press;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt");
  add_model_option(cmd, o->model, "model")->required();
  cmd->add_option("-p,--prompt", o->text, "prompt text (question-aware: the window is the prompt's tail)");
  cmd->add_option("-f,--file", o->file, "file with the prompt");
  cmd->add_option("--context", o->context, "question-agnostic: file with a context compressed on its own ...");
  cmd->add_option("--question", o->question, "... then this text is read against the compressed cache");
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->check(CLI::Range(0, 1 << 24));
  cmd->add_flag("--greedy", o->greedy, "always take the most likely token");
  cmd->add_option("--temp", o->temp, "sampling temperature (0 = greedy)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-k", o->top_k, "keep the k most likely tokens (0 = all)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", o->top_p, "keep the smallest set with this probability mass")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--seed", o->seed, "sampling seed");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "generate all -n tokens, past end-of-generation tokens (for timing)");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "treat special-token text in the prompt as plain text");
  cmd->add_option("--dump-selection", o->dump, "write the kept positions of every layer and KV head as JSON");
  cmd->add_option("--save-cache", o->save_cache, "save the (compressed) cache of the prompt or context to this file");
  cmd->add_option("--load-cache", o->load_cache, "start from a saved cache; -p/-f is then read against it (no BOS)");
  add_press_options(cmd, o->press);
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    if (o->greedy && (o->temp != 0.8f || o->top_k != 40 || o->top_p != 0.95f))
      throw std::invalid_argument("--greedy cannot be combined with --temp/--top-k/--top-p");
    if (!(o->top_p > 0.0f)) throw std::invalid_argument("--top-p must be in (0, 1]");
    const bool agnostic = !o->context.empty() || !o->question.empty();
    if (agnostic && (o->context.empty() || o->question.empty()))
      throw std::invalid_argument("--context and --question go together");
    if (agnostic && (!o->text.empty() || !o->file.empty()))
      throw std::invalid_argument("give either -p/-f or --context/--question");
    auto press = o->press.make_press();
    const DType kv_type = kv_type_from_name(o->press.kv_type);
    if (!o->load_cache.empty() && agnostic) throw std::invalid_argument("--load-cache replaces --context: give -p/-f");
    if (!o->load_cache.empty() && press) throw std::invalid_argument("--load-cache reads a cache that is already compressed");
    LoadedModel m = load_model(o->model);
    const bool special = !o->no_parse_special;
    // Question-aware: one prompt. Question-agnostic: the context is compressed alone,
    // then the question is read (uncompressed) against it. A loaded cache plays the
    // part of the context.
    const bool loaded = !o->load_cache.empty();
    const std::string first_text = agnostic ? read_file(o->context) : read_prompt(o->text, o->file);
    const std::vector<int32_t> first = m.tokenizer->encode(first_text, !loaded, special);
    const std::vector<int32_t> second = agnostic ? m.tokenizer->encode(o->question, false, special) : std::vector<int32_t>{};
    if (first.empty() || (agnostic && second.empty())) throw std::invalid_argument("the prompt tokenizes to nothing");
    const int64_t total = static_cast<int64_t>(first.size() + second.size());
    if (total + o->n > m.model->config().context)
      fmt::print(stderr, "warning: {} prompt + {} new tokens exceed the model's trained context of {}\n", total, o->n,
                 m.model->config().context);
    GenerationOptions g;
    g.n_predict = o->n;
    g.sampling.greedy = o->greedy;
    g.sampling.temperature = o->temp;
    g.sampling.top_k = o->top_k;
    g.sampling.top_p = o->top_p;
    g.sampling.seed = o->seed;
    g.stop_at_eog = !o->ignore_eos;
    Generator gen = loaded ? Generator(*m.model, m.tokenizer.get(), load_cache(o->load_cache, m.model->cache_identity()))
                           : Generator(*m.model, m.tokenizer.get(), kv_type);
    fmt::print("{}", agnostic ? o->question : first_text);
    std::fflush(stdout);
    const size_t loaded_bytes = gen.cache().bytes_used();
    std::vector<float> logits = gen.prefill(first, press.get());
    const size_t compressed = gen.cache().bytes_used();
    if (!o->save_cache.empty()) save_cache(o->save_cache, gen.cache(), m.model->fingerprint());
    if (!o->dump.empty()) dump_selection(o->dump, o->press.preset, static_cast<int64_t>(first.size()), gen.cache());
    if (agnostic) logits = gen.prefill(second);
    auto step_press = o->press.make_decode_press(press.get(), m.model->config().n_layer, m.model->config().n_head_kv);
    gen.decode(
        std::move(logits), g,
        [&](int32_t id) {
          fmt::print("{}", m.tokenizer->piece(id));
          std::fflush(stdout);
        },
        step_press.get());
    fmt::print("\n");
    const GenerationStats& s = gen.stats();
    const double full = static_cast<double>(s.kv_bytes_uncompressed);
    fmt::print(stderr, "\nprompt: {} tokens, {:.1f} tokens/s | decode: {} tokens, {:.1f} tokens/s\n", s.prompt_tokens,
               s.prompt_tps(), s.generated_tokens, s.decode_tps());
    if (loaded) {
      fmt::print(stderr, "KV cache: {:.2f} MiB loaded from {}, {:.2f} MiB at the end ({} bytes)\n",
                 static_cast<double>(loaded_bytes) / (1 << 20), o->load_cache,
                 static_cast<double>(s.kv_bytes) / (1 << 20), s.kv_bytes);
    } else {
      fmt::print(stderr, "KV cache: {:.2f} MiB before compression, {:.2f} MiB after ({:.1f}%), {:.2f} MiB at the end ({} bytes)\n",
                 full / (1 << 20), static_cast<double>(compressed) / (1 << 20),
                 full > 0 ? 100.0 * static_cast<double>(compressed) / full : 100.0,
                 static_cast<double>(s.kv_bytes) / (1 << 20), s.kv_bytes);
    }
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    fmt::print(stderr, "peak resident memory: {:.1f} MiB\n", static_cast<double>(ru.ru_maxrss) / 1024.0);
    if (step_press) fmt::print(stderr, "decode-time compression: {} rows evicted\n", step_press->evictions());
    if (press) {
      fmt::print(stderr, "press {}: {:.3f} s scoring and selecting; KV cache at most {:.2f} MiB while reading the prompt\n{}",
                 o->press.preset, press->seconds(),
                 static_cast<double>(std::max(press->peak_cache_bytes(), compressed)) / (1 << 20), budget_spread(*press));
    }
  });
}

}  // namespace kvsqueeze
