// `kvsqueeze eval TASK -m MODEL --presets ... --budgets ... --out results.jsonl`: the
// evaluation harness (src/eval) behind a command line.
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/common.h"
#include "eval/runner.h"
#include "eval/synthetic.h"

namespace kvsqueeze {

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "run a grid of presets x budgets over an evaluation task");
  struct Args {
    eval::EvalOptions o;
    std::string presets = "all";
    std::string kv_type = "f16", pool = "max", gqa_reduce;
    std::vector<std::string> files;
    int threads = 0;
    bool no_progress = false;
  };
  auto a = std::make_shared<Args>();
  auto& o = a->o;
  cmd->add_option("task", o.task, "fidelity | ppl | niah | ruler | longbench")->required();
  cmd->add_option("files", a->files, "longbench: JSONL files (same as --data)");
  add_model_option(cmd, o.model_path, "model")->required();
  cmd->add_option("--presets", a->presets, "comma-separated presets, or 'all' (none always runs as the reference)");
  cmd->add_option("--budgets", o.budgets, "comma-separated per-head budgets (window included)")->delimiter(',');
  cmd->add_option("--ratios", o.ratios, "comma-separated fractions of the prompt kept, in (0, 1]")->delimiter(',');
  cmd->add_flag("--question-agnostic", o.question_agnostic, "compress the context alone, then read the question");
  cmd->add_option("--chat", o.chat, "niah/ruler/longbench: prompts as a chat turn: auto (when the model has a template) | on | off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_flag("--separate-prefill", o.separate_prefill,
                "read each prompt once per grid point instead of once for all (for comparison)");
  cmd->add_option("--samples", o.samples, "samples per grid point (longbench: per file; default: 1 for niah, "
                                          "fidelity and ppl, 5 for ruler, all for longbench)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seed", o.seed, "seed of the generated tasks");
  cmd->add_option("--out", o.out_path, "results file (JSON lines; runs already in it are skipped)");
  cmd->add_option("--export-samples", o.export_path,
                  "niah/ruler/longbench: write the samples (text, answers, token ids) to this JSONL file and stop");
  cmd->add_option("--text", o.text_path, "fidelity/ppl: text file (default: a built-in story)")->check(CLI::ExistingFile);
  cmd->add_option("--prompt-tokens", o.prompt_tokens, "fidelity/ppl: prompt length (default: what fits, up to 2048)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  cmd->add_option("--continuation", o.continuation_tokens, "fidelity/ppl: teacher-forced tokens after the prompt")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--haystack", o.haystack_path, "niah/ruler: filler text file (default: generated sentences)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--lengths", o.lengths, "niah/ruler: comma-separated prompt lengths in tokens")->delimiter(',');
  cmd->add_option("--depths", o.depths, "niah: comma-separated needle depths in percent")->delimiter(',');
  cmd->add_option("--subtasks", o.subtasks, fmt::format("ruler: comma-separated subset of {}", fmt::join(eval::ruler_subtasks(), ", ")))
      ->delimiter(',');
  cmd->add_option("--data", a->files, "longbench: JSONL files");
  cmd->add_option("--max-length", o.max_length, "longbench: prompt tokens kept, cut in the middle "
                                                "(default: model context minus the answer length)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  cmd->add_option("--window", o.tuning.window, "observation window");
  cmd->add_option("--alpha", o.tuning.alpha, "Ada-KV safeguard");
  cmd->add_option("--pool-kernel", o.tuning.pool_kernel, "score pooling kernel (odd)");
  cmd->add_option("--pool", a->pool, "score pooling: max | avg")->check(CLI::IsMember({"max", "avg"}));
  cmd->add_option("--gqa-reduce", a->gqa_reduce, "reduce a GQA group's scores by mean | max (default: the preset's, max for LAVa, mean otherwise)")->check(CLI::IsMember({"mean", "max"}));
  cmd->add_option("--pyramid-beta", o.tuning.pyramid_beta, "PyramidKV steepness");
  cmd->add_option("--skip-layers", o.tuning.skip_layers, "layers below this keep uniform head budgets");
  cmd->add_option("--kv-type", a->kv_type, "KV cache storage: f32 | f16 | q8_0")->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  cmd->add_flag("--no-progress", a->no_progress, "no progress bar");
  add_threads_option(cmd, a->threads);
  cmd->callback([a] {
    auto& o = a->o;
    set_threads(a->threads);
    o.tuning.pool_max = a->pool == "max";
    if (!a->gqa_reduce.empty()) o.gqa_max = a->gqa_reduce == "max";
    o.kv_type = a->kv_type == "f32" ? DType::F32 : a->kv_type == "q8_0" ? DType::Q8_0 : DType::F16;
    o.data_files = a->files;
    o.progress = !a->no_progress;
    o.presets.clear();
    if (a->presets == "all") {
      o.presets = PressConfig::preset_names();
    } else {
      std::string item;
      std::stringstream ss(a->presets);
      while (std::getline(ss, item, ','))
        if (!item.empty()) o.presets.push_back(item);
    }
    const int64_t ran = eval::run_eval(o);
    fmt::print("\n{} runs done, results in {}\n", ran, o.out_path);
  });
}

}  // namespace kvsqueeze
