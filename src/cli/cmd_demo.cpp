// kvsqueeze demo: the README's main job. A real instruction model reads a long real
// document (King James text with facts planted at several depths) once; every preset
// compresses that same pass, then answers questions about the facts through the model's
// chat template. One row per (preset, question): the answer, whether it is right, the KV
// cache size and decode speed. --random keeps the older demo on a random-weight model
// (next-token KL against the full cache instead of answers).
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "cli/common.h"
#include "cli/press_options.h"
#include "eval/synthetic.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "runtime/chat_template.h"
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


// ---- the document demo ----------------------------------------------------------------

struct Fact {
  const char* name;
  const char* number;
  double depth;  // where in the document, as a fraction of its sentences
};
constexpr Fact kFacts[] = {{"Anna", "4721", 0.10}, {"Peter", "9058", 0.35}, {"Maria", "3316", 0.60}, {"David", "6142", 0.85}};

// Sentences of the haystack until the document reaches about `tokens` tokens, with each
// fact ("Remember this: the magic number of Anna is 4721.") planted at its depth.
std::string planted_document(const eval::Haystack& hay, const Tokenizer& tok, int64_t tokens) {
  const auto& sentences = hay.sentences();
  std::vector<std::string> picked;
  int64_t have = 0;
  for (size_t i = 0; have < tokens; ++i) {
    if (i == sentences.size()) throw std::invalid_argument("the document file is too short for --context-tokens");
    picked.push_back(sentences[i]);
    have += static_cast<int64_t>(tok.encode(" " + sentences[i], false, false).size());
  }
  std::string doc;
  for (size_t i = 0; i < picked.size(); ++i) {
    for (const Fact& f : kFacts)
      if (i == static_cast<size_t>(f.depth * static_cast<double>(picked.size())))
        doc += fmt::format("Remember this: the magic number of {} is {}. ", f.name, f.number);
    doc += picked[i] + " ";
  }
  doc.pop_back();
  return doc;
}

// The first line of an answer, trimmed and shortened for a table cell.
std::string answer_cell(std::string text) {
  text = text.substr(0, text.find('\n'));
  for (char& ch : text)
    if (ch == '|') ch = '/';
  const size_t a = text.find_first_not_of(' ');
  text = a == std::string::npos ? "" : text.substr(a);
  return text.size() > 48 ? text.substr(0, 45) + "..." : text;
}

struct DemoOptions {
  std::string document;
  int64_t context_tokens = 4500;
  int n_predict = 16;
};

void run_document_demo(const LoadedModel& m, const std::string& model_path, const std::vector<std::string>& presets,
                       const PressOptions& press_opts, const DemoOptions& o) {
  const Model& model = *m.model;
  const Tokenizer& tok = *m.tokenizer;
  const ChatTemplate chat = chat_template_for(model.file().get_string_or("tokenizer.chat_template", ""), tok);
  const std::string doc = planted_document(eval::Haystack::from_file(o.document), tok, o.context_tokens);
  // The conversation is one user turn: the document, then the question. The document part
  // of its rendering is the context every preset compresses; the rest is read afterwards.
  const auto rendering = [&](const std::string& question) {
    return render_chat(chat, {{"user", "Read this text.\n\n" + doc + "\n\n" + question}});
  };
  const std::string probe = rendering("?");
  const size_t split = probe.find(doc) + doc.size();
  const std::vector<int32_t> context = tok.encode(probe.substr(0, split), tok.adds_bos(), true);
  const DType kv_type = kv_type_from_name(press_opts.kv_type);

  // One pass over the document feeds every preset's cache.
  std::vector<std::unique_ptr<CompressionPress>> presses;
  std::vector<KvCache> caches;
  caches.reserve(presets.size());
  std::vector<PressTarget> targets;
  for (const std::string& name : presets) {
    presses.push_back(name == "none" ? nullptr : make_compression_press(press_opts.config(name)));
    caches.push_back(model.make_cache(kv_type));
    targets.push_back({&caches.back(), presses.back().get()});
  }
  std::vector<float> unused(static_cast<size_t>(model.config().vocab));
  const auto t0 = std::chrono::steady_clock::now();
  model.forward_shared(targets, context.data(), static_cast<int64_t>(context.size()), unused.data(), false);
  const double read_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  fmt::print("model: {} ({} chat format)\n", model_path, chat.name());
  fmt::print("document: {} tokens of {} with 4 facts planted at 10/35/60/85% depth\n", context.size(), o.document);
  fmt::print("read once in {:.1f} s ({:.0f} tokens/s); every preset compressed that same pass to {} entries per KV head\n",
             read_s, static_cast<double>(context.size()) / read_s, press_opts.budget);
  fmt::print("then each question is read against the compressed cache (question-agnostic) and answered greedily\n\n");
  fmt::print("| preset | KV MiB | question: magic number of | answer | right | decode tok/s |\n");
  fmt::print("|---|---:|---|---|:---:|---:|\n");
  std::vector<int> right(presets.size(), 0);
  std::vector<double> tps(presets.size(), 0);
  for (size_t i = 0; i < presets.size(); ++i) {
    for (const Fact& f : kFacts) {
      const std::string full = rendering(fmt::format("What is the magic number of {}?", f.name));
      const std::vector<int32_t> question = tok.encode(full.substr(split), false, true);
      Generator gen(model, &tok, caches[i]);
      GenerationOptions g;
      g.n_predict = o.n_predict;
      const std::vector<int32_t> out = gen.decode(gen.prefill(question), g);
      const std::string answer = tok.decode(out);
      const bool ok = answer.find(f.number) != std::string::npos;
      right[i] += ok;
      tps[i] += gen.stats().decode_tps() / std::size(kFacts);
      fmt::print("| {} | {:.2f} | {} ({}) | {} | {} | {:.1f} |\n", presets[i],
                 static_cast<double>(caches[i].bytes_used()) / (1 << 20), f.name, f.number, answer_cell(answer),
                 ok ? "yes" : "no", gen.stats().decode_tps());
    }
  }
  fmt::print("\n| preset | KV MiB | of full | right | decode tok/s |\n|---|---:|---:|---:|---:|\n");
  const double full_bytes = static_cast<double>(model.config().full_cache_rows(static_cast<int64_t>(context.size()))) *
                            static_cast<double>(model.config().n_head_kv) *
                            static_cast<double>(caches[0].k_row_bytes() + caches[0].v_row_bytes() + sizeof(int32_t));
  for (size_t i = 0; i < presets.size(); ++i)
    fmt::print("| {} | {:.2f} | {:.0f}% | {}/{} | {:.1f} |\n", presets[i],
               static_cast<double>(caches[i].bytes_used()) / (1 << 20),
               100.0 * static_cast<double>(caches[i].bytes_used()) / full_bytes, right[i], std::size(kFacts), tps[i]);
}

}  // namespace

