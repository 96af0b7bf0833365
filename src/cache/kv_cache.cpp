#include "cache/kv_cache.h"

#include <algorithm>

namespace kvsqueeze {

KvCache::KvCache(int n_layer, int n_head_kv, int head_dim, int head_dim_v)
    : n_layer_(n_layer), n_head_kv_(n_head_kv), head_dim_(head_dim), head_dim_v_(head_dim_v),
      heads_(static_cast<size_t>(n_layer) * static_cast<size_t>(n_head_kv)) {}

void KvCache::append(int layer, int h, const float* k, const float* v, int32_t pos) {
  HeadRows& r = head(layer, h);
  r.k.insert(r.k.end(), k, k + head_dim_);
  r.v.insert(r.v.end(), v, v + head_dim_v_);
  r.pos.push_back(pos);
  if (pos >= next_pos_) next_pos_ = pos + 1;
}

namespace {
// Grows geometrically: reserving exactly size + n on every decode step would copy the
// whole head each time.
template <typename T>
void grow(std::vector<T>& v, size_t extra) {
  const size_t need = v.size() + extra;
  if (need > v.capacity()) v.reserve(std::max(need, v.capacity() * 2));
}
}  // namespace

void KvCache::reserve_more(int64_t n) {
  for (auto& r : heads_) {
    grow(r.k, static_cast<size_t>(n * head_dim_));
    grow(r.v, static_cast<size_t>(n * head_dim_v_));
    grow(r.pos, static_cast<size_t>(n));
  }
}

void KvCache::clear() {
  for (auto& r : heads_) r = HeadRows{};
  next_pos_ = 0;
}

size_t KvCache::bytes_used() const {
  size_t b = 0;
  for (const auto& r : heads_) b += (r.k.size() + r.v.size()) * sizeof(float) + r.pos.size() * sizeof(int32_t);
  return b;
}

size_t KvCache::bytes_reserved() const {
  size_t b = 0;
  for (const auto& r : heads_)
    b += (r.k.capacity() + r.v.capacity()) * sizeof(float) + r.pos.capacity() * sizeof(int32_t);
  return b;
}

}  // namespace kvsqueeze
