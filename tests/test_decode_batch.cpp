// Batched decoding (Model::decode_batch) and prompt passes run piece by piece
// (Model::begin_pass): a session batched with others, joining and leaving at any step,
// must get bit for bit the logits and the cache it gets decoding alone — whatever its
// prompt length, press, step press, KV storage type, the weight type and the batch width
// (1 to 10: both sides of the 4-token register tiles and of the 8-token prompt kernel).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "cache/kv_cache.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "press/press_options.h"
#include "tensor/cpu_features.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {

struct Case {
  Arch arch;
  DType type;
};

std::string case_name(const Case& c) { return fmt::format("{}_{}", arch_name(c.arch), dtype_name(c.type)); }

std::unique_ptr<Model> model_for(const Case& c) {
  ModelSpec s;
  s.arch = c.arch;
  s.n_layer = c.arch == Arch::Gemma3 ? 6 : 2;
  s.dim = 256;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.ffn = 512;
  s.vocab = 300;
  s.type = c.type;
  s.sliding_window = 8;  // gemma3: rows leave the window while the test decodes
  s.seed = 9;
  if (c.arch == Arch::Qwen3) s.head_dim = 96;
  const std::string path = test::temp_path(fmt::format("decode-batch-{}.gguf", case_name(c)));
  make_random_model(s, path);
  return Model::load(path);
}

// One session: its prompt, how its cache is stored and compressed, when it joins.
struct SessionSpec {
  int prompt_len;
  std::string preset;
  int64_t budget;
  int64_t compress_every;
  DType kv;
  int join_step;
};

const std::vector<SessionSpec> kSessions = {
    {3, "none", 0, 0, DType::F16, 0},          {40, "h2o", 12, 0, DType::F16, 0},
    {25, "ada-snapkv", 10, 0, DType::F32, 0},  {17, "pyramidkv", 9, 2, DType::F16, 1},
    {31, "streamingllm", 10, 0, DType::Q8_0, 2}, {9, "none", 6, 3, DType::F16, 2},
    {36, "lava", 12, 0, DType::F16, 3},        {22, "critical-ada-snapkv", 10, 0, DType::F16, 5},
    {14, "tova", 8, 0, DType::F32, 5},         {28, "snapkv", 10, 2, DType::Q8_0, 6},
};
constexpr int kSteps = 7;  // decode steps per session

struct Session {
  KvCache cache;
  std::unique_ptr<CompressionPress> press;
  std::unique_ptr<DecodePress> step_press;
};

Session start(const Model& m, const SessionSpec& spec, size_t index, std::vector<float>& logits) {
  PressOptions o;
  o.preset = spec.preset;
  o.budget = spec.budget;
  o.window = 4;
  o.compress_every = spec.compress_every;
  Session s{m.make_cache(spec.kv), o.make_press(), nullptr};
  s.step_press = o.make_decode_press(s.press.get(), m.config().n_layer, m.config().n_head_kv);
  std::vector<int32_t> prompt(static_cast<size_t>(spec.prompt_len));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 31 + index * 17 + 5) % 300);
  logits.assign(static_cast<size_t>(m.config().vocab), 0.0f);
  m.forward(s.cache, prompt.data(), spec.prompt_len, logits.data(), false, s.press.get());
  return s;
}

int32_t greedy(const float* logits, int vocab) {
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

// Every session decodes alone, then all in batches (joining and leaving, in shuffled
// order); each batched step must give the alone logits bit for bit.
void check_batches_against_alone(const Model& m) {
  const int V = m.config().vocab;
  const size_t n = kSessions.size();

  // Alone: each session decodes by itself, one token per forward().
  std::vector<std::vector<std::vector<float>>> want(n);  // [session][step][vocab]
  std::vector<std::vector<int32_t>> fed(n);
  std::vector<Session> alone;
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> logits;
    alone.push_back(start(m, kSessions[i], i, logits));
    for (int k = 0; k < kSteps; ++k) {
      const int32_t tok = greedy(logits.data(), V);
      fed[i].push_back(tok);
      m.forward(alone[i].cache, &tok, 1, logits.data(), false, alone[i].step_press.get());
      want[i].push_back(logits);
    }
  }

  // Batched: sessions join at their step and leave after kSteps tokens; each step's
  // rows come in a shuffled order.
  std::vector<Session> batched;
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> logits;
    batched.push_back(start(m, kSessions[i], i, logits));
  }
  std::vector<int> done(n, 0);
  std::mt19937 rng(3);
  size_t widest = 0;
  for (int step = 0; std::any_of(done.begin(), done.end(), [](int d) { return d < kSteps; }); ++step) {
    std::vector<size_t> active;
    for (size_t i = 0; i < n; ++i)
      if (kSessions[i].join_step <= step && done[i] < kSteps) active.push_back(i);
    std::shuffle(active.begin(), active.end(), rng);
    widest = std::max(widest, active.size());
    std::vector<DecodeRow> rows;
    for (size_t i : active)
      rows.push_back({&batched[i].cache, fed[i][static_cast<size_t>(done[i])], batched[i].step_press.get()});
    std::vector<float> logits(active.size() * static_cast<size_t>(V));
    m.decode_batch(rows, logits.data());
    for (size_t b = 0; b < active.size(); ++b) {
      const size_t i = active[b];
      const std::vector<float>& w = want[i][static_cast<size_t>(done[i])];
      ASSERT_EQ(0, std::memcmp(&logits[b * static_cast<size_t>(V)], w.data(), w.size() * sizeof(float)))
          << "session " << i << " (" << kSessions[i].preset << ") step " << done[i] << " in a batch of " << active.size();
      ++done[i];
    }
  }
  EXPECT_GE(widest, 9u);
  for (size_t i = 0; i < n; ++i) test::expect_same_cache_rows(batched[i].cache, alone[i].cache, fmt::format("session {}", i));
  // The step presses did evict (the budgets are below prompt + decoded tokens).
  EXPECT_GT(batched[3].step_press->evictions(), 0);
  EXPECT_EQ(batched[3].step_press->evictions(), alone[3].step_press->evictions());
}

}  // namespace

