// kvsqueeze info: what a model file holds.
#include <map>

#include <fmt/format.h>

#include "cli/common.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print architecture, shapes, weight types, vocabulary and context of a model");
  auto path = std::make_shared<std::string>();
  add_model_option(cmd, *path, "model")->required();
  cmd->callback([path] {
    LoadedModel m = load_model(*path);
    const ModelConfig& c = m.model->config();
    const GgufFile& f = m.model->file();
    fmt::print("file:          {} (GGUF v{}, {:.2f} MiB)\n", f.path(), f.version(), static_cast<double>(f.file_size()) / (1 << 20));
    fmt::print("name:          {}\n", f.get_string_or("general.name", "(none)"));
    fmt::print("architecture:  {}\n", c.arch_name);
    fmt::print("layers:        {}\n", c.n_layer);
    fmt::print("embedding:     {}\n", c.dim);
    fmt::print("ffn:           {}\n", c.ffn);
    fmt::print("heads:         {} query, {} KV (group {}), head dim {} (value {})\n", c.n_head, c.n_head_kv, c.group(),
               c.head_dim, c.head_dim_v);
    fmt::print("rope:          {} style, base {}, {} rotated dims\n", c.rope_neox ? "neox (halves)" : "adjacent pairs",
               c.rope_base, c.n_rot);
    fmt::print("rms eps:       {}\n", c.rms_eps);
    fmt::print("context:       {}\n", c.context);
    fmt::print("vocab:         {} ({} tokenizer, pre '{}', bos {}, eos {}, add bos {})\n", c.vocab,
               m.tokenizer->model_name(), m.tokenizer->pre_name(), m.tokenizer->bos(), m.tokenizer->eos(),
               m.tokenizer->adds_bos());
    std::map<std::string, std::pair<int, int64_t>> types;
    for (const auto& t : f.tensors()) {
      auto& e = types[std::string(dtype_name(t.type))];
      e.first++;
      e.second += t.n_bytes;
    }
    fmt::print("weights:       {} tensors, {:.2f} MiB\n", f.tensors().size(), static_cast<double>(m.model->weight_bytes()) / (1 << 20));
    for (const auto& [name, e] : types)
      fmt::print("  {:<6} {:>4} tensors {:>10.2f} MiB\n", name, e.first, static_cast<double>(e.second) / (1 << 20));
    const auto global = static_cast<double>(c.press_layers.size());
    const double kv_per_token = global * c.n_head_kv * (c.head_dim + c.head_dim_v) * sizeof(float);
    fmt::print("KV cache:      {:.1f} KiB per token (f32) in {} layers\n", kv_per_token / 1024.0, c.press_layers.size());
    if (c.sliding_window > 0)
      fmt::print("sliding:       {} of {} layers see the last {} positions (RoPE base {}); their cache holds only those\n",
                 c.n_layer - static_cast<int>(c.press_layers.size()), c.n_layer, c.sliding_window, c.rope_base_sliding);
  });
}

}  // namespace kvsqueeze
