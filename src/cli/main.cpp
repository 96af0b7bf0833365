// kvsqueeze: command-line front end. Each subcommand lives in its own cmd_*.cpp.
#include <omp.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "cli/common.h"
#include "tensor/cpu_features.h"
#include "gguf/gguf_file.h"
#include "model/known_models.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

CLI::Option* add_model_option(CLI::App* cmd, std::string& path, const std::string& help) {
  const CLI::Validator resolve(
      [](std::string& arg) {
        try {
          arg = resolve_model_path(arg);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      },
      "FILE|NAME");
  return cmd->add_option("-m,--model", path, help + " (a GGUF file, or the short name of a model scripts/fetch_models.sh fetched: smollm2-135m-instruct, gemma3-270m, qwen2.5-coder-0.5b-instruct, ...)")
      ->transform(resolve);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", path));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string read_prompt(const std::string& text, const std::string& file) {
  if (!text.empty() && !file.empty()) throw std::invalid_argument("give either -p or -f, not both");
  if (!file.empty()) return read_file(file);
  if (text.empty()) throw std::invalid_argument("a prompt is required (-p TEXT or -f FILE)");
  return text;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::string item;
  std::stringstream ss(s);
  while (std::getline(ss, item, ',')) {
    // Also accept whitespace-separated ids (and a JSON array's brackets) in a file.
    for (char& c : item)
      if (c == '[' || c == ']' || c == '\n' || c == '\t' || c == '\r') c = ' ';
    std::stringstream words(item);
    std::string w;
    while (words >> w) {
      size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(w, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != w.size() || v < INT32_MIN || v > INT32_MAX)
        throw std::invalid_argument(fmt::format("'{}' is not a token id", w));
      ids.push_back(static_cast<int32_t>(v));
    }
  }
  if (ids.empty()) throw std::invalid_argument("no token ids given");
  return ids;
}

void set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

void add_threads_option(CLI::App* cmd, int& threads) {
  cmd->add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::Range(1, 1024));
}

}  // namespace kvsqueeze

int main(int argc, char** argv) {
  CLI::App app{"kvsqueeze: LLM inference with a self-compressing KV cache"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvsqueeze 0.1.0");
  kvsqueeze::add_info_command(app);
  kvsqueeze::add_tokenize_command(app);
  kvsqueeze::add_logits_command(app);
  kvsqueeze::add_generate_command(app);
  kvsqueeze::add_convert_command(app);
  kvsqueeze::add_make_model_command(app);
  kvsqueeze::add_demo_command(app);
  kvsqueeze::add_eval_command(app);
  kvsqueeze::add_bench_command(app);
  kvsqueeze::add_serve_command(app);
  kvsqueeze::add_pull_command(app);
  try {
    kvsqueeze::active_isa();  // an unknown KVSQUEEZE_ISA is reported here, like any other error
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 reports a missing required option before an unknown one; the unknown
    // argument is the more useful message, so name it first.
    std::vector<std::string> unknown = app.remaining();
    for (const auto* sub : app.get_subcommands())
      for (const auto& r : sub->remaining()) unknown.push_back(r);
    if (!unknown.empty() && e.get_exit_code() != 0) {
      fmt::print(stderr, "error: unknown argument '{}' (see --help)\n", unknown.front());
      return 2;
    }
    if (dynamic_cast<const CLI::ValidationError*>(&e)) {  // e.g. -m naming neither a file nor a known model
      fmt::print(stderr, "error: {}\n", e.what());
      return 2;
    }
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
