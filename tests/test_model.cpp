// The decoder against an independent engine's outputs, llama2.c import, random models.
#include <omp.h>

#include <nlohmann/json.hpp>

#include "cache/kv_cache.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf/llama2c.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "runtime/generator.h"
#include "runtime/memory_stats.h"
#include "runtime/sampler.h"
#include "tensor/huge_page_buffer.h"
#include "tensor/quant.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

using namespace kvsqueeze;
using json = nlohmann::json;

namespace {
std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& ids) {
  KvCache cache = m.make_cache();
  std::vector<float> out(ids.size() * static_cast<size_t>(m.config().vocab));
  m.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), out.data(), true);
  return out;
}

void check_greedy_reference(const std::string& model_path) {
  auto file = std::make_shared<const GgufFile>(model_path);
  Model model(file);
  auto tok = Tokenizer::from_gguf(*file);
  auto lines = test::read_bytes(test::shared_path("reference/stories260K/greedy.jsonl"));
  std::stringstream ss(std::string(lines.begin(), lines.end()));
  std::string line;
  int checked = 0;
  while (std::getline(ss, line)) {
    if (line.empty()) continue;
    const json j = json::parse(line);
    const auto prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
    const auto expected = j["greedy_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(j["prompt"].get<std::string>(), true, true), prompt_ids);
    Generator gen(model, tok.get());
    GenerationOptions opt;
    opt.n_predict = static_cast<int>(expected.size());
    opt.stop_at_eog = false;
    EXPECT_EQ(gen.generate(prompt_ids, opt), expected) << "prompt: " << j["prompt"];
    ++checked;
  }
  EXPECT_GE(checked, 3);
}
}  // namespace

TEST(Stories260K, GreedyMatchesReference) {
  REQUIRE_FIXTURE("models/stories260K/stories260K.gguf");
  check_greedy_reference(test::shared_path("models/stories260K/stories260K.gguf"));
}

TEST(Stories260K, DecodeStreamFeedsOnlyTheTokensAskedFor) {
  REQUIRE_FIXTURE("models/stories260K/stories260K.gguf");
  auto file = std::make_shared<const GgufFile>(test::shared_path("models/stories260K/stories260K.gguf"));
  Model model(file);
  auto tok = Tokenizer::from_gguf(*file);
  const std::vector<int32_t> prompt = tok->encode("Once upon a time", true, true);
  GenerationOptions opt;
  opt.n_predict = 12;
  opt.stop_at_eog = false;
  Generator whole(model, tok.get());
  const std::vector<int32_t> expected = whole.generate(prompt, opt);
  ASSERT_EQ(expected.size(), 12u);

  Generator gen(model, tok.get());
  DecodeStream stream(gen, gen.prefill(prompt), opt);
  std::vector<int32_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(*stream.next());
  // Five tokens handed out, four run through the model: the fifth waits for the next ask.
  EXPECT_EQ(gen.cache().next_pos(), static_cast<int32_t>(prompt.size()) + 4);
  while (const auto t = stream.next()) got.push_back(*t);
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(stream.done());
  EXPECT_FALSE(stream.next().has_value());
  EXPECT_EQ(gen.stats().generated_tokens, 12);
  EXPECT_EQ(gen.stats().decode_passes, 11);
}

TEST(Stories260K, ConvertedLlama2cMatchesReference) {
  REQUIRE_FIXTURE("models/stories260K/stories260K.bin");
  const std::string out = test::temp_path("stories260K-converted.gguf");
  convert_llama2c(test::shared_path("models/stories260K/stories260K.bin"),
                  test::shared_path("models/stories260K/tok512.bin"), out);
  check_greedy_reference(out);
  // The tokenizer must be the one llama.cpp's converter writes.
  GgufFile ours(out), theirs(test::shared_path("models/stories260K/stories260K.gguf"));
  const auto* a = ours.get_array("tokenizer.ggml.tokens");
  const auto* b = theirs.get_array("tokenizer.ggml.tokens");
  ASSERT_EQ(a->items.size(), b->items.size());
  for (size_t i = 0; i < a->items.size(); ++i) EXPECT_EQ(a->items[i].as_string(), b->items[i].as_string()) << i;
  const auto* ta = ours.get_array("tokenizer.ggml.token_type");
  const auto* tb = theirs.get_array("tokenizer.ggml.token_type");
  for (size_t i = 0; i < ta->items.size(); ++i) EXPECT_EQ(ta->items[i].as_int(), tb->items[i].as_int()) << i;
}

