// kvsqueeze against llama.cpp on the real models (scripts/fetch_models.sh), issue 13:
// tokenization (a varied corpus, and bytes that are not UTF-8), teacher-forced logits over
// 640 tokens of the builtin story (on the quantized file, and on an F16 copy of its
// weights, which takes 8-bit activation rounding out of the comparison) and 64-token
// greedy continuations of five prompts. llama.cpp runs as a child process
// (tools/llamacpp_ref.cpp) on temp files. Each test skips, saying what to fetch, when a
// model or llama.cpp is absent.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <utility>

#include "cache/kv_cache.h"
#include "cli_util.h"
#include "eval/builtin_text.h"
#include "gguf/dequantized_copy.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "model/model.h"
#include "runtime/chat_template.h"
#include "runtime/sampler.h"
#include "tensor/cpu_features.h"
#include "tensor/dtype.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

using namespace kvsqueeze;

namespace {

// Tolerances, from measurements on 640 rows of the builtin story (the tests print theirs).
//
// The quantized files as they are: both engines quantize activations to 8 bits per block
// before every product with quantized weights, but not alike (llama.cpp stores the block
// scale, and Q4_1/Q5_1's block sum, as f16 and uses 256-value blocks for the K formats;
// kvsqueeze keeps f32 and, in its prompt kernels, 32-value blocks), and on these small
// deep models the rounding noise compounds: each engine is 2-4% (relative L2, mean per row) from
// exact arithmetic on the same weights, up to 20% on some rows, and agrees with it on
// 96-98% of top-1 tokens. Measured against each other (AVX2 prompt kernel): smollm2
// 96.6% top-1, 3.4% mean, 14% max; gemma3 95.5%, 4.3%, 16%; the opt-in qwen2.5-coder
// 0.5b 97.7%, 1.4%, 5.0% and 1.5b 96.7%, 2.0%, 32% on row 0 (below) and 3.7% elsewhere.
// The 99% top-1 cannot hold here for any engine that does not copy llama.cpp's
// rounding bit for bit, so these bounds are set just outside the measurement, and the
// 99% bar applies to the F16 copy below.
constexpr double kQuantizedMinTop1 = 0.93;
constexpr double kQuantizedMaxMeanRelL2 = 0.06;
constexpr double kQuantizedMaxRowRelL2 = 0.25;
// Except among the first rows, where Qwen's first token carries activations hundreds of
// times its others: in llama.cpp's 256-value activation blocks they round their
// neighbours to zero, and its row 0 lands 34% (1.5b) from exact arithmetic. kvsqueeze's
// prompt kernels quantize in blocks of 32 (8%), so the engines differ there by 32%; such
// a row passes when kvsqueeze is the nearer of the two to exact arithmetic.
constexpr int64_t kExactRows = 16;
// The same weights written as F16 (dequantized; vectors stay F32): no 8-bit activations,
// so what is left is llama.cpp's f16 rounding of activations, K and V. Measured: top-1
// 100% on both models, relative L2 mean 6e-4 (gemma3) / 9e-4 (smollm2), max 1.7e-3 /
// 3.5e-3 (qwen2.5-coder 0.5b: 100%, 4.0e-4, 3.1e-3; 1.5b: 99.8%, 3.6e-4, 2.0e-3). A wrong
// norm, RoPE, bias or window shows up as whole percents.
constexpr double kF16MinTop1 = 0.99;  // the bar
constexpr double kF16MaxMeanRelL2 = 3e-3;
constexpr double kF16MaxRowRelL2 = 1.5e-2;
// Greedy continuations (quantized files) may leave llama.cpp's only where llama.cpp's top
// two logits are this close. Over the teacher-forced rows the engines move the gap
// between llama.cpp's top token and each of its next four by 0.10 / 0.14 on average,
// p99 0.37 / 0.55, at most 0.64 / 0.74 (smollm2 / gemma3): a closer race can go either way.
constexpr float kMaxDivergenceGap = 0.75f;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
// Under AddressSanitizer the forward pass runs several times slower: the model tests
// shrink (the release build runs them in full) but still run, to check the memory safety
// of the real models' paths; the F16 copy (half a gigabyte written, then two F16 passes)
// is skipped there. 576 teacher-forced rows would take gemma3 past its window under ASan
// too, but cost 45 s more, and tests/test_gemma3.cpp already runs a window being trimmed
// there. Tokenization runs in full everywhere: it is cheap.
constexpr int64_t kTeacherForcedTokens = kSanitized ? 64 : 640;  // > 512: gemma3's sliding window
constexpr int kGreedySteps = kSanitized ? 8 : 64;
constexpr int kGreedyPrompts = kSanitized ? 1 : 5;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::istringstream in(line);
  std::vector<int32_t> ids;
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A text as a C string literal would show it, cut short: for failure messages. Bytes
// outside printable ASCII are hex, so that invalid UTF-8 and invisible characters show.
std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 160)) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '"' || c == '\\') out += std::string("\\") + static_cast<char>(c);
    else if (c < 0x20 || c >= 0x7f) out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else out += static_cast<char>(c);
  }
  return "\"" + out + (s.size() > 160 ? "\"..." : "\"");
}

