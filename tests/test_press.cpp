// Compression: presets, Ada-KV allocation, SnapKV scores, memory release, exact decoding
// over what was kept.
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <set>

#include <fmt/format.h>

#include "cache/cache_file.h"
#include "cache/kv_cache.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "press/allocation.h"
#include "press/budget_press.h"
#include "press/decode_press.h"
#include "press/lava_press.h"
#include "press/scorers.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {

std::unique_ptr<Model> small_model(Arch arch = Arch::Llama, int layers = 3, uint64_t seed = 11) {
  ModelSpec s;
  s.arch = arch;
  s.n_layer = layers;
  s.dim = 192;
  s.n_head = 6;  // head dim 32
  s.n_head_kv = 2;  // GQA groups of 3
  s.ffn = 256;
  s.vocab = 300;
  s.seed = seed;
  const std::string path = test::temp_path(fmt::format("press-{}-{}-{}.gguf", arch_name(arch), layers, seed));
  if (!std::filesystem::exists(path)) make_random_model(s, path);
  return Model::load(path);
}

std::vector<int32_t> random_ids(int n, uint32_t seed, int vocab = 300) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids{1};
  while (static_cast<int>(ids.size()) < n) ids.push_back(static_cast<int32_t>(3 + rng() % (vocab - 3)));
  return ids;
}

PressConfig preset(const std::string& name, int64_t budget, int64_t window = 8) {
  PressConfig c = PressConfig::from_preset(name);
  c.budget = budget;
  c.window = window;
  return c;
}

const std::vector<std::string> kPresets{"streamingllm", "snapkv",     "pyramidkv",  "ada-snapkv",
                                        "ada-pyramidkv", "h2o",       "tova",       "knorm",
                                        "criticalkv",   "critical-ada-snapkv", "lava", "lava-heads",
                                        "lava-layers"};
}  // namespace

TEST(PressConfig, RejectsImpossibleSettings) {
  EXPECT_THROW(PressConfig::from_preset("magic"), std::invalid_argument);
  PressConfig c = PressConfig::from_preset("snapkv");
  EXPECT_THROW(c.validate(), std::invalid_argument);  // no budget
  c.budget = 16;
  c.window = 32;
  EXPECT_THROW(c.validate(), std::invalid_argument);  // budget below the window
  c.budget = 0;
  c.ratio = 1.5;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c.ratio = 0.5;
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.budget_for(100), 50);
  EXPECT_EQ(c.budget_for(40), 32);  // never below the window
}

// A budget that holds the whole prompt changes nothing, for every preset.
TEST(Press, BudgetAtLeastPromptEqualsNone) {
  auto model = small_model();
  const auto ids = random_ids(60, 5);
  GenerationOptions opt;
  opt.n_predict = 12;
  opt.stop_at_eog = false;
  Generator ref(*model, nullptr, DType::F32);
  const auto ref_logits = ref.prefill(ids);
  const auto ref_tokens = ref.decode(ref_logits, opt);
  for (const auto& name : kPresets) {
    auto press = make_compression_press(preset(name, 60));
    Generator gen(*model, nullptr, DType::F32);
    const auto logits = gen.prefill(ids, press.get());
    EXPECT_EQ(logits, ref_logits) << name;
    EXPECT_EQ(gen.decode(logits, opt), ref_tokens) << name;
    EXPECT_EQ(gen.cache().bytes_used(), ref.cache().bytes_used()) << name;
  }
}