TEST(Stories260K, LongLogitsWithinTolerance) {
  REQUIRE_FIXTURE("reference/stories260K/logits_long.f32");
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.gguf"));
  auto meta = test::read_bytes(test::shared_path("reference/stories260K/logits_long.json"));
  const auto ids = json::parse(meta.begin(), meta.end())["ids"].get<std::vector<int32_t>>();
  const auto ref = test::read_f32(test::shared_path("reference/stories260K/logits_long.f32"));
  const size_t V = 512;
  ASSERT_EQ(ref.size(), ids.size() * V);
  const auto got = all_logits(*model, ids);
  double worst = 0, mean = 0;
  for (size_t r = 0; r < ids.size(); ++r) {
    double row = 0;
    for (size_t v = 0; v < V; ++v) row = std::max(row, std::fabs(double(got[r * V + v]) - ref[r * V + v]));
    worst = std::max(worst, row);
    mean += row / static_cast<double>(ids.size());
    EXPECT_EQ(argmax(&got[r * V], V), argmax(&ref[r * V], V)) << "row " << r;
  }
  // The reference README expects ~0.05. llama.cpp keeps K, V (and Q inside attention)
  // in f16; emulating that brings our worst row from 0.069 to 0.034, so the tail is the
  // reference's rounding, not ours (docs/ARCHITECTURE.md, "Numerics").
  EXPECT_LT(mean, 0.02) << "mean over rows of the max abs logit difference";
  EXPECT_LT(worst, 0.08) << "max abs logit difference";
}

class QuantReference : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantReference, LogitsWithinBounds) {
  const std::string base = "reference/quant/" + GetParam();
  REQUIRE_FIXTURE(base + ".gguf");
  auto model = Model::load(test::shared_path(base + ".gguf"));
  auto meta = test::read_bytes(test::shared_path(base + ".json"));
  const json j = json::parse(meta.begin(), meta.end());
  const auto ids = j["ids"].get<std::vector<int32_t>>();
  const auto rows = j["rows"].get<std::vector<int>>();
  const auto exact = test::read_f32(test::shared_path(base + ".exact.f32"));
  const auto llama = test::read_f32(test::shared_path(base + ".logits.f32"));
  const size_t V = static_cast<size_t>(model->config().vocab);
  ASSERT_EQ(exact.size(), rows.size() * V);
  const auto got = all_logits(*model, ids);
  double worst_exact = 0, worst_llama = 0;
  int argmax_same = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* g = &got[static_cast<size_t>(rows[i]) * V];
    worst_exact = std::max(worst_exact, test::rel_l2(g, &exact[i * V], V));
    worst_llama = std::max(worst_llama, test::rel_l2(g, &llama[i * V], V));
    argmax_same += argmax(g, static_cast<int32_t>(V)) == argmax(&llama[i * V], static_cast<int32_t>(V));
  }
  // Bounds from ../shared/reference/README.md: within ~6% of exact arithmetic for an
  // engine that quantizes activations to 8 bits, within ~6% of llama.cpp, argmax equal
  // on >= 90% of rows.
  EXPECT_LT(worst_exact, 0.06);
  EXPECT_LT(worst_llama, 0.06);
  EXPECT_GE(argmax_same, static_cast<int>(0.9 * static_cast<double>(rows.size())));
  std::cout << GetParam() << ": worst rel L2 vs exact " << worst_exact << ", vs llama.cpp " << worst_llama
            << ", argmax agreement " << argmax_same << "/" << rows.size() << "\n";
}