// Indices of the largest entry and the runner-up.
std::pair<int64_t, int64_t> top_two(const float* logits, int64_t n) {
  int64_t first = 0, second = -1;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[first]) second = std::exchange(first, i);
    else if (second < 0 || logits[i] > logits[second]) second = i;
  }
  return {first, second};
}

float top_two_gap(const float* logits, int64_t n) {
  const auto [first, second] = top_two(logits, n);
  return logits[first] - logits[second];
}

// llama.cpp through tools/llamacpp_ref, on one model.
class Oracle {
 public:
  Oracle(std::string binary, std::string model) : binary_(std::move(binary)), model_(std::move(model)) {}

  // Each text's ids (texts must not hold NUL bytes: they separate the texts on the way).
  std::vector<std::vector<int32_t>> tokenize(const std::vector<std::string>& texts, bool add_special,
                                             bool parse_special) const {
    std::string joined;
    for (size_t i = 0; i < texts.size(); ++i) {
      if (i) joined += '\0';
      joined += texts[i];
    }
    const std::string in = scratch("texts.bin");
    test::write_bytes(in, {joined.begin(), joined.end()});
    const std::string out = run(std::string("tokenize --nul-split ") + (add_special ? "--add-special " : "") +
                                (parse_special ? "--parse-special " : "") + quoted(model_) + " " + quoted(in));
    std::vector<std::vector<int32_t>> ids;
    for (const auto& line : lines_of(out)) ids.push_back(parse_ids(line));
    return ids;
  }

  // Writes the logits of every row of one teacher-forced batch, [n][vocab], to a file.
  std::string logits(const std::vector<int32_t>& ids) const {
    const std::string in = scratch("ids.txt"), out = scratch("logits.f32");
    write_text(in, ids_text(ids));
    run("logits " + quoted(model_) + " " + quoted(in) + " " + quoted(out));
    return out;
  }

  struct Greedy {
    std::vector<int32_t> ids;
    std::vector<float> gaps;  // per step, top logit minus the runner-up
  };
  std::vector<Greedy> greedy(const std::vector<std::vector<int32_t>>& prompts, int steps) const {
    const std::string in = scratch("prompts.txt");
    std::string text;
    for (const auto& p : prompts) text += ids_text(p) + "\n";
    write_text(in, text);
    const auto lines = lines_of(run("greedy --gaps " + quoted(model_) + " " + quoted(in) + " " + std::to_string(steps)));
    std::vector<Greedy> out;
    for (size_t i = 0; i + 1 < lines.size(); i += 2) {
      Greedy g{parse_ids(lines[i]), {}};
      std::istringstream gaps(lines[i + 1]);
      for (float gap; gaps >> gap;) g.gaps.push_back(gap);
      out.push_back(std::move(g));
    }
    return out;
  }

