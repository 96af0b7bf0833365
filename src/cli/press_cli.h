// The command-line flags that choose and tune a compression press (shared by generate,
// logits and demo), and the report of what a press did.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "press/press_options.h"

namespace kvsqueeze {

class KvCache;

void add_press_options(CLI::App* cmd, PressOptions& o);

// "layer 0: budget min/mean/max 40/64.0/90 ..." lines for each layer a press touched.
std::string budget_spread(const CompressionPress& press);
// Writes the kept positions of every (layer, KV head) as JSON (--dump-selection).
void dump_selection(const std::string& path, const std::string& preset, int64_t prompt_tokens, const KvCache& cache);

}  // namespace kvsqueeze