INSTANTIATE_TEST_SUITE_P(Shared, QuantReference,
                         ::testing::Values("dev-llama-q4_k_m", "dev-llama-q4_0", "dev-llama-f16", "dev-qwen2-q8_0",
                                           "dev-qwen3-q6_k"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// ---- random models ----------------------------------------------------------------

namespace {
ModelSpec small_spec(Arch arch, DType type) {
  ModelSpec s;
  s.arch = arch;
  s.n_layer = 2;
  s.dim = 256;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.ffn = 512;
  s.vocab = 300;
  s.type = type;
  s.seed = 42;
  if (arch == Arch::Qwen3) s.head_dim = 96;  // differs from dim / heads, like real Qwen3
  return s;
}
}  // namespace

class MadeModel : public ::testing::TestWithParam<DType> {};

TEST_P(MadeModel, WeightsRoundTripThroughFile) {
  const DType type = GetParam();
  const std::string f32_path = test::temp_path(std::string("made-f32-for-") + std::string(dtype_name(type)) + ".gguf");
  const std::string path = test::temp_path(std::string("made-") + std::string(dtype_name(type)) + ".gguf");
  make_random_model(small_spec(Arch::Llama, DType::F32), f32_path);
  make_random_model(small_spec(Arch::Llama, type), path);
  // Deterministic per seed: a second write is byte-identical.
  const std::string again = path + ".again";
  make_random_model(small_spec(Arch::Llama, type), again);
  EXPECT_EQ(test::read_bytes(path), test::read_bytes(again));

  GgufFile ref(f32_path), f(path);
  ASSERT_EQ(ref.tensors().size(), f.tensors().size());
  double bound = 1e-9;
  switch (type) {
    case DType::F16: bound = 1e-3; break;
    case DType::BF16: bound = 5e-3; break;
    case DType::Q8_0: bound = 0.01; break;
    case DType::Q6_K: bound = 0.03; break;
    case DType::Q4_0: case DType::Q4_K: bound = 0.15; break;
    default: break;
  }
  for (const auto& t : f.tensors()) {
    const GgufTensor* r = ref.tensor(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    ASSERT_EQ(r->dims, t.dims) << t.name;
    if (t.dims.size() == 2) {
      EXPECT_EQ(t.type, type) << t.name;
    }
    std::vector<float> a(static_cast<size_t>(t.n_elements())), b(a.size());
    dequantize_row(t.type, t.data, a.data(), t.n_elements());
    dequantize_row(r->type, r->data, b.data(), r->n_elements());
    EXPECT_LT(test::rel_l2(a.data(), b.data(), a.size()), bound) << t.name;
    // Re-encoding the decoded values gives the same bytes back (the grid is stable).
    std::vector<uint8_t> re(static_cast<size_t>(t.n_bytes));
    if (t.type == DType::F32 || t.type == DType::F16 || t.type == DType::BF16 || t.type == DType::Q8_0) {
      for (int64_t row = 0; row < t.rows(); ++row)
        quantize_row(t.type, a.data() + row * t.cols(), re.data() + row * row_bytes(t.type, t.cols()), t.cols());
      EXPECT_EQ(0, std::memcmp(re.data(), t.data, re.size())) << t.name;
    }
  }
  // And the model runs.
  auto model = Model::load(path);
  const auto logits = all_logits(*model, {1, 5, 9, 77});
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

INSTANTIATE_TEST_SUITE_P(Types, MadeModel,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K,
                                           DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

class Architectures : public ::testing::TestWithParam<Arch> {};

// Prompt logits computed in one batch must equal those of token-by-token decoding
// through the KV cache.
TEST_P(Architectures, BatchedPrefillEqualsIncrementalDecode) {
  const std::string path = test::temp_path(std::string("arch-") + arch_name(GetParam()) + ".gguf");
  make_random_model(small_spec(GetParam(), DType::F32), path);
  auto model = Model::load(path);
  EXPECT_EQ(model->config().arch, GetParam());
  if (GetParam() == Arch::Qwen3) {
    EXPECT_EQ(model->config().head_dim, 96);
  }
  const std::vector<int32_t> ids{1, 17, 250, 3, 99, 42, 7, 8, 200, 11};
  const auto batch = all_logits(*model, ids);  // one pass: attention over fresh f32 rows
  const size_t V = static_cast<size_t>(model->config().vocab);
  // Token by token, attention reads the stored rows: exact for f32 storage, rounding-level
  // differences for f16 and q8_0.
  for (const auto& [type, tol] : {std::pair{DType::F32, 1e-4}, {DType::F16, 3e-3}, {DType::Q8_0, 3e-2}}) {
    KvCache cache = model->make_cache(type);
    std::vector<float> one(V);
    for (size_t i = 0; i < ids.size(); ++i) {
      model->forward(cache, &ids[i], 1, one.data(), false);
      EXPECT_LT(test::rel_l2(one.data(), &batch[i * V], V), tol) << dtype_name(type) << " position " << i;
    }
    EXPECT_EQ(cache.head(1, 1).size(), static_cast<int64_t>(ids.size()));
    EXPECT_EQ(cache.head(0, 0).pos.back(), static_cast<int32_t>(ids.size() - 1));
    EXPECT_EQ(cache.bytes_used(), static_cast<size_t>(ids.size()) * model->config().n_layer *
                                      model->config().n_head_kv *
                                      (cache.k_row_bytes() + cache.v_row_bytes() + sizeof(int32_t)));
  }
}

// A long cache is attended in parts of rows (one work item each, merged through their
// log-sum-exp): the next token's logits still equal those of the whole prompt pass, on
// one thread and on two.
TEST_P(Architectures, DecodeOverALongCacheEqualsThePromptPass) {
  const std::string path = test::temp_path(std::string("arch-long-") + arch_name(GetParam()) + ".gguf");
  make_random_model(small_spec(GetParam(), DType::F32), path);
  auto model = Model::load(path);
  const size_t V = static_cast<size_t>(model->config().vocab);
  std::vector<int32_t> ids(900);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % V);
  const auto whole = all_logits(*model, ids);
  const int threads_before = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    KvCache cache = model->make_cache(DType::F32);
    std::vector<float> one(V);
    model->forward(cache, ids.data(), static_cast<int64_t>(ids.size()) - 1, one.data(), false);
    model->forward(cache, &ids.back(), 1, one.data(), false);  // 899 cached rows: 4 parts per head
    EXPECT_LT(test::rel_l2(one.data(), &whole[(ids.size() - 1) * V], V), 1e-4) << threads << " threads";
  }
  omp_set_num_threads(threads_before);
}

INSTANTIATE_TEST_SUITE_P(All, Architectures, ::testing::Values(Arch::Llama, Arch::Qwen2, Arch::Qwen3),
                         [](const auto& info) { return std::string(arch_name(info.param)); });

TEST(ModelErrors, TokenOutOfVocabularyIsRejected) {
  const std::string path = test::temp_path("oov.gguf");
  make_random_model(small_spec(Arch::Llama, DType::F32), path);
  auto model = Model::load(path);
  KvCache cache = model->make_cache();
  std::vector<float> out(static_cast<size_t>(model->config().vocab));
  const int32_t bad = 300;
  EXPECT_THROW(model->forward(cache, &bad, 1, out.data(), false), std::runtime_error);
  EXPECT_EQ(cache.head(0, 0).size(), 0);  // nothing half-written
}

TEST(ModelErrors, MissingTensorIsNamed) {
  GgufWriter w;
  ModelSpec s = small_spec(Arch::Qwen2, DType::F32);
  build_random_model(s, w);
  const std::string good = test::temp_path("qwen2-good.gguf");
  w.write(good);
  // Rebuild without the layer-1 K bias.
  GgufFile src(good);
  GgufWriter w2;
  for (const auto& [k, v] : src.metadata()) w2.set(k, v);
  for (const auto& t : src.tensors())
    if (t.name != "blk.1.attn_k.bias") w2.add_tensor(t.name, t.dims, t.type, std::vector<uint8_t>(t.data, t.data + t.n_bytes));
  const std::string bad = test::temp_path("qwen2-missing.gguf");
  w2.write(bad);
  try {
    Model::load(bad);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'blk.1.attn_k.bias'"), std::string::npos) << e.what();
  }
}

TEST(ModelErrors, UnknownArchitectureIsNamed) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("mamba"));
  const std::string path = test::temp_path("mamba.gguf");
  w.write(path);
  try {
    Model::load(path);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported architecture 'mamba'"), std::string::npos) << e.what();
  }
}

// ---- resident weights ---------------------------------------------------------------

namespace {
// Sets KVSQUEEZE_MMAP for one scope (unset: the default, resident weights).
class MmapEnv {
 public:
  explicit MmapEnv(const char* value) {
    if (value) setenv("KVSQUEEZE_MMAP", value, 1);
    else unsetenv("KVSQUEEZE_MMAP");
  }
  ~MmapEnv() { unsetenv("KVSQUEEZE_MMAP"); }
};
}  // namespace

TEST(ResidentWeights, HugePageBufferIsAlignedWritableAndMovable) {
  HugePageBuffer empty(0);
  EXPECT_EQ(empty.data(), nullptr);
  HugePageBuffer b(3 << 20);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(b.size(), size_t{3} << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % (uintptr_t{2} << 20), 0u);
  std::fill(b.data(), b.data() + b.size(), uint8_t{7});
  uint8_t* const p = b.data();
  HugePageBuffer moved(std::move(b));
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(moved.data()[moved.size() - 1], 7);
  b = std::move(moved);
  EXPECT_EQ(b.data(), p);
  HugePageBuffer small(1000);  // under one huge page: plain pages, still whole and writable
  ASSERT_NE(small.data(), nullptr);
  EXPECT_EQ(small.size(), 1000u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data()) % 4096, 0u);
  std::fill(small.data(), small.data() + small.size(), uint8_t{9});
  EXPECT_EQ(small.data()[999], 9);
}