 private:
  // Stdout of one run; a failed run throws with the oracle's error line.
  std::string run(const std::string& args) const {
    const auto r = test::run_program(binary_, args + " -t 1");  // 1 thread: ctest runs two tests at once
    if (r.exit_code != 0) throw std::runtime_error("llamacpp_ref " + args + " failed: " + r.err);
    return r.out;
  }
  static std::string scratch(const std::string& name) { return test::temp_path("ref-" + test::test_stem() + "-" + name); }
  static void write_text(const std::string& path, const std::string& s) { test::write_bytes(path, {s.begin(), s.end()}); }

  std::string binary_, model_;
};

// Prose, code, numbers, Unicode, whitespace runs, and the chat markup of both models (each
// model sees the other's as plain text).
std::vector<std::string> tokenizer_corpus() {
  return {
      "",
      "Hello world",
      " Hello world",
      "The quick brown fox jumps over the lazy dog. It wasn't the fox's fault; they'd've known.",
      "I'm sure you're right, but WE'LL see what he'd say. Don't, can't, won't, Y'ALL'RE.",
      "In 1969, Apollo 11 landed on the Moon: 384,400 km away, after 4 days, 6 hours and 45 minutes.",
      "3.14159 2.71828 -0.5 1e-10 6.022e23 0x1F 0b1010 1,234,567.89 12345678901234567890 007",
      "Version 2.0.1-rc3 (build #4521) on 2024-11-30T17:38:00Z, costs $19.99 or €17,50 (≈ £15).",
      "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
      "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() == 3 ? 0 : 1;\n}\n",
      "{\"name\": \"kvsqueeze\", \"ids\": [1, 22, 333], \"ok\": true, \"nested\": {\"a\": null}}",
      "SELECT id, name FROM users WHERE age >= 18 AND email LIKE '%@example.org' ORDER BY name;",
      "https://example.com/path/to/page?q=hello%20world&lang=en#section-2 user.name+tag@example.co.uk",
      "Café naïve résumé façade Ångström Øresund Zürich señor São Paulo crème brûlée",
      "Straße, Ærø, Łódź, Dvořák, İstanbul, ﬁne ligature, e\u0301 (combining accent)",
      "日本語のテキストと中文文本，还有한국어 문장도 있습니다。",
      "Привет, мир! Γειά σου κόσμε! שלום עולם! مرحبا بالعالم! नमस्ते दुनिया!",
      "Emoji: 👋🏽 🎉🎉 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖 — and math: ∑ ∫ √2 ≤ ∞ ≠ π ≈ 3.14, x² + y³ = z⁴",
      "a  b   c    d\t\te\n\nf\n\n\n\ng     ",
      "    leading spaces and trailing spaces    ",
      "   \n\t  \n ",
      "\n",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "!!!!!!!!!!!!???????........------======********",
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there! How are "
      "you?<|im_end|>\n<|im_start|>assistant\nI'm fine, thanks.<|im_end|>\n",
      "<|im_start|>user\nWhat is 2+2?<|im_end|><|endoftext|>",
      "<start_of_turn>user\nWrite a haiku about rain.<end_of_turn>\n<start_of_turn>model\n",
      "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<eos>",
      "Unfinished markup: <|im_start <start_of_turn <|endoftext| <s> </s> <unk> <pad>",
      eval::builtin_text().substr(0, 2000),
  };
}

// The five greedy prompts: three through the model's chat template, two plain.
std::vector<std::string> greedy_prompts(const std::string& model) {
  auto chat = [&](const std::string& user) {
    if (model == "gemma3-270m") return "<start_of_turn>user\n" + user + "<end_of_turn>\n<start_of_turn>model\n";
    // Each ChatML model with the system prompt of its own template.
    const std::string system = model.starts_with("qwen")
                                   ? "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                                   : "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    return "<|im_start|>system\n" + system + "<|im_end|>\n<|im_start|>user\n" + user +
           "<|im_end|>\n<|im_start|>assistant\n";
  };
  return {
      chat("What is the capital of France? Answer in one sentence."),
      chat("Write a Python function that checks whether a number is prime."),
      chat("Traduis en anglais : « Le chat dort sur le canapé depuis ce matin. »"),
      "Once upon a time, in a small village at the edge of a forest,",
      "The following table lists the planets of the solar system in order of distance from the Sun:\n1.",
  };
}

