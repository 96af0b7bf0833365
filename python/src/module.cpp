// kvsqueeze._core: the engine's classes as the Python package sees them. Every call that
// computes releases the GIL; engine errors arrive as ValueError (bad input, impossible
// settings: the CLI's messages) or RuntimeError.
#include <omp.h>

#include <cctype>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "engine.h"
#include "eval/runner.h"
#include "model/known_models.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kvsqueeze::python {
namespace {

using Release = nb::call_guard<nb::gil_scoped_release>;

// A numpy array that owns a moved-in vector.
template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T> v, std::initializer_list<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  nb::capsule free_it(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owned->data(), shape, free_it);
}

nb::dict report_dict(const Generation::Report& r) {
  nb::dict d;
  const GenerationStats& s = r.stats;
  d["prompt_tokens"] = s.prompt_tokens;
  d["prompt_seconds"] = s.prompt_seconds;
  d["prompt_tokens_per_second"] = s.prompt_tps();
  d["generated_tokens"] = s.generated_tokens;
  d["decode_passes"] = s.decode_passes;
  d["decode_seconds"] = s.decode_seconds;
  d["decode_tokens_per_second"] = s.decode_tps();
  d["kv_bytes_uncompressed"] = s.kv_bytes_uncompressed;
  d["kv_bytes_after_prompt"] = r.kv_bytes_after_prompt;
  d["kv_bytes"] = s.kv_bytes;
  d["press_seconds"] = r.press_seconds;
  d["head_budgets"] = r.head_budgets;
  return d;
}

// Messages as Python passes them: (role, content) pairs.
using RoleContent = std::pair<std::string, std::string>;
std::vector<ChatMessage> chat_messages(const std::vector<RoleContent>& pairs) {
  std::vector<ChatMessage> out;
  for (const auto& [role, content] : pairs) out.push_back({role, content});
  return out;
}

Sampling sampling(int max_tokens, float temperature, int top_k, float top_p, uint64_t seed, bool ignore_eos,
                  std::vector<std::string> stop) {
  return Sampling{max_tokens, temperature, top_k, top_p, seed, ignore_eos, std::move(stop)};
}

}  // namespace
}  // namespace kvsqueeze::python

