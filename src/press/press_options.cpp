#include "press/press_options.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace kvsqueeze {

void PressOptions::tune(PressConfig& c) const {
  // The CLI checks these two by their allowed values; other front ends pass free text.
  if (pool != "max" && pool != "avg") throw std::invalid_argument(fmt::format("--pool takes max or avg, not '{}'", pool));
  if (!gqa_reduce.empty() && gqa_reduce != "mean" && gqa_reduce != "max")
    throw std::invalid_argument(fmt::format("--gqa-reduce takes mean or max, not '{}'", gqa_reduce));
  c.window = window;
  c.pool_kernel = pool_kernel;
  c.pool_max = pool == "max";
  if (!gqa_reduce.empty()) c.gqa_max = gqa_reduce == "max";  // else the preset's own (max for LAVa)
  c.sinks = sinks;
}

PressConfig PressOptions::config(const std::string& preset_name) const {
  PressConfig c = PressConfig::from_preset(preset_name);
  tune(c);
  c.budget = budget;
  c.ratio = ratio;
  c.alpha = alpha;
  c.pyramid_beta = pyramid_beta;
  c.skip_layers = skip_layers;
  c.validate();
  return c;
}

std::unique_ptr<CompressionPress> PressOptions::make_press() const {
  const PressConfig c = config(preset);
  if (!c.enabled()) {
    if (ratio != 0 || (budget != 0 && compress_every == 0))
      throw std::invalid_argument("--budget/--ratio need a --press other than none (or --compress-every)");
    return nullptr;
  }
  return make_compression_press(c);
}

std::unique_ptr<DecodePress> PressOptions::make_decode_press(const CompressionPress* prefill, int n_layer,
                                                             int n_head_kv) const {
  if (compress_every == 0) return nullptr;
  PressConfig c = PressConfig::from_preset(preset == "none" ? "snapkv" : preset);
  if (c.scorer == ScorerKind::Lava) c.scorer = ScorerKind::SnapKV;  // decode re-scoring is window attention
  tune(c);
  std::vector<std::vector<int64_t>> budgets;
  if (prefill && !prefill->head_budgets().empty()) {
    budgets = prefill->head_budgets();
    // A prompt shorter than the budget kept everything: decoding may still grow to B.
    for (auto& layer : budgets)
      for (auto& b : layer) b = std::max(b, budget);
  } else {
    if (budget <= 0) throw std::invalid_argument("--compress-every needs a --budget (or a --press that sets budgets)");
    if (budget < window) throw std::invalid_argument("--budget must not be below --window");
    budgets.assign(static_cast<size_t>(n_layer), std::vector<int64_t>(static_cast<size_t>(n_head_kv), budget));
  }
  return std::make_unique<DecodePress>(c, std::move(budgets), compress_every);
}

}  // namespace kvsqueeze
