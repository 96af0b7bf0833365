// press_report: the two studies issue 3 asks for, printed as Markdown tables.
//   press_report kl MODEL IDS.json [BUDGET=64]        next-token KL vs the full cache
//   press_report needle MODEL FILLER.txt [BUDGET=192] [TRIALS=30] [TOKENS=1024]
// KL: the ids are the prompt; 100 continuation tokens (the full cache's greedy choice)
// are teacher-forced for every preset. Question-aware compresses the whole prompt;
// question-agnostic compresses all but its last 32 tokens, then reads those uncompressed.
// Needle: KJV filler with "The special magic number for WORD is NUMBER." at a random depth,
// then the query; recall = the greedy continuation starts with the number.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "press/compression_press.h"
#include "runtime/divergence.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"
#include "gguf/gguf_file.h"

using namespace kvsqueeze;

namespace {

const std::vector<std::string> kPresets{"none", "snapkv", "ada-snapkv", "pyramidkv", "ada-pyramidkv",
                                        "streamingllm", "criticalkv", "critical-ada-snapkv", "h2o", "tova", "knorm",
                                        "lava", "lava-heads", "lava-layers"};

std::unique_ptr<CompressionPress> make_press(const std::string& name, int64_t budget) {
  if (name == "none") return nullptr;
  PressConfig c = PressConfig::from_preset(name);
  c.budget = budget;
  return make_compression_press(c);
}

// Next-token logits along a teacher-forced continuation (first from the prompt).
std::vector<std::vector<float>> run(const Model& m, const std::vector<int32_t>& prompt, int64_t compress_len,
                                    const std::vector<int32_t>& cont, LayerPress* press) {
  Generator gen(m, nullptr, DType::F16);
  std::vector<int32_t> head(prompt.begin(), prompt.begin() + compress_len), tail(prompt.begin() + compress_len, prompt.end());
  std::vector<float> logits = gen.prefill(head, press);
  if (!tail.empty()) logits = gen.prefill(tail);
  std::vector<std::vector<float>> out{logits};
  for (size_t i = 0; i + 1 < cont.size(); ++i) {
    m.forward(gen.cache(), &cont[i], 1, logits.data(), false);
    out.push_back(logits);
  }
  return out;
}

int kl_report(const std::string& model_path, const std::string& ids_path, int64_t budget) {
  auto model = Model::load(model_path);
  std::ifstream in(ids_path);
  const auto ids = nlohmann::json::parse(in)["ids"].get<std::vector<int32_t>>();
  // Continuation: the full cache's greedy tokens.
  Generator full(*model, nullptr, DType::F16);
  GenerationOptions opt;
  opt.n_predict = 100;
  opt.stop_at_eog = false;
  const auto cont = full.generate(ids, opt);
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto ref = run(*model, ids, n, cont, nullptr);
  fmt::print("stories260K: prompt {} tokens, budget {} per head, mean next-token KL(full || press) over {} "
             "teacher-forced tokens\n\n| preset | question-aware | question-agnostic |\n|---|---:|---:|\n",
             n, budget, cont.size());
  for (const auto& name : kPresets) {
    double sums[2] = {0, 0};
    for (int mode = 0; mode < 2; ++mode) {
      auto press = make_press(name, budget);
      const auto got = run(*model, ids, mode == 0 ? n : n - 32, cont, press.get());
      for (size_t i = 0; i < got.size(); ++i) sums[mode] += next_token_kl(ref[i], got[i]) / static_cast<double>(got.size());
    }
    fmt::print("| {} | {:.4f} | {:.4f} |\n", name, sums[0], sums[1]);
  }
  return 0;
}

int needle_report(const std::string& model_path, const std::string& filler_path, int64_t budget, int trials,
                  int tokens) {
  auto file = std::make_shared<const GgufFile>(model_path);
  Model model(file);
  auto tok = Tokenizer::from_gguf(*file);
  std::ifstream in(filler_path);
  std::vector<std::string> verses;
  for (std::string line; std::getline(in, line);) {
    const size_t sp = line.find(' ');  // drop the "Ge1:1" reference
    if (sp != std::string::npos && sp + 1 < line.size()) verses.push_back(line.substr(sp + 1));
  }
  if (verses.size() < 100) throw std::runtime_error("filler file has too few lines");
  const std::vector<std::string> words{"apple", "river", "candle", "falcon", "garden", "lantern", "mirror", "orchard",
                                       "silver", "thunder", "violet", "willow", "harbor", "meadow", "copper", "ember"};
  std::mt19937 rng(2024);
  int hits[2][32] = {};
  for (int t = 0; t < trials; ++t) {
    const std::string word = words[rng() % words.size()];
    const std::string number = std::to_string(100000 + rng() % 9900000);
    const std::string needle = fmt::format(" The special magic number for {} is {}.", word, number);
    const std::string question = fmt::format(" What is the special magic number for {}? The special magic number for {} is", word, word);
    // Filler verses up to the token length, needle at a random depth.
    std::vector<std::string> parts;
    size_t at = rng() % verses.size();
    std::string text;
    const int target = tokens - static_cast<int>(tok->encode(needle + question, false, false).size()) - 2;
    while (static_cast<int>(tok->encode(text, true, false).size()) < target) {
      parts.push_back(" " + verses[at++ % verses.size()]);
      text += parts.back();
    }
    parts.pop_back();
    const size_t depth = rng() % (parts.size() + 1);
    parts.insert(parts.begin() + static_cast<long>(depth), needle);
    std::string context;
    for (const auto& p : parts) context += p;
    const auto ctx_ids = tok->encode(context, true, false);
    const auto q_ids = tok->encode(question, false, false);
    std::vector<int32_t> all = ctx_ids;
    all.insert(all.end(), q_ids.begin(), q_ids.end());
    for (size_t pi = 0; pi < kPresets.size(); ++pi)
      for (int mode = 0; mode < 2; ++mode) {
        auto press = make_press(kPresets[pi], budget);
        Generator gen(model, tok.get(), DType::F16);
        GenerationOptions opt;
        opt.n_predict = 10;
        opt.stop_at_eog = false;
        std::vector<float> logits;
        if (mode == 0) {
          logits = gen.prefill(all, press.get());
        } else {
          gen.prefill(ctx_ids, press.get());
          logits = gen.prefill(q_ids);
        }
        const std::string out = tok->decode(gen.decode(logits, opt));
        hits[mode][pi] += out.rfind(" " + number, 0) == 0;
      }
  }
  fmt::print("retrieval-1k: {} needles, ~{} tokens, budget {} per head: recall (%)\n\n"
             "| preset | question-aware | question-agnostic |\n|---|---:|---:|\n", trials, tokens, budget);
  for (size_t pi = 0; pi < kPresets.size(); ++pi)
    fmt::print("| {} | {:.0f} | {:.0f} |\n", kPresets[pi], 100.0 * hits[0][pi] / trials, 100.0 * hits[1][pi] / trials);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 4) {
      fmt::print(stderr, "usage: press_report kl MODEL IDS.json [BUDGET]\n"
                         "       press_report needle MODEL FILLER.txt [BUDGET] [TRIALS] [TOKENS]\n");
      return 2;
    }
    const std::string what = argv[1];
    if (what == "kl") return kl_report(argv[2], argv[3], argc > 4 ? std::stoll(argv[4]) : 64);
    if (what == "needle")
      return needle_report(argv[2], argv[3], argc > 4 ? std::stoll(argv[4]) : 192, argc > 5 ? std::stoi(argv[5]) : 30,
                           argc > 6 ? std::stoi(argv[6]) : 1024);
    fmt::print(stderr, "unknown report '{}'\n", what);
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