NB_MODULE(_core, m) {
  using namespace kvsqueeze;
  using namespace kvsqueeze::python;
  m.doc() = "kvsqueeze engine bindings (use the kvsqueeze package, not this module)";

  m.def("resolve_model_path", &resolve_model_path, "path_or_name"_a,
        "A GGUF path as given, or the cached file of a short model name (raises ValueError otherwise).");
  m.def("preset_names", [] { return PressConfig::preset_names(); });

  nb::class_<PressOptions>(m, "PressOptions", "A press described by the CLI's press options.")
      .def(nb::init<>())
      .def_rw("preset", &PressOptions::preset)
      .def_rw("budget", &PressOptions::budget)
      .def_rw("ratio", &PressOptions::ratio)
      .def_rw("window", &PressOptions::window)
      .def_rw("pool_kernel", &PressOptions::pool_kernel)
      .def_rw("pool", &PressOptions::pool)
      .def_rw("gqa_reduce", &PressOptions::gqa_reduce)
      .def_rw("alpha", &PressOptions::alpha)
      .def_rw("pyramid_beta", &PressOptions::pyramid_beta)
      .def_rw("skip_layers", &PressOptions::skip_layers)
      .def_rw("sinks", &PressOptions::sinks)
      .def_rw("kv_type", &PressOptions::kv_type)
      .def_rw("compress_every", &PressOptions::compress_every)
      .def("validate", [](const PressOptions& o) { (void)o.make_press(); },
           "Raises ValueError (the CLI's message) when the options are impossible.");

  nb::class_<Generation>(m, "Generation")
      .def("next_piece",
           [](Generation& g) -> std::optional<nb::bytes> {
             std::optional<std::string> piece;
             {
               nb::gil_scoped_release release;
               piece = g.next_piece();
             }
             if (!piece) return std::nullopt;
             return nb::bytes(piece->data(), piece->size());
           },
           "Decodes until there is text to hand on; None at the end. UTF-8 bytes.")
      .def_prop_ro("tokens", &Generation::tokens)
      .def_prop_ro("finish_reason", &Generation::finish_reason)
      .def("report", [](const Generation& g) { return nb::typed<nb::dict, nb::str, nb::object>(report_dict(g.report())); });

  nb::class_<Context>(m, "Context")
      .def("ask",
           [](const Context& c, const std::vector<int32_t>& question, int max_tokens, float temperature, int top_k,
              float top_p, uint64_t seed, bool ignore_eos, std::vector<std::string> stop) {
             nb::gil_scoped_release release;
             return c.ask(question, sampling(max_tokens, temperature, top_k, top_p, seed, ignore_eos, std::move(stop)));
           },
           "question"_a, "max_tokens"_a, "temperature"_a, "top_k"_a, "top_p"_a, "seed"_a, "ignore_eos"_a, "stop"_a,
           nb::keep_alive<0, 1>())
      .def_prop_ro("n_tokens", [](const Context& c) { return c.cache().next_pos(); })
      .def_prop_ro("bytes", [](const Context& c) { return c.cache().bytes_used(); })
      .def_prop_ro("bytes_uncompressed", &Context::bytes_uncompressed)
      .def_prop_ro("press_seconds", &Context::press_seconds)
      .def_prop_ro("press_budgets", &Context::head_budgets)
      .def("rows",
           [](const Context& c) {
             std::vector<std::vector<int64_t>> rows(static_cast<size_t>(c.cache().n_layer()));
             for (int l = 0; l < c.cache().n_layer(); ++l)
               for (int h = 0; h < c.cache().n_head_kv(); ++h) rows[static_cast<size_t>(l)].push_back(c.cache().head(l, h).size());
             return rows;
           },
           "Rows each (layer, KV head) holds.")
      .def("positions",
           [](const Context& c, int layer, int head) {
             if (layer < 0 || layer >= c.cache().n_layer() || head < 0 || head >= c.cache().n_head_kv())
               throw nb::index_error("layer or head out of range");
             std::vector<int32_t> pos = c.cache().head(layer, head).pos;
             const size_t n = pos.size();
             return to_numpy(std::move(pos), {n});
           },
           "layer"_a, "head"_a, "Kept token positions of one (layer, KV head), ascending.")
      .def("save", &Context::save, "path"_a, Release());

  nb::class_<Engine>(m, "Engine")
      .def(nb::init<const std::string&, int, const std::string&>(), "path_or_name"_a, "threads"_a = 0, "kv_type"_a = "f16",
           Release())
      .def_prop_ro("path", &Engine::path)
      .def_prop_rw("threads", &Engine::threads, &Engine::set_threads)
      .def_prop_ro("kv_type",
                   [](const Engine& e) {
                     std::string name(dtype_name(e.kv_type()));  // "F16" -> "f16", as kv_type is given
                     for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                     return name;
                   })
      .def_prop_ro("architecture", [](const Engine& e) { return e.model().config().arch_name; })
      .def_prop_ro("n_layer", [](const Engine& e) { return e.model().config().n_layer; })
      .def_prop_ro("n_head", [](const Engine& e) { return e.model().config().n_head; })
      .def_prop_ro("n_head_kv", [](const Engine& e) { return e.model().config().n_head_kv; })
      .def_prop_ro("head_dim", [](const Engine& e) { return e.model().config().head_dim; })
      .def_prop_ro("n_ctx", [](const Engine& e) { return e.model().config().context; })
      .def_prop_ro("n_vocab", [](const Engine& e) { return e.model().config().vocab; })
      .def_prop_ro("weight_bytes", [](const Engine& e) { return e.model().weight_bytes(); })
      .def_prop_ro("bos_id", [](const Engine& e) { return e.tokenizer().bos(); })
      .def_prop_ro("eos_id", [](const Engine& e) { return e.tokenizer().eos(); })
      .def_prop_ro("adds_bos", [](const Engine& e) { return e.tokenizer().adds_bos(); })
      .def_prop_ro("has_chat_template", &Engine::has_chat_template)
      .def_prop_ro("chat_format", [](const Engine& e) { return e.chat_template().name(); })
      .def("is_end_of_generation", [](const Engine& e, int32_t id) { return e.tokenizer().is_end_of_generation(id); })
      .def("tokenize", &Engine::tokenize, "text"_a, "add_bos"_a, "parse_special"_a, Release())
      .def("detokenize",
           [](const Engine& e, const std::vector<int32_t>& ids, bool special) {
             std::string s;
             {
               nb::gil_scoped_release release;
               s = e.detokenize(ids, special);
             }
             return nb::bytes(s.data(), s.size());
           },
           "ids"_a, "special"_a)
      .def("render_chat",
           [](const Engine& e, const std::vector<RoleContent>& messages, bool add_generation_prompt) {
             return e.render_chat(chat_messages(messages), add_generation_prompt);
           },
           "messages"_a, "add_generation_prompt"_a)
      .def("chat_ids",
           [](const Engine& e, const std::vector<RoleContent>& messages, bool add_generation_prompt) {
             return e.chat_ids(chat_messages(messages), add_generation_prompt);
           },
           "messages"_a, "add_generation_prompt"_a)
      .def("split_chat",
           [](const Engine& e, const std::string& context, const std::string& question) {
             return split_turn_after_context(e.chat_template(), context, question);
           },
           "context"_a, "question"_a)
      .def("split_chat_ids",
           [](const Engine& e, const std::string& context, const std::string& question) {
             const auto [head, tail] = split_turn_parts(e.chat_template(), context, question);
             return std::make_pair(encode_chat(e.tokenizer(), head, true), encode_chat(e.tokenizer(), tail, false));
           },
           "context"_a, "question"_a)
      .def("logits",
           [](const Engine& e, const std::vector<int32_t>& ids, int64_t compress_at, const PressOptions* press) {
             std::vector<float> out;
             {
               nb::gil_scoped_release release;
               out = e.logits(ids, compress_at, press);
             }
             const size_t vocab = static_cast<size_t>(e.model().config().vocab);
             return to_numpy(std::move(out), {ids.size(), vocab});
           },
           "ids"_a, "compress_at"_a, "press"_a.none())
      .def("start",
           [](const Engine& e, const std::vector<int32_t>& prompt, const PressOptions* press, int max_tokens,
              float temperature, int top_k, float top_p, uint64_t seed, bool ignore_eos, std::vector<std::string> stop) {
             nb::gil_scoped_release release;
             return e.start(prompt, press, sampling(max_tokens, temperature, top_k, top_p, seed, ignore_eos, std::move(stop)));
           },
           "prompt"_a, "press"_a.none(), "max_tokens"_a, "temperature"_a, "top_k"_a, "top_p"_a, "seed"_a, "ignore_eos"_a,
           "stop"_a, nb::keep_alive<0, 1>())
      .def("compress", &Engine::compress, "ids"_a, "press"_a.none(), Release(), nb::keep_alive<0, 1>())
      .def("load_context", &Engine::load_context, "path"_a, Release(), nb::keep_alive<0, 1>());

  nb::class_<eval::EvalOptions>(m, "EvalOptions", "Options of `kvsqueeze eval` (see kvsqueeze.eval.run).")
      .def(nb::init<>())
      .def_rw("task", &eval::EvalOptions::task)
      .def_rw("model_path", &eval::EvalOptions::model_path)
      .def_rw("presets", &eval::EvalOptions::presets)
      .def_rw("budgets", &eval::EvalOptions::budgets)
      .def_rw("ratios", &eval::EvalOptions::ratios)
      .def_rw("question_agnostic", &eval::EvalOptions::question_agnostic)
      .def_rw("separate_prefill", &eval::EvalOptions::separate_prefill)
      .def_rw("chat", &eval::EvalOptions::chat)
      .def_rw("samples", &eval::EvalOptions::samples)
      .def_rw("seed", &eval::EvalOptions::seed)
      .def_rw("out_path", &eval::EvalOptions::out_path)
      .def_rw("text_path", &eval::EvalOptions::text_path)
      .def_rw("prompt_tokens", &eval::EvalOptions::prompt_tokens)
      .def_rw("continuation_tokens", &eval::EvalOptions::continuation_tokens)
      .def_rw("haystack_path", &eval::EvalOptions::haystack_path)
      .def_rw("lengths", &eval::EvalOptions::lengths)
      .def_rw("depths", &eval::EvalOptions::depths)
      .def_rw("subtasks", &eval::EvalOptions::subtasks)
      .def_rw("data_files", &eval::EvalOptions::data_files)
      .def_rw("max_length", &eval::EvalOptions::max_length)
      .def_rw("progress", &eval::EvalOptions::progress)
      .def("set_tuning",
           [](eval::EvalOptions& o, const PressOptions& p) {
             // The grid's presets take the options' tuning; preset, budget and ratio are the grid's.
             PressOptions probe = p;
             probe.preset = "snapkv";
             probe.budget = 0;
             probe.ratio = 1;
             o.tuning = probe.config("snapkv");
             o.gqa_max = p.gqa_reduce.empty() ? std::nullopt : std::optional<bool>(p.gqa_reduce == "max");
             o.kv_type = kv_type_from_name(p.kv_type);
           },
           "press"_a);
  m.def(
      "run_eval",
      [](const eval::EvalOptions& o, int threads) {
        nb::gil_scoped_release release;
        if (threads > 0) omp_set_num_threads(threads);
        return eval::run_eval(o);
      },
      "options"_a, "threads"_a = 0, "Runs the grid, appending to options.out_path; returns the number of runs made.");
}
