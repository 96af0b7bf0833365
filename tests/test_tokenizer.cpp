// Tokenizers against llama.cpp's expected tokenizations (../shared/vocab, the real models'
// vocabularies, and small vocabularies built here).
#include <sstream>

#include <fmt/format.h>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "model/known_models.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
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

// A text, how it is encoded, and llama.cpp's ids for it.
struct LlamaCppCase {
  std::string text;
  bool add_bos, parse_special;
  std::vector<int32_t> ids;
};

void expect_llamacpp_ids(const Tokenizer& tok, const std::vector<LlamaCppCase>& cases) {
  for (const auto& c : cases)
    EXPECT_EQ(tok.encode(c.text, c.add_bos, c.parse_special), c.ids)
        << "text '" << c.text << "' add_bos " << c.add_bos << " parse_special " << c.parse_special;
}

std::unique_ptr<Tokenizer> shared_tokenizer(const std::string& rel) {
  if (!std::filesystem::exists(test::shared_path(rel))) return nullptr;
  return Tokenizer::from_gguf(GgufFile(test::shared_path(rel)));
}

// The tokenizer of a real model from the model cache, or null when it is not fetched.
std::unique_ptr<Tokenizer> real_model_tokenizer(const std::string& name) {
  const auto path = cached_model_path(name);
  return path ? Tokenizer::from_gguf(GgufFile(*path)) : nullptr;
}

#define SKIP_WITHOUT_MODEL(tok, name)                                                                             \
  if (!(tok))                                                                                                     \
  GTEST_SKIP() << "model " << (name) << " not in " << model_cache_dir() << " (scripts/fetch_models.sh " << (name) \
               << ", or set KVSQUEEZE_MODELS)"

std::vector<int32_t> ids_with_attr(const Tokenizer& tok, uint32_t bits) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < tok.n_vocab(); ++id)
    if (tok.vocab().has_attr(id, bits)) ids.push_back(id);
  return ids;
}

std::vector<int32_t> end_of_generation_ids(const Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < tok.n_vocab(); ++id)
    if (tok.is_end_of_generation(id)) ids.push_back(id);
  return ids;
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

// Issue 13: qwen2 stores </s> as a normal token, but llama.cpp makes every end-of-generation
// text a control token, so it is one token when special tokens are parsed and plain text
// otherwise. Expected ids are llama.cpp's output.
TEST(Tokenizer, Qwen2EndOfGenerationTextsAreControlTokens) {
  auto tok = shared_tokenizer("vocab/ggml-vocab-qwen2.gguf");
  if (!tok) GTEST_SKIP() << "fixture vocab/ggml-vocab-qwen2.gguf not found";
  const std::string text = "<|im_start|>user Hello<|im_end|> </s> <s> [INST] hi [/INST]";
  expect_llamacpp_ids(*tok, {
      {text, false, true, {151644, 872, 21927, 151645, 220, 128247, 366, 82, 29, 508, 64462, 60, 15588, 64928, 64462, 60}},
      {text, false, false, {27, 91, 318, 4906, 91, 29, 872, 21927, 27, 91, 318, 6213, 91, 29, 690, 82, 29, 366, 82, 29, 508, 64462, 60, 15588, 64928, 64462, 60}},
  });
  const int32_t eos_text = tok->vocab().find("</s>");
  ASSERT_EQ(eos_text, 128247);
  EXPECT_EQ(tok->vocab().attr[128247], kAttrNormal | kAttrControl);
  EXPECT_EQ(end_of_generation_ids(*tok), (std::vector<int32_t>{128247, 151643, 151645}));
}

