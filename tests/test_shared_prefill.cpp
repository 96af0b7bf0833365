// One prefill feeding every preset (Model::forward_shared): each cache must end exactly
// as a separate run would leave it, for presets that rescore, cascade (LAVa), need every
// query (H2O) or watch a different observation window, on a llama and a gemma3 model.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <vector>

#include "cache/kv_cache.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "press/compression_press.h"
#include "press/press_config.h"
#include "press/score_memo.h"
#include "press/scorers.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {

std::unique_ptr<Model> model_for(Arch arch) {
  ModelSpec s;
  s.arch = arch;
  s.n_layer = arch == Arch::Gemma3 ? 6 : 4;
  s.dim = 96;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 24;
  s.ffn = 128;
  s.vocab = 300;
  s.sliding_window = 32;
  s.seed = 17;
  const std::string path = test::temp_path(fmt::format("shared-prefill-{}.gguf", arch_name(arch)));
  make_random_model(s, path);
  return Model::load(path);
}

struct Case {
  const char* preset;
  int64_t budget, window;
};

}  // namespace

class SharedPrefill : public ::testing::TestWithParam<Arch> {};

TEST_P(SharedPrefill, EveryCacheEqualsItsSeparateRun) {
  const auto model = model_for(GetParam());
  std::vector<int32_t> ids(150);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 53 + 7) % 297 + 3);
  const std::vector<Case> cases = {{"none", 0, 0},          {"snapkv", 40, 8},     {"ada-snapkv", 40, 16},
                                   {"pyramidkv", 48, 8},    {"h2o", 40, 8},        {"tova", 40, 8},
                                   {"criticalkv", 40, 8},   {"streamingllm", 40, 8}, {"lava", 40, 8},
                                   {"lava-layers", 64, 12}, {"snapkv", 500, 8},  // a budget above the prompt
                                   // The same scores as above at other budgets: read from the layer's memo.
                                   {"h2o", 64, 8}, {"critical-ada-snapkv", 56, 8}, {"ada-pyramidkv", 64, 8},
                                   {"lava-heads", 48, 8}};
  const size_t V = static_cast<size_t>(model->config().vocab);

  std::vector<std::unique_ptr<CompressionPress>> shared_presses;
  std::vector<KvCache> shared_caches;
  shared_caches.reserve(cases.size());
  std::vector<PressTarget> targets;
  for (const Case& c : cases) {
    PressConfig pc = PressConfig::from_preset(c.preset);
    pc.budget = c.budget;
    pc.window = c.window ? c.window : pc.window;
    shared_presses.push_back(make_compression_press(pc));
    shared_caches.push_back(model->make_cache());
    targets.push_back({&shared_caches.back(), shared_presses.back().get()});
  }
  std::vector<float> shared_logits(V);
  model->forward_shared(targets, ids.data(), static_cast<int64_t>(ids.size()), shared_logits.data(), false);

  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string what = fmt::format("{} budget {}", cases[i].preset, cases[i].budget);
    PressConfig pc = PressConfig::from_preset(cases[i].preset);
    pc.budget = cases[i].budget;
    pc.window = cases[i].window ? cases[i].window : pc.window;
    auto press = make_compression_press(pc);
    KvCache alone = model->make_cache();
    std::vector<float> logits(V);
    model->forward(alone, ids.data(), static_cast<int64_t>(ids.size()), logits.data(), false, press.get());
    EXPECT_EQ(logits, shared_logits) << what;
    test::expect_same_cache_rows(alone, shared_caches[i], what);
    if (press) {
      EXPECT_EQ(press->head_budgets(), shared_presses[i]->head_budgets()) << what;
    }
    // And each goes on on its own: a question read against either cache gives the same logits.
    const std::vector<int32_t> question{5, 77, 140};
    std::vector<float> a(V), b(V);
    model->forward(alone, question.data(), 3, a.data(), false);
    model->forward(shared_caches[i], question.data(), 3, b.data(), false);
    EXPECT_EQ(a, b) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, SharedPrefill, ::testing::Values(Arch::Llama, Arch::Gemma3),
                         [](const auto& info) { return std::string(arch_name(info.param)); });

TEST(SharedPrefillErrors, RefusesCachesThatAreNotEmpty) {
  const auto model = model_for(Arch::Llama);
  KvCache used = model->make_cache(), fresh = model->make_cache();
  std::vector<float> logits(static_cast<size_t>(model->config().vocab));
  const int32_t id = 9;
  model->forward(used, &id, 1, logits.data(), false);
  EXPECT_THROW(model->forward_shared({{&fresh, nullptr}, {&used, nullptr}}, &id, 1, logits.data(), false),
               std::invalid_argument);
  EXPECT_THROW(model->forward_shared({}, &id, 1, logits.data(), false), std::invalid_argument);
}

// The memo key holds what a scorer reads: presets that only allocate differently share
// one entry, another window or reduction gets its own, and the memo hands back what the
// scorer computes.
TEST(ScoreMemo, PresetsThatScoreAlikeShareOneEntry) {
  const auto model = model_for(Arch::Llama);
  const ModelConfig& c = model->config();
  const int64_t n = 60, hd = c.head_dim;
  std::vector<float> k(static_cast<size_t>(n * c.n_head_kv * hd)), v(k.size()), q(static_cast<size_t>(16 * c.n_head * hd));
  for (size_t i = 0; i < k.size(); ++i) k[i] = std::sin(0.37f * static_cast<float>(i)), v[i] = std::cos(0.11f * static_cast<float>(i));
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::cos(0.23f * static_cast<float>(i));
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  ScoreMemo memo;
  LayerSnapshot s;
  s.cfg = &c;
  s.n = n;
  s.pos = pos.data();
  s.k = k.data();
  s.v = v.data();
  s.window = 8;
  s.q_window = q.data() + 8 * c.n_head * hd;
  s.memo = &memo;
  const int64_t prefix = n - s.window;
  auto scores = [&](const char* name, int64_t budget) {
    PressConfig pc = PressConfig::from_preset(name);
    pc.budget = budget;
    return compute_scores(s, prefix, pc);
  };
  const std::vector<float> snap = scores("snapkv", 20);
  EXPECT_EQ(memo.size(), 1u);
  EXPECT_EQ(scores("ada-snapkv", 40), snap);
  EXPECT_EQ(scores("pyramidkv", 30), snap);
  EXPECT_EQ(memo.size(), 1u);
  const std::vector<float> lava = scores("lava", 20);  // max over the group, times the value norm
  EXPECT_EQ(memo.size(), 2u);
  EXPECT_EQ(scores("lava-heads", 24), lava);
  EXPECT_EQ(memo.size(), 2u);
  s.window = 16;  // another window: other queries, another entry
  s.q_window = q.data();
  const std::vector<float> wide = scores("snapkv", 20);
  EXPECT_EQ(memo.size(), 3u);
  EXPECT_NE(wide, snap);
  s.memo = nullptr;  // without the memo: the same numbers
  EXPECT_EQ(scores("snapkv", 20), wide);
  s.window = 8;
  s.q_window = q.data() + 8 * c.n_head * hd;
  EXPECT_EQ(scores("lava", 20), lava);
}