std::optional<std::string> oracle_binary() {
#ifdef KVSQUEEZE_LLAMACPP_REF
  if (std::filesystem::exists(KVSQUEEZE_LLAMACPP_REF)) return std::string(KVSQUEEZE_LLAMACPP_REF);
#endif
  return std::nullopt;
}


// Bytes that are not UTF-8, as a model may be handed them (a cut stream, a binary file).
std::vector<std::string> invalid_utf8_corpus() {
  return {
      "\xff\xfe",
      "two bytes that never start a character: \xff\xfe, then text",
      "a cut sequence \xe2\x82 and a lone \xc3( lead byte",
      "a continuation byte first: \x80\xbf",
      "an overlong slash \xc0\xaf and a surrogate \xed\xa0\x80",
      "caf\xe9 in Latin-1",
  };
}

class LlamaCppParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  // Encodes every text with add_special and parse_special each off and on, in kvsqueeze
  // and in llama.cpp; a failure per differing encoding, and a summary line.
  void expect_same_tokenization(const std::vector<std::string>& corpus, const std::string& what);

  std::string model_path_;
  std::unique_ptr<Oracle> oracle_;
  std::unique_ptr<Tokenizer> tok_;
};

void LlamaCppParity::expect_same_tokenization(const std::vector<std::string>& corpus, const std::string& what) {
  int identical = 0, compared = 0;
  size_t tokens = 0;
  for (bool add_special : {false, true}) {
    for (bool parse_special : {false, true}) {
      const auto expected = oracle_->tokenize(corpus, add_special, parse_special);
      ASSERT_EQ(expected.size(), corpus.size());
      for (size_t i = 0; i < corpus.size(); ++i) {
        const auto got = tok_->encode(corpus[i], add_special, parse_special);
        ++compared;
        tokens += expected[i].size();
        if (got == expected[i]) {
          ++identical;
          continue;
        }
        ADD_FAILURE() << "add_special " << add_special << ", parse_special " << parse_special << ", text "
                      << escaped(corpus[i]) << "\n  kvsqueeze: " << ids_text(got) << "\n  llama.cpp: " << ids_text(expected[i]);
      }
    }
  }
  std::cout << GetParam() << " tokenization of " << what << ": " << identical << "/" << compared
            << " encodings identical to llama.cpp (" << corpus.size() << " texts x add_special x parse_special, "
            << tokens << " llama.cpp tokens)\n";
}

void LlamaCppParity::SetUp() {
  const auto binary = oracle_binary();
  if (!binary)
    GTEST_SKIP() << "no llama.cpp reference (tools/llamacpp_ref is built when llama.cpp is in "
                 << KVSQUEEZE_LLAMACPP_DIR << " at configure time): run scripts/fetch_llamacpp.sh, then configure "
                 << "and build again";
  const auto path = cached_model_path(GetParam());
  if (!path)
    GTEST_SKIP() << "model " << GetParam() << " is not in " << model_cache_dir() << ": run scripts/fetch_models.sh "
                 << GetParam();
  model_path_ = *path;
  oracle_ = std::make_unique<Oracle>(*binary, model_path_);
  tok_ = Tokenizer::from_gguf(GgufFile(model_path_));
}

TEST_P(LlamaCppParity, TokenizationIdentical) { expect_same_tokenization(tokenizer_corpus(), "the varied corpus"); }

TEST_P(LlamaCppParity, TokenizationOfInvalidUtf8Identical) {
  expect_same_tokenization(invalid_utf8_corpus(), "invalid UTF-8");
}

// The builtin story's first n tokens (BOS first when the model wants one).
std::vector<int32_t> story_ids(const Tokenizer& tok, int64_t n) {
  std::vector<int32_t> ids;
  if (tok.adds_bos()) ids.push_back(tok.bos());
  const auto text = tok.encode(eval::builtin_text(), false, false);
  if (static_cast<int64_t>(text.size() + ids.size()) < n) throw std::runtime_error("the builtin text is too short");
  ids.insert(ids.end(), text.begin(), text.begin() + (n - static_cast<int64_t>(ids.size())));
  return ids;
}