// Issue 13: llama.cpp gives Phi-3's special tokens (by the model name) rstrip, except
// <unk>, <s> and <|endoftext|>: the whitespace after them is dropped. Expected ids are
// llama.cpp's output.
TEST(Tokenizer, Phi3SpecialTokensDropTheWhitespaceAfterThem) {
  auto tok = shared_tokenizer("vocab/ggml-vocab-phi-3.gguf");
  if (!tok) GTEST_SKIP() << "fixture vocab/ggml-vocab-phi-3.gguf not found";
  expect_llamacpp_ids(*tok, {
      {"<|im_start|>user Hello<|im_end|> </s> <s> [INST] hi [/INST]", true, true,
       {1, 529, 29989, 326, 29918, 2962, 29989, 29958, 1792, 15043, 29966, 29989, 326, 29918, 355, 29989, 29958, 29871, 2, 1, 29871, 518, 25580, 29962, 7251, 518, 29914, 25580, 29962}},
      {"<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n", false, true,
       {32006, 887, 526, 8444, 29889, 32007, 32010, 6324, 32007, 32001}},
      {"<|user|> question <|end|> <|assistant|>", false, true, {32010, 1139, 29871, 32007, 32001}},
      {"<|user|> question <|end|> <|assistant|>", false, false,
       {529, 29989, 1792, 29989, 29958, 1139, 529, 29989, 355, 29989, 29958, 529, 29989, 465, 22137, 29989, 29958}},
      {"<s> </s> <unk> <|endoftext|> x", false, true, {1, 259, 2, 0, 259, 32000, 29871, 921}},
  });
  const Vocab& v = tok->vocab();
  EXPECT_EQ(v.attr[static_cast<size_t>(v.find("<|end|>"))], kAttrControl | kAttrRstrip);
  EXPECT_EQ(v.attr[static_cast<size_t>(v.find("</s>"))], kAttrUserDefined | kAttrControl | kAttrRstrip);
  for (const char* t : {"<s>", "<unk>", "<|endoftext|>"}) EXPECT_FALSE(v.has_attr(v.find(t), kAttrRstrip)) << t;
  EXPECT_EQ(ids_with_attr(*tok, kAttrLstrip), std::vector<int32_t>{});
}

// The same text with a vocabulary not named Phi-3 keeps the spaces (llama.cpp's output).
TEST(Tokenizer, OtherSpmVocabulariesKeepTheWhitespaceAfterSpecialTokens) {
  auto tok = shared_tokenizer("vocab/ggml-vocab-llama-spm.gguf");
  if (!tok) GTEST_SKIP() << "fixture vocab/ggml-vocab-llama-spm.gguf not found";
  expect_llamacpp_ids(*tok, {{"</s> <s> hi</s>", false, true, {2, 259, 1, 29871, 7251, 2}}});
  EXPECT_EQ(ids_with_attr(*tok, kAttrLstrip | kAttrRstrip), std::vector<int32_t>{});
}

namespace {
// A small SentencePiece vocabulary: <mask> user-defined, <|end|> and <|endoftext|> control,
// "▁", "a", "b", "▁a", then the 256 byte tokens (<0x09> = 19, <0x0A> = 20).
std::unique_ptr<Tokenizer> tiny_spm_tokenizer(const std::string& name, const std::string& pre) {
  std::vector<std::string> texts = {"<unk>", "<s>", "</s>", "<mask>", "<|end|>", "\u2581", "a", "b", "\u2581a", "<|endoftext|>"};
  std::vector<int32_t> types = {2, 3, 3, 4, 3, 1, 1, 1, 1, 3};
  std::vector<float> scores = {0, 0, 0, 0, 0, -1, -2, -2, -0.5f, 0};
  for (int b = 0; b < 256; ++b) {
    texts.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);
    scores.push_back(-10);
  }
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("general.name", GgufValue::str(name));
  w.set_spm_tokenizer(texts, scores, types);
  w.set("tokenizer.ggml.pre", GgufValue::str(pre));
  const std::string path = test::temp_path("tiny-spm-" + pre + "-" + name + ".gguf");
  w.write(path);
  return Tokenizer::from_gguf(GgufFile(path));
}
}  // namespace

