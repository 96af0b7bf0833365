// `kvsqueeze eval` and tools/plot_results.py end to end, as a user runs them.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "eval/qa_sample.h"
#include "model/known_models.h"
#include "test_util.h"

using namespace kvsqueeze;
using kvsqueeze::test::CliResult;
using kvsqueeze::test::expect_clean_failure;
using kvsqueeze::test::run;
using kvsqueeze::test::expect_images;
using kvsqueeze::test::fresh_dir;
using kvsqueeze::test::shell;

namespace {
const std::string kStories = "models/stories260K/stories260K.gguf";
const std::string kRetrieval = "models/retrieval-1k/retrieval.gguf";
const std::string kSource = KVSQUEEZE_SOURCE_DIR;

std::vector<nlohmann::json> read_results(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string plot_command(const std::string& results, const std::string& out) {
  return "/usr/bin/python3 " + kSource + "/tools/plot_results.py " + results + " --out " + out + " >" + out +
         "/plot.log 2>&1";
}
}  // namespace

TEST(EvalCli, FullGridOnStoriesWritesResumableResultsAndPlots) {
  REQUIRE_FIXTURE(kStories);
  const std::string dir = fresh_dir("eval-grid-stories");
  const std::string results = dir + "/results.jsonl";
  const std::string common = "-m " + test::shared_path(kStories) + " --presets all --budgets 64,128,256,1024 --out " +
                             results + " -t 2";
  CliResult r = run("eval fidelity " + common);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| - | ada-snapkv |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("53 runs done"), std::string::npos) << r.out;  // none + 13 presets x 4 budgets
  EXPECT_NE(r.err.find("ETA"), std::string::npos) << "a progress bar on stderr";
  r = run("eval ppl " + common);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = read_results(results);
  ASSERT_EQ(rows.size(), 106u);
  for (const auto& row : rows) {
    for (const char* f : {"task", "preset", "budget", "sample", "score", "metric", "metrics", "kv_bytes", "prompt_tokens", "seconds"})
      EXPECT_TRUE(row.contains(f)) << f << " missing in " << row.dump();
    EXPECT_EQ(row["metric"], row["task"] == "fidelity" ? "top1_agreement" : "neg_log_ppl");
    if (row["preset"] != "none" && row["budget"] == 64) {
      EXPECT_LT(row["kv_bytes"].get<size_t>(), row["kv_bytes_full"].get<size_t>());
    }
  }
  // Rerunning skips everything already in the file.
  r = run("eval ppl " + common);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("0 runs done"), std::string::npos) << r.out;
  EXPECT_EQ(read_results(results).size(), 106u);

  ASSERT_EQ(shell(plot_command(results, dir)), 0) << "see " << dir << "/plot.log";
  for (const char* stem : {"fidelity_aware_score_stories260K", "fidelity_aware_kl_stories260K",
                           "fidelity_aware_attn_l1_stories260K", "ppl_aware_score_stories260K", "ppl_aware_ppl_stories260K"})
    expect_images(dir, stem);
}

