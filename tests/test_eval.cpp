// The evaluation harness's pieces: metrics on known answers, deterministic task
// generators, the LongBench loader, resumable results, and fidelity's zero point.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "eval/longbench.h"
#include "eval/metrics.h"
#include "eval/qa_sample.h"
#include "eval/results_file.h"
#include "eval/runner.h"
#include "eval/synthetic.h"
#include "eval/teacher_forced.h"
#include "gguf/gguf_file.h"
#include "press/press_config.h"
#include "runtime/divergence.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace kvsqueeze;
using namespace kvsqueeze::eval;

namespace {
const std::string kStories = "models/stories260K/stories260K.gguf";

std::unique_ptr<Tokenizer> stories_tokenizer() {
  GgufFile f(test::shared_path(kStories));
  return Tokenizer::from_gguf(f);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

size_t occurrences(const std::string& text, const std::string& word) {
  size_t n = 0;
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) ++n;
  return n;
}
}  // namespace

TEST(Metrics, QaF1RightWrongPartial) {
  EXPECT_DOUBLE_EQ(qa_f1("The Eiffel Tower.", "eiffel tower"), 1.0);  // case, article, punctuation
  EXPECT_DOUBLE_EQ(qa_f1("Big Ben", "Eiffel Tower"), 0.0);
  // prediction "paris france" vs "paris": precision 1/2, recall 1 -> F1 2/3.
  EXPECT_NEAR(qa_f1("Paris, France", "Paris"), 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(qa_f1("", "Paris"), 0.0);
  EXPECT_EQ(normalized_words("An apple, the pear and a plum!"), (std::vector<std::string>{"apple", "pear", "and", "plum"}));
}

TEST(Metrics, ChineseF1AndRougeUseCharacters) {
  EXPECT_DOUBLE_EQ(qa_f1_zh("北京。", "北京"), 1.0);
  EXPECT_DOUBLE_EQ(qa_f1_zh("上海", "北京"), 0.0);
  EXPECT_NEAR(qa_f1_zh("北京市", "北京"), 0.8, 1e-12);  // p 2/3, r 1
  EXPECT_NEAR(rouge_l_zh("我爱北京", "我在北京"), 0.75, 1e-12);  // LCS 我北京 = 3 of 4 each
}

TEST(Metrics, RougeL) {
  EXPECT_DOUBLE_EQ(rouge_l("the cat sat on the mat", "the cat sat on the mat"), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l("dogs bark", "the cat sat"), 0.0);
  // LCS "the cat the mat" = 4; p = 4/5, r = 4/6 -> F1 = 8/11.
  EXPECT_NEAR(rouge_l("the cat on the mat", "the cat sat by the mat"), 8.0 / 11.0, 1e-12);
}

TEST(Metrics, ClassificationCountsEveryNamedClass) {
  const std::vector<std::string> classes{"Location", "Human being", "Number", "Entity"};
  EXPECT_DOUBLE_EQ(classification_accuracy("Location", "Location", classes), 1.0);
  EXPECT_DOUBLE_EQ(classification_accuracy("Number", "Location", classes), 0.0);
  EXPECT_DOUBLE_EQ(classification_accuracy("Location or Number", "Location", classes), 0.5);
  // A class inside the reference's own name is not held against it.
  EXPECT_DOUBLE_EQ(classification_accuracy("Human being", "Human being", {"Human", "Human being"}), 1.0);
}

TEST(Metrics, RetrievalAndCount) {
  EXPECT_DOUBLE_EQ(retrieval_accuracy("Paragraph 12", "Paragraph 12", false), 1.0);
  EXPECT_DOUBLE_EQ(retrieval_accuracy("Paragraph 3", "Paragraph 12", false), 0.0);
  EXPECT_DOUBLE_EQ(retrieval_accuracy("Paragraph 12 or Paragraph 3", "Paragraph 12", false), 0.5);
  EXPECT_DOUBLE_EQ(retrieval_accuracy("no idea", "Paragraph 12", false), 0.0);
  EXPECT_DOUBLE_EQ(retrieval_accuracy("段落7", "段落7", true), 1.0);
  EXPECT_DOUBLE_EQ(count_accuracy("There are 17 paragraphs.", "17"), 1.0);
  EXPECT_DOUBLE_EQ(count_accuracy("17 or 18 or 19 or 20", "17"), 0.25);
  EXPECT_DOUBLE_EQ(count_accuracy("many", "17"), 0.0);
  EXPECT_EQ(numbers_in("a1b22c333"), (std::vector<std::string>{"1", "22", "333"}));
}

TEST(Metrics, CodeSimilaritySkipsCommentsAndFences) {
  EXPECT_DOUBLE_EQ(code_edit_similarity("\n```python\nreturn x + 1\n", "return x + 1"), 1.0);
  EXPECT_DOUBLE_EQ(code_edit_similarity("# comment\nabc", "xyz"), 0.0);
  // "abcd" vs "abxd": LCS 3, 2*3/8 = 0.75.
  EXPECT_DOUBLE_EQ(code_edit_similarity("abcd", "abxd"), 0.75);
  // Rounded to whole percent: "abc" vs "abd" = 2*2/6 = 0.6667 -> 0.67.
  EXPECT_DOUBLE_EQ(code_edit_similarity("abc", "abd"), 0.67);
}

TEST(Metrics, StringMatchAllAndScoreAnswer) {
  EXPECT_DOUBLE_EQ(string_match_all("The numbers are 123 and 456.", {"123", "456"}), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("The number is 123.", {"123", "456"}), 0.5);
  EXPECT_DOUBLE_EQ(string_match_all("APPLE", {"apple"}), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("nothing", {"123"}), 0.0);
  QaSample s;
  s.metric = AnswerMetric::QaF1;
  s.answers = {"Paris", "Paris, France"};
  s.first_line_only = true;
  EXPECT_DOUBLE_EQ(score_answer(s, "\nParis, France\nand more words on line two"), 100.0);  // best reference
  // "paris is nice" vs "paris": p 1/3, r 1 -> F1 1/2 (better than vs "paris france", 2/5).
  EXPECT_NEAR(score_answer(s, "\nParis is nice"), 50.0, 1e-9);
}

TEST(Synthetic, NiahIsDeterministicPerSeedAndFitsItsLength) {
  REQUIRE_FIXTURE(kStories);
  const auto tok = stories_tokenizer();
  const Haystack hay = Haystack::generated();
  SyntheticOptions o;
  o.lengths = {256, 400};
  o.depths = {0, 50, 100};
  o.samples = 2;
  o.seed = 11;
  const auto a = niah_samples(*tok, hay, o), b = niah_samples(*tok, hay, o);
  ASSERT_EQ(a.size(), 12u);
  std::set<std::string> ids;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].context, b[i].context);
    EXPECT_EQ(a[i].answers, b[i].answers);
    ids.insert(a[i].id);
    const int64_t len = a[i].tags["length"].get<int64_t>();
    const auto n = static_cast<int64_t>(tok->encode(a[i].context, true, false).size() +
                                        tok->encode(a[i].question, false, false).size());
    EXPECT_LE(n, len);
    EXPECT_GE(n, len * 85 / 100) << "a prompt should come close to its length";
    const std::string needle = "The special magic number for ";
    ASSERT_EQ(occurrences(a[i].context, needle), 1u);
    EXPECT_NE(a[i].context.find(" is " + a[i].answers[0] + "."), std::string::npos);
  }
  EXPECT_EQ(ids.size(), a.size()) << "sample ids are the resume key: unique";
  // Depth 0 puts the needle first, depth 100 last.
  EXPECT_EQ(a[0].context.rfind("The special magic number", 0), 0u);
  const auto& deep = a[4];  // length 256, depth 100, sample 0
  EXPECT_EQ(deep.tags["depth"].get<double>(), 100.0);
  EXPECT_GT(deep.context.find("The special magic number"), deep.context.size() * 8 / 10);
  o.seed = 12;
  const auto c = niah_samples(*tok, hay, o);
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += a[i].context != c[i].context;
  EXPECT_EQ(differ, static_cast<int>(a.size()));
}