// lstrip and rstrip as llama.cpp assigns them by tokenizer and model name; expected ids
// are llama.cpp's output for the same vocabularies.
TEST(Tokenizer, StripAttributesFollowLlamaCppNameRules) {
  const std::string spaced_mask = "a  <mask>  b", after_end = "a <|end|>\t\nb </s> a", masks = " <mask> <mask>a";
  auto jina = tiny_spm_tokenizer("tiny", "jina-v2-de");  // <mask> takes the whitespace before it
  EXPECT_EQ(jina->vocab().attr[3], kAttrUserDefined | kAttrLstrip);
  expect_llamacpp_ids(*jina, {
      {spaced_mask, false, false, {8, 3, 5, 5, 5, 7}},
      {after_end, false, true, {8, 5, 4, 5, 19, 20, 7, 5, 2, 5, 8}},
      {masks, false, false, {3, 3, 8}},
  });
  auto phi = tiny_spm_tokenizer("Tiny-Phi3", "default");  // special tokens take the whitespace after them
  expect_llamacpp_ids(*phi, {
      {spaced_mask, false, true, {8, 5, 5, 3, 5, 7}},
      {after_end, false, true, {8, 5, 4, 5, 7, 5, 2, 8}},
      {masks, false, true, {5, 5, 3, 3, 8}},
      {"<|endoftext|> a <s> a", false, true, {9, 5, 8, 5, 1, 5, 8}},
  });
  auto plain = tiny_spm_tokenizer("tiny", "default");
  expect_llamacpp_ids(*plain, {
      {spaced_mask, false, true, {8, 5, 5, 3, 5, 5, 5, 7}},
      {after_end, false, true, {8, 5, 4, 5, 19, 20, 7, 5, 2, 5, 8}},
      {masks, false, true, {5, 5, 3, 5, 5, 3, 8}},
  });
}

