#include "cache/kv_cache.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "tensor/quant.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kvsqueeze {

#if defined(__GLIBC__)
namespace {
// glibc raises its mmap threshold each time a large block is freed, after which big KV
// buffers come from the heap and freeing them (eviction) no longer returns memory to the
// OS. Pinning the threshold keeps every large buffer mmapped, so evicted rows really
// leave the process's resident memory.
const bool kMmapThresholdPinned = [] { return mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1; }();
}  // namespace
#endif

DType kv_type_from_name(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "q8_0") return DType::Q8_0;
  throw std::invalid_argument(fmt::format("unknown KV cache type '{}' (f32, f16, q8_0)", name));
}

KvCache::KvCache(int n_layer, int n_head_kv, int head_dim, int head_dim_v, DType type)
    : n_layer_(n_layer), n_head_kv_(n_head_kv), head_dim_(head_dim), head_dim_v_(head_dim_v), type_(type),
      heads_(static_cast<size_t>(n_layer) * static_cast<size_t>(n_head_kv)) {
  if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0)
    throw std::invalid_argument(fmt::format("KV cache type {} is not supported (f32, f16, q8_0)", dtype_name(type)));
  const int64_t be = traits(type).block_elems;
  if (head_dim % be != 0 || head_dim_v % be != 0)
    throw std::invalid_argument(fmt::format("KV cache type {} needs head sizes that are multiples of {} (this model: {})",
                                            dtype_name(type), be, head_dim));
  k_row_bytes_ = row_bytes(type, head_dim);
  v_row_bytes_ = row_bytes(type, head_dim_v);
}

RowsView KvCache::view(int layer, int h) const {
  const HeadRows& r = head(layer, h);
  return {type_, r.k.data(), r.v.data(), r.pos.data(), r.size(), k_row_bytes_, v_row_bytes_};
}

namespace {
// Grows geometrically: reserving exactly size + n on every decode step would copy the
// whole head each time.
template <typename T>
void grow(std::vector<T>& v, size_t extra) {
  const size_t need = v.size() + extra;
  if (need > v.capacity()) v.reserve(std::max(need, v.capacity() * 2));
}

template <typename T>
void compact(std::vector<T>& v, const std::vector<int64_t>& keep, size_t row) {
  std::vector<T> out(keep.size() * row);  // exact size: the old buffer is freed below
  for (size_t i = 0; i < keep.size(); ++i)
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(keep[i]) * row), row,
                out.begin() + static_cast<std::ptrdiff_t>(i * row));
  v.swap(out);
}
}  // namespace

void KvCache::append(int layer, int h, const float* k, const float* v, int32_t pos) {
  HeadRows& r = mut(layer, h);
  if (!r.pos.empty() && pos <= r.pos.back())
    throw std::logic_error("KV rows must be appended in ascending position order");
  grow(r.k, static_cast<size_t>(k_row_bytes_));
  grow(r.v, static_cast<size_t>(v_row_bytes_));
  grow(r.pos, 1);
  const size_t ko = r.k.size(), vo = r.v.size();
  r.k.resize(ko + static_cast<size_t>(k_row_bytes_));
  r.v.resize(vo + static_cast<size_t>(v_row_bytes_));
  quantize_row(type_, k, r.k.data() + ko, head_dim_);
  quantize_row(type_, v, r.v.data() + vo, head_dim_v_);
  r.pos.push_back(pos);
  if (pos >= next_pos_) next_pos_ = pos + 1;
}

void KvCache::reserve_more(int layer, int64_t n) {
  for (int h = 0; h < n_head_kv_; ++h) {
    HeadRows& r = mut(layer, h);
    grow(r.k, static_cast<size_t>(n * k_row_bytes_));
    grow(r.v, static_cast<size_t>(n * v_row_bytes_));
    grow(r.pos, static_cast<size_t>(n));
  }
}

void KvCache::keep_rows(int layer, int h, const std::vector<int64_t>& keep) {
  HeadRows& r = mut(layer, h);
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i] < 0 || keep[i] >= r.size() || (i > 0 && keep[i] <= keep[i - 1]))
      throw std::logic_error("keep_rows: indices must be ascending and inside the head");
  compact(r.k, keep, static_cast<size_t>(k_row_bytes_));
  compact(r.v, keep, static_cast<size_t>(v_row_bytes_));
  compact(r.pos, keep, 1);
}

void KvCache::drop_before(int layer, int h, int32_t min_pos) {
  const HeadRows& r = head(layer, h);
  const int64_t first = std::lower_bound(r.pos.begin(), r.pos.end(), min_pos) - r.pos.begin();
  if (first == 0) return;
  std::vector<int64_t> keep(static_cast<size_t>(r.size() - first));
  std::iota(keep.begin(), keep.end(), first);
  keep_rows(layer, h, keep);
}

void KvCache::adopt_rows(int layer, int h, std::vector<uint8_t> k, std::vector<uint8_t> v, std::vector<int32_t> pos) {
  const size_t n = pos.size();
  if (k.size() != n * static_cast<size_t>(k_row_bytes_) || v.size() != n * static_cast<size_t>(v_row_bytes_))
    throw std::runtime_error("adopt_rows: row data does not match the row count");
  for (size_t i = 1; i < n; ++i)
    if (pos[i] <= pos[i - 1]) throw std::runtime_error("adopt_rows: positions must ascend");
  HeadRows& r = mut(layer, h);
  r.k = std::move(k);
  r.v = std::move(v);
  r.pos = std::move(pos);
  if (n && r.pos.back() >= next_pos_) next_pos_ = r.pos.back() + 1;
}

void KvCache::clear() {
  for (auto& r : heads_) r = HeadRows{};
  next_pos_ = 0;
}

size_t KvCache::bytes_used() const {
  size_t b = 0;
  for (const auto& r : heads_) b += r.k.size() + r.v.size() + r.pos.size() * sizeof(int32_t);
  return b;
}

size_t KvCache::bytes_reserved() const {
  size_t b = 0;
  for (const auto& r : heads_) b += r.k.capacity() + r.v.capacity() + r.pos.capacity() * sizeof(int32_t);
  return b;
}

int64_t KvCache::layer_rows(int layer) const {
  int64_t n = 0;
  for (int h = 0; h < n_head_kv_; ++h) n += head(layer, h).size();
  return n;
}

}  // namespace kvsqueeze