TEST(Synthetic, RulerTasksHoldTheirAnswers) {
  REQUIRE_FIXTURE(kStories);
  const auto tok = stories_tokenizer();
  const Haystack hay = Haystack::generated();
  SyntheticOptions o;
  o.lengths = {700};
  o.samples = 2;
  o.seed = 5;
  const auto a = ruler_samples(*tok, hay, o), b = ruler_samples(*tok, hay, o);
  ASSERT_EQ(a.size(), ruler_subtasks().size() * 2);
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& s = a[i];
    SCOPED_TRACE(s.id);
    EXPECT_EQ(s.context, b[i].context);
    EXPECT_EQ(s.question, b[i].question);
    const auto n = static_cast<int64_t>(tok->encode(s.context, true, false).size() + tok->encode(s.question, false, false).size());
    EXPECT_LE(n, 700);
    EXPECT_GE(n, 500);
    ASSERT_FALSE(s.answers.empty());
    for (const auto& ans : s.answers) EXPECT_NE(s.context.find(ans), std::string::npos) << ans;
    // A perfect answer scores 100, a wrong one 0, half of the references 50 (or more).
    std::string all;
    for (const auto& ans : s.answers) all += ans + ", ";
    EXPECT_DOUBLE_EQ(score_answer(s, all), 100.0);
    EXPECT_DOUBLE_EQ(score_answer(s, "I do not know."), 0.0);
  }
  auto find = [&](const std::string& task) {
    return *std::find_if(a.begin(), a.end(), [&](const QaSample& s) { return s.subtask == task; });
  };
  EXPECT_EQ(find("niah_multivalue").answers.size(), 4u);
  EXPECT_EQ(find("niah_multiquery").answers.size(), 4u);
  EXPECT_EQ(find("niah_multikey").answers.size(), 1u);
  EXPECT_EQ(occurrences(find("niah_multikey").context, "The special magic number for"), 4u);
  const auto uuid = find("niah_single_uuid").answers[0];
  EXPECT_EQ(uuid.size(), 36u);
  EXPECT_EQ(score_answer(find("niah_multivalue"), find("niah_multivalue").answers[0]), 25.0);  // partially right
  // Variable tracking: the first variable gets the value, each next one the previous one.
  const auto vt = find("variable_tracking");
  ASSERT_EQ(vt.answers.size(), 5u);
  for (size_t k = 1; k < vt.answers.size(); ++k)
    EXPECT_NE(vt.context.find("VAR " + vt.answers[k] + " = VAR " + vt.answers[k - 1] + "."), std::string::npos);
  // Common words: each of the 10 answers outnumbers every other word of the list.
  const auto cwe = find("common_words");
  ASSERT_EQ(cwe.answers.size(), 10u);
  std::map<std::string, int> count;
  const std::string list = cwe.context.substr(cwe.context.find('\n') + 1);
  std::stringstream ss(list);
  for (std::string w; ss >> w;)
    if (!std::isdigit(static_cast<unsigned char>(w[0]))) ++count[w];
  int least_common = 1 << 30, most_other = 0;
  for (const auto& [w, c] : count) {
    if (std::find(cwe.answers.begin(), cwe.answers.end(), w) != cwe.answers.end()) least_common = std::min(least_common, c);
    else most_other = std::max(most_other, c);
  }
  EXPECT_GT(least_common, most_other);
  // Frequent words: the three answers are the three most frequent, in order.
  const auto fwe = find("frequent_words");
  count.clear();
  std::stringstream fs(fwe.context.substr(fwe.context.find('\n') + 1));
  for (std::string w; fs >> w;) ++count[w];
  std::vector<std::pair<int, std::string>> ranked;
  for (const auto& [w, c] : count) ranked.emplace_back(-c, w);
  std::sort(ranked.begin(), ranked.end());
  ASSERT_GE(ranked.size(), 4u);
  EXPECT_EQ(ranked[0].second, fwe.answers[0]);
  EXPECT_EQ(ranked[1].second, fwe.answers[1]);
  EXPECT_EQ(ranked[2].second, fwe.answers[2]);
  EXPECT_LT(ranked[2].first, ranked[3].first);
}