// Ada-KV: budgets sum exactly to H*b, respect the floor and the prefix, each head keeps
// its own top-B_h, alpha = 1 is uniform -- against a brute force on random scores.
TEST(Allocation, AdaMatchesBruteForce) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const int H = 1 + static_cast<int>(rng() % 6);
    const int64_t prefix = 5 + static_cast<int64_t>(rng() % 60);
    const int64_t b = static_cast<int64_t>(rng() % static_cast<uint32_t>(prefix + 1));
    const double alpha = (trial % 4 == 0) ? 1.0 : u(rng) * 0.5;
    std::vector<float> scores(static_cast<size_t>(H * prefix));
    for (auto& s : scores) s = u(rng) * (1 + static_cast<float>(&s - scores.data()) / static_cast<float>(prefix) * static_cast<float>(trial % 3));
    const auto B = ada_head_budgets(scores, H, prefix, b, alpha);
    // Brute force: sort all (score, index) descending, count the top H*b per head.
    std::vector<int64_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t c) { return scores[a] > scores[c]; });
    std::vector<int64_t> f(static_cast<size_t>(H), 0);
    for (int64_t i = 0; i < H * b; ++i) f[static_cast<size_t>(idx[static_cast<size_t>(i)] / prefix)]++;
    const auto floor_a = static_cast<int64_t>(std::floor(alpha * static_cast<double>(b)));
    int64_t sum = 0;
    for (int h = 0; h < H; ++h) {
      const int64_t bh = B[static_cast<size_t>(h)];
      sum += bh;
      EXPECT_GE(bh, floor_a);
      EXPECT_LE(bh, prefix);
      // Within rounding repair of the formula.
      const double ideal = (1 - alpha) * static_cast<double>(f[static_cast<size_t>(h)]) + static_cast<double>(floor_a);
      EXPECT_LE(std::fabs(static_cast<double>(bh) - ideal), static_cast<double>(H) + 1) << "trial " << trial;
      if (alpha == 1.0) {
        EXPECT_EQ(bh, b);
      }
      // The kept set is the head's own top-B_h.
      const float* row = &scores[static_cast<size_t>(h * prefix)];
      const auto kept = top_k_ascending(row, prefix, bh);
      std::vector<float> sorted(row, row + prefix);
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      for (int64_t j : kept) {
        EXPECT_GE(row[j], sorted[static_cast<size_t>(bh - 1)]);
      }
    }
    EXPECT_EQ(sum, H * b) << "trial " << trial;
  }
}

TEST(Allocation, PyramidFollowsTheFormula) {
  // B' = 96, beta 20: min 4, max 188, step (188-4)/3 = 61.
  EXPECT_EQ(pyramid_budgets(4, 96, 1000, 20), (std::vector<int64_t>{188, 127, 66, 5}));
  // max capped by the prefix: max = 150, min = 192 - 150 = 42, step 36.
  EXPECT_EQ(pyramid_budgets(4, 96, 150, 20), (std::vector<int64_t>{150, 114, 78, 42}));
}

// SnapKV scores equal a plain reference: per query head, softmax over the window
// queries' causal rows, mean over the window, max-pool 7, mean over the GQA group.
TEST(Scorers, SnapKVMatchesReference) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const int64_t n = 50, w = 8, prefix = n - w, hd = c.head_dim;
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> k(static_cast<size_t>(n * c.n_head_kv * hd)), v(static_cast<size_t>(n * c.n_head_kv * hd)),
      qw(static_cast<size_t>(w * c.n_head * hd));
  for (auto* vec : {&k, &v, &qw})
    for (auto& x : *vec) x = d(rng);
  std::vector<int32_t> pos(static_cast<size_t>(n));
  std::iota(pos.begin(), pos.end(), 0);
  LayerSnapshot s;
  s.cfg = &c;
  s.n = n;
  s.pos = pos.data();
  s.k = k.data();
  s.v = v.data();
  s.window = w;
  s.q_window = qw.data();
  PressConfig pc = preset("snapkv", 20, w);
  const auto got = snapkv_scores(s, prefix, pc);

  const int G = c.group();
  for (int h = 0; h < c.n_head_kv; ++h) {
    std::vector<double> group(static_cast<size_t>(prefix), 0.0);
    for (int g = 0; g < G; ++g) {
      const int hq = h * G + g;
      std::vector<double> avg(static_cast<size_t>(prefix), 0.0);
      for (int64_t i = 0; i < w; ++i) {
        const int64_t qi = n - w + i;
        std::vector<double> logit(static_cast<size_t>(qi + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= qi; ++j) {
          double dotp = 0;
          for (int64_t e = 0; e < hd; ++e)
            dotp += double(qw[static_cast<size_t>(i * c.n_head * hd + hq * hd + e)]) * k[static_cast<size_t>(j * c.n_head_kv * hd + h * hd + e)];
          logit[static_cast<size_t>(j)] = dotp / std::sqrt(double(hd));
          mx = std::max(mx, logit[static_cast<size_t>(j)]);
        }
        double z = 0;
        for (auto& x : logit) z += std::exp(x - mx);
        for (int64_t j = 0; j < prefix; ++j) avg[static_cast<size_t>(j)] += std::exp(logit[static_cast<size_t>(j)] - mx) / z / double(w);
      }
      for (int64_t j = 0; j < prefix; ++j) {
        double m = -1e300;
        for (int64_t t = std::max<int64_t>(0, j - 3); t <= std::min<int64_t>(prefix - 1, j + 3); ++t) m = std::max(m, avg[static_cast<size_t>(t)]);
        group[static_cast<size_t>(j)] += m / G;
      }
    }
    for (int64_t j = 0; j < prefix; ++j)
      EXPECT_NEAR(got[static_cast<size_t>(h * prefix + j)], group[static_cast<size_t>(j)], 1e-5) << "head " << h << " pos " << j;
  }
}

