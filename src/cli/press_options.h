// Command-line options that choose and tune a compression press (shared by generate,
// logits and demo), and the report of what a press did.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "press/compression_press.h"
#include "press/decode_press.h"
#include "press/press_config.h"

namespace kvsqueeze {

class KvCache;

struct PressOptions {
  std::string preset = "none";
  int64_t budget = 0;
  double ratio = 0;
  int64_t window = 32;
  int pool_kernel = 7;
  std::string pool = "max";
  std::string gqa_reduce;  // empty: each preset's own reduction
  double alpha = 0.2;
  double pyramid_beta = 20;
  int skip_layers = 0;
  std::string kv_type = "f16";
  int64_t compress_every = 0;

  // The press these options describe (validated), or null for "none".
  std::unique_ptr<CompressionPress> make_press() const;
  // The decode-time press for --compress-every (null without it): heads keep the
  // budgets the prefill press gave them, or --budget each without one.
  std::unique_ptr<DecodePress> make_decode_press(const CompressionPress* prefill, int n_layer, int n_head_kv) const;
  PressConfig config(const std::string& preset_name) const;
};

void add_press_options(CLI::App* cmd, PressOptions& o);

// "layer 0: budget min/mean/max 40/64.0/90 ..." lines for each layer a press touched.
std::string budget_spread(const CompressionPress& press);
// Writes the kept positions of every (layer, KV head) as JSON (--dump-selection).
void dump_selection(const std::string& path, const std::string& preset, int64_t prompt_tokens, const KvCache& cache);

}  // namespace kvsqueeze
