// kvsqueeze demo: the README's main job. A real instruction model reads a long real
// document (King James text with facts planted at several depths) once; every preset
// compresses that same pass, then answers questions about the facts through the model's
// chat template. One row per (preset, question): the answer, whether it is right, the KV
// cache size and decode speed. --random keeps the older demo on a random-weight model
// (next-token KL against the full cache instead of answers).
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "cli/common.h"
#include "cli/press_cli.h"
#include "eval/synthetic.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "runtime/chat_template.h"
#include "runtime/divergence.h"
#include "runtime/generator.h"
#include "runtime/press_targets.h"
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
  const char* number;  // the answer is right when it contains this
  double depth;        // where in the document, as a fraction of its sentences
};
// Two-digit numbers: SmolLM2 writes numbers digit by digit, so a long number is several
// tokens a press must all keep; and with words instead the full-cache model itself
// answers from the Bible ("the magic word is LORD").
constexpr Fact kFacts[] = {{"Anna", "47", 0.10}, {"Peter", "29", 0.35}, {"Maria", "83", 0.60}, {"David", "61", 0.85}};

// Whether `text` holds `number` as a whole number ("613" does not hold "61").
bool has_number(const std::string& text, const std::string& number) {
  const auto digit = [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; };
  for (size_t at = text.find(number); at != std::string::npos; at = text.find(number, at + 1)) {
    const size_t end = at + number.size();
    if ((at == 0 || !digit(text[at - 1])) && (end == text.size() || !digit(text[end]))) return true;
  }
  return false;
}

// Sentences of the haystack until the document reaches about `tokens` tokens, with each
// fact ("Remember this: the magic number of Anna is 47.") planted at its depth.
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
  bool question_agnostic = false;
};

// Presses and their caches, all filled by one shared pass over the same tokens.
std::vector<PressConfig> preset_configs(const std::vector<std::string>& presets, const PressOptions& opts) {
  std::vector<PressConfig> out;
  for (const std::string& name : presets) out.push_back(name == "none" ? PressConfig::from_preset("none") : opts.config(name));
  return out;
}

// Every preset's cache from one pass over `tokens`.
struct PresetCaches : PressTargets {
  std::vector<float> logits;  // after the last token (the same for every preset)
  double seconds = 0;

