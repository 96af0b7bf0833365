// kvsqueeze convert llama2c: llama2.c checkpoint + tokenizer.bin -> GGUF.
// kvsqueeze convert dequantize: a GGUF with its matrices dequantized to F16 or F32.
#include <fmt/format.h>

#include "cli/common.h"
#include "gguf/dequantized_copy.h"
#include "gguf/gguf_file.h"
#include "gguf/llama2c.h"
#include "tensor/dtype.h"

namespace kvsqueeze {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert other model formats to GGUF");
  cmd->require_subcommand(1);
  struct Opts {
    std::string model, tokenizer, out, type = "f16";
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
  auto* deq = cmd->add_subcommand("dequantize", "Write a copy of a GGUF model with every matrix dequantized to F16 or F32");
  add_model_option(deq, o->model, "model to copy")->required();
  deq->add_option("--out", o->out, "GGUF file to write")->required();
  deq->add_option("--type", o->type, "matrix type of the copy: f16 | f32")->check(CLI::IsMember({"f16", "f32"}));
  deq->callback([o] {
    write_dequantized_copy(GgufFile(o->model), o->out, o->type == "f16" ? DType::F16 : DType::F32);
    fmt::print("wrote {}\n", o->out);
  });
}

}  // namespace kvsqueeze
