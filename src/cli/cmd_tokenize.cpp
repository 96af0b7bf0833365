// kvsqueeze tokenize: token ids of a text, as a JSON array.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/common.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

void add_tokenize_command(CLI::App& app) {
  struct Opts {
    std::string model, text, file;
    bool no_bos = false, no_parse_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  add_model_option(cmd, o->model, "GGUF model (or vocabulary-only GGUF) file")->required();
  cmd->add_option("-p,--prompt", o->text, "text to tokenize");
  cmd->add_option("-f,--file", o->file, "file with the text to tokenize");
  cmd->add_flag("--no-bos", o->no_bos, "do not add the BOS token");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "treat special-token text such as <|im_start|> as plain text");
  cmd->callback([o] {
    const std::string text = read_prompt(o->text, o->file);
    GgufFile f(o->model);  // the tokenizer alone: vocabulary-only files work too
    auto tok = Tokenizer::from_gguf(f);
    fmt::print("[{}]\n", fmt::join(tok->encode(text, !o->no_bos, !o->no_parse_special), ", "));
  });
}

}  // namespace kvsqueeze