// The streamed matrices are copied out of the file into huge pages; the logits are those
// of the mapped file, bit for bit. KVSQUEEZE_MMAP=1 keeps the mapping.
TEST(ResidentWeights, CopiedOutOfTheFileWithTheSameLogits) {
  ModelSpec s = small_spec(Arch::Llama, DType::Q8_0);
  s.tied_output = false;
  const std::string path = test::temp_path("resident-q8_0.gguf");
  make_random_model(s, path);
  std::vector<float> resident, mapped;
  {
    MmapEnv env(nullptr);
    auto m = Model::load(path);
    // Every layer matrix and the output matrix, not the (untied) embedding.
    int64_t streamed = 0;
    for (const auto& t : m->file().tensors())
      if (t.dims.size() == 2 && t.name != "token_embd.weight") streamed += t.n_bytes;
    EXPECT_GE(m->resident_weight_bytes(), streamed);
    EXPECT_LT(m->resident_weight_bytes(), streamed + 64 * 20);
    resident = all_logits(*m, {1, 5, 9, 77, 200});
  }
  {
    MmapEnv env("1");
    auto m = Model::load(path);
    EXPECT_EQ(m->resident_weight_bytes(), 0);
    mapped = all_logits(*m, {1, 5, 9, 77, 200});
  }
  ASSERT_EQ(resident.size(), mapped.size());
  EXPECT_EQ(0, std::memcmp(resident.data(), mapped.data(), resident.size() * sizeof(float)));
}

