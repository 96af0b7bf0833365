// Tokenizers against llama.cpp's expected tokenizations (../shared/vocab).
#include <sstream>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {
std::vector<std::string> split_inputs(const std::string& all) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t at = all.find(sep, start);
    if (at == std::string::npos) break;
    out.push_back(all.substr(start, at - start));
    start = at + sep.size();
  }
  return out;
}

std::vector<std::vector<int32_t>> read_expected(const std::string& path) {
  auto b = test::read_bytes(path);
  std::stringstream ss(std::string(b.begin(), b.end()));
  std::vector<std::vector<int32_t>> out;
  std::string line;
  while (std::getline(ss, line)) {
    std::stringstream ls(line);
    std::vector<int32_t> ids;
    int32_t id;
    while (ls >> id) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}
}  // namespace

class VocabFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabFixture, EveryLineMatches) {
  const std::string base = "vocab/ggml-vocab-" + GetParam() + ".gguf";
  REQUIRE_FIXTURE(base);
  GgufFile f(test::shared_path(base));
  auto tok = Tokenizer::from_gguf(f);
  auto in = test::read_bytes(test::shared_path(base + ".inp"));
  const auto inputs = split_inputs(std::string(in.begin(), in.end()));
  const auto expected = read_expected(test::shared_path(base + ".out"));
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GT(inputs.size(), 10u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(tok->encode(inputs[i], false, false), expected[i]) << "input #" << i << ": '" << inputs[i] << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, VocabFixture,
                         ::testing::Values("llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(Tokenizer, DecodeInvertsEncode) {
  for (const char* name : {"llama-spm", "llama-bpe", "qwen2", "gpt-2"}) {
    const std::string base = std::string("vocab/ggml-vocab-") + name + ".gguf";
    if (!std::filesystem::exists(test::shared_path(base))) GTEST_SKIP() << "fixture " << base << " not found";
    GgufFile f(test::shared_path(base));
    auto tok = Tokenizer::from_gguf(f);
    const std::string text = "Hello world! Ünïcödé ✓ 12345\n\tend";
    std::string decoded = tok->decode(tok->encode(text, false, false));
    // SentencePiece adds a leading space (the prefix) that decoding keeps.
    if (decoded.size() == text.size() + 1 && decoded[0] == ' ') decoded.erase(0, 1);
    EXPECT_EQ(decoded, text) << name;
  }
}

TEST(Tokenizer, SpecialTokensParsedOnlyWhenAsked) {
  REQUIRE_FIXTURE("vocab/ggml-vocab-qwen2.gguf");
  GgufFile f(test::shared_path("vocab/ggml-vocab-qwen2.gguf"));
  auto tok = Tokenizer::from_gguf(f);
  const int32_t im_start = tok->vocab().find("<|im_start|>");
  ASSERT_GE(im_start, 0);
  const auto parsed = tok->encode("<|im_start|>user", false, true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed[0], im_start);
  const auto plain = tok->encode("<|im_start|>user", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  EXPECT_GT(plain.size(), parsed.size());
  EXPECT_TRUE(tok->is_end_of_generation(tok->vocab().find("<|im_end|>")));
}

TEST(Tokenizer, BosFollowsModelMetadata) {
  REQUIRE_FIXTURE("models/stories260K/stories260K.gguf");
  GgufFile f(test::shared_path("models/stories260K/stories260K.gguf"));
  auto tok = Tokenizer::from_gguf(f);
  EXPECT_EQ(tok->encode("Once upon a time", true, true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("Once upon a time", false, true), (std::vector<int32_t>{403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("", true, true), (std::vector<int32_t>{1}));
}
