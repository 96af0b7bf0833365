// The command-line front end, run as a user would: outputs, exit codes, error messages.
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "tensor/quant.h"
#include "test_util.h"

using namespace kvsqueeze;
using kvsqueeze::test::CliResult;
using kvsqueeze::test::expect_clean_failure;
using kvsqueeze::test::run;

namespace {
const std::string kStories = "models/stories260K/stories260K.gguf";
}  // namespace

TEST(Cli, TokenizePrintsJsonIds) {
  REQUIRE_FIXTURE(kStories);
  CliResult r = run("tokenize -m " + test::shared_path(kStories) + " -p 'Once upon a time'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[1, 403, 407, 261, 378]\n");
  r = run("tokenize -m " + test::shared_path(kStories) + " -p 'Once upon a time' --no-bos");
  EXPECT_EQ(r.out, "[403, 407, 261, 378]\n");
}

TEST(Cli, TokenizeParsesSpecialTokensUnlessTold) {
  REQUIRE_FIXTURE("vocab/ggml-vocab-qwen2.gguf");
  const std::string m = test::shared_path("vocab/ggml-vocab-qwen2.gguf");
  CliResult r = run("tokenize -m " + m + " -p '<|im_start|>hi'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("[151644, ", 0), 0u) << r.out;
  r = run("tokenize -m " + m + " -p '<|im_start|>hi' --no-parse-special");
  EXPECT_EQ(r.out.find("151644"), std::string::npos) << r.out;
}

TEST(Cli, GenerateGreedyStreamsReferenceTextAndStats) {
  REQUIRE_FIXTURE(kStories);
  CliResult r = run("generate -m " + test::shared_path(kStories) + " -p 'Once upon a time' -n 20 --greedy -t 2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.out;
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos);
  EXPECT_NE(r.err.find("KV cache"), std::string::npos);
}

// A chat turn ends with the end-of-turn token; --ignore-eos (for timing runs, as in
// llama.cpp) decodes all -n tokens anyway. Needs a model whose EOS greedy decoding reaches.
TEST(Cli, GenerateStopsAtEndOfTurnUnlessIgnoreEos) {
  const auto model = cached_model_path("smollm2-135m-instruct");
  if (!model) GTEST_SKIP() << "smollm2-135m-instruct is not in " << model_cache_dir() << ": run scripts/fetch_models.sh";
  const std::string args = "generate -m " + *model +
                           " -p '<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n' -n 96 --greedy -t 2";
  const CliResult stops = run(args), all = run(args + " --ignore-eos");
  ASSERT_EQ(stops.exit_code, 0) << stops.err;
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const auto decoded = [](const CliResult& r) {
    const auto at = r.err.find("decode: ");
    return at == std::string::npos ? -1 : std::stoi(r.err.substr(at + 8));
  };
  EXPECT_GT(decoded(stops), 0) << stops.err;
  EXPECT_LT(decoded(stops), 96) << stops.out;
  EXPECT_EQ(decoded(all), 96) << all.err;
  EXPECT_EQ(all.out.rfind(stops.out.substr(0, stops.out.size() - 1), 0), 0u) << "the same greedy text first";
}

TEST(Cli, SampledGenerationIsReproduciblePerSeed) {
  REQUIRE_FIXTURE(kStories);
  const std::string args = "generate -m " + test::shared_path(kStories) + " -p 'Once' -n 24 --temp 1.0 --top-k 20 --top-p 0.9 --seed ";
  const CliResult a = run(args + "7"), b = run(args + "7"), c = run(args + "8");
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

TEST(Cli, LogitsWritesEveryRow) {
  REQUIRE_FIXTURE(kStories);
  const std::string out = test::temp_path("cli-logits.f32");
  CliResult r = run("logits -m " + test::shared_path(kStories) + " --ids 1,403,407 --out " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_bytes(out).size(), 3u * 512u * 4u);
}

TEST(CliBadInput, NonExistentModel) {
  expect_clean_failure(run("generate -m /nonexistent.gguf -p hi"), "no model file '/nonexistent.gguf'");
  expect_clean_failure(run("info -m not-a-model-name"), "nor a known model name: smollm2-135m-instruct, gemma3-270m, qwen2.5-coder-0.5b-instruct, "
                                                    "qwen2.5-coder-1.5b-instruct");
}

TEST(CliBadInput, TruncatedModel) {
  REQUIRE_FIXTURE(kStories);
  auto bytes = test::read_bytes(test::shared_path(kStories));
  bytes.resize(bytes.size() / 2);
  const std::string path = test::temp_path("half.gguf");
  test::write_bytes(path, bytes);
  expect_clean_failure(run("generate -m " + path + " -p hi"), "past the end of the file");
  expect_clean_failure(run("info -m " + path), "invalid GGUF file");
}

TEST(CliBadInput, NotAGgufFile) {
  const std::string path = test::temp_path("text.gguf");
  test::write_bytes(path, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  expect_clean_failure(run("info -m " + path), "wrong magic");
}

TEST(CliBadInput, IdsOutOfVocabulary) {
  REQUIRE_FIXTURE(kStories);
  expect_clean_failure(run("logits -m " + test::shared_path(kStories) + " --ids 1,512 --out " + test::temp_path("x.f32")),
                       "outside the vocabulary");
  expect_clean_failure(run("logits -m " + test::shared_path(kStories) + " --ids 1,-3 --out " + test::temp_path("x.f32")),
                       "outside the vocabulary");
  expect_clean_failure(run("logits -m " + test::shared_path(kStories) + " --ids 1,abc --out " + test::temp_path("x.f32")),
                       "not a token id");
}

TEST(CliBadInput, UnknownOptionAndCommand) {
  CliResult r = run("generate --frobnicate 3");
  EXPECT_FALSE(r.crashed);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("frobnicate"), std::string::npos) << r.err;
  r = run("fly");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.crashed);
}

TEST(CliBadInput, ServeRefusesAnEmptyApiKeyAndNoTimeToArrive) {
  REQUIRE_FIXTURE(kStories);
  // Before loading anything: an empty key would silently leave the server open.
  expect_clean_failure(run("serve -m " + test::shared_path(kStories) + " --port 0 --api-key ''"), "is empty");
  expect_clean_failure(test::run_program("KVSQUEEZE_API_KEY= " + std::string(KVSQUEEZE_CLI),
                                         "serve -m " + test::shared_path(kStories) + " --port 0"),
                       "from KVSQUEEZE_API_KEY is empty");
  expect_clean_failure(run("serve -m " + test::shared_path(kStories) + " --port 0 --request-timeout 0"), "--request-timeout");
}

TEST(CliBadInput, ConflictingPromptSources) {
  REQUIRE_FIXTURE(kStories);
  expect_clean_failure(run("generate -m " + test::shared_path(kStories) + " -p a -f /etc/hostname"), "either -p or -f");
  expect_clean_failure(run("generate -m " + test::shared_path(kStories)), "prompt is required");
}

TEST(CliBadInput, TruncatedLlama2cCheckpoint) {
  REQUIRE_FIXTURE("models/stories260K/stories260K.bin");
  auto bytes = test::read_bytes(test::shared_path("models/stories260K/stories260K.bin"));
  bytes.resize(bytes.size() - 100);
  const std::string path = test::temp_path("cut.bin");
  test::write_bytes(path, bytes);
  expect_clean_failure(run("convert llama2c --model " + path + " --tokenizer " +
                           test::shared_path("models/stories260K/tok512.bin") + " --out " + test::temp_path("cut.gguf")),
                       "truncated");
}

TEST(CliBadInput, MakeModelRejectsImpossibleShapes) {
  expect_clean_failure(run("make-model --heads 3 --kv-heads 2 --out " + test::temp_path("bad.gguf")), "multiple");
  expect_clean_failure(run("make-model --type q9_9 --out " + test::temp_path("bad.gguf")), "unsupported --type");
}

TEST(CliPress, CompressesAndReports) {
  REQUIRE_FIXTURE(kStories);
  const std::string dump = test::temp_path("selection.json");
  CliResult r = run("generate -m " + test::shared_path(kStories) +
                    " -p 'Once upon a time there was a little girl named Lily who loved to play outside in the park "
                    "with her friends every day' -n 8 --greedy --press ada-snapkv --budget 16 --window 4 --dump-selection " +
                    dump);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("before compression"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("head budgets min/mean/max"), std::string::npos) << r.err;
  auto bytes = test::read_bytes(dump);
  const auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
  EXPECT_EQ(j["preset"], "ada-snapkv");
  const int n = j["prompt_tokens"];
  ASSERT_EQ(j["layers"].size(), 5u);
  for (const auto& layer : j["layers"]) {
    int total = 0;
    for (const auto& head : layer["heads"]) {
      const auto pos = head["positions"].get<std::vector<int>>();
      EXPECT_EQ(static_cast<int>(pos.size()), head["budget"].get<int>());
      EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end()));
      for (int p = n - 4; p < n; ++p) EXPECT_TRUE(std::binary_search(pos.begin(), pos.end(), p));  // the window
      total += head["budget"].get<int>();
    }
    EXPECT_EQ(total, 4 * 16);  // Ada: budgets move between heads, the layer total stays
  }
}

