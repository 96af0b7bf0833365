// kvsqueeze convert llama2c: llama2.c checkpoint + tokenizer.bin -> GGUF.
#include <fmt/format.h>

#include "cli/common.h"
#include "gguf/llama2c.h"

namespace kvsqueeze {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert other model formats to GGUF");
  cmd->require_subcommand(1);
  struct Opts {
    std::string model, tokenizer, out;
  };
  auto o = std::make_shared<Opts>();
  auto* l2c = cmd->add_subcommand("llama2c", "Convert a llama2.c checkpoint (legacy format) and its tokenizer.bin");
  l2c->add_option("--model", o->model, "llama2.c checkpoint (.bin)")->required();
  l2c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer (.bin)")->required();
  l2c->add_option("--out", o->out, "GGUF file to write")->required();
  l2c->callback([o] {
    convert_llama2c(o->model, o->tokenizer, o->out);
    fmt::print("wrote {}\n", o->out);
  });
}

}  // namespace kvsqueeze