struct LogitsComparison {
  int64_t rows = 0, top1_same = 0, worst_row = 0;
  double rel_mean = 0, rel_max = 0;
  // Rows past kQuantizedMaxRowRelL2 among the first kExactRows, with both engines' logits,
  // for a look at which of the two is nearer exact arithmetic.
  struct FarRow {
    int64_t row;
    std::vector<float> ours, theirs;
  };
  std::vector<FarRow> far_rows;
  double rel_max_beyond_far_rows = 0;  // rel_max over every other row
  double gap_shift_mean = 0, gap_shift_max = 0;  // how far kvsqueeze moves llama.cpp's top-two gap
  std::string disagreements;                     // one line per row whose top-1 differs

  double top1() const { return static_cast<double>(top1_same) / static_cast<double>(rows); }
  std::string summary() const {
    std::ostringstream o;
    o << "top-1 agreement " << top1_same << "/" << rows << " (" << 100 * top1() << "%), relative L2 mean " << rel_mean
      << ", max " << rel_max << " (row " << worst_row << "); llama.cpp's top-two gap moved by " << gap_shift_mean
      << " on average, " << gap_shift_max << " at most" << disagreements;
    return o.str();
  }
};

// Teacher-forced: llama.cpp runs the ids as one batch; kvsqueeze in chunks of rows (the
// cache carries on between them) so that a 262k vocabulary needs no gigabyte of logits
// at once. llama.cpp's rows are read one at a time.
LogitsComparison compare_teacher_forced(const Oracle& oracle, const std::string& model_path, const Tokenizer& tok,
                                        const std::vector<int32_t>& ids) {
  auto model = Model::load(model_path);
  const int64_t vocab = model->config().vocab, n = static_cast<int64_t>(ids.size());
  const std::string ref_path = oracle.logits(ids);
  if (std::filesystem::file_size(ref_path) != static_cast<uintmax_t>(n * vocab) * sizeof(float))
    throw std::runtime_error("llama.cpp wrote " + std::to_string(std::filesystem::file_size(ref_path)) + " bytes of logits");
  std::ifstream ref_file(ref_path, std::ios::binary);
  constexpr int64_t kChunk = 128;
  KvCache cache = model->make_cache();
  std::vector<float> ours(static_cast<size_t>(kChunk * vocab)), theirs(static_cast<size_t>(vocab));
  LogitsComparison c;
  c.rows = n;
  std::ostringstream lines;
  for (int64_t first = 0; first < n; first += kChunk) {
    const int64_t rows = std::min(kChunk, n - first);
    model->forward(cache, ids.data() + first, rows, ours.data(), true);
    for (int64_t r = 0; r < rows; ++r) {
      if (!ref_file.read(reinterpret_cast<char*>(theirs.data()), static_cast<std::streamsize>(vocab * sizeof(float))))
        throw std::runtime_error("short read of " + ref_path);
      const float* a = ours.data() + r * vocab;
      const double rel = test::rel_l2(a, theirs.data(), static_cast<size_t>(vocab));
      c.rel_mean += rel / static_cast<double>(n);
      if (rel > c.rel_max) c.rel_max = rel, c.worst_row = first + r;
      if (rel > kQuantizedMaxRowRelL2 && first + r < kExactRows)
        c.far_rows.push_back({first + r, std::vector<float>(a, a + vocab), theirs});
      else
        c.rel_max_beyond_far_rows = std::max(c.rel_max_beyond_far_rows, rel);
      const auto [want, runner_up] = top_two(theirs.data(), vocab);
      const double shift = std::fabs((theirs[want] - theirs[runner_up]) - (a[want] - a[runner_up]));
      c.gap_shift_mean += shift / static_cast<double>(n);
      c.gap_shift_max = std::max(c.gap_shift_max, shift);
      const int32_t got = argmax(a, static_cast<int32_t>(vocab));
      if (got == want) {
        ++c.top1_same;
        continue;
      }
      lines << "\n  row " << first + r << ": llama.cpp " << want << " " << escaped(tok.piece(want, true)) << ", kvsqueeze "
            << got << " " << escaped(tok.piece(got, true)) << ", llama.cpp's top-two gap "
            << theirs[want] - theirs[runner_up];
    }
  }
  std::filesystem::remove(ref_path);
  c.disagreements = lines.str();
  return c;
}