// --compress-every: a long generation keeps every head within budget + every rows.
TEST(CliPress, CompressEveryBoundsTheCacheWhileDecoding) {
  REQUIRE_FIXTURE(kStories);
  const auto end_bytes = [](const std::string& err) {
    const size_t at = err.find("at the end (");
    return at == std::string::npos ? -1L : std::stol(err.substr(at + 12));
  };
  const std::string base = "generate -m " + test::shared_path(kStories) + " -p 'Once upon a time' -n 200 --greedy --ignore-eos";
  const CliResult full = run(base);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  // 5 layers x 4 KV heads, f16 rows of 8 + 8 values and a 4-byte position: 36 bytes a row.
  const long row = 36, heads = 5 * 4;
  EXPECT_EQ(end_bytes(full.err), heads * row * (5 + 199)) << full.err;  // every position, prompt and all
  for (const std::string press : {"--press streamingllm --budget 48", "--budget 48"}) {  // with a prefill press, or none
    const CliResult r = run(base + " " + press + " --compress-every 8");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("decode-time compression: "), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("decode-time compression: 0 rows"), std::string::npos) << r.err;
    EXPECT_LE(end_bytes(r.err), heads * row * (48 + 8)) << press << ": " << r.err;
    EXPECT_GE(end_bytes(r.err), heads * row * 48) << press << ": " << r.err;
  }
  expect_clean_failure(run(base + " --compress-every 8"), "--compress-every needs a --budget");
}