TEST(Synthetic, BadOptionsAndHaystacksAreRefused) {
  REQUIRE_FIXTURE(kStories);
  const auto tok = stories_tokenizer();
  const std::string empty = test::temp_path("eval-empty-haystack.txt");
  write_text(empty, "\n  \n\n");
  EXPECT_THROW(Haystack::from_file(empty), std::invalid_argument);
  EXPECT_THROW(Haystack::from_file(test::temp_path("no-such-haystack.txt")), std::runtime_error);
  const std::string verses = test::temp_path("eval-verses.txt");
  write_text(verses, "Ge1:1 In the beginning God created the heaven and the earth.\n1Co13:4 Charity suffereth long. And is kind.\n");
  const Haystack h = Haystack::from_file(verses);
  EXPECT_EQ(h.sentences(), (std::vector<std::string>{"In the beginning God created the heaven and the earth.",
                                                     "Charity suffereth long.", "And is kind."}));
  SyntheticOptions o;
  o.lengths = {40};  // no room for filler around the question
  o.depths = {50};
  EXPECT_THROW(niah_samples(*tok, h, o), std::invalid_argument);
  o.lengths = {512};
  o.depths = {150};
  EXPECT_THROW(niah_samples(*tok, h, o), std::invalid_argument);
  o.depths = {50};
  o.subtasks = {"niah_nonsense"};
  EXPECT_THROW(ruler_samples(*tok, h, o), std::invalid_argument);
}

