#include "runtime/press_targets.h"

namespace kvsqueeze {

PressTargets::PressTargets(const Model& model, const std::vector<PressConfig>& configs, DType kv_type) {
  caches.reserve(configs.size());
  for (const PressConfig& c : configs) {
    presses.push_back(make_compression_press(c));  // null when the setting compresses nothing
    caches.push_back(model.make_cache(kv_type));
    targets.push_back({&caches.back(), presses.back().get()});
  }
}

}  // namespace kvsqueeze