TEST(CliPress, RejectsImpossibleSettings) {
  REQUIRE_FIXTURE(kStories);
  const std::string m = "generate -m " + test::shared_path(kStories) + " -p hi -n 1 ";
  expect_clean_failure(run(m + "--press magic --budget 64"), "unknown press 'magic'");
  expect_clean_failure(run(m + "--press snapkv"), "needs a --budget");
  expect_clean_failure(run(m + "--press snapkv --budget 16"), "below the observation window");
  expect_clean_failure(run(m + "--press snapkv --ratio 1.5"), "--ratio must be in (0, 1]");
  expect_clean_failure(run(m + "--press snapkv --budget 64 --ratio 0.5"), "either --budget or --ratio");
  expect_clean_failure(run(m + "--kv-type q8_0"), "multiples of 32");  // stories260K's heads are 8 wide
  expect_clean_failure(run(m + "--context /etc/hostname"), "go together");
}

TEST(CliPress, SavedContextAnswersQuestions) {
  REQUIRE_FIXTURE(kStories);
  const std::string cache = test::temp_path("story.kvsq");
  const std::string model = test::shared_path(kStories);
  CliResult r = run("generate -m " + model + " -p 'Once upon a time, there was a little girl named Lily.' -n 1 --greedy "
                    "--press snapkv --budget 12 --window 4 --save-cache " + cache);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run("generate -m " + model + " --load-cache " + cache + " -p ' She loved to' -n 6 --greedy");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("loaded from"), std::string::npos) << r.err;
  expect_clean_failure(run("generate -m " + test::shared_path("models/retrieval-1k/retrieval.gguf") + " --load-cache " +
                           cache + " -p hi -n 1"),
                       "different model");
}

