// The KV cache: every (layer, KV head) owns its own rows, each with its true position.
// Heads may hold different numbers of rows (eviction keeps a different subset per head),
// so nothing here assumes one shared sequence length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvsqueeze {

struct HeadRows {
  std::vector<float> k;          // [n][head_dim] post-RoPE keys
  std::vector<float> v;          // [n][head_dim_v]
  std::vector<int32_t> pos;      // true token position of each row
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

class KvCache {
 public:
  KvCache(int n_layer, int n_head_kv, int head_dim, int head_dim_v);

  HeadRows& head(int layer, int h) { return heads_[static_cast<size_t>(layer * n_head_kv_ + h)]; }
  const HeadRows& head(int layer, int h) const { return heads_[static_cast<size_t>(layer * n_head_kv_ + h)]; }

  // Appends one row (amortised O(1): vectors grow geometrically).
  void append(int layer, int h, const float* k, const float* v, int32_t pos);
  // Reserves room for n more rows in every head, so a prompt does not reallocate.
  void reserve_more(int64_t n);
  void clear();

  int n_layer() const { return n_layer_; }
  int n_head_kv() const { return n_head_kv_; }
  int head_dim() const { return head_dim_; }
  int head_dim_v() const { return head_dim_v_; }
  // Position the next token gets (one past the largest position seen).
  int32_t next_pos() const { return next_pos_; }
  void set_next_pos(int32_t p) { next_pos_ = p; }

  // Bytes held by the rows themselves, and bytes reserved including slack.
  size_t bytes_used() const;
  size_t bytes_reserved() const;

 private:
  int n_layer_, n_head_kv_, head_dim_, head_dim_v_;
  int32_t next_pos_ = 0;
  std::vector<HeadRows> heads_;
};

}  // namespace kvsqueeze
