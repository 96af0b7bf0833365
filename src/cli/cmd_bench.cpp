// `kvsqueeze bench`: prompt speed, compression time, decode speed at depth, KV bytes and
// peak memory per preset and prompt length; medians over repetitions after a warm-up.
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/kv_cache.h"
#include "cli/common.h"
#include "model/model.h"
#include "runtime/benchmark.h"
#include "tensor/cpu_features.h"

namespace kvsqueeze {

void add_bench_command(CLI::App& app) {
  struct Opts {
    std::string model, presets = "none,ada-snapkv", json_out, kv_type = "f16";
    std::vector<int64_t> lengths{512, 4096};
    int decode = 64, reps = 3, threads = 0;
    int64_t budget = 1024, window = 32;
    bool no_warmup = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("bench", "measure prompt and decode speed, compression time, KV bytes and peak "
                                          "memory per preset and prompt length");
  add_model_option(cmd, o->model, "model")->required();
  cmd->add_option("--prompt-lengths", o->lengths, "comma-separated prompt lengths in tokens")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--decode", o->decode, "decode steps after each prompt")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--presets", o->presets, "comma-separated presets");
  cmd->add_option("--budget", o->budget, "KV entries kept per head, window included")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--window", o->window, "observation window");
  cmd->add_option("--kv-type", o->kv_type, "KV cache storage: f32 | f16 | q8_0")->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  cmd->add_option("-r,--repetitions", o->reps, "runs per case (the median is reported)")->check(CLI::Range(1, 1000));
  cmd->add_flag("--no-warmup", o->no_warmup, "skip the warm-up run");
  cmd->add_option("--json", o->json_out, "also write the records as a JSON list to this file");
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    std::vector<PressConfig> presses;
    std::stringstream list(o->presets);
    for (std::string name; std::getline(list, name, ',');) {
      if (name.empty()) continue;
      PressConfig c = PressConfig::from_preset(name);
      if (c.enabled()) {
        c.budget = o->budget;
        c.window = o->window;
        c.validate();
      }
      presses.push_back(c);
    }
    if (presses.empty()) throw std::invalid_argument("no presets given");
    const DType kv_type = kv_type_from_name(o->kv_type);
    const auto model = Model::load(o->model);
    if (!o->no_warmup) run_bench(*model, random_tokens(*model, 64, 1), 4, PressConfig{}, kv_type);

    const char* kernels = isa_name(active_isa());  // results depend on it: KVSQUEEZE_ISA picks another
    fmt::print("model: {}, {} threads, kernels {}, {} decode steps, median of {}\n\n", o->model,
               o->threads > 0 ? std::to_string(o->threads) : "all", kernels, o->decode, o->reps);
    fmt::print("| preset | budget | prompt tokens | prompt tok/s | compress s | decode tok/s | KV MiB | peak RSS MiB |\n");
    fmt::print("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    nlohmann::json records = nlohmann::json::array();
    for (int64_t len : o->lengths) {
      const auto prompt = random_tokens(*model, len, static_cast<uint64_t>(len));
      for (const auto& c : presses) {
        std::vector<BenchResult> runs;
        for (int i = 0; i < o->reps; ++i) runs.push_back(run_bench(*model, prompt, o->decode, c, kv_type));
        const BenchResult r = median_result(runs);
        const std::string budget = c.enabled() ? std::to_string(c.budget) : "-";
        fmt::print("| {} | {} | {} | {:.1f} | {:.3f} | {:.1f} | {:.2f} | {:.1f} |\n", c.preset, budget, len, r.prompt_tps,
                   r.compress_seconds, r.decode_tps, static_cast<double>(r.kv_bytes) / (1 << 20),
                   static_cast<double>(r.peak_rss_bytes) / (1 << 20));
        std::fflush(stdout);
        records.push_back({{"engine", "kvsqueeze"},
                           {"preset", c.preset},
                           {"budget", c.enabled() ? nlohmann::json(c.budget) : nlohmann::json(nullptr)},
                           {"prompt_tokens", len},
                           {"decode_tokens", o->decode},
                           {"prompt_tps", r.prompt_tps},
                           {"decode_tps", r.decode_tps},
                           {"compress_seconds", r.compress_seconds},
                           {"kv_bytes", r.kv_bytes},
                           {"peak_rss_bytes", r.peak_rss_bytes},
                           {"threads", o->threads},
                           {"kernels", kernels},
                           {"repetitions", o->reps}});
      }
    }
    if (!o->json_out.empty()) {
      std::ofstream out(o->json_out);
      out << records.dump(2) << "\n";
      if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", o->json_out));
    }
  });
}

}  // namespace kvsqueeze
