// Every preset's kept rows against the independent float64 reference (press_reference),
// on real prompts: stories260K always, the fetched real models when present.
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "cache/kv_cache.h"
#include "eval/builtin_text.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "model/model.h"
#include "press/compression_press.h"
#include "press/decode_press.h"
#include "runtime/sampler.h"
#include "tensor/quant.h"
#include "press/press.h"
#include "press/press_config.h"
#include "press_reference.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {
namespace {

constexpr const char* kStories = "models/stories260K/stories260K.gguf";

// A prompt read once with the recording press: what every press is shown.
struct Recorded {
  std::shared_ptr<Model> model;
  std::vector<int32_t> ids;
  std::vector<test::RecordedLayer> layers;
};

Recorded record(const std::string& path, int64_t tokens) {
  Recorded r;
  auto file = std::make_shared<const GgufFile>(path);
  r.model = std::make_shared<Model>(file);
  const auto tok = Tokenizer::from_gguf(*file);
  r.ids = tok->encode(eval::builtin_text(), true, false);
  if (static_cast<int64_t>(r.ids.size()) > tokens) r.ids.resize(static_cast<size_t>(tokens));
  test::RecordingPress rec;
  KvCache cache = r.model->make_cache();
  std::vector<float> logits(static_cast<size_t>(r.model->config().vocab));
  r.model->forward(cache, r.ids.data(), static_cast<int64_t>(r.ids.size()), logits.data(), false, &rec);
  r.layers = rec.layers();
  return r;
}

struct Tally {
  int64_t kept = 0;   // prefix rows the reference keeps
  int64_t ties = 0;   // rows decided differently where a ranking value sits at its edge
  int64_t wrong = 0;  // rows decided differently for no such reason
  std::string first_wrong;
};

bool at_edge(const test::ReferenceHead& ref, int64_t j) {
  for (const test::Ranking& r : ref.rankings) {
    if (j >= static_cast<int64_t>(r.value.size())) continue;
    const double v = r.value[static_cast<size_t>(j)];
    if (std::fabs(v - r.edge) <= 1e-4 * std::max(std::fabs(v), std::fabs(r.edge)) + 1e-12) return true;
  }
  return false;
}

// The engine's kept rows against the reference for one preset and budget.
Tally compare(const Recorded& rec, const KvCache& cache, const std::string& preset, int64_t budget) {
  test::ReferenceOptions o;
  o.preset = preset;
  o.budget = budget;
  const auto ref = test::reference_selection(rec.layers, o);
  Tally t;
  for (size_t li = 0; li < rec.layers.size(); ++li) {
    const int l = rec.layers[li].layer;
    for (int h = 0; h < cache.n_head_kv(); ++h) {
      const auto& pos = cache.head(l, h).pos;
      const std::set<int64_t> engine(pos.begin(), pos.end());
      const test::ReferenceHead& r = ref[li][static_cast<size_t>(h)];
      const std::set<int64_t> expected(r.keep.begin(), r.keep.end());
      t.kept += static_cast<int64_t>(expected.size());
      std::set<int64_t> differ;
      for (int64_t j : engine) if (!expected.count(j)) differ.insert(j);
      for (int64_t j : expected) if (!engine.count(j)) differ.insert(j);
      for (int64_t j : differ) {
        if (at_edge(r, j)) {
          ++t.ties;
        } else {
          if (t.wrong == 0)
            t.first_wrong = fmt::format("layer {} head {} position {} ({} by the engine)", l, h, j,
                                        engine.count(j) ? "kept" : "evicted");
          ++t.wrong;
        }
      }
    }
  }
  return t;
}

// Every preset at every budget, filled by one shared prefill (each cache ends as if its
// press had run alone: tests/test_shared_prefill.cpp), each against the reference.
void expect_presets_match(const Recorded& rec, const std::vector<int64_t>& budgets, const std::string& name) {
  struct Run {
    std::string preset;
    int64_t budget;
    std::unique_ptr<CompressionPress> press;
    KvCache cache;
  };
  std::vector<Run> runs;
  for (const std::string& preset : PressConfig::preset_names()) {
    if (preset == "none") continue;
    for (int64_t budget : budgets) {
      PressConfig c = PressConfig::from_preset(preset);
      c.budget = budget;
      runs.push_back({preset, budget, make_compression_press(c), rec.model->make_cache()});
    }
  }
  std::vector<PressTarget> targets;
  for (Run& r : runs) targets.push_back({&r.cache, r.press.get()});
  std::vector<float> logits(static_cast<size_t>(rec.model->config().vocab));
  rec.model->forward_shared(targets, rec.ids.data(), static_cast<int64_t>(rec.ids.size()), logits.data(), false);
  for (const Run& r : runs) {
    const Tally t = compare(rec, r.cache, r.preset, r.budget);
    EXPECT_EQ(t.wrong, 0) << r.preset << " at budget " << r.budget << ": " << t.wrong
                          << " rows unlike the reference, first " << t.first_wrong;
    EXPECT_LE(t.ties, t.kept / 100) << r.preset << " at budget " << r.budget << ": too many ties to trust";
    std::cout << name << " " << r.preset << " B=" << r.budget << ": " << t.kept << " rows as the reference, " << t.ties
              << " ties at an edge" << std::endl;
  }
}

// Stands in front of a DecodePress: before each step it copies the rows and the recent
// queries the press will re-score with, and after an eviction compares what is left with
// the reference's choice.
class DecodeSpy : public LayerPress {
 public:
  DecodeSpy(DecodePress& inner, std::vector<std::vector<int64_t>> budgets, test::ReferenceOptions o)
      : inner_(inner), budgets_(std::move(budgets)), o_(std::move(o)) {}
  int64_t window() const override { return inner_.window(); }
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override {
    const ModelConfig& c = *s.cfg;
    if (queries_.size() < static_cast<size_t>(c.n_layer)) queries_.resize(static_cast<size_t>(c.n_layer)), qpos_.resize(queries_.size());
    auto& q = queries_[static_cast<size_t>(s.layer)];
    auto& qp = qpos_[static_cast<size_t>(s.layer)];
    q.emplace_back(s.q_window, s.q_window + c.n_head * c.head_dim);
    qp.push_back(s.pos[s.n - 1]);
    if (static_cast<int64_t>(q.size()) > o_.window) q.erase(q.begin()), qp.erase(qp.begin());
    struct Before { std::vector<int32_t> pos; std::vector<double> keys; };
    std::vector<Before> before(static_cast<size_t>(c.n_head_kv));
    for (int h = 0; h < c.n_head_kv; ++h) {
      const HeadRows& rows = s.cache->head(s.layer, h);
      before[static_cast<size_t>(h)].pos = rows.pos;
      std::vector<float> k(static_cast<size_t>(c.head_dim));
      for (int64_t j = 0; j < rows.size(); ++j) {
        dequantize_row(s.cache->type(), rows.k.data() + j * s.cache->k_row_bytes(), k.data(), c.head_dim);
        before[static_cast<size_t>(h)].keys.insert(before[static_cast<size_t>(h)].keys.end(), k.begin(), k.end());
      }
    }
    auto keep = inner_.select(s);
    for (int h = 0; h < c.n_head_kv; ++h) {
      const auto& after = s.cache->head(s.layer, h).pos;
      const Before& b = before[static_cast<size_t>(h)];
      if (after.size() == b.pos.size()) continue;
      ++evictions;
      const int64_t budget = budgets_[static_cast<size_t>(s.layer)][static_cast<size_t>(h)];
      const test::ReferenceHead ref = test::reference_decode_head(b.keys, b.pos, q, qp, h, c.n_head, c.n_head_kv,
                                                                  c.head_dim, budget - s.n, o_);
      const std::set<int64_t> got(after.begin(), after.end()), want(ref.keep.begin(), ref.keep.end());
      kept += static_cast<int64_t>(want.size());
      for (size_t j = 0; j < b.pos.size(); ++j) {
        const int64_t p = b.pos[j];
        if (got.count(p) == want.count(p)) continue;
        if (at_edge(ref, static_cast<int64_t>(j))) ++ties;
        else ++wrong;
      }
    }
    return keep;
  }
  int64_t evictions = 0, kept = 0, ties = 0, wrong = 0;

