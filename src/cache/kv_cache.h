// The KV cache: every (layer, KV head) owns its own rows, each with its true position.
// Heads hold different numbers of rows once compressed (eviction keeps a different subset
// per head), so nothing here assumes one shared sequence length. Rows of a head are kept
// in ascending position order. Storage type: f32, f16 (default) or q8_0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace kvsqueeze {

struct HeadRows {
  std::vector<uint8_t> k;     // [n] rows of head_dim keys (post-RoPE), in the cache type
  std::vector<uint8_t> v;     // [n] rows of head_dim_v values
  std::vector<int32_t> pos;   // true token position of each row, ascending
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

// A read-only run of K/V rows in any storage type (a cache head, or a layer's fresh rows).
struct RowsView {
  DType type = DType::F32;
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  const int32_t* pos = nullptr;
  int64_t n = 0;
  int64_t k_stride = 0;  // bytes between consecutive key rows
  int64_t v_stride = 0;
};

class KvCache {
 public:
  KvCache(int n_layer, int n_head_kv, int head_dim, int head_dim_v, DType type = DType::F16);

  const HeadRows& head(int layer, int h) const { return heads_[index(layer, h)]; }
  RowsView view(int layer, int h) const;

  // Appends one row given as floats (amortised O(1): storage grows geometrically).
  void append(int layer, int h, const float* k, const float* v, int32_t pos);
  // Reserves room for n more rows in every head of a layer.
  void reserve_more(int layer, int64_t n);
  // Keeps only rows `keep` (ascending indices into the head's current rows) and returns
  // the memory of the rest to the allocator: evicted rows are released, not masked.
  void keep_rows(int layer, int h, const std::vector<int64_t>& keep);
  // Keeps only the rows at positions >= min_pos (a sliding window moving on), released.
  void drop_before(int layer, int h, int32_t min_pos);
  void clear();
  // Replaces a head's rows with already-encoded ones (loading a saved cache). Checks the
  // sizes and that positions ascend.
  void adopt_rows(int layer, int h, std::vector<uint8_t> k, std::vector<uint8_t> v, std::vector<int32_t> pos);

  int n_layer() const { return n_layer_; }
  int n_head_kv() const { return n_head_kv_; }
  int head_dim() const { return head_dim_; }
  int head_dim_v() const { return head_dim_v_; }
  DType type() const { return type_; }
  int64_t k_row_bytes() const { return k_row_bytes_; }
  int64_t v_row_bytes() const { return v_row_bytes_; }
  // Position the next token gets (one past the largest position seen).
  int32_t next_pos() const { return next_pos_; }
  void set_next_pos(int32_t p) { next_pos_ = p; }

  // Bytes held by the rows themselves (keys, values, positions), and bytes reserved
  // including growth slack.
  size_t bytes_used() const;
  size_t bytes_reserved() const;
  // Rows held in one layer, summed over heads.
  int64_t layer_rows(int layer) const;

 private:
  size_t index(int layer, int h) const { return static_cast<size_t>(layer * n_head_kv_ + h); }
  HeadRows& mut(int layer, int h) { return heads_[index(layer, h)]; }

  int n_layer_, n_head_kv_, head_dim_, head_dim_v_;
  DType type_;
  int64_t k_row_bytes_, v_row_bytes_;
  int32_t next_pos_ = 0;
  std::vector<HeadRows> heads_;
};

// KV storage types by name: "f32", "f16", "q8_0"; throws for others.
DType kv_type_from_name(const std::string& name);

}  // namespace kvsqueeze