TEST(LongBench, LoadsTemplatesAndSplitsContextFromQuestion) {
  const std::string path = test::temp_path("eval-longbench.jsonl");
  write_text(path,
             R"({"_id": "q1", "dataset": "hotpotqa", "context": "Passage about Paris.", "input": "Where?", "answers": ["Paris"], "all_classes": null, "length": 3})"
             "\n"
             R"({"dataset": "trec", "context": "Q: who? Type: Human being", "input": "Q: where?", "answers": ["Location"], "all_classes": ["Location", "Human being"]})"
             "\n");
  const auto s = longbench_samples({path}, 0);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].id, "q1");
  EXPECT_EQ(s[0].subtask, "hotpotqa");
  EXPECT_EQ(s[0].max_new_tokens, 32);
  EXPECT_EQ(s[0].metric, AnswerMetric::QaF1);
  EXPECT_TRUE(s[0].context.ends_with("The following are given passages.\nPassage about Paris."));
  EXPECT_EQ(s[0].question, "\n\nAnswer the question based on the given passages. Only give me the answer and do not "
                           "output any other words.\n\nQuestion: Where?\nAnswer:");
  EXPECT_EQ(s[0].tags["length"], 3);
  EXPECT_EQ(s[1].id, "trec-2");
  EXPECT_TRUE(s[1].first_line_only);
  EXPECT_DOUBLE_EQ(score_answer(s[1], "Location\nHuman being"), 100.0);  // only the first line counts
  EXPECT_EQ(longbench_dataset("qasper_e").name, "qasper");
  EXPECT_EQ(longbench_datasets().size(), 21u);
  EXPECT_EQ(longbench_samples({path}, 1).size(), 1u);
}

