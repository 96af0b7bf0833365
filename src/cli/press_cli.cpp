#include "cli/press_cli.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/kv_cache.h"

namespace kvsqueeze {

void add_press_options(CLI::App* cmd, PressOptions& o) {
  cmd->add_option("--press", o.preset, "compression preset: none, streamingllm, snapkv, pyramidkv, ada-snapkv, "
                                       "ada-pyramidkv, h2o, tova, knorm, criticalkv, critical-ada-snapkv, lava, lava-heads, lava-layers");
  cmd->add_option("--budget", o.budget, "KV entries kept per head, window included")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--ratio", o.ratio, "fraction of the prompt kept, in (0, 1]");
  cmd->add_option("--window", o.window, "observation window (last prompt tokens, always kept)");
  cmd->add_option("--pool-kernel", o.pool_kernel, "score pooling kernel (odd)");
  cmd->add_option("--pool", o.pool, "score pooling: max | avg")->check(CLI::IsMember({"max", "avg"}));
  cmd->add_option("--gqa-reduce", o.gqa_reduce, "reduce a GQA group's scores by mean | max (default: the preset's, max for LAVa, mean otherwise)")->check(CLI::IsMember({"mean", "max"}));
  cmd->add_option("--alpha", o.alpha, "Ada-KV safeguard: share of each head's budget it always gets");
  cmd->add_option("--pyramid-beta", o.pyramid_beta, "PyramidKV steepness (min budget = B'/beta)");
  cmd->add_option("--skip-layers", o.skip_layers, "layers below this keep uniform head budgets");
  cmd->add_option("--compress-every", o.compress_every,
                  "while decoding, evict back to budget once a head is this many rows over it")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--sinks", o.sinks, "streamingllm: first prompt tokens always kept (attention sinks)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--kv-type", o.kv_type, "KV cache storage: f32 | f16 | q8_0")->check(CLI::IsMember({"f32", "f16", "q8_0"}));
}

std::string budget_spread(const CompressionPress& press) {
  std::string out;
  const auto& all = press.head_budgets();
  for (size_t l = 0; l < all.size(); ++l) {
    const auto& b = all[l];
    if (b.empty()) continue;
    const auto [lo, hi] = std::minmax_element(b.begin(), b.end());
    const double mean = static_cast<double>(std::accumulate(b.begin(), b.end(), int64_t{0})) / static_cast<double>(b.size());
    out += fmt::format("  layer {:>2}: head budgets min/mean/max {}/{:.1f}/{}\n", l, *lo, mean, *hi);
  }
  return out;
}

void dump_selection(const std::string& path, const std::string& preset, int64_t prompt_tokens, const KvCache& cache) {
  nlohmann::json j;
  j["preset"] = preset;
  j["prompt_tokens"] = prompt_tokens;
  j["layers"] = nlohmann::json::array();
  for (int l = 0; l < cache.n_layer(); ++l) {
    nlohmann::json heads = nlohmann::json::array();
    for (int h = 0; h < cache.n_head_kv(); ++h) {
      std::vector<int32_t> pos;
      for (int32_t p : cache.head(l, h).pos)
        if (p < prompt_tokens) pos.push_back(p);
      heads.push_back({{"head", h}, {"budget", pos.size()}, {"positions", pos}});
    }
    j["layers"].push_back({{"layer", l}, {"heads", heads}});
  }
  std::ofstream out(path);
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", path));
  out << j.dump() << "\n";
}

}  // namespace kvsqueeze
