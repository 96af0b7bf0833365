#include "press/press_config.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace kvsqueeze {

const std::vector<std::string>& PressConfig::preset_names() {
  static const std::vector<std::string> names{"none",   "streamingllm", "snapkv", "pyramidkv",  "ada-snapkv",
                                              "ada-pyramidkv", "h2o",   "tova",   "knorm", "criticalkv",
                                              "critical-ada-snapkv", "lava", "lava-heads", "lava-layers"};
  return names;
}

PressConfig PressConfig::from_preset(const std::string& name) {
  PressConfig c;
  c.preset = name;
  if (name == "none") return c;
  if (name == "streamingllm") c.scorer = ScorerKind::Streaming;
  else if (name == "snapkv") c.scorer = ScorerKind::SnapKV;
  else if (name == "pyramidkv") c.scorer = ScorerKind::SnapKV, c.pyramid = true;
  else if (name == "ada-snapkv") c.scorer = ScorerKind::SnapKV, c.ada = true;
  else if (name == "ada-pyramidkv") c.scorer = ScorerKind::SnapKV, c.ada = true, c.pyramid = true;
  else if (name == "h2o") c.scorer = ScorerKind::H2O;
  else if (name == "tova") c.scorer = ScorerKind::TOVA;
  else if (name == "knorm") c.scorer = ScorerKind::KNorm;
  else if (name == "criticalkv") c.scorer = ScorerKind::SnapKV, c.critical = true;
  else if (name == "critical-ada-snapkv") c.scorer = ScorerKind::SnapKV, c.ada = true, c.critical = true;
  else if (name == "lava") c.scorer = ScorerKind::Lava, c.ada = true, c.dynamic_layers = true, c.gqa_max = true;
  else if (name == "lava-heads") c.scorer = ScorerKind::Lava, c.ada = true, c.gqa_max = true;
  else if (name == "lava-layers") c.scorer = ScorerKind::Lava, c.dynamic_layers = true, c.gqa_max = true;
  else
    throw std::invalid_argument(fmt::format("unknown press '{}' (known: {})", name, fmt::join(preset_names(), ", ")));
  return c;
}

void PressConfig::validate() const {
  if (!enabled()) return;
  if (window < 1) throw std::invalid_argument(fmt::format("--window must be >= 1 (got {})", window));
  if (budget != 0 && ratio != 0) throw std::invalid_argument("give either --budget or --ratio, not both");
  if (budget == 0 && ratio == 0)
    throw std::invalid_argument(fmt::format("press '{}' needs a --budget (entries per KV head) or a --ratio", preset));
  if (budget != 0 && budget < window)
    throw std::invalid_argument(fmt::format("--budget {} is below the observation window {} (it counts the window)",
                                            budget, window));
  if (ratio != 0 && !(ratio > 0 && ratio <= 1))
    throw std::invalid_argument(fmt::format("--ratio must be in (0, 1] (got {})", ratio));
  if (pool_kernel < 1 || pool_kernel % 2 == 0)
    throw std::invalid_argument(fmt::format("--pool-kernel must be odd and >= 1 (got {})", pool_kernel));
  if (!(alpha >= 0 && alpha <= 1)) throw std::invalid_argument(fmt::format("--alpha must be in [0, 1] (got {})", alpha));
  if (!(pyramid_beta >= 1)) throw std::invalid_argument(fmt::format("--pyramid-beta must be >= 1 (got {})", pyramid_beta));
  if (skip_layers < 0) throw std::invalid_argument("--skip-layers must be >= 0");
  if (sinks < 0) throw std::invalid_argument(fmt::format("--sinks must be >= 0 (got {})", sinks));
}

int64_t PressConfig::budget_for(int64_t n) const {
  if (budget > 0) return budget;
  // A ratio never squeezes below the window: the window is always kept.
  const auto b = static_cast<int64_t>(std::ceil(ratio * static_cast<double>(n)));
  return std::max(b, std::min(window, n));
}

}  // namespace kvsqueeze
