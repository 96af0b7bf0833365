// Comparing next-token distributions (compressed cache vs full cache).
#pragma once

#include <vector>

namespace kvsqueeze {

// softmax(logits) in double precision.
std::vector<double> probabilities(const std::vector<float>& logits);
// KL(p || q) in nats; q's zeros are floored so the result stays finite.
double kl_divergence(const std::vector<double>& p, const std::vector<double>& q);
// KL(softmax(reference) || softmax(logits)), never below 0 (rounding).
double next_token_kl(const std::vector<float>& reference, const std::vector<float>& logits);

}  // namespace kvsqueeze