// Tied embeddings: one copy serves the output product and the embedding lookups.
TEST(ResidentWeights, TiedEmbeddingIsCopiedOnce) {
  const std::string path = test::temp_path("resident-tied.gguf");
  make_random_model(small_spec(Arch::Llama, DType::Q8_0), path);
  MmapEnv env(nullptr);
  auto m = Model::load(path);
  int64_t all2d = 0;
  for (const auto& t : m->file().tensors())
    if (t.dims.size() == 2) all2d += t.n_bytes;
  EXPECT_GE(m->resident_weight_bytes(), all2d);
  EXPECT_LT(m->resident_weight_bytes(), all2d + 64 * 20);
  const auto logits = all_logits(*m, {3, 4});
  MmapEnv mapped_env("1");
  EXPECT_EQ(all_logits(*Model::load(path), {3, 4}), logits);
}

// The copy is read from the file, not through the mapping: loading adds the copy to the
// resident memory, not the copy and the mapped pages it came from.
TEST(ResidentWeights, LoadingDoesNotAlsoKeepTheMappedPagesResident) {
  if (resident_bytes() == 0) GTEST_SKIP() << "no /proc/self/status";
  ModelSpec s = small_spec(Arch::Llama, DType::Q8_0);
  s.dim = 512;
  s.ffn = 2048;
  s.n_head = 8;
  s.n_head_kv = 2;
  const std::string path = test::temp_path("resident-rss.gguf");
  make_random_model(s, path);
  MmapEnv env(nullptr);
  const size_t before = resident_bytes();
  auto m = Model::load(path);
  const size_t grown = resident_bytes() - before;
  const auto copy = static_cast<size_t>(m->resident_weight_bytes());
  ASSERT_GT(copy, size_t{6} << 20);
  EXPECT_LT(grown, copy + (size_t{4} << 20)) << "copy " << copy << " bytes";
}

TEST(ResidentWeights, BadMmapSettingIsNamed) {
  const std::string path = test::temp_path("resident-bad-env.gguf");
  make_random_model(small_spec(Arch::Llama, DType::F32), path);
  MmapEnv env("yes");
  try {
    Model::load(path);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("KVSQUEEZE_MMAP must be 0 or 1, not 'yes'"), std::string::npos) << e.what();
  }
}