TEST(LongBench, MalformedLinesNameTheFileLineAndField) {
  const std::string path = test::temp_path("eval-longbench-bad.jsonl");
  auto expect_error = [&](const std::string& line, const std::string& needle) {
    write_text(path, line + "\n");
    try {
      longbench_samples({path}, 0);
      ADD_FAILURE() << "no error for " << line;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(":1:"), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"dataset": "hotpotqa", "input": "q", "answers": ["a"], "all_classes": null})", "missing field 'context'");
  expect_error(R"({"dataset": "hotpotqa", "context": "c", "answers": ["a"], "all_classes": null})", "missing field 'input'");
  expect_error(R"({"dataset": "hotpotqa", "context": "c", "input": "q", "all_classes": null})", "missing field 'answers'");
  expect_error(R"({"dataset": "hotpotqa", "context": "c", "input": "q", "answers": ["a"]})", "missing field 'all_classes'");
  expect_error(R"({"context": "c", "input": "q", "answers": ["a"], "all_classes": null})", "missing field 'dataset'");
  expect_error(R"({"dataset": "hotpotqa", "context": 5, "input": "q", "answers": ["a"], "all_classes": null})", "'context' must be a string");
  expect_error(R"({"dataset": "hotpotqa", "context": "c", "input": "q", "answers": "a", "all_classes": null})", "'answers' must be a list");
  expect_error(R"({"dataset": "nosuchset", "context": "c", "input": "q", "answers": ["a"], "all_classes": null})", "unknown LongBench dataset");
  expect_error(R"({"dataset": "trec", "context": "c", "input": "q", "answers": ["a"], "all_classes": null})", "needs 'all_classes'");
  expect_error(R"({"dataset": "hotpotqa", "context": "c")", "not valid JSON");
  write_text(path, "\n");
  EXPECT_THROW(longbench_samples({path}, 0), std::invalid_argument);
}

TEST(ResultsFile, SkipsDoneRunsAndRepairsACutLine) {
  const std::string path = test::temp_path("eval-results-resume.jsonl");
  std::filesystem::remove(path);
  nlohmann::json r{{"model", "m"}, {"task", "niah"}, {"sample", "s0"}, {"preset", "snapkv"}, {"budget", 64}, {"score", 100}};
  {
    ResultsFile f(path);
    EXPECT_FALSE(f.has(ResultsFile::key_of(r)));
    f.append(r);
  }
  // A run killed in the middle of a write leaves half a line behind.
  std::ofstream(path, std::ios::app) << R"({"model": "m", "task": "ni)";
  ResultsFile f(path);
  EXPECT_TRUE(f.has(ResultsFile::key_of(r)));
  auto other = r;
  other["budget"] = 128;
  EXPECT_FALSE(f.has(ResultsFile::key_of(other)));
  EXPECT_EQ(f.records().size(), 1u);
  other["prediction"] = std::string("cut inside a character: \xE4\xB8");  // an answer stopped mid-UTF-8
  f.append(other);
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 2);
  // Anything else malformed is not silently skipped.
  const std::string bad = test::temp_path("eval-results-bad.jsonl");
  write_text(bad, "{\"task\": 1}\nnot json\n");
  EXPECT_THROW(ResultsFile{bad}, std::invalid_argument);
}