TEST(Scorers, PoolingMatchesTorchDefaults) {
  std::vector<float> x{1, 5, 2, 0, 0, 0, 9};
  auto m = x;
  pool1d(m.data(), 7, 3, true);
  EXPECT_EQ(m, (std::vector<float>{5, 5, 5, 2, 0, 9, 9}));
  auto a = x;
  pool1d(a.data(), 7, 3, false);  // zero padding counted: divisor 3 at the edges too
  EXPECT_FLOAT_EQ(a[0], 2.0f);
  EXPECT_FLOAT_EQ(a[1], 8.0f / 3);
  EXPECT_FLOAT_EQ(a[6], 3.0f);
}

// Evicted rows are released: the cache holds exactly the kept rows, and every head keeps
// its budget with its window.
TEST(Press, CompressedCacheHoldsExactlyTheKeptRows) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const auto ids = random_ids(200, 6);
  for (const auto& name : kPresets) {
    auto owned = make_compression_press(preset(name, 40));
    CompressionPress& press = *owned;
    Generator gen(*model, nullptr, DType::F16);
    gen.prefill(ids, &press);
    const KvCache& cache = gen.cache();
    size_t rows = 0;
    for (int l = 0; l < c.n_layer; ++l)
      for (int h = 0; h < c.n_head_kv; ++h) {
        const auto& hr = cache.head(l, h);
        rows += static_cast<size_t>(hr.size());
        EXPECT_EQ(hr.size(), press.head_budgets()[static_cast<size_t>(l)][static_cast<size_t>(h)]) << name;
        EXPECT_TRUE(std::is_sorted(hr.pos.begin(), hr.pos.end()));
        for (int32_t p = 192; p < 200; ++p) EXPECT_TRUE(std::binary_search(hr.pos.begin(), hr.pos.end(), p)) << name;
        if (name == "streamingllm") {
          for (int32_t p = 0; p < 4; ++p) EXPECT_EQ(hr.pos[static_cast<size_t>(p)], p);
        }
      }
    // Layer budgets average to the budget (pyramid and LAVa redistribute across layers;
    // LAVa's entropy shares are floored, losing at most one entry per layer and head).
    const auto full = static_cast<size_t>(c.n_layer * c.n_head_kv * 40);
    if (press.config().dynamic_layers) {
      EXPECT_LE(rows, full) << name;
      EXPECT_GE(rows, full - static_cast<size_t>(c.n_layer * c.n_head_kv)) << name;
    } else {
      EXPECT_EQ(rows, full) << name;
    }
    EXPECT_EQ(cache.bytes_used(), rows * static_cast<size_t>(cache.k_row_bytes() + cache.v_row_bytes() + 4)) << name;
    EXPECT_LE(cache.bytes_reserved(), cache.bytes_used() * 2 + 4096) << name;
  }
}