 private:
  DecodePress& inner_;
  std::vector<std::vector<int64_t>> budgets_;
  test::ReferenceOptions o_;
  std::vector<std::vector<std::vector<double>>> queries_;
  std::vector<std::vector<int32_t>> qpos_;
};

}  // namespace

TEST(PressReference, DecodeTimeRescoringKeepsWhatTheReferenceKeeps) {
  REQUIRE_FIXTURE(kStories);
  auto file = std::make_shared<const GgufFile>(test::shared_path(kStories));
  const Model model(file);
  const auto tok = Tokenizer::from_gguf(*file);
  std::vector<int32_t> ids = tok->encode(eval::builtin_text(), true, false);
  ids.resize(160);
  for (const std::string preset : {"snapkv", "streamingllm"}) {
    PressConfig c = PressConfig::from_preset(preset);
    c.budget = 48;
    c.window = 16;
    auto prefill = make_compression_press(c);
    KvCache cache = model.make_cache();
    std::vector<float> logits(static_cast<size_t>(model.config().vocab));
    model.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), logits.data(), false, prefill.get());
    DecodePress step(c, prefill->head_budgets(), 8);
    test::ReferenceOptions o;
    o.preset = preset;
    o.window = 16;
    DecodeSpy spy(step, prefill->head_budgets(), o);
    for (int i = 0; i < 120; ++i) {
      const int32_t next = argmax(logits.data(), model.config().vocab);
      model.forward(cache, &next, 1, logits.data(), false, &spy);
    }
    EXPECT_GT(spy.evictions, 50) << preset;
    EXPECT_EQ(spy.wrong, 0) << preset;
    EXPECT_LE(spy.ties, spy.kept / 100) << preset;
    std::cout << "decode-time " << preset << ": " << spy.evictions << " evictions, " << spy.kept
              << " rows as the reference, " << spy.ties << " ties at an edge" << std::endl;
  }
}

TEST(PressReference, EveryPresetKeepsWhatTheReferenceKeepsOnStories260K) {
  REQUIRE_FIXTURE(kStories);
  const Recorded rec = record(test::shared_path(kStories), 400);
  ASSERT_EQ(rec.layers.size(), 5u);
  // A tight, a middle and a loose budget (the loose one takes PyramidKV's capped branch).
  expect_presets_match(rec, {40, 96, 240}, "stories260K");
}

TEST(PressReference, EveryPresetKeepsWhatTheReferenceKeepsOnTheRealModels) {
  int ran = 0;
  for (const char* name : {"smollm2-135m-instruct", "gemma3-270m"}) {
    const auto path = cached_model_path(name);
    if (!path) {
      std::cout << "[ SKIPPED ] " << name << " not in " << model_cache_dir() << " (scripts/fetch_models.sh)\n";
      continue;
    }
    const Recorded rec = record(*path, 320);
    expect_presets_match(rec, {64, 160}, name);
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "no real model fetched";
}

}  // namespace kvsqueeze
