// Scores already computed for one layer of a shared prefill (Model::forward_shared), by a
// key naming the scorer and everything it reads: presses of a grid that score alike (the
// same preset at several budgets, SnapKV under PyramidKV and Ada-KV) compute them once.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kvsqueeze {

class ScoreMemo {
 public:
  // The entry under `key`, made by compute() the first time it is asked for.
  template <typename Compute>
  const std::vector<float>& get(const std::string& key, Compute&& compute) {
    auto it = entries_.find(key);
    if (it == entries_.end()) it = entries_.emplace(key, std::forward<Compute>(compute)()).first;
    return it->second;
  }
  size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

 private:
  std::map<std::string, std::vector<float>> entries_;
};

}  // namespace kvsqueeze
