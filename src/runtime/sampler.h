// Picks the next token from logits: greedy, or temperature + top-k + top-p with a seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kvsqueeze {

struct SamplerOptions {
  bool greedy = true;
  float temperature = 0.8f;
  int top_k = 40;       // 0 = no limit
  float top_p = 0.95f;  // 1 = no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  int32_t sample(const float* logits, int32_t n_vocab);

 private:
  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* logits, int32_t n);

}  // namespace kvsqueeze