class DecodeBatch : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeBatch, EverySessionGetsItsAloneLogitsBitForBit) {
  const auto model = model_for(GetParam());
  const Model& m = *model;
  // At every instruction-set level this CPU has: each has its own kernels.
  for (int level = 0; level <= static_cast<int>(cpu_isa()); ++level) {
    set_active_isa(static_cast<Isa>(level));
    SCOPED_TRACE(isa_name(active_isa()));
    check_batches_against_alone(m);
  }
  set_active_isa(default_isa());
}

INSTANTIATE_TEST_SUITE_P(Weights, DecodeBatch,
                         ::testing::Values(Case{Arch::Llama, DType::F32}, Case{Arch::Llama, DType::F16},
                                           Case{Arch::Llama, DType::Q8_0}, Case{Arch::Qwen2, DType::Q4_0},
                                           Case{Arch::Qwen3, DType::Q4_K}, Case{Arch::Llama, DType::Q6_K},
                                           Case{Arch::Llama, DType::Q4_1}, Case{Arch::Qwen2, DType::Q5_1},
                                           Case{Arch::Llama, DType::Q5_K}, Case{Arch::Llama, DType::Q5_0},
                                           Case{Arch::Gemma3, DType::Q8_0}),
                         [](const auto& info) { return case_name(info.param); });

TEST(DecodeBatchErrors, RefusesSharedCachesForeignShapesAndUnknownTokens) {
  const auto model = model_for({Arch::Llama, DType::F32});
  KvCache a = model->make_cache(), b = model->make_cache();
  std::vector<float> logits(2 * static_cast<size_t>(model->config().vocab));
  EXPECT_THROW(model->decode_batch({{&a, 1}, {&a, 2}}, logits.data()), std::invalid_argument);
  KvCache foreign(2, 1, 64, 64);
  EXPECT_THROW(model->decode_batch({{&a, 1}, {&foreign, 2}}, logits.data()), std::invalid_argument);
  EXPECT_THROW(model->decode_batch({{&a, 1}, {&b, 300}}, logits.data()), std::runtime_error);
  EXPECT_THROW(model->decode_batch({{nullptr, 1}}, logits.data()), std::invalid_argument);
  // Nothing was written: the caches are still empty.
  EXPECT_EQ(a.next_pos(), 0);
  EXPECT_EQ(a.bytes_used(), 0u);
  EXPECT_EQ(b.bytes_used(), 0u);
}

// A prompt pass run a piece at a time, with other sessions' decode steps between its
// pieces, ends exactly where forward() ends.
TEST(PromptPass, StepsInterleavedWithDecodeEqualOneForward) {
  const auto model = model_for({Arch::Gemma3, DType::Q8_0});
  const Model& m = *model;
  const int V = m.config().vocab;
  std::vector<int32_t> prompt(300);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7 + 3) % 300);
  PressOptions o;
  o.preset = "ada-snapkv";
  o.budget = 20;
  o.window = 4;
  const auto press_alone = o.make_press();
  KvCache alone = m.make_cache();
  std::vector<float> want(static_cast<size_t>(V));
  m.forward(alone, prompt.data(), static_cast<int64_t>(prompt.size()), want.data(), false, press_alone.get());

  const auto press = o.make_press();
  KvCache cache = m.make_cache();
  KvCache other = m.make_cache();
  std::vector<float> logits(static_cast<size_t>(V)), other_logits(static_cast<size_t>(V));
  const int32_t first = 5;
  m.forward(other, &first, 1, other_logits.data(), false);
  const auto pass = m.begin_pass({{&cache, press.get()}}, prompt.data(), static_cast<int64_t>(prompt.size()), logits.data(), false);
  int pieces = 0;
  while (pass->step()) {
    ++pieces;
    EXPECT_FALSE(pass->done());
    const int32_t tok = greedy(other_logits.data(), V);
    m.decode_batch({{&other, tok}}, other_logits.data());
  }
  EXPECT_TRUE(pass->done());
  EXPECT_FALSE(pass->step());
  EXPECT_EQ(pieces, m.config().n_layer * 2);  // 300 tokens: two 256-token tiles per layer
  EXPECT_EQ(0, std::memcmp(logits.data(), want.data(), want.size() * sizeof(float)));
  test::expect_same_cache_rows(cache, alone, "prompt pass");
  EXPECT_EQ(other.next_pos(), 1 + pieces);
  EXPECT_THROW(m.begin_pass({{&cache, nullptr}}, prompt.data(), 0, logits.data(), false), std::invalid_argument);
}