// Decoding against a compressed cache equals decoding against the full cache with exactly
// the evicted rows of each head removed (true positions, no RoPE shift).
TEST(Press, DecodingIsExactForWhatWasKept) {
  auto model = small_model(Arch::Qwen2);
  const ModelConfig& c = model->config();
  const auto ids = random_ids(120, 8);
  const std::vector<int32_t> cont{5, 77, 123, 9, 250};
  for (const std::string name : {"snapkv", "ada-pyramidkv", "h2o", "critical-ada-snapkv"}) {
    BudgetPress press(preset(name, 32));
    Generator comp(*model, nullptr, DType::F32);
    comp.prefill(ids, &press);
    Generator full(*model, nullptr, DType::F32);
    full.prefill(ids);
    KvCache& masked = full.cache();
    for (int l = 0; l < c.n_layer; ++l)
      for (int h = 0; h < c.n_head_kv; ++h) {
        std::vector<int64_t> keep;
        for (int32_t p : comp.cache().head(l, h).pos) keep.push_back(p);  // row index == position here
        masked.keep_rows(l, h, keep);
      }
    std::vector<float> a(static_cast<size_t>(c.vocab)), b(a.size());
    for (int32_t t : cont) {
      model->forward(comp.cache(), &t, 1, a.data(), false);
      model->forward(masked, &t, 1, b.data(), false);
      EXPECT_LT(test::rel_l2(a.data(), b.data(), a.size()), 1e-6) << name;
    }
    EXPECT_EQ(comp.cache().next_pos(), static_cast<int32_t>(ids.size() + cont.size()));
  }
}

// A saved and reloaded cache gives bit-identical next-token logits; other models and
// damaged files are refused.
TEST(CacheFile, SaveLoadIsBitIdentical) {
  auto model = small_model();
  const auto ids = random_ids(150, 12);
  for (DType type : {DType::F32, DType::F16, DType::Q8_0}) {
    BudgetPress press(preset("ada-snapkv", 48));
    Generator gen(*model, nullptr, type);
    gen.prefill(ids, &press);
    const std::string path = test::temp_path(std::string("saved-") + std::string(dtype_name(type)) + ".kvsq");
    save_cache(path, gen.cache(), model->fingerprint());
    KvCache loaded = load_cache(path, model->cache_identity());
    EXPECT_EQ(loaded.bytes_used(), gen.cache().bytes_used());
    EXPECT_EQ(loaded.next_pos(), gen.cache().next_pos());
    const std::vector<int32_t> q{7, 8, 9, 10};
    std::vector<float> a(300 * q.size()), b(a.size());
    model->forward(gen.cache(), q.data(), static_cast<int64_t>(q.size()), a.data(), true);
    model->forward(loaded, q.data(), static_cast<int64_t>(q.size()), b.data(), true);
    EXPECT_EQ(a, b) << dtype_name(type);

    // Another model (same shape, other weights) is refused, and so is a cut file.
    auto other = small_model(Arch::Llama, 3, 99);
    ASSERT_NE(other->fingerprint(), model->fingerprint());
    EXPECT_THROW(load_cache(path, other->cache_identity()), std::runtime_error);
    auto bytes = test::read_bytes(path);
    bytes.resize(bytes.size() - 7);
    test::write_bytes(path + ".cut", bytes);
    EXPECT_THROW(load_cache(path + ".cut", model->cache_identity()), std::runtime_error);
    test::write_bytes(path + ".junk", {'n', 'o', 'p', 'e', 0, 0, 0, 0});
    EXPECT_THROW(load_cache(path + ".junk", model->cache_identity()), std::runtime_error);
  }
}