  PresetCaches(const Model& model, const std::vector<std::string>& presets, const PressOptions& opts,
               const std::vector<int32_t>& tokens)
      : PressTargets(model, preset_configs(presets, opts), kv_type_from_name(opts.kv_type)),
        logits(static_cast<size_t>(model.config().vocab)) {
    const auto t0 = std::chrono::steady_clock::now();
    model.forward_shared(targets, tokens.data(), static_cast<int64_t>(tokens.size()), logits.data(), false);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

struct Answer {
  std::string text;
  bool right = false;
  size_t kv_bytes = 0;  // after compression, before the answer
  double decode_tps = 0;
};

void run_document_demo(const LoadedModel& m, const std::string& model_path, const std::vector<std::string>& presets,
                       const PressOptions& press_opts, const DemoOptions& o) {
  const Model& model = *m.model;
  const Tokenizer& tok = *m.tokenizer;
  const ChatTemplate chat = chat_template_for(model.file().get_string_or("tokenizer.chat_template", ""), tok);
  const std::string doc = planted_document(eval::Haystack::from_file(o.document), tok, o.context_tokens);
  // The conversation is one user turn: the document, then the question.
  const auto rendering = [&](const Fact& f) {
    return render_chat(chat, {{"user", fmt::format("Read this text.\n\n{}\n\nWhat is the magic number of {}?", doc, f.name)}});
  };
  GenerationOptions g;
  g.n_predict = o.n_predict;
  // answers[preset][question]
  std::vector<std::vector<Answer>> answers(presets.size());
  const auto answer = [&](size_t preset, const Fact& f, KvCache cache, std::vector<float> logits,
                          const std::vector<int32_t>& question) {
    Answer a;
    a.kv_bytes = cache.bytes_used();
    Generator gen(model, &tok, std::move(cache));
    if (!question.empty()) logits = gen.prefill(question);
    a.text = tok.decode(gen.decode(std::move(logits), g));
    a.right = has_number(a.text, f.number);
    a.decode_tps = gen.stats().decode_tps();
    answers[preset].push_back(a);
  };
  int64_t read_tokens = 0;
  double read_seconds = 0;
  if (o.question_agnostic) {
    // The document part of the rendering is compressed once; each question is read after.
    const std::string probe = rendering(kFacts[0]);
    const size_t split = probe.find(doc) + doc.size();
    const std::vector<int32_t> context = tok.encode(probe.substr(0, split), tok.adds_bos(), true);
    const PresetCaches pc(model, presets, press_opts, context);
    read_tokens = static_cast<int64_t>(context.size());
    read_seconds = pc.seconds;
    for (const Fact& f : kFacts) {
      const std::vector<int32_t> question = tok.encode(rendering(f).substr(split), false, true);
      for (size_t i = 0; i < presets.size(); ++i) answer(i, f, pc.caches[i], {}, question);
    }
  } else {
    // Question-aware: the whole prompt is compressed, its tail (the question) observing.
    for (const Fact& f : kFacts) {
      const std::vector<int32_t> prompt = tok.encode(rendering(f), tok.adds_bos(), true);
      PresetCaches pc(model, presets, press_opts, prompt);
      read_tokens += static_cast<int64_t>(prompt.size());
      read_seconds += pc.seconds;
      for (size_t i = 0; i < presets.size(); ++i) answer(i, f, std::move(pc.caches[i]), pc.logits, {});
    }
  }

  fmt::print("model: {} ({} chat format)\n", model_path, chat.name());
  fmt::print("document: about {} tokens of {} with 4 facts planted at 10/35/60/85% depth\n", o.context_tokens,
             o.document);
  fmt::print("{}: read {} prompt tokens in {:.1f} s ({:.0f} tokens/s), one pass shared by every preset;\n",
             o.question_agnostic ? "question-agnostic (the document compressed once, then each question)"
                                 : "question-aware (document + question compressed together, once per question)",
             read_tokens, read_seconds, static_cast<double>(read_tokens) / read_seconds);
  fmt::print("compressed to {} entries per KV head (window {}), then answered greedily\n\n", press_opts.budget,
             press_opts.window);
  fmt::print("| preset | KV MiB | magic number of | answer | right | decode tok/s |\n");
  fmt::print("|---|---:|---|---|:---:|---:|\n");
  for (size_t i = 0; i < presets.size(); ++i)
    for (size_t q = 0; q < std::size(kFacts); ++q) {
      const Answer& a = answers[i][q];
      fmt::print("| {} | {:.2f} | {} ({}) | {} | {} | {:.1f} |\n", presets[i], static_cast<double>(a.kv_bytes) / (1 << 20),
                 kFacts[q].name, kFacts[q].number, answer_cell(a.text), a.right ? "yes" : "no", a.decode_tps);
    }
  fmt::print("\n| preset | KV MiB | of full | right | decode tok/s |\n|---|---:|---:|---:|---:|\n");
  const auto mean = [&](size_t i, auto field) {
    double sum = 0;
    for (const Answer& a : answers[i]) sum += static_cast<double>(field(a));
    return sum / static_cast<double>(answers[i].size());
  };
  for (size_t i = 0; i < presets.size(); ++i) {
    int right = 0;
    for (const Answer& a : answers[i]) right += a.right;
    const double kv = mean(i, [](const Answer& a) { return a.kv_bytes; });
    const double full = mean(0, [](const Answer& a) { return a.kv_bytes; });
    fmt::print("| {} | {:.2f} | {} | {}/{} | {:.1f} |\n", presets[i], kv / (1 << 20),
               presets[0] == "none" ? fmt::format("{:.0f}%", 100.0 * kv / full) : "-", right, answers[i].size(),
               mean(i, [](const Answer& a) { return a.decode_tps; }));
  }
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
  o->press.budget = 512;
  auto* cmd = app.add_subcommand("demo", "Read a long document once, compress it with each preset, and ask the model "
                                         "questions about facts planted in it: answers, KV size and speed per preset");
  add_model_option(cmd, o->model, "model (default: smollm2-135m-instruct)");
  cmd->add_flag("--question-agnostic", o->doc.question_agnostic,
                "compress the document alone once, then read each question (default: question and document together)");
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