namespace {

// The older demo: a long synthetic prompt on a random-weight model (no answers to check),
// scored by next-token KL against the full cache along the full cache's greedy path.
void run_random_demo(const LoadedModel& m, const std::string& path, const std::vector<std::string>& presets,
                     const PressOptions& press_opts, int prompt_tokens, int n) {
  int sentences = 8;
  std::vector<int32_t> prompt;
  do {
    sentences *= 2;
    prompt = m.tokenizer->encode(synthetic_prompt(sentences), true, false);
  } while (static_cast<int>(prompt.size()) < prompt_tokens && sentences < (1 << 20));
  prompt.resize(static_cast<size_t>(std::min<int>(prompt_tokens, static_cast<int>(prompt.size()))));
  const DType kv_type = kv_type_from_name(press_opts.kv_type);

  // The full cache first: its greedy tokens are the path every preset is scored on.
  const Row full = run(*m.model, *m.tokenizer, prompt, n, {}, nullptr, kv_type);
  fmt::print("model: {}\nprompt: {} tokens, budget {} entries per KV head (window {})\n\n", path, prompt.size(),
             press_opts.budget, press_opts.window);
  fmt::print("| press | KV cache MB | prompt tok/s | decode tok/s | next-token KL vs full |\n");
  fmt::print("|-------|------------:|-------------:|-------------:|----------------------:|\n");
  for (const std::string& name : presets) {
    Row row;
    if (name == "none") {
      row = full;
    } else {
      auto press = make_compression_press(press_opts.config(name));
      row = run(*m.model, *m.tokenizer, prompt, n, full.tokens, press.get(), kv_type);
    }
    double kl = 0;
    for (size_t i = 0; i < row.logits.size(); ++i)
      kl += next_token_kl(full.logits[i], row.logits[i]) / static_cast<double>(row.logits.size());
    fmt::print("| {:<13} | {:>11.2f} | {:>12.1f} | {:>12.1f} | {:>21.4f} |\n", name, static_cast<double>(row.kv_bytes) / 1e6,
               row.prompt_tps, row.decode_tps, kl);
  }
}

}  // namespace

void add_demo_command(CLI::App& app) {
  struct Opts {
    std::string model, presets = "none,streamingllm,snapkv,pyramidkv,ada-snapkv,ada-pyramidkv,criticalkv,lava";
    bool random = false;
    int prompt_tokens = 1024, threads = 0;
    DemoOptions doc;
    PressOptions press;
  };
  auto o = std::make_shared<Opts>();
  o->press.budget = 256;
  auto* cmd = app.add_subcommand("demo", "Read a long document once, compress it with each preset, and ask the model "
                                         "questions about facts planted in it: answers, KV size and speed per preset");
  add_model_option(cmd, o->model, "model (default: smollm2-135m-instruct)");
  cmd->add_option("--document", o->doc.document, "filler text (default: the KJV text scripts/setup.sh writes to the model cache)");
  cmd->add_option("--context-tokens", o->doc.context_tokens, "document length in tokens")->check(CLI::Range(64, 1 << 20));
  cmd->add_option("-n,--n-predict", o->doc.n_predict, "tokens per answer")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--presets", o->presets, "comma-separated presets, one table row each");
  cmd->add_flag("--random", o->random,
                "the older demo: a SmolLM2-135M-shaped random model (made once), a synthetic prompt, next-token KL");
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "--random: approximate prompt length")->check(CLI::Range(16, 1 << 20));
  add_press_options(cmd, o->press);
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    std::vector<std::string> presets;
    std::stringstream list(o->presets);
    for (std::string name; std::getline(list, name, ',');) {
      if (name != "none") o->press.config(name);  // refuse an unknown preset before any work
      presets.push_back(name);
    }
    if (presets.empty()) throw std::invalid_argument("--presets is empty");
    if (o->random) {
      const std::string path = o->model.empty() ? default_model() : o->model;
      run_random_demo(load_model(path), path, presets, o->press, o->prompt_tokens, o->doc.n_predict * 2);
      return;
    }
    const std::string path = o->model.empty() ? resolve_model_path("smollm2-135m-instruct") : o->model;
    if (o->doc.document.empty()) {
      o->doc.document = model_cache_dir() + "/kjv.txt";
      if (!std::filesystem::exists(o->doc.document))
        throw std::runtime_error(fmt::format("no document at {}: run scripts/setup.sh (or scripts/kjv_haystack.sh {}), "
                                             "or give --document FILE",
                                             o->doc.document, o->doc.document));
    }
    run_document_demo(load_model(path), path, presets, o->press, o->doc);
  });
}

}  // namespace kvsqueeze
