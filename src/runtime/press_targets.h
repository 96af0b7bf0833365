// A grid of press settings that one prefill fills together (Model::forward_shared):
// for each setting its press (null for "none") and an empty cache.
#pragma once

#include <memory>
#include <vector>

#include "cache/kv_cache.h"
#include "model/model.h"
#include "press/compression_press.h"

namespace kvsqueeze {

struct PressTargets {
  PressTargets(const Model& model, const std::vector<PressConfig>& configs, DType kv_type);

  std::vector<std::unique_ptr<CompressionPress>> presses;
  std::vector<KvCache> caches;      // never resized: targets point into it
  std::vector<PressTarget> targets;  // [i]: caches[i] filled through presses[i]
};

}  // namespace kvsqueeze
