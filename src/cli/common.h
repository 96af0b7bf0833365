// Helpers shared by the subcommands: model loading, prompt input, thread count.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "runtime/loaded_model.h"

namespace kvsqueeze {

// Adds -m/--model: a GGUF path, or a short name of scripts/fetch_models.sh resolved to its
// cached file; anything else is refused with one message.
CLI::Option* add_model_option(CLI::App* cmd, std::string& path, const std::string& help);

// Text from -p, or the contents of -f; exactly one must be given.
std::string read_prompt(const std::string& text, const std::string& file);
std::string read_file(const std::string& path);
// Parses "1,2,3" (spaces allowed) into ids; throws on anything else.
std::vector<int32_t> parse_ids(const std::string& s);
void set_threads(int n);
// Adds -t/--threads bound to `threads`.
void add_threads_option(CLI::App* cmd, int& threads);

void add_info_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_make_model_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_pull_command(CLI::App& app);

}  // namespace kvsqueeze
