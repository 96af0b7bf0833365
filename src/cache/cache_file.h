// Saving and loading a (compressed) KV cache: compress a long document once, then ask
// many questions against it. Versioned binary format with the model's fingerprint, so a
// cache is never loaded into a model it was not made by.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cache/kv_cache.h"

namespace kvsqueeze {

// What a cache file must match to be loaded into a model (Model::cache_identity()).
struct CacheIdentity {
  uint64_t fingerprint = 0;
  int n_layer = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
};

// Layout (little-endian): "KVSQ" u32 version=2, u64 model fingerprint, u32 storage type,
// u32 n_layer, u32 n_head_kv, u32 head_dim, u32 head_dim_v, i32 next_pos, then per
// (layer, head): u64 rows, rows x i32 positions, rows x key row, rows x value row; last,
// u64 FNV-1a of every byte before it. Written atomically (cache/atomic_file.h): a
// crash mid-write leaves the old file or none, never a partial one.
void save_cache(const std::string& path, const KvCache& cache, uint64_t model_fingerprint);

// Throws std::runtime_error with one clear message when the file is not a kvsqueeze
// cache, is truncated or has trailing bytes, has another version, fails its checksum
// (a flipped byte anywhere), was made by a different model (fingerprint or shape), has
// an unknown storage type, or holds positions that are negative, not ascending, or not
// below its next position.
KvCache load_cache(const std::string& path, const CacheIdentity& model);

// The checksum the format uses (64-bit FNV-1a).
uint64_t cache_checksum(const uint8_t* data, size_t n);

}  // namespace kvsqueeze
