#include "eval/runner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/kv_cache.h"
#include "eval/builtin_text.h"
#include "eval/longbench.h"
#include "eval/progress_bar.h"
#include "eval/results_file.h"
#include "eval/summary_table.h"
#include "eval/synthetic.h"
#include "eval/teacher_forced.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "press/compression_press.h"
#include "runtime/chat_template.h"
#include "runtime/generator.h"
#include "runtime/press_targets.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze::eval {

const std::vector<std::string>& eval_tasks() {
  static const std::vector<std::string> t{"fidelity", "ppl", "niah", "ruler", "longbench"};
  return t;
}

namespace {

using nlohmann::json;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct GridPoint {
  std::string preset;
  std::optional<int64_t> budget;
  std::optional<double> ratio;
  PressConfig config;
};

// "none" first (the reference every other run is compared with), then preset x budget.
std::vector<GridPoint> make_grid(const EvalOptions& o) {
  if (o.presets.empty()) throw std::invalid_argument("no presets given (--presets a,b,c)");
  const bool any_press = std::any_of(o.presets.begin(), o.presets.end(), [](const std::string& p) {
    return PressConfig::from_preset(p).enabled();  // throws for unknown names
  });
  if (any_press && o.budgets.empty() && o.ratios.empty()) throw std::invalid_argument("give --budgets or --ratios (or both)");
  std::vector<GridPoint> grid;
  GridPoint full;
  full.preset = "none";
  grid.push_back(full);
  for (const auto& name : o.presets) {
    PressConfig base = PressConfig::from_preset(name);  // throws for unknown names
    if (!base.enabled()) continue;
    base.window = o.tuning.window;
    base.pool_kernel = o.tuning.pool_kernel;
    base.pool_max = o.tuning.pool_max;
    if (o.gqa_max) base.gqa_max = *o.gqa_max;
    base.alpha = o.tuning.alpha;
    base.pyramid_beta = o.tuning.pyramid_beta;
    base.skip_layers = o.tuning.skip_layers;
    for (int64_t b : o.budgets) {
      GridPoint p{name, b, std::nullopt, base};
      p.config.budget = b;
      try {
        p.config.validate();
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(fmt::format("budget {} does not fit preset {}: {}", b, name, e.what()));
      }
      grid.push_back(p);
    }
    for (double r : o.ratios) {
      GridPoint p{name, std::nullopt, r, base};
      p.config.ratio = r;
      try {
        p.config.validate();
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(fmt::format("ratio {} does not fit preset {}: {}", r, name, e.what()));
      }
      grid.push_back(p);
    }
  }
  return grid;
}

// The fields every result line carries.
json base_record(const EvalOptions& o, const GridPoint& p, const std::string& subtask, const std::string& sample,
                 const ChatTemplate* chat = nullptr) {
  json r;
  r["model"] = std::filesystem::path(o.model_path).filename().string();
  r["task"] = o.task;
  r["subtask"] = subtask;
  r["sample"] = sample;
  r["preset"] = p.preset;
  r["budget"] = p.budget ? json(*p.budget) : json(nullptr);
  r["ratio"] = p.ratio ? json(*p.ratio) : json(nullptr);
  r["question_agnostic"] = o.question_agnostic;
  r["kv_type"] = dtype_name(o.kv_type);
  r["window"] = o.tuning.window;
  r["alpha"] = o.tuning.alpha;
  if (chat) r["chat"] = chat->name();  // only when used: older results files stay resumable
  return r;
}

size_t full_kv_bytes(const Model& m, DType kv_type, int64_t tokens) {
  const KvCache probe = m.make_cache(kv_type);
  const auto row = static_cast<size_t>(probe.k_row_bytes() + probe.v_row_bytes()) + sizeof(int32_t);
  return static_cast<size_t>(m.config().full_cache_rows(tokens)) * row * static_cast<size_t>(m.config().n_head_kv);
}

// Reads `ids` into every target's cache: once for all (Model::forward_shared) or, with
// `separate`, once per target. The next-token logits after the prompt and each target's
// share of the prefill time.
struct Prefill {
  std::vector<std::vector<float>> logits;  // one row shared by all, or one per target
  std::vector<double> seconds;
  const std::vector<float>& logits_of(size_t i) const { return logits[logits.size() == 1 ? 0 : i]; }
};

Prefill prefill_targets(const Model& model, PressTargets& pt, const std::vector<int32_t>& ids, bool separate) {
  const size_t n = pt.targets.size();
  const auto len = static_cast<int64_t>(ids.size());
  Prefill r;
  r.logits.assign(separate ? n : 1, std::vector<float>(static_cast<size_t>(model.config().vocab)));
  r.seconds.resize(n);
  const double t_shared = now();
  if (separate) {
    for (size_t i = 0; i < n; ++i) {
      const double t0 = now();
      model.forward(pt.caches[i], ids.data(), len, r.logits[i].data(), false, pt.targets[i].press);
      r.seconds[i] = now() - t0;
    }
  } else {
    model.forward_shared(pt.targets, ids.data(), len, r.logits[0].data(), false);
    std::fill(r.seconds.begin(), r.seconds.end(), (now() - t_shared) / static_cast<double>(n));
  }
  return r;
}

// fidelity and ppl: the full cache's run per window, then every other grid point against it.
int64_t run_text_task(const EvalOptions& o, const Model& model, const Tokenizer& tok, const std::vector<GridPoint>& grid,
                      ResultsFile& results) {
  if (o.question_agnostic)
    throw std::invalid_argument(fmt::format("{} always compresses the prompt alone and then reads the continuation; "
                                            "--question-agnostic does not apply",
                                            o.task));
  const std::string text = o.text_path.empty() ? builtin_text() : [&] {
    std::ifstream in(o.text_path, std::ios::binary);
    if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", o.text_path));
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }();
  int64_t prompt = o.prompt_tokens;
  if (prompt == 0) {
    // As much as the context allows (2048 at most), or what the text has.
    const int64_t ctx = model.config().context > 0 ? model.config().context : 2048;
    const int64_t bos = tok.adds_bos() ? 1 : 0;
    prompt = std::min<int64_t>({2048, ctx - o.continuation_tokens, text_tokens(tok, text) + bos - o.continuation_tokens});
    if (prompt < 1) throw std::invalid_argument("the text is too short for a prompt and its continuation");
  }
  const auto windows = text_windows(tok, text, prompt, o.continuation_tokens, o.samples > 0 ? o.samples : 1);
  int64_t todo = 0;
  for (const auto& w : windows)
    for (const auto& p : grid) todo += !results.has(ResultsFile::key_of(base_record(o, p, "", w.id)));
  ProgressBar bar(todo, o.progress);
  int64_t ran = 0;
  for (const auto& w : windows) {
    std::vector<const GridPoint*> points;  // what this window still needs
    for (const auto& p : grid)
      if (!results.has(ResultsFile::key_of(base_record(o, p, "", w.id)))) points.push_back(&p);
    if (points.empty()) continue;
    // The full cache first (every run is compared with it), then each point: one shared
    // prefill fills them all, or one prefill each with --separate-prefill.
    std::vector<PressConfig> configs{PressConfig{}};
    for (const GridPoint* p : points) configs.push_back(p->config);
    PressTargets pt(model, configs, o.kv_type);
    const Prefill prefill = prefill_targets(model, pt, w.prompt, o.separate_prefill);
    auto continue_run = [&](size_t i) {
      TeacherForcedRun run = read_continuation(model, pt.caches[i], w, prefill.logits_of(i));
      run.seconds += prefill.seconds[i];
      pt.caches[i].clear();  // done with it: release its memory before the next point
      return run;
    };
    const TeacherForcedRun full = continue_run(0);
    for (size_t i = 0; i < points.size(); ++i) {
      const GridPoint& p = *points[i];
      json r = base_record(o, p, "", w.id);
      std::optional<TeacherForcedRun> own;
      if (p.preset != "none") own = continue_run(i + 1);
      const TeacherForcedRun& run = own ? *own : full;
      const FidelityMetrics m = compare_runs(full, run, w.continuation);
      r["metric"] = o.task == "fidelity" ? "top1_agreement" : "neg_log_ppl";
      r["score"] = o.task == "fidelity" ? m.top1 : -m.nll;
      r["metrics"] = {{"kl", m.kl}, {"top1_agreement", m.top1}, {"nll", m.nll}, {"ppl", m.ppl},
                      {"attn_l1", m.attn_l1}, {"attn_l1_layers", m.attn_l1_layers}};
      r["kv_bytes"] = run.kv_bytes;
      r["kv_bytes_full"] = full_kv_bytes(model, o.kv_type, static_cast<int64_t>(w.prompt.size()));
      r["prompt_tokens"] = w.prompt.size();
      r["continuation_tokens"] = w.continuation.size();
      r["seconds"] = run.seconds;
      results.append(r);
      ++ran;
      bar.step();
    }
  }
  bar.finish();
  return ran;
}

std::vector<int64_t> default_lengths(const Model& m, const std::string& task) {
  const int64_t ctx = m.config().context > 0 ? m.config().context : 4096;
  if (task == "ruler") return {std::min<int64_t>(ctx, 4096)};
  std::vector<int64_t> out;
  for (int64_t l = ctx; l >= 256 && out.size() < 4; l /= 2) out.insert(out.begin(), std::min<int64_t>(l, 32768));
  if (out.empty()) out.push_back(ctx);
  return out;
}

// Context ids (with BOS) and question ids of a sample, the context cut in the middle when
// the whole prompt is longer than `max_length` (LongBench's truncation).
// With a chat template both parts come from one rendered user turn, cut after the context.
std::pair<std::vector<int32_t>, std::vector<int32_t>> sample_ids(const Tokenizer& tok, const QaSample& s,
                                                                  int64_t max_length, const ChatTemplate* chat) {
  std::vector<int32_t> ctx, q;
  if (chat) {
    std::pair<std::vector<ChatPart>, std::vector<ChatPart>> parts;
    try {
      parts = split_turn_parts(*chat, s.context, s.question);
    } catch (const std::exception& e) {
      throw std::logic_error(fmt::format("sample '{}': {}", s.id, e.what()));
    }
    ctx = encode_chat(tok, parts.first, tok.adds_bos());
    q = encode_chat(tok, parts.second, false);
  } else {
    ctx = tok.encode(s.context, true, false);
    q = tok.encode(s.question, false, false);
  }
  const auto total = static_cast<int64_t>(ctx.size() + q.size());
  if (max_length > 0 && total > max_length) {
    const int64_t keep = max_length - static_cast<int64_t>(q.size());
    if (keep < 2)
      throw std::invalid_argument(fmt::format("sample '{}': its question alone is longer than the {} prompt tokens allowed", s.id, max_length));
    const int64_t head = keep / 2, tail = keep - head;
    std::vector<int32_t> cut(ctx.begin(), ctx.begin() + head);
    cut.insert(cut.end(), ctx.end() - tail, ctx.end());
    ctx = std::move(cut);
  }
  return {std::move(ctx), std::move(q)};
}

// The chat template --chat asks for, or none.
std::optional<ChatTemplate> eval_chat_template(const EvalOptions& o, const Model& model, const Tokenizer& tok) {
  if (o.chat != "auto" && o.chat != "on" && o.chat != "off")
    throw std::invalid_argument(fmt::format("--chat takes auto, on or off, not '{}'", o.chat));
  const std::string text = model.file().get_string_or("tokenizer.chat_template", "");
  if (o.chat == "off" || (o.chat == "auto" && text.empty())) return std::nullopt;
  const ChatTemplate t = chat_template_for(text, tok);  // throws for a family it cannot render
  if (text.empty() && t.format == ChatFormat::ChatML && tok.vocab().find("<|im_start|>") < 0)
    throw std::invalid_argument("--chat on: this model has no chat template and no chat turn tokens");
  return t;
}

// The samples of a QA task: read from LongBench files or generated.
std::vector<QaSample> qa_samples(const EvalOptions& o, const Model& model, const Tokenizer& tok) {
  const int64_t ctx = model.config().context;
  if (o.task == "longbench") {
    if (!o.lengths.empty() || !o.haystack_path.empty()) throw std::invalid_argument("longbench takes neither --lengths nor --haystack");
    return longbench_samples(o.data_files, o.samples);
  }
  if (!o.data_files.empty()) throw std::invalid_argument(fmt::format("{} generates its samples; --data is for longbench", o.task));
  const Haystack hay = o.haystack_path.empty() ? Haystack::generated() : Haystack::from_file(o.haystack_path);
  SyntheticOptions so;
  so.lengths = o.lengths.empty() ? default_lengths(model, o.task) : o.lengths;
  so.depths = o.depths;
  so.samples = o.samples > 0 ? o.samples : (o.task == "niah" ? 1 : 5);
  so.seed = o.seed;
  so.subtasks = o.subtasks;
  for (int64_t l : so.lengths)
    if (ctx > 0 && l > ctx)
      fmt::print(stderr, "warning: length {} is beyond the model's trained context ({} tokens)\n", l, ctx);
  return o.task == "niah" ? niah_samples(tok, hay, so) : ruler_samples(tok, hay, so);
}

// Prompt tokens a sample may use: --max-length, or for LongBench the context minus the answer.
int64_t prompt_limit(const EvalOptions& o, const Model& model, const QaSample& s) {
  const int64_t ctx = model.config().context;
  return o.max_length > 0 ? o.max_length : o.task == "longbench" && ctx > 0 ? ctx - s.max_new_tokens : 0;
}

// --export-samples: every sample as the grid would read it, one JSON line each, so another
// engine (bench/vs_kvpress) can run the very same token ids.
int64_t export_qa_samples(const EvalOptions& o, const Model& model, const Tokenizer& tok) {
  const std::optional<ChatTemplate> chat = eval_chat_template(o, model, tok);
  const std::vector<QaSample> samples = qa_samples(o, model, tok);
  std::ofstream out(o.export_path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", o.export_path));
  for (const QaSample& s : samples) {
    const auto [context_ids, question_ids] = sample_ids(tok, s, prompt_limit(o, model, s), chat ? &*chat : nullptr);
    json r;
    r["model"] = std::filesystem::path(o.model_path).filename().string();
    r["task"] = o.task;
    r["subtask"] = s.subtask;
    r["sample"] = s.id;
    for (auto it = s.tags.begin(); it != s.tags.end(); ++it) r[it.key()] = it.value();
    r["chat"] = chat ? json(chat->name()) : json(nullptr);
    r["context"] = s.context;
    r["question"] = s.question;
    r["answers"] = s.answers;
    r["metric"] = metric_name(s.metric);
    r["max_new_tokens"] = s.max_new_tokens;
    r["context_ids"] = context_ids;    // BOS and the chat turn's opening included
    r["question_ids"] = question_ids;  // read after the compressed context when question-agnostic
    out << r.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  out.flush();
  if (!out) throw std::runtime_error(fmt::format("writing '{}' failed", o.export_path));
  return static_cast<int64_t>(samples.size());
}

int64_t run_qa_task(const EvalOptions& o, const Model& model, const Tokenizer& tok, const std::vector<GridPoint>& grid,
                    ResultsFile& results) {
  const std::optional<ChatTemplate> chat = eval_chat_template(o, model, tok);
  const std::vector<QaSample> samples = qa_samples(o, model, tok);
  int64_t todo = 0;
  for (const auto& s : samples)
    for (const auto& p : grid)
      todo += !results.has(ResultsFile::key_of(base_record(o, p, s.subtask, s.id, chat ? &*chat : nullptr)));
  ProgressBar bar(todo, o.progress);
  int64_t ran = 0;
  for (const auto& s : samples) {
    std::vector<const GridPoint*> points;  // what this sample still needs
    for (const auto& p : grid)
      if (!results.has(ResultsFile::key_of(base_record(o, p, s.subtask, s.id, chat ? &*chat : nullptr)))) points.push_back(&p);
    if (points.empty()) continue;
    const auto [context_ids, question_ids] = sample_ids(tok, s, prompt_limit(o, model, s), chat ? &*chat : nullptr);
    std::vector<int32_t> all = context_ids;
    if (!o.question_agnostic) all.insert(all.end(), question_ids.begin(), question_ids.end());
    // The compressed prompt (the context alone when question-agnostic) is read once for
    // every point (Model::forward_shared), or once per point with --separate-prefill.
    std::vector<PressConfig> configs;
    for (const GridPoint* p : points) configs.push_back(p->config);  // "none": a default config, no press
    PressTargets pt(model, configs, o.kv_type);
    const Prefill prefill = prefill_targets(model, pt, all, o.separate_prefill);
    for (size_t i = 0; i < points.size(); ++i) {
      const double t0 = now();
      Generator gen(model, &tok, std::move(pt.caches[i]));
      std::vector<float> next = prefill.logits_of(i);
      if (o.question_agnostic && !question_ids.empty()) next = gen.prefill(question_ids);
      const size_t kv_bytes = gen.cache().bytes_used();
      GenerationOptions gopt;
      gopt.n_predict = s.max_new_tokens;
      const std::string prediction = tok.decode(gen.decode(std::move(next), gopt));
      const double score = score_answer(s, prediction);
      json r = base_record(o, *points[i], s.subtask, s.id, chat ? &*chat : nullptr);
      r["metric"] = metric_name(s.metric);
      r["score"] = score;
      r["metrics"] = {{metric_name(s.metric), score}};
      for (auto it = s.tags.begin(); it != s.tags.end(); ++it) r[it.key()] = it.value();
      r["kv_bytes"] = kv_bytes;
      r["kv_bytes_full"] = full_kv_bytes(model, o.kv_type, static_cast<int64_t>(context_ids.size() + question_ids.size()));
      r["prompt_tokens"] = context_ids.size() + question_ids.size();
      // A shared prefill's time is split evenly between the points it served.
      r["seconds"] = prefill.seconds[i] + (now() - t0);
      r["prediction"] = prediction.size() > 400 ? prediction.substr(0, 400) : prediction;
      r["answers"] = s.answers;
      results.append(r);
      ++ran;
      bar.step();
    }
  }
  bar.finish();
  return ran;
}

}  // namespace

int64_t run_eval(const EvalOptions& o) {
  if (std::find(eval_tasks().begin(), eval_tasks().end(), o.task) == eval_tasks().end())
    throw std::invalid_argument(fmt::format("unknown task '{}' (known: {})", o.task, fmt::join(eval_tasks(), ", ")));
  const bool text_task = o.task == "fidelity" || o.task == "ppl";
  if (!o.export_path.empty()) {
    if (text_task) throw std::invalid_argument("--export-samples is for niah, ruler and longbench");
    auto file = std::make_shared<const GgufFile>(o.model_path);
    const Model model(file);
    const auto tok = Tokenizer::from_gguf(*file);
    const int64_t n = export_qa_samples(o, model, *tok);
    fmt::print("{} samples written to {}\n", n, o.export_path);
    return 0;
  }
  if (o.out_path.empty()) throw std::invalid_argument("--out FILE is required");
  const auto grid = make_grid(o);
  auto file = std::make_shared<const GgufFile>(o.model_path);
  const Model model(file);
  const auto tok = Tokenizer::from_gguf(*file);
  ResultsFile results(o.out_path);
  const int64_t ran = text_task ? run_text_task(o, model, *tok, grid, results) : run_qa_task(o, model, *tok, grid, results);
  std::set<std::string> presets;
  for (const auto& p : grid) presets.insert(p.preset);
  print_summary(o, presets, results, "score", "mean score");
  // The teacher-forced tasks' "lower is better" view, which is what papers plot.
  if (o.task == "fidelity") print_summary(o, presets, results, "kl", "mean next-token KL vs the full cache (nats)");
  if (o.task == "ppl") print_summary(o, presets, results, "ppl", "mean perplexity");
  return ran;
}

}  // namespace kvsqueeze::eval