TEST(EvalCli, NiahOnRetrievalWithKjvFillerRecallsAndPlots) {
  REQUIRE_FIXTURE(kRetrieval);
  if (shell("command -v bible >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the 'bible' command (Debian bible-kjv, bible-kjv-text) is not installed";
  const std::string dir = fresh_dir("eval-niah-retrieval");
  const std::string hay = dir + "/kjv.txt", results = dir + "/results.jsonl";
  ASSERT_EQ(shell(kSource + "/scripts/kjv_haystack.sh " + hay), 0);
  const std::string model = "-m " + test::shared_path(kRetrieval) + " --haystack " + hay + " --lengths 1024 -t 2 --out " + results;
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizer build is ~10x slower: fewer samples, fewer presets, one depth.
  const int full_samples = 1;
  const std::string presets = "ada-snapkv,lava", grid_depths = "50";
  const int grid_depth_count = 1;
#else
  const int full_samples = 4;
  const std::string presets = "all", grid_depths = "0,50,100";
  const int grid_depth_count = 3;
#endif
  // The full cache's recall at 1024 tokens (the model's documented ~90-100%).
  CliResult r = run("eval niah " + model + " --presets none --depths 0,25,50,75,100 --samples " + std::to_string(full_samples));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = read_results(results);
  ASSERT_EQ(rows.size(), 5u * full_samples);
  double recall = 0;
  for (const auto& row : rows) recall += row["score"].get<double>() / static_cast<double>(rows.size());
  std::cout << "retrieval-1k full-cache needle recall at 1024 tokens: " << recall << "%\n";
  EXPECT_GE(recall, 80.0);
  r = run("eval niah " + model + " --presets " + presets + " --budgets 64,128,256 --depths " + grid_depths + " --samples 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  rows = read_results(results);
  int pressed = 0;
  for (const auto& row : rows)
    if (row["preset"] != "none") {
      ++pressed;
      EXPECT_LT(row["kv_bytes"].get<size_t>(), row["kv_bytes_full"].get<size_t>());
      EXPECT_EQ(row["metric"], "string_match_all");
    }
  EXPECT_EQ(pressed % (3 * grid_depth_count), 0);  // 3 budgets x the depths, per preset
  EXPECT_GE(pressed, 2 * 3 * grid_depth_count);
  ASSERT_EQ(shell(plot_command(results, dir)), 0) << "see " << dir << "/plot.log";
  expect_images(dir, "niah_aware_score_retrieval");
  expect_images(dir, "niah_heatmap_aware_full_retrieval");
  expect_images(dir, "niah_heatmap_aware_b64_retrieval");
}

TEST(EvalCli, BadInputGetsOneClearError) {
  REQUIRE_FIXTURE(kStories);
  const std::string dir = fresh_dir("eval-bad-input");
  const std::string m = "-m " + test::shared_path(kStories), out = " --out " + dir + "/r.jsonl";
  expect_clean_failure(run("eval nosuchtask " + m + " --budgets 64" + out), "unknown task 'nosuchtask'");
  expect_clean_failure(run("eval fidelity " + m + " --presets snapkv,bogus --budgets 64" + out), "unknown press 'bogus'");
  expect_clean_failure(run("eval fidelity " + m + " --presets snapkv --budgets 16" + out), "budget 16 does not fit");
  expect_clean_failure(run("eval fidelity " + m + " --presets snapkv --ratios 1.5" + out), "ratio 1.5 does not fit");
  expect_clean_failure(run("eval fidelity " + m + " --presets snapkv" + out), "give --budgets or --ratios");
  expect_clean_failure(run("eval fidelity " + m + " --budgets 64 --question-agnostic" + out), "does not apply");
  expect_clean_failure(run("eval fidelity " + m + " --budgets 64 --prompt-tokens 5000" + out), "the text has");
  expect_clean_failure(run("eval fidelity " + m + " --budgets 64 --bogus-flag" + out), "unknown argument");
  const std::string empty = dir + "/empty.txt";
  std::ofstream(empty) << "\n\n";
  expect_clean_failure(run("eval niah " + m + " --budgets 64 --lengths 256 --haystack " + empty + out), "has no text");
  expect_clean_failure(run("eval niah " + m + " --budgets 64 --lengths 256 --depths 120" + out), "outside 0..100");
  const std::string jsonl = dir + "/lb.jsonl";
  std::ofstream(jsonl) << R"({"dataset": "hotpotqa", "context": "c", "answers": ["a"], "all_classes": null})" << "\n";
  expect_clean_failure(run("eval longbench " + jsonl + " " + m + " --budgets 64" + out), "missing field 'input'");
  expect_clean_failure(run("eval longbench " + m + " --budgets 64" + out), "needs JSONL files");
  // The plot script refuses what it cannot read.
  std::ofstream(dir + "/broken.jsonl") << "{\"task\": \n";
  EXPECT_NE(shell("/usr/bin/python3 " + kSource + "/tools/plot_results.py " + dir + "/broken.jsonl --out " + dir + " 2>/dev/null"), 0);
}

TEST(EvalCli, LongBenchRunsAndScoresEachDataset) {
  REQUIRE_FIXTURE(kStories);
  const std::string dir = fresh_dir("eval-longbench");
  const std::string jsonl = dir + "/lb.jsonl", results = dir + "/r.jsonl";
  std::ofstream(jsonl)
      << R"({"_id": "a", "dataset": "multifieldqa_en", "context": "Lily had a red ball. She played in the park.", "input": "What color was the ball?", "answers": ["red"], "all_classes": null})"
      << "\n"
      << R"({"_id": "b", "dataset": "passage_count", "context": "Paragraph 1: Tom ran. Paragraph 2: Tom ran.", "input": "", "answers": ["1"], "all_classes": null})"
      << "\n";
  for (const char* mode : {"", " --question-agnostic"}) {
    CliResult r = run("eval longbench " + jsonl + " -m " + test::shared_path(kStories) +
                      " --presets snapkv --budgets 40 --window 8 --out " + results + mode);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| multifieldqa_en | snapkv |"), std::string::npos) << r.out;
  }
  const auto rows = read_results(results);
  ASSERT_EQ(rows.size(), 8u);  // 2 samples x (none, snapkv) x 2 modes
  for (const auto& row : rows) {
    const bool count = row["subtask"] == "passage_count";
    EXPECT_EQ(row["metric"], count ? "count" : "qa_f1");
    ASSERT_TRUE(row["prediction"].is_string());
    // The score is the dataset's metric of this very prediction against its answer.
    eval::QaSample s;
    s.answers = {count ? "1" : "red"};
    s.metric = count ? eval::AnswerMetric::Count : eval::AnswerMetric::QaF1;
    EXPECT_DOUBLE_EQ(row["score"].get<double>(), eval::score_answer(s, row["prediction"].get<std::string>())) << row.dump();
  }
}

TEST(EvalCli, RatioGridRecordsTheRatio) {
  REQUIRE_FIXTURE(kStories);
  const std::string dir = fresh_dir("eval-ratio");
  const std::string results = dir + "/r.jsonl";
  CliResult r = run("eval ppl -m " + test::shared_path(kStories) + " --presets snapkv,lava --ratios 0.25,0.5 --samples 2 "
                    "--continuation 16 --no-progress --out " + results);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << "--no-progress keeps stderr quiet: " << r.err;
  EXPECT_NE(r.out.find("| r=0.25 | r=0.5 |"), std::string::npos) << r.out;
  const auto rows = read_results(results);
  ASSERT_EQ(rows.size(), 10u);  // 2 windows x (none + 2 presets x 2 ratios)
  std::set<std::string> samples;
  for (const auto& row : rows) {
    samples.insert(row["sample"].get<std::string>());
    EXPECT_TRUE(row["budget"].is_null());
    if (row["preset"] == "none") {
      EXPECT_TRUE(row["ratio"].is_null());
      continue;
    }
    const double ratio = row["ratio"].get<double>();
    EXPECT_TRUE(ratio == 0.25 || ratio == 0.5);
    // The kept share of the cache follows the ratio (the window is always kept).
    const double kept = row["kv_bytes"].get<double>() / row["kv_bytes_full"].get<double>();
    EXPECT_NEAR(kept, ratio, 0.05) << row.dump();
    // The score is -NLL, and perplexity its exponential; a compressed cache moves the
    // next-token distributions (KL > 0) and the attention outputs, never to chance level.
    const auto& m = row["metrics"];
    EXPECT_DOUBLE_EQ(row["score"].get<double>(), -m["nll"].get<double>());
    EXPECT_NEAR(m["ppl"].get<double>(), std::exp(m["nll"].get<double>()), 1e-9 * m["ppl"].get<double>());
    EXPECT_LT(m["ppl"].get<double>(), 64.0) << "stories260K's 512-token vocabulary at chance is 512";
    EXPECT_GT(m["kl"].get<double>(), 1e-4);
    EXPECT_GT(m["attn_l1"].get<double>(), 1e-3);
  }
  // The full cache is the reference of every metric: exactly zero error against itself.
  for (const auto& row : rows) {
    if (row["preset"] != "none") continue;
    EXPECT_EQ(row["metrics"]["kl"].get<double>(), 0.0);
    EXPECT_EQ(row["metrics"]["attn_l1"].get<double>(), 0.0);
    EXPECT_EQ(row["metrics"]["top1_agreement"].get<double>(), 100.0);
  }
  EXPECT_EQ(samples.size(), 2u);
}

// One prefill per sample feeds every grid point: the records equal those of reading the
// prompt once per point (--separate-prefill), question-aware and question-agnostic.
TEST(EvalCli, SharedPrefillGivesTheRecordsOfSeparateRuns) {
  REQUIRE_FIXTURE(kRetrieval);
  const std::string dir = fresh_dir("eval-shared-prefill");
  for (const std::string mode : {"", " --question-agnostic"}) {
    std::map<std::string, std::vector<nlohmann::json>> by_kind;
    for (const std::string kind : {"shared", "separate"}) {
      const std::string results = dir + "/" + kind + (mode.empty() ? "-aware" : "-agnostic") + ".jsonl";
      const CliResult r = run("eval niah -m " + test::shared_path(kRetrieval) +
                              " --presets snapkv,ada-snapkv,pyramidkv,h2o,lava,streamingllm --budgets 48,96 --lengths 384 "
                              "--depths 0,60 --samples 1 -t 2 --no-progress --out " + results + mode +
                              (kind == "separate" ? " --separate-prefill" : ""));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      by_kind[kind] = read_results(results);
    }
    const auto& shared = by_kind["shared"];
    const auto& separate = by_kind["separate"];
    ASSERT_EQ(shared.size(), 2u * (1 + 6 * 2)) << mode;  // per depth: none + 6 presets x 2 budgets
    ASSERT_EQ(shared.size(), separate.size());
    for (size_t i = 0; i < shared.size(); ++i)
      for (const char* field : {"preset", "budget", "sample", "prediction", "score", "kv_bytes"})
        EXPECT_EQ(shared[i][field], separate[i][field]) << field << " of record " << i << mode;
  }
}

// fidelity and ppl share the prefill too: each point's continuation is read against its
// own cache, and every metric equals the run that read the prompt once per point.
TEST(EvalCli, SharedPrefillGivesTheTeacherForcedMetricsOfSeparateRuns) {
  REQUIRE_FIXTURE(kStories);
  const std::string dir = fresh_dir("eval-shared-fidelity");
  std::map<std::string, std::vector<nlohmann::json>> by_kind;
  for (const std::string kind : {"shared", "separate"}) {
    const std::string results = dir + "/" + kind + ".jsonl";
    const CliResult r = run("eval fidelity -m " + test::shared_path(kStories) +
                            " --presets snapkv,h2o,criticalkv,lava --budgets 64,160 --ratios 0.25 --samples 2 -t 2 "
                            "--no-progress --out " + results + (kind == "separate" ? " --separate-prefill" : ""));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    by_kind[kind] = read_results(results);
  }
  const auto& shared = by_kind["shared"];
  const auto& separate = by_kind["separate"];
  ASSERT_EQ(shared.size(), 2u * (1 + 4 * 3));  // per window: none + 4 presets x (2 budgets + 1 ratio)
  ASSERT_EQ(shared.size(), separate.size());
  bool compressed = false;
  for (size_t i = 0; i < shared.size(); ++i) {
    for (const char* field : {"preset", "budget", "ratio", "sample", "score", "kv_bytes"})
      EXPECT_EQ(shared[i][field], separate[i][field]) << field << " of record " << i;
    EXPECT_EQ(shared[i]["metrics"], separate[i]["metrics"]) << "record " << i;
    compressed = compressed || shared[i]["metrics"]["kl"].get<double>() > 0;
  }
  EXPECT_TRUE(compressed) << "some point must differ from the full cache";
}

// --export-samples writes each sample with the token ids the grid reads, so another
// engine can run the very same prompts; it refuses tasks that have no samples to export.
TEST(EvalCli, ExportedSamplesHoldTheTokenIdsTheGridReads) {
  REQUIRE_FIXTURE(kRetrieval);
  const std::string dir = fresh_dir("eval-export");
  const std::string common = "eval niah -m " + test::shared_path(kRetrieval) + " --lengths 256,384 --depths 0,60 -t 2 ";
  CliResult r = run(common + "--export-samples " + dir + "/samples.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("4 samples written"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/r.jsonl"));
  ASSERT_EQ(run(common + "--presets none --no-progress --out " + dir + "/r.jsonl").exit_code, 0);
  std::map<std::string, nlohmann::json> graded;
  for (const auto& row : read_results(dir + "/r.jsonl")) graded[row["sample"]] = row;
  const auto samples = read_results(dir + "/samples.jsonl");
  ASSERT_EQ(samples.size(), 4u);
  for (const auto& s : samples) {
    ASSERT_TRUE(graded.count(s["sample"])) << s.dump();
    const auto& g = graded[s["sample"]];
    EXPECT_EQ(s["context_ids"].size() + s["question_ids"].size(), g["prompt_tokens"].get<size_t>());
    EXPECT_EQ(s["answers"], g["answers"]);
    EXPECT_EQ(s["length"], g["length"]);
    EXPECT_EQ(s["depth"], g["depth"]);
    EXPECT_EQ(s["context_ids"][0], 1) << "BOS first";
    EXPECT_TRUE(s["chat"].is_null());
    EXPECT_NE(s["context"].get<std::string>().find(s["answers"][0].get<std::string>()), std::string::npos)
        << "the needle is in the context";
  }
  expect_clean_failure(run("eval fidelity -m " + test::shared_path(kRetrieval) + " --export-samples " + dir + "/f.jsonl"),
                       "--export-samples is for niah, ruler and longbench");
  expect_clean_failure(run(common + "--presets none"), "--out FILE is required");
}

// Instruction models read their prompts as a chat turn (--chat auto when the GGUF has a
// template); question-agnostic runs cut the turn after the context.
TEST(EvalCli, ChatTemplateWrapsThePromptsOfInstructionModels) {
  if (!cached_model_path("smollm2-135m-instruct")) GTEST_SKIP() << "smollm2-135m-instruct is not fetched (scripts/fetch_models.sh)";
  const std::string dir = fresh_dir("eval-chat");
  const std::string base = "eval niah -m smollm2-135m-instruct --presets snapkv --budgets 96 --lengths 320 --depths 50 "
                           "--samples 2 -t 2 --no-progress --out " + dir + "/r.jsonl";
  for (const std::string mode : {"", " --question-agnostic"}) {
    ASSERT_EQ(run(base + mode).exit_code, 0);                 // auto: the model has a ChatML template
    ASSERT_EQ(run(base + mode + " --chat off").exit_code, 0);
  }
  const auto rows = read_results(dir + "/r.jsonl");
  ASSERT_EQ(rows.size(), 2u * 2 * 2 * 2);  // modes x chat x (none + snapkv) x samples
  std::map<std::string, int> tokens;       // prompt tokens by chat or not, per sample and mode
  double chat_recall = 0;
  for (const auto& row : rows) {
    const bool chat = row.contains("chat");
    if (chat) {
      EXPECT_EQ(row["chat"], "chatml");
      EXPECT_EQ(row["prediction"].get<std::string>().find("<|im_end|>"), std::string::npos);  // cut at the turn's end
    }
    const std::string key = row["sample"].get<std::string>() + (row["question_agnostic"].get<bool>() ? "a" : "q");
    tokens[key + (chat ? "chat" : "raw")] = row["prompt_tokens"].get<int>();
    if (chat && row["preset"] == "none") chat_recall += row["score"].get<double>() / 4;
  }
  // The turn adds "<|im_start|>user\n" and "<|im_end|>\n<|im_start|>assistant\n" (9 tokens) to the
  // same text, after the default system turn SmolLM2's template writes ("<|im_start|>system\nYou are
  // a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n": 21 tokens).
  for (const auto& [key, n] : tokens) {
    if (key.size() > 4 && key.substr(key.size() - 4) == "chat") {
      EXPECT_EQ(n, tokens.at(key.substr(0, key.size() - 4) + "raw") + 9 + 21) << key;
    }
  }
  std::cout << "smollm2-135m-instruct full-cache needle recall at 320 tokens through ChatML: " << chat_recall << "%\n";
  EXPECT_GE(chat_recall, 50.0);
  // A model without a template or turn tokens cannot be asked for one.
  REQUIRE_FIXTURE(kStories);
  expect_clean_failure(run("eval niah -m " + test::shared_path(kStories) + " --presets none --lengths 256 --chat on --out " +
                           dir + "/x.jsonl"),
                       "no chat template");
}

// tools/results_report.py: a template's placeholders become tables, and a claim is
// confirmed only where the paired differences say so.
TEST(ResultsReport, FillsTheTemplateAndChecksClaimsOnPairedSamples) {
  const std::string dir = fresh_dir("results-report");
  std::filesystem::create_directories(dir + "/res/tiny");
  {
    std::ofstream grid(dir + "/res/tiny/grid.jsonl");
    for (const bool agnostic : {false, true})
      for (int s = 0; s < 6; ++s)
        for (const std::string preset : {"none", "snapkv", "ada-snapkv"})
          for (const int budget : {64, 128}) {
            if (preset == "none" && budget == 128) continue;
            nlohmann::json r{{"model", "tiny.gguf"}, {"task", "niah"},   {"subtask", ""},
                             {"sample", std::to_string(s)},             {"preset", preset},
                             {"question_agnostic", agnostic},           {"ratio", nullptr}};
            r["budget"] = preset == "none" ? nlohmann::json(nullptr) : nlohmann::json(budget);
            // Aware: Ada-KV finds every needle, SnapKV none; agnostic: both find the even samples.
            const bool found = preset == "none" || (agnostic ? s % 2 == 0 : preset == "ada-snapkv");
            r["score"] = found ? 100.0 : 0.0;
            grid << r.dump() << "\n";
          }
  }
  {
    std::ofstream t(dir + "/res/RESULTS.md.in");
    t << "# report\n\n@@grid tiny@@\n\n@@claims tiny@@\n\n@@baseline tiny@@\n";
  }
  const std::string cmd = "/usr/bin/python3 " + kSource + "/tools/results_report.py --results " + dir + "/res --out " +
                          dir + "/RESULTS.md --img " + dir + "/img";
  ASSERT_EQ(shell(cmd + " >" + dir + "/log 2>&1"), 0) << "see " << dir << "/log";
  std::ifstream in(dir + "/RESULTS.md");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("@@"), std::string::npos) << text;
  EXPECT_NE(text.find("| ada-snapkv |  | 100 | 100 |"), std::string::npos) << text;
  EXPECT_NE(text.find("| snapkv |  | 0 | 0 |"), std::string::npos) << text;
  EXPECT_NE(text.find("| Ada-KV head budgets beat SnapKV's uniform ones | extraction (NIAH/RULER) | aware | +100.0 [+100.0, +100.0] | 12/0/0 | "
                      "**confirmed** |"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("| Ada-KV head budgets beat SnapKV's uniform ones | extraction (NIAH/RULER) | agnostic | +0.0 [+0.0, +0.0] | 0/0/12 | "
                      "not measurable"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("no baseline results yet"), std::string::npos) << text;
  {
    std::ofstream t(dir + "/res/RESULTS.md.in");
    t << "@@nonsense tiny@@\n";
  }
  EXPECT_NE(shell(cmd + " >/dev/null 2>&1"), 0) << "an unknown placeholder is an error";
}
