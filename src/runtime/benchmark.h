// What `kvsqueeze bench` measures for one (preset, prompt length): prompt speed, the
// compression's share of it, decode speed at that depth, KV bytes and peak memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "press/press_config.h"
#include "tensor/dtype.h"

namespace kvsqueeze {

class Model;

struct BenchResult {
  int64_t prompt_tokens = 0;
  double prompt_tps = 0;
  double compress_seconds = 0;  // scoring and selection inside the prefill
  double decode_tps = 0;        // one-token steps after the prompt
  size_t kv_bytes = 0;          // after the prompt (compressed when pressed)
  size_t peak_rss_bytes = 0;    // the run's peak resident memory (weights, cache, activations)
};

// `n` token ids drawn uniformly from the vocabulary with `seed` (speed does not depend
// on which tokens they are).
std::vector<int32_t> random_tokens(const Model& model, int64_t n, uint64_t seed);

// One run: prefill `prompt` (compressed by `press` unless it is disabled), then `decode`
// greedy one-token steps. The peak is reset first where the kernel allows.
BenchResult run_bench(const Model& model, const std::vector<int32_t>& prompt, int decode, const PressConfig& press,
                      DType kv_type);

// Each field's median over repeated runs (the runs' prompt lengths are equal).
BenchResult median_result(const std::vector<BenchResult>& runs);

}  // namespace kvsqueeze