// Exact arithmetic on the file's weights (the portable build multiplies the decoded
// weights in float, activations unquantized): each far row must be nearer to it from
// kvsqueeze than from llama.cpp, i.e. the distance is llama.cpp's rounding, not ours.
void expect_far_rows_are_llamacpp_rounding(const std::string& model_path, const std::vector<int32_t>& ids,
                                           const LogitsComparison& c) {
  if (c.far_rows.empty()) return;
  auto model = Model::load(model_path);
  const int64_t vocab = model->config().vocab, n = c.far_rows.back().row + 1;
  std::vector<float> exact(static_cast<size_t>(n * vocab));
  {
    IsaScope portable(Isa::Generic);
    KvCache cache = model->make_cache();
    model->forward(cache, ids.data(), n, exact.data(), true);
  }
  for (const auto& far : c.far_rows) {
    const float* e = exact.data() + far.row * vocab;
    const double ours = test::rel_l2(far.ours.data(), e, static_cast<size_t>(vocab));
    const double theirs = test::rel_l2(far.theirs.data(), e, static_cast<size_t>(vocab));
    std::cout << "  row " << far.row << " from exact arithmetic: kvsqueeze " << ours << ", llama.cpp " << theirs << "\n";
    EXPECT_LT(ours, theirs) << "row " << far.row << " is off by more than llama.cpp's own rounding";
  }
}

TEST_P(LlamaCppParity, TeacherForcedLogitsOnQuantizedFileClose) {
  const auto ids = story_ids(*tok_, kTeacherForcedTokens);
  const auto c = compare_teacher_forced(*oracle_, model_path_, *tok_, ids);
  std::cout << GetParam() << " teacher-forced, quantized file, " << c.rows << " rows: " << c.summary() << "\n";
  EXPECT_GE(c.top1(), kQuantizedMinTop1);
  EXPECT_LE(c.rel_mean, kQuantizedMaxMeanRelL2);
  EXPECT_LE(c.rel_max_beyond_far_rows, kQuantizedMaxRowRelL2);
  expect_far_rows_are_llamacpp_rounding(model_path_, ids, c);
}

TEST_P(LlamaCppParity, TeacherForcedLogitsOnF16CopyAgree) {
  if (kSanitized) GTEST_SKIP() << "the F16 copy is half a gigabyte: the release build runs this test";
  const std::string copy = test::temp_path("f16-" + test::test_stem() + ".gguf");
  write_dequantized_copy(GgufFile(model_path_), copy, DType::F16);
  const Oracle oracle(*oracle_binary(), copy);
  const auto c = compare_teacher_forced(oracle, copy, *tok_, story_ids(*tok_, kTeacherForcedTokens));
  std::filesystem::remove(copy);
  std::cout << GetParam() << " teacher-forced, F16 copy, " << c.rows << " rows: " << c.summary() << "\n";
  EXPECT_GE(c.top1(), kF16MinTop1);
  EXPECT_LE(c.rel_mean, kF16MaxMeanRelL2);
  EXPECT_LE(c.rel_max, kF16MaxRowRelL2);
}

