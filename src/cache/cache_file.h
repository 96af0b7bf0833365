// Saving and loading a (compressed) KV cache: compress a long document once, then ask
// many questions against it. Versioned binary format with the model's fingerprint, so a
// cache is never loaded into a model it was not made by.
#pragma once

#include <cstdint>
#include <string>

#include "cache/kv_cache.h"

namespace kvsqueeze {

// Layout (little-endian): "KVSQ" u32 version=1, u64 model fingerprint, u32 storage type,
// u32 n_layer, u32 n_head_kv, u32 head_dim, u32 head_dim_v, i32 next_pos, then per
// (layer, head): u64 rows, rows x i32 positions, rows x key row, rows x value row.
void save_cache(const std::string& path, const KvCache& cache, uint64_t model_fingerprint);

// Throws with a clear message when the file is not a kvsqueeze cache, is truncated, has
// an unknown version, or was made by a different model (fingerprint or shape).
KvCache load_cache(const std::string& path, uint64_t model_fingerprint);

}  // namespace kvsqueeze