// LAVa scores a head by SnapKV's window scores (GQA reduced by max) times one positive
// number per head, so within a head it ranks rows exactly as `snapkv --gqa-reduce max`:
// whatever budgets the two give a head, one kept set holds the other. (The command line
// used to impose its --gqa-reduce default, mean, on LAVa's presets and broke this.)
TEST(CliPress, LavaKeepsASupersetOrSubsetOfSnapKvWithMaxReductionInEveryHead) {
  REQUIRE_FIXTURE(kStories);
  std::string prompt;
  const char* words[] = {"once", "upon", "a", "time", "there", "was", "a", "little", "girl", "named", "lily",
                         "she", "liked", "to", "play", "with", "her", "toys", "in", "the", "park", "dog"};
  for (int i = 0; i < 430; ++i) prompt += std::string(i ? " " : "") + words[(i * 7 + i / 5) % 22];
  const std::string prompt_file = test::temp_path("lava-nesting.txt");
  test::write_bytes(prompt_file, std::vector<uint8_t>(prompt.begin(), prompt.end()));
  const auto kept = [&](const std::string& press, int budget) {
    const std::string dump = test::temp_path("nesting-" + press.substr(0, press.find(' ')) + "-" + std::to_string(budget) + ".json");
    const CliResult r = run("generate -m " + test::shared_path(kStories) + " -f " + prompt_file +
                            " -n 1 --greedy --press " + press + " --budget " + std::to_string(budget) +
                            " --dump-selection " + dump);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto bytes = test::read_bytes(dump);
    const auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
    std::vector<std::vector<int>> heads;
    for (const auto& layer : j["layers"])
      for (const auto& head : layer["heads"]) heads.push_back(head["positions"].get<std::vector<int>>());
    return heads;
  };
  for (int budget : {64, 96, 160}) {
    const auto snap = kept("snapkv --gqa-reduce max", budget);
    for (const char* lava : {"lava", "lava-heads", "lava-layers"}) {
      const auto got = kept(lava, budget);
      ASSERT_EQ(got.size(), 20u);  // stories260K: 5 layers x 4 KV heads
      ASSERT_EQ(snap.size(), 20u);
      int differing = 0;
      for (size_t h = 0; h < got.size(); ++h) {
        const auto& a = got[h];
        const auto& b = snap[h];
        const bool nested = std::includes(a.begin(), a.end(), b.begin(), b.end()) ||
                            std::includes(b.begin(), b.end(), a.begin(), a.end());
        EXPECT_TRUE(nested) << lava << " budget " << budget << " head " << h << ": " << a.size() << " vs " << b.size();
        differing += a != b;
      }
      EXPECT_GT(differing, 0) << lava << ": its budgets should differ from SnapKV's somewhere";
    }
  }
}

// convert dequantize: same tensors, same metadata, matrices as F16/F32 holding exactly
// the dequantized values (F32), vectors F32.
TEST(CliConvert, DequantizedCopyHoldsTheSameWeights) {
  const std::string q8 = test::temp_path("deq_q8.gguf"), f32 = test::temp_path("deq_f32.gguf"),
                    f16 = test::temp_path("deq_f16.gguf");
  ASSERT_EQ(run("make-model --layers 2 --dim 64 --heads 4 --kv-heads 2 --ffn 128 --vocab 300 --type q8_0 --out " + q8)
                .exit_code,
            0);
  CliResult r = run("convert dequantize -m " + q8 + " --type f32 --out " + f32);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(run("convert dequantize -m " + q8 + " --out " + f16).exit_code, 0);
  const GgufFile src(q8), a(f32), b(f16);
  ASSERT_EQ(a.tensors().size(), src.tensors().size());
  EXPECT_EQ(a.metadata().size(), src.metadata().size());
  int quantized = 0;
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const auto &s = src.tensors()[i], &x = a.tensors()[i], &h = b.tensors()[i];
    ASSERT_EQ(x.name, s.name);
    EXPECT_EQ(x.dims, s.dims);
    const bool matrix = s.dims.size() >= 2;
    EXPECT_EQ(x.type, DType::F32) << s.name;
    EXPECT_EQ(h.type, matrix ? DType::F16 : DType::F32) << s.name;
    quantized += s.type == DType::Q8_0;
    std::vector<float> want(static_cast<size_t>(s.cols()));
    dequantize_row(s.type, s.data, want.data(), s.cols());  // first row, bit for bit
    EXPECT_EQ(std::memcmp(want.data(), x.data, want.size() * sizeof(float)), 0) << s.name;
  }
  EXPECT_GT(quantized, 0);
  expect_clean_failure(run("convert dequantize -m " + q8 + " --type q4_0 --out " + f32), "--type");
  expect_clean_failure(run("convert dequantize -m " + test::temp_path("absent.gguf") + " --out " + f32), "absent.gguf");
}