// SmolLM2's byte-level BPE vocabulary on a varied corpus; expected ids are llama.cpp's output.
TEST(Tokenizer, SmolLM2MatchesLlamaCpp) {
  auto tok = real_model_tokenizer("smollm2-135m-instruct");
  SKIP_WITHOUT_MODEL(tok, "smollm2-135m-instruct");
  expect_llamacpp_ids(*tok, {
      {"The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see, they're sure I'd've known.", false, false, {504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 657, 506, 216, 37, 263, 23, 17466, 43, 392, 3060, 963, 28, 502, 2316, 2090, 339, 6737, 3543, 1343, 30}},
      {"def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n", false, false, {1604, 3987, 24, 94, 727, 472, 585, 304, 2067, 216, 34, 42, 448, 1003, 304, 472, 1003, 3987, 24, 94, 731, 216, 33, 25, 1232, 3987, 24, 94, 731, 216, 34, 25, 198}},
      {"#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n}\n", false, false, {19, 21745, 2067, 10491, 1119, 30, 88, 46, 198, 591, 1085, 24, 32439, 25, 1662, 198, 197, 3272, 86, 23901, 84, 76, 94, 1002, 216, 36, 34, 4258, 198, 109, 198}},
      {"1234567890 3.14159 -0.001 1e-9 1,000,000 $19.99 50% 2024-01-15 ١٢٣", false, false, {33, 34, 35, 36, 37, 38, 39, 40, 41, 32, 216, 35, 30, 33, 36, 33, 37, 41, 731, 32, 30, 32, 32, 33, 216, 33, 85, 29, 41, 216, 33, 28, 32, 32, 32, 28, 32, 32, 32, 1885, 33, 41, 30, 41, 41, 216, 37, 32, 21, 216, 34, 32, 34, 36, 29, 32, 33, 29, 33, 37, 216, 164, 111, 164, 112, 164, 113}},
      {"Ünïcödé façade Straße — Привет, мир! Ελληνικά", false, false, {142, 246, 94, 25972, 83, 7466, 84, 2756, 40852, 19144, 34878, 85, 1841, 5470, 249, 46879, 16464, 32547, 28, 41337, 7872, 9175, 17, 5664, 239, 17162, 17162, 25723, 11517, 12001, 21118, 26112}},
      {"中文测试：你好，世界！日本語のテキスト。한국어 텍스트", false, false, {28589, 29184, 43222, 229, 16313, 239, 24713, 18645, 250, 48392, 138, 12831, 7906, 240, 178, 239, 230, 8083, 219, 23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 19076, 33085, 246, 181, 130, 251, 183, 240, 129, 48138, 223, 231, 183, 228, 114, 184, 228, 133}},
      {"Emoji: 😀👍🏽 👨\u200d👩\u200d👧\u200d👦 🇩🇪 ❤\ufe0f", false, false, {10809, 33777, 42, 40303, 218, 10813, 235, 231, 10813, 233, 138, 15107, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 321, 231, 10813, 235, 116, 15107, 225, 119, 10813, 225, 120, 4636, 247, 114, 31752}},
      {"e\u0301 n\u0303 Z\u0335\u0321a\u0337l\u0336g\u0334o \u200bzero\u00a0nbsp\u3000ideo", false, false, {85, 151, 219, 304, 151, 221, 1777, 151, 130, 151, 111, 81, 151, 132, 92, 151, 131, 87, 151, 129, 95, 459, 229, 13723, 15442, 94, 32093, 12109, 218, 8496}},
      {"  a  b   c\t\t\td\n\n\n   e    \r\n", false, false, {216, 253, 216, 278, 256, 265, 1656, 197, 84, 1116, 11181, 297, 289, 2738}},
      {"   \n\n\t ", false, false, {333, 14436, 216}},
      {"Hello world", true, false, {19556, 905}},
      {"", true, true, {}},
      {"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", true, true, {1, 9690, 198, 2683, 359, 253, 5356, 11173, 30, 2, 198, 1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198}},
      {"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", false, false, {44, 108, 306, 79, 3738, 108, 46, 9690, 198, 2683, 359, 253, 5356, 11173, 15602, 108, 306, 79, 486, 108, 46, 198, 44, 108, 306, 79, 3738, 108, 46, 4093, 198, 1780, 314, 216, 34, 27, 34, 15137, 108, 306, 79, 486, 108, 46, 198, 44, 108, 306, 79, 3738, 108, 46, 520, 9531, 198}},
      {"<|im_start|>user Hello<|im_end|> </s> <s> [INST] hi [/INST]", false, true, {1, 4093, 38699, 2, 22577, 99, 46, 2067, 99, 46, 933, 39637, 77, 15876, 933, 31, 39637, 77}},
      {"<|im_start|>user Hello<|im_end|> </s> <s> [INST] hi [/INST]", false, false, {44, 108, 306, 79, 3738, 108, 46, 4093, 38699, 44, 108, 306, 79, 486, 108, 46, 22577, 99, 46, 2067, 99, 46, 933, 39637, 77, 15876, 933, 31, 39637, 77}},
      {"<repo_name>kvsqueeze<file_sep>src/main.cpp\n<reponame>x", false, true, {3, 42124, 34226, 5, 10920, 31, 6157, 30, 35392, 198, 4, 104}},
  });
  // <|endoftext|>, <|im_end|>, and <reponame>, which llama.cpp takes for the FIM repository token.
  EXPECT_EQ(end_of_generation_ids(*tok), (std::vector<int32_t>{0, 2, 4}));
}

