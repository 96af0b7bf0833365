// Sampling: greedy, top-k, top-p and temperature do what their names say.
#include <cmath>
#include <map>

#include "runtime/sampler.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {
std::map<int32_t, int> histogram(SamplerOptions o, const std::vector<float>& logits, int draws) {
  Sampler s(o);
  std::map<int32_t, int> h;
  for (int i = 0; i < draws; ++i) h[s.sample(logits.data(), static_cast<int32_t>(logits.size()))]++;
  return h;
}
const std::vector<float> kLogits{1.0f, 3.0f, 2.0f, 0.5f, 2.9f};
}  // namespace

TEST(Sampler, GreedyTakesArgmax) {
  SamplerOptions o;
  o.greedy = true;
  EXPECT_EQ(histogram(o, kLogits, 5), (std::map<int32_t, int>{{1, 5}}));
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplerOptions o;
  o.greedy = false;
  o.top_k = 1;
  o.temperature = 5.0f;
  EXPECT_EQ(histogram(o, kLogits, 50), (std::map<int32_t, int>{{1, 50}}));
}

TEST(Sampler, TopKLimitsTheCandidates) {
  SamplerOptions o;
  o.greedy = false;
  o.top_k = 2;
  o.top_p = 1.0f;
  o.temperature = 1.0f;
  const auto h = histogram(o, kLogits, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h.at(1), 0);
  EXPECT_GT(h.at(4), 0);  // logits 3.0 and 2.9: both drawn, roughly evenly
  EXPECT_NEAR(static_cast<double>(h.at(1)) / 2000, 0.525, 0.05);
}

TEST(Sampler, TopPKeepsTheSmallestSufficientSet) {
  SamplerOptions o;
  o.greedy = false;
  o.top_k = 0;
  o.top_p = 0.5f;  // p(1) ~ 0.40 alone falls short; with p(4) ~ 0.36 the two reach 0.5
  o.temperature = 1.0f;
  const auto h = histogram(o, kLogits, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_TRUE(h.count(1) && h.count(4));
}

TEST(Sampler, SameSeedSameDraws) {
  SamplerOptions o;
  o.greedy = false;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.seed = 123;
  Sampler a(o), b(o);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(kLogits.data(), 5), b.sample(kLogits.data(), 5));
}

TEST(Sampler, RejectsImpossibleSettings) {
  SamplerOptions o;
  o.greedy = false;
  o.top_p = 0.0f;
  EXPECT_THROW(Sampler{o}, std::invalid_argument);
  o.top_p = 0.9f;
  o.top_k = -1;
  EXPECT_THROW(Sampler{o}, std::invalid_argument);
}

namespace {
// Pearson's chi-square of observed counts against the softmax of logits / temperature.
double chi_square(const std::map<int32_t, int>& counts, const std::vector<float>& logits, double temperature, int draws) {
  double z = 0;
  for (float l : logits) z += std::exp(l / temperature);
  double chi = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double expected = draws * std::exp(logits[i] / temperature) / z;
    const auto it = counts.find(static_cast<int32_t>(i));
    const double seen = it == counts.end() ? 0 : it->second;
    chi += (seen - expected) * (seen - expected) / expected;
  }
  return chi;
}
}  // namespace

TEST(Sampler, DrawsFollowTheSoftmaxAtTheTemperature) {
  const std::vector<float> logits{2.0f, 1.0f, 0.5f, 0.0f, -1.0f};
  const int draws = 20000;
  // 4 degrees of freedom: P(chi2 > 18.47) = 0.001. The seeds are fixed, so this is
  // deterministic; a sampler that used another temperature lands far beyond it.
  for (double t : {0.5, 1.0, 2.0}) {
    SamplerOptions o;
    o.greedy = false;
    o.temperature = static_cast<float>(t);
    o.top_k = 0;
    o.top_p = 1.0f;
    o.seed = 11;
    const auto counts = histogram(o, logits, draws);
    EXPECT_LT(chi_square(counts, logits, t, draws), 18.47) << "temperature " << t;
    for (double other : {0.5, 1.0, 2.0}) {
      if (other != t) {
        EXPECT_GT(chi_square(counts, logits, other, draws), 100.0) << t << " looks like " << other;
      }
    }
  }
}