namespace {
// A saved file's bytes with `edit` applied to its body and the checksum made right again:
// what a crafted (not merely damaged) file looks like.
std::string rewrite(const std::vector<uint8_t>& saved, const std::function<void(std::vector<uint8_t>&)>& edit,
                    const std::string& name) {
  std::vector<uint8_t> body(saved.begin(), saved.end() - 8);
  edit(body);
  const uint64_t sum = cache_checksum(body.data(), body.size());
  const auto* p = reinterpret_cast<const uint8_t*>(&sum);
  body.insert(body.end(), p, p + 8);
  const std::string path = test::temp_path(name);
  test::write_bytes(path, body);
  return path;
}

template <typename T>
void put_at(std::vector<uint8_t>& b, size_t offset, T v) {
  std::memcpy(b.data() + offset, &v, sizeof v);
}

void expect_refused(const std::string& path, const CacheIdentity& id, const std::string& needle) {
  try {
    (void)load_cache(path, id);
    ADD_FAILURE() << path << " loaded; expected an error with '" << needle << "'";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

// Heads may hold no rows at all (a sliding layer not reached yet, a head an allocation
// left empty): such a cache saves and loads (under ASan, without touching null buffers).
TEST(CacheFile, HeadsWithoutRowsSaveAndLoad) {
  auto model = small_model();
  KvCache cache = model->make_cache(DType::F16);
  const ModelConfig& c = model->config();
  std::vector<float> k(static_cast<size_t>(c.head_dim), 0.5f), v(static_cast<size_t>(c.head_dim_v), -0.25f);
  cache.append(0, 0, k.data(), v.data(), 3);
  cache.set_next_pos(4);
  const std::string path = test::temp_path("sparse.kvsq");
  save_cache(path, cache, model->fingerprint());
  const KvCache loaded = load_cache(path, model->cache_identity());
  EXPECT_EQ(loaded.head(0, 0).pos, std::vector<int32_t>{3});
  EXPECT_EQ(loaded.head(0, 1).size(), 0);
  EXPECT_EQ(loaded.next_pos(), 4);
  EXPECT_EQ(loaded.bytes_used(), cache.bytes_used());
}

TEST(CacheFile, EveryCorruptionIsRefusedWithOneClearMessage) {
  auto model = small_model();
  BudgetPress press(preset("ada-snapkv", 48));
  Generator gen(*model, nullptr, DType::F16);
  gen.prefill(random_ids(150, 12), &press);
  const std::string path = test::temp_path("corrupt-base.kvsq");
  save_cache(path, gen.cache(), model->fingerprint());
  const CacheIdentity id = model->cache_identity();
  const std::vector<uint8_t> saved = test::read_bytes(path);
  // A flipped byte anywhere (header, positions, rows, the checksum itself) is refused.
  int flipped = 0;
  for (size_t at = 0; at < saved.size(); at += std::max<size_t>(1, saved.size() / 97)) {
    std::vector<uint8_t> b = saved;
    b[at] ^= 0x10;
    test::write_bytes(path + ".flip", b);
    EXPECT_THROW(load_cache(path + ".flip", id), std::runtime_error) << "byte " << at;
    ++flipped;
  }
  EXPECT_GT(flipped, 90);
  std::vector<uint8_t> b = saved;
  b[saved.size() / 2] ^= 1;
  test::write_bytes(path + ".flip", b);
  expect_refused(path + ".flip", id, "checksum");
  // Crafted files, with a correct checksum. Offsets: version 4, storage type 16, n_layer 20,
  // head_dim_v 32, next position 36, the first head's row count 40, its positions from 48.
  expect_refused(rewrite(saved, [](auto& x) { put_at<uint32_t>(x, 4, 1); }, "v1.kvsq"), id, "version 1");
  expect_refused(rewrite(saved, [](auto& x) { put_at<uint32_t>(x, 16, 7); }, "type.kvsq"), id, "unknown storage type");
  expect_refused(rewrite(saved, [](auto& x) { put_at<uint32_t>(x, 20, 16384); }, "layers.kvsq"), id, "holds a cache of 16384 layers");
  expect_refused(rewrite(saved, [](auto& x) { put_at<uint32_t>(x, 32, 0); }, "hdv.kvsq"), id, "holds a cache of");
  expect_refused(rewrite(saved, [](auto& x) { put_at<int32_t>(x, 36, -5); }, "negative.kvsq"), id, "negative next position");
  expect_refused(rewrite(saved, [](auto& x) { put_at<int32_t>(x, 36, 20); }, "next.kvsq"), id, "stay below 20");
  expect_refused(rewrite(saved, [](auto& x) { std::swap(x[48], x[52]); }, "order.kvsq"), id, "positions must ascend");
  expect_refused(rewrite(saved, [](auto& x) { put_at<int32_t>(x, 48, -1); }, "minus.kvsq"), id, "positions must ascend");
  expect_refused(rewrite(saved, [](auto& x) { x.push_back(0); }, "trailing.kvsq"), id, "trailing bytes");
  expect_refused(rewrite(saved, [](auto& x) { x.resize(x.size() - 3); }, "short.kvsq"), id, "truncated");
  // And the untouched file still loads.
  EXPECT_EQ(load_cache(path, id).bytes_used(), gen.cache().bytes_used());
}

// --compress-every: while decoding, no head grows past budget + every, evictions happen,
// positions keep counting, and the newest rows (the window) are always kept.
TEST(DecodePress, LongGenerationStaysBounded) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const auto ids = random_ids(80, 21);
  BudgetPress press(preset("snapkv", 32));
  Generator gen(*model, nullptr, DType::F16);
  auto logits = gen.prefill(ids, &press);
  PressConfig dc = preset("snapkv", 32);
  DecodePress step(dc, press.head_budgets(), 8);
  const std::vector<int32_t> cont = random_ids(120, 22);
  std::vector<float> out(static_cast<size_t>(c.vocab));
  std::vector<int64_t> before(static_cast<size_t>(c.n_layer * c.n_head_kv), 0);
  for (size_t i = 1; i < cont.size(); ++i) {
    model->forward(gen.cache(), &cont[i], 1, out.data(), false, &step);
    const auto latest = static_cast<int32_t>(ids.size() + i - 1);
    for (int l = 0; l < c.n_layer; ++l)
      for (int h = 0; h < c.n_head_kv; ++h) {
        const auto& hr = gen.cache().head(l, h);
        ASSERT_LE(hr.size(), 32 + 8);
        // An eviction goes back to the budget exactly, never below it.
        int64_t& prev = before[static_cast<size_t>(l * c.n_head_kv + h)];
        if (hr.size() < prev) {
          ASSERT_EQ(hr.size(), 32) << "step " << i;
        }
        prev = hr.size();
        // The newest 8 positions (the re-scoring window) are always there, in order.
        for (int32_t p = latest - 7; p <= latest; ++p)
          ASSERT_TRUE(std::binary_search(hr.pos.begin(), hr.pos.end(), p)) << "position " << p << " step " << i;
        ASSERT_EQ(std::adjacent_find(hr.pos.begin(), hr.pos.end(), std::greater_equal<int32_t>()), hr.pos.end());
      }
  }
  EXPECT_GT(step.evictions(), 0);
  for (float x : out) ASSERT_TRUE(std::isfinite(x));
}

namespace {
[[maybe_unused]] size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

// 16k rows in every head of a SmolLM2-135M-shaped cache (30 layers x 3 KV heads x 64,
// f16: ~380 MB), then eviction to 1024 rows per head: the bytes and the process's
// resident memory both drop.
TEST(KvCacheMemory, EvictionReleasesResidentMemory) {
  KvCache cache(30, 3, 64, 64, DType::F16);
  std::vector<float> k(64, 0.5f), v(64, 0.25f);
  const int64_t n = 16384, kept = 1024;
  for (int l = 0; l < 30; ++l)
    for (int h = 0; h < 3; ++h) {
      cache.reserve_more(l, n);
      for (int32_t p = 0; p < n; ++p) cache.append(l, h, k.data(), v.data(), p);
    }
  const size_t full_bytes = cache.bytes_used();
  [[maybe_unused]] const size_t full_rss = resident_bytes();
  EXPECT_EQ(full_bytes, static_cast<size_t>(30 * 3 * n * (128 + 128 + 4)));
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < kept; ++i) keep.push_back(i * (n / kept));
  for (int l = 0; l < 30; ++l)
    for (int h = 0; h < 3; ++h) cache.keep_rows(l, h, keep);
  EXPECT_EQ(cache.bytes_used(), static_cast<size_t>(30 * 3 * kept * (128 + 128 + 4)));
  EXPECT_EQ(cache.bytes_reserved(), cache.bytes_used());
  EXPECT_EQ(cache.head(7, 2).pos[5], static_cast<int32_t>(5 * (n / kept)));
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "resident-memory check skipped under AddressSanitizer (its allocator quarantines freed memory)";
#else
  const size_t after_rss = resident_bytes();
  const size_t freed = full_bytes - cache.bytes_used();
  std::cout << "resident memory: " << full_rss / 1e6 << " MB full, " << after_rss / 1e6 << " MB after eviction\n";
  EXPECT_GT(full_rss, after_rss + freed / 2) << "evicted rows must leave resident memory";
#endif
}

TEST(Lava, LayerBudgetsFollowEntropy) {
  std::vector<float> uniform(100, 1.0f), one_hot(100, 0.0f);
  one_hot[7] = 5.0f;
  EXPECT_NEAR(normalized_entropy(uniform), 1.0, 1e-12);
  EXPECT_NEAR(normalized_entropy(one_hot), 0.0, 1e-12);
  const std::vector<double> e{normalized_entropy(uniform), 0.5, normalized_entropy(one_hot) + 0.1, 0.9};
  const int64_t T = 4 * 96;
  const auto b = entropy_layer_budgets(e, T, {1000, 1000, 1000, 1000});
  const double sum = e[0] + e[1] + e[2] + e[3];
  int64_t total = 0;
  for (size_t l = 0; l < e.size(); ++l) {
    EXPECT_EQ(b[l], static_cast<int64_t>(std::floor(static_cast<double>(T) * e[l] / sum)));  // reference computation
    total += b[l];
  }
  EXPECT_LE(total, T);
  EXPECT_GE(total, T - static_cast<int64_t>(e.size()));  // floor rounding only
  EXPECT_GT(b[0], b[2]);  // diffuse scores get more than concentrated ones
  // A layer's budget never exceeds its prefix.
  EXPECT_EQ(entropy_layer_budgets({1.0, 1.0}, 1000, {100, 800})[0], 100);
}

namespace {
// Wraps a LavaPress and checks, whenever a layer arrives, what the finished layers hold.
class CascadeChecker : public LayerPress {
 public:
  CascadeChecker(LavaPress& inner, int64_t window) : inner_(inner), window_(window) {}
  int64_t window() const override { return inner_.window(); }
  std::vector<std::vector<int64_t>> select(const LayerSnapshot& s) override {
    auto keep = inner_.select(s);
    // After the cascade ran, layers < s.layer are final for now: check the bound.
    int64_t rows = 0;
    for (int j = 0; j < s.layer; ++j) rows += s.cache->layer_rows(j);
    const int H = s.cfg->n_head_kv;
    max_excess_ = std::max(max_excess_, rows - (inner_.total_budget() * H + int64_t{s.layer} * H * window_));
    ++checked_;
    return keep;
  }
  int64_t max_excess_ = INT64_MIN;
  int checked_ = 0;

 private:
  LavaPress& inner_;
  int64_t window_;
};
}  // namespace

TEST(Lava, CascadeKeepsFinishedLayersWithinTheTotalBudget) {
  auto model = small_model(Arch::Llama, 6);
  const ModelConfig& c = model->config();
  const auto ids = random_ids(300, 31);
  for (const std::string name : {"lava", "lava-layers"}) {
    LavaPress lava(preset(name, 40));
    CascadeChecker checker(lava, 8);
    Generator gen(*model, nullptr, DType::F16);
    gen.prefill(ids, &checker);
    EXPECT_EQ(checker.checked_, c.n_layer);
    EXPECT_LE(checker.max_excess_, 0) << name;
    // Final budgets equal the computation from all entropies at once.
    std::vector<int64_t> prefixes(static_cast<size_t>(c.n_layer), 300 - 8);
    const auto expect = entropy_layer_budgets(lava.entropies(), lava.total_budget(), prefixes);
    EXPECT_EQ(lava.layer_budgets(), expect) << name;
    int64_t rows = 0;
    for (int l = 0; l < c.n_layer; ++l) {
      int64_t layer = 0;
      for (int h = 0; h < c.n_head_kv; ++h) layer += gen.cache().head(l, h).size() - 8;
      // Ada inside a layer sums to H * B'_l exactly (lava); uniform heads too (lava-layers).
      EXPECT_EQ(layer, c.n_head_kv * expect[static_cast<size_t>(l)]) << name << " layer " << l;
      rows += layer;
    }
    EXPECT_LE(rows, lava.total_budget() * c.n_head_kv);
    // The layers really differ: entropy moved budget between them.
    EXPECT_NE(*std::min_element(expect.begin(), expect.end()), *std::max_element(expect.begin(), expect.end()));
  }
}