// Gemma 3's SentencePiece vocabulary (262144 tokens, no space prefix, user-defined
// whitespace runs and HTML tags) on a varied corpus; expected ids are llama.cpp's output.
TEST(Tokenizer, Gemma3MatchesLlamaCpp) {
  auto tok = real_model_tokenizer("gemma3-270m");
  SKIP_WITHOUT_MODEL(tok, "gemma3-270m");
  expect_llamacpp_ids(*tok, {
      {"The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see, they're sure I'd've known.", false, false, {818, 3823, 8864, 37423, 38167, 1024, 506, 31770, 4799, 236761, 1030, 236789, 236751, 236743, 236810, 512, 236789, 15868, 236793, 692, 236789, 859, 1460, 236764, 901, 236789, 500, 2889, 564, 236789, 236753, 236789, 560, 3224, 236761}},
      {"def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n", false, false, {2063, 10779, 236769, 236749, 1473, 107, 140, 584, 538, 655, 236743, 236778, 236787, 107, 144, 2060, 538, 107, 140, 2060, 10779, 236769, 236749, 753, 236743, 236770, 236768, 900, 10779, 236769, 236749, 753, 236743, 236778, 236768, 107}},
      {"#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n}\n", false, false, {236865, 3917, 655, 28398, 236761, 236754, 236813, 107, 720, 1689, 236769, 4117, 236768, 642, 107, 255968, 8641, 13233, 236753, 236785, 236749, 827, 236743, 236812, 236778, 626, 107, 236783, 107}},
      {"1234567890 3.14159 -0.001 1e-9 1,000,000 $19.99 50% 2024-01-15 ١٢٣", false, false, {236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828, 236819, 236771, 236743, 236800, 236761, 236770, 236812, 236770, 236810, 236819, 753, 236771, 236761, 236771, 236771, 236770, 236743, 236770, 236744, 236772, 236819, 236743, 236770, 236764, 236771, 236771, 236771, 236764, 236771, 236771, 236771, 609, 236770, 236819, 236761, 236819, 236819, 236743, 236810, 236771, 236908, 236743, 236778, 236771, 236778, 236812, 236772, 236771, 236770, 236772, 236770, 236810, 115241, 241303, 242044}},
      {"Ünïcödé façade Straße — Привет, мир! Ελληνικά", false, false, {238194, 236749, 238527, 236755, 55515, 236859, 96008, 80176, 2192, 15745, 8362, 236764, 58562, 236888, 23883, 109959, 42220}},
      {"中文测试：你好，世界！日本語のテキスト。한국어 텍스트", false, false, {55041, 30203, 237184, 144626, 236900, 12811, 237354, 94951, 236945, 95830, 236924, 114216, 237430, 236743, 243007, 34718}},
      {"Emoji: 😀👍🏽 👨\u200d👩\u200d👧\u200d👦 🇩🇪 ❤\ufe0f", false, false, {127268, 236787, 163543, 240493, 242713, 236743, 243874, 237243, 243767, 237243, 244814, 237243, 244990, 236743, 246841, 245562, 64813}},
      {"e\u0301 n\u0303 Z\u0335\u0321a\u0337l\u0336g\u0334o \u200bzero\u00a0nbsp\u3000ideo", false, false, {236744, 238288, 538, 240810, 1491, 246035, 248104, 236746, 246293, 236752, 243218, 236759, 246310, 236748, 36504, 13321, 432, 398, 11539, 465, 366, 366, 2159}},
      {"  a  b   c\t\t\td\n\n\n   e    \r\n", false, false, {138, 236746, 138, 236763, 139, 236755, 255970, 236753, 109, 139, 236744, 140, 251, 107}},
      {"   \n\n\t ", false, false, {139, 108, 255968, 236743}},
      {"Hello world", true, false, {2, 9259, 1902}},
      {"", true, true, {2}},
      {"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", true, true, {2, 236820, 236909, 548, 236779, 3041, 111038, 9731, 107, 3048, 659, 496, 11045, 16326, 21603, 236909, 548, 236779, 643, 111038, 107, 236820, 236909, 548, 236779, 3041, 111038, 2364, 107, 3689, 563, 236743, 236778, 236862, 236778, 145912, 236909, 548, 236779, 643, 111038, 107, 236820, 236909, 548, 236779, 3041, 111038, 111457, 107}},
      {"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", false, false, {236820, 236909, 548, 236779, 3041, 111038, 9731, 107, 3048, 659, 496, 11045, 16326, 21603, 236909, 548, 236779, 643, 111038, 107, 236820, 236909, 548, 236779, 3041, 111038, 2364, 107, 3689, 563, 236743, 236778, 236862, 236778, 145912, 236909, 548, 236779, 643, 111038, 107, 236820, 236909, 548, 236779, 3041, 111038, 111457, 107}},
      {"<bos><start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\n", false, true, {2, 105, 2364, 107, 11355, 563, 506, 7217, 3730, 236881, 106, 107, 105, 4368, 107}},
      {"<bos><start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\n", false, false, {236820, 46757, 1798, 3041, 236779, 1340, 236779, 887, 236813, 2364, 107, 11355, 563, 506, 7217, 3730, 145912, 643, 236779, 1340, 236779, 887, 236813, 107, 236820, 3041, 236779, 1340, 236779, 887, 236813, 4368, 107}},
      {"<|im_start|>user Hello<|im_end|> </s> <s> [INST] hi [/INST]", false, true, {236820, 236909, 548, 236779, 3041, 111038, 2364, 26352, 236820, 236909, 548, 236779, 643, 111038, 236743, 212, 236743, 203, 870, 34177, 236842, 5631, 181016, 34177, 236842}},
      {"<|im_start|>user Hello<|im_end|> </s> <s> [INST] hi [/INST]", false, false, {236820, 236909, 548, 236779, 3041, 111038, 2364, 26352, 236820, 236909, 548, 236779, 643, 236909, 107068, 236751, 236813, 236743, 203, 870, 34177, 236842, 5631, 181016, 34177, 236842}},
      {"<table><tr><td>cell</td></tr></table> <h1>T</h1> <unused0> [multimodal] <mask>", false, false, {168, 173, 175, 5447, 183, 181, 176, 236743, 184, 236774, 191, 655, 63634, 236771, 236813, 236743, 5, 655, 1080, 236813}},
      {"<table><tr><td>cell</td></tr></table> <h1>T</h1> <unused0> [multimodal] <mask>", false, true, {168, 173, 175, 5447, 183, 181, 176, 236743, 184, 236774, 191, 236743, 6, 236743, 5, 236743, 4}},
      {"\xff""bad\xe4\xb8 \xc0\xafok\xf0\x9f\x98", false, false, {493, 336, 335, 338, 466, 422, 464, 388, 367, 430, 413, 680, 478, 397, 390}},
  });
  const Vocab& v = tok->vocab();
  EXPECT_EQ(v.attr[212], kAttrUserDefined | kAttrControl);  // </s>: an end-of-generation text
  EXPECT_EQ(v.attr[6], kAttrControl | kAttrUnused);         // <unused0>
  EXPECT_EQ(end_of_generation_ids(*tok), (std::vector<int32_t>{1, 106, 212}));  // <eos>, <end_of_turn>, </s>
  EXPECT_EQ(tok->piece(212), "");
  EXPECT_EQ(tok->piece(212, true), "</s>");
  EXPECT_EQ(tok->piece(168), "<table>");
  EXPECT_EQ(tok->piece(6), "");
}

// Invalid UTF-8 as llama.cpp's byte-level BPE reads it: decoded by the lead byte alone,
// a byte that starts no whole sequence replaced by U+FFFD.
TEST(Utf8Repair, DecodesByLeadByteAndReplacesWhatCannotBeDecoded) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_repaired("plain caf\xC3\xA9 \xF0\x9F\x98\x80"), "plain caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(utf8_repaired("\xC0\xAF"), "/");                      // overlong: taken as it stands
  EXPECT_EQ(utf8_repaired("\xED\xA0\x80"), "\xED\xA0\x80");        // a surrogate too
  EXPECT_EQ(utf8_repaired("\xFF\xFE"), fffd + fffd);
  EXPECT_EQ(utf8_repaired("\xE2\x82x"), fffd + fffd + "x");         // cut sequence, then a stray continuation
  EXPECT_EQ(utf8_repaired("caf\xE9"), "caf" + fffd);               // Latin-1 at the end
}