TEST_P(LlamaCppParity, GreedyContinuationsMatch) {
  auto model = Model::load(model_path_);
  const int64_t vocab = model->config().vocab;
  auto texts = greedy_prompts(GetParam());
  texts.resize(static_cast<size_t>(kGreedyPrompts));
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) prompts.push_back(tok_->encode(t, true, true));
  const auto expected = oracle_->greedy(prompts, kGreedySteps);
  ASSERT_EQ(expected.size(), prompts.size());

  int identical = 0;
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (size_t p = 0; p < prompts.size(); ++p) {
    ASSERT_EQ(expected[p].ids.size(), static_cast<size_t>(kGreedySteps));
    ASSERT_EQ(expected[p].gaps.size(), static_cast<size_t>(kGreedySteps));
    KvCache cache = model->make_cache();
    std::vector<int32_t> got;
    std::vector<float> gaps;
    std::vector<int32_t> next = prompts[p];
    for (int s = 0; s < kGreedySteps; ++s) {
      model->forward(cache, next.data(), static_cast<int64_t>(next.size()), logits.data(), false);
      got.push_back(argmax(logits.data(), static_cast<int32_t>(vocab)));
      gaps.push_back(top_two_gap(logits.data(), vocab));
      next = {got.back()};
    }
    const auto& want = expected[p].ids;
    const auto step = static_cast<size_t>(std::mismatch(got.begin(), got.end(), want.begin()).first - got.begin());
    if (step == got.size()) {
      ++identical;
      continue;
    }
    // Past the first divergence the two continue from different texts: only that step says
    // anything about the engines.
    std::cout << GetParam() << " greedy prompt " << p << " " << escaped(texts[p]) << " diverges at step " << step
              << ": llama.cpp " << want[step] << " " << escaped(tok_->piece(want[step], true)) << ", kvsqueeze " << got[step]
              << " " << escaped(tok_->piece(got[step], true)) << "; top-two gap llama.cpp " << expected[p].gaps[step]
              << ", kvsqueeze " << gaps[step] << " (tolerance " << kMaxDivergenceGap << ")\n";
    EXPECT_LE(expected[p].gaps[step], kMaxDivergenceGap)
        << "prompt " << p << " diverges at step " << step << " where llama.cpp's choice is clear";
  }
  std::cout << GetParam() << " greedy: " << identical << "/" << prompts.size() << " continuations of " << kGreedySteps
            << " tokens identical to llama.cpp\n";
}

// Qwen2.5's Jinja template opens every conversation without a system message with its own
// default system turn; kvsqueeze renders the same text, and only the markup is special.
TEST(RealModelChat, QwenTemplateRendersLikeItsJinja) {
  int checked = 0;
  for (const char* name : {"qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"}) {
    const auto path = cached_model_path(name);
    if (!path) continue;
    ++checked;
    const GgufFile file(*path);
    const auto tok = Tokenizer::from_gguf(file);
    const ChatTemplate t = chat_template_for(file.get_string_or("tokenizer.chat_template", ""), *tok);
    EXPECT_EQ(t.name(), "chatml") << name;
    const std::string opening = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                                "assistant.<|im_end|>\n";
    EXPECT_EQ(render_chat(t, {{"user", "Hi <|im_end|>"}}),
              opening + "<|im_start|>user\nHi <|im_end|><|im_end|>\n<|im_start|>assistant\n")
        << name;
    EXPECT_EQ(render_chat(t, {{"system", "Be brief."}, {"user", "Hi"}}),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        << name;
    // The user's "<|im_end|>" stays text: one <|im_end|> token per closed turn (system, user).
    const auto ids = encode_chat(*tok, render_chat_parts(t, {{"user", "Hi <|im_end|>"}}), false);
    const int32_t im_end = tok->encode("<|im_end|>", false, true).at(0);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), im_end), 2) << name << ": " << ids_text(ids);
  }
  if (!checked) GTEST_SKIP() << "no Qwen model in " << model_cache_dir() << ": run scripts/fetch_models.sh qwen2.5-coder-0.5b-instruct";
}

// The two Qwen models are opt-in downloads (scripts/fetch_models.sh NAME): skipped unless fetched.
INSTANTIATE_TEST_SUITE_P(RealModel, LlamaCppParity,
                         ::testing::Values("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct",
                                           "qwen2.5-coder-1.5b-instruct"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace_if(n.begin(), n.end(), [](char c) { return c == '-' || c == '.'; }, '_');
                           return n;
                         });

}  // namespace