TEST(Fidelity, BudgetAtLeastThePromptGivesZeroErrorForEveryPreset) {
  REQUIRE_FIXTURE(kStories);
  EvalOptions o;
  o.task = "fidelity";
  o.model_path = test::shared_path(kStories);
  o.presets = PressConfig::preset_names();
  o.budgets = {512};  // the prompt is 448 tokens
  o.continuation_tokens = 32;
  o.out_path = test::temp_path("eval-fidelity-zero.jsonl");
  o.progress = false;
  std::filesystem::remove(o.out_path);
  EXPECT_EQ(run_eval(o), static_cast<int64_t>(PressConfig::preset_names().size()));  // none + each preset
  std::ifstream in(o.out_path);
  int rows = 0;
  for (std::string line; std::getline(in, line); ++rows) {
    const auto r = nlohmann::json::parse(line);
    SCOPED_TRACE(r["preset"].get<std::string>());
    EXPECT_EQ(r["prompt_tokens"], 480);
    EXPECT_EQ(r["metrics"]["kl"].get<double>(), 0.0);
    EXPECT_EQ(r["metrics"]["attn_l1"].get<double>(), 0.0);
    for (const auto& layer : r["metrics"]["attn_l1_layers"]) EXPECT_EQ(layer.get<double>(), 0.0);
    EXPECT_EQ(r["metrics"]["top1_agreement"].get<double>(), 100.0);
    EXPECT_EQ(r["score"].get<double>(), 100.0);
    EXPECT_EQ(r["kv_bytes"], r["kv_bytes_full"]);
  }
  EXPECT_EQ(rows, static_cast<int>(PressConfig::preset_names().size()));
  // A smaller budget really compresses and really costs something.
  o.budgets = {64};
  o.presets = {"snapkv"};
  EXPECT_EQ(run_eval(o), 1);
  std::ifstream again(o.out_path);
  std::string line, last;
  while (std::getline(again, line)) last = line;
  const auto r = nlohmann::json::parse(last);
  EXPECT_EQ(r["budget"], 64);
  EXPECT_GT(r["metrics"]["kl"].get<double>(), 0.0);
  EXPECT_GT(r["metrics"]["attn_l1"].get<double>(), 0.0);
  EXPECT_LT(r["kv_bytes"].get<size_t>(), r["kv_bytes_full"].get<size_t>() / 4);
}

// The fidelity metrics on inputs whose values are known in closed form.
TEST(Fidelity, MetricsEqualTheirClosedForms) {
  // KL(p || q) in nats, reference first: p = (0.8, 0.1, 0.1), q = (0.2, 0.6, 0.2) gives
  // 0.8 ln 4 + 0.1 ln(1/6) + 0.1 ln 0.5 = 1.5 ln 2 - 0.1 ln 6; the other direction,
  // 0.2 ln 0.25 + 0.6 ln 6 + 0.2 ln 2 = 0.6 ln 6 - 0.2 ln 2, is a different number.
  const auto logits_of = [](std::vector<double> p) {
    std::vector<float> l;
    for (double x : p) l.push_back(static_cast<float>(std::log(x)));
    return l;
  };
  const std::vector<float> p = logits_of({0.8, 0.1, 0.1}), q = logits_of({0.2, 0.6, 0.2});
  const double kl_pq = 1.5 * std::log(2.0) - 0.1 * std::log(6.0);
  EXPECT_NEAR(next_token_kl(p, q), kl_pq, 1e-6);
  EXPECT_NEAR(next_token_kl(q, p), 0.6 * std::log(6.0) - 0.2 * std::log(2.0), 1e-6);
  EXPECT_EQ(next_token_kl(p, p), 0.0);
  // compare_runs: two continuation tokens; the run's distributions are q then p.
  eval::TeacherForcedRun full, run;
  full.logits = {p, p};
  run.logits = {q, p};
  // One layer, two tokens of width 2: |y| sums to 10, |y - ŷ| to 1 + 2 = 3.
  full.attention = {{1.0f, -2.0f, 3.0f, 4.0f}};
  run.attention = {{2.0f, -2.0f, 3.0f, 2.0f}};
  const eval::FidelityMetrics m = eval::compare_runs(full, run, {1, 0});
  EXPECT_NEAR(m.kl, kl_pq / 2, 1e-6);
  EXPECT_DOUBLE_EQ(m.top1, 50.0);                 // argmax 1 vs 0, then 0 vs 0
  // The true tokens' probabilities under the run: q[1] = 0.6, p[0] = 0.8.
  EXPECT_NEAR(m.nll, -(std::log(0.6) + std::log(0.8)) / 2, 1e-6);
  EXPECT_NEAR(m.ppl, 1.0 / std::sqrt(0.6 * 0.8), 1e-5);
  ASSERT_EQ(m.attn_l1_layers.size(), 1u);
  EXPECT_NEAR(m.attn_l1_layers[0], 0.3, 1e-9);
  EXPECT_NEAR(m.attn_l1, 0.3, 1e-9);
}
