// A press described by plain options (what the CLI's --press/--budget/... flags, the
// Python package's press objects and the HTTP API's kv_press all come down to), and the
// presses they make. Validation happens here, so every front end refuses an impossible
// setting with the same message.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "press/compression_press.h"
#include "press/decode_press.h"
#include "press/press_config.h"

namespace kvsqueeze {

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
  int sinks = 4;
  std::string kv_type = "f16";
  int64_t compress_every = 0;

  // The press these options describe (validated), or null for "none".
  std::unique_ptr<CompressionPress> make_press() const;
  // The decode-time press for --compress-every (null without it): heads keep the
  // budgets the prefill press gave them, or --budget each without one.
  std::unique_ptr<DecodePress> make_decode_press(const CompressionPress* prefill, int n_layer, int n_head_kv) const;
  PressConfig config(const std::string& preset_name) const;

 private:
  // The scoring options a prefill press and a decode-time press share (window, pooling,
  // GQA reduction, sinks), checked.
  void tune(PressConfig& c) const;
};

}  // namespace kvsqueeze
