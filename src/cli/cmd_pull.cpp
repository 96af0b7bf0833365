// kvsqueeze pull: download a GGUF from the Hugging Face hub (src/hub).
#include <cstdlib>

#include <fmt/format.h>

#include "cli/common.h"
#include "hub/pull.h"

namespace kvsqueeze {

void add_pull_command(CLI::App& app) {
  struct Opts {
    std::string spec;
    PullOptions pull;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("pull", "Download a GGUF model from the Hugging Face hub (resumable, sha256-checked)");
  cmd->add_option("repo", o->spec, "OWNER/NAME[:QUANT], e.g. bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")->required();
  cmd->add_option("-o,--out", o->pull.out_dir, "directory to write the file to");
  cmd->add_option("--revision", o->pull.revision, "branch, tag or commit");
  cmd->add_option("--base-url", o->pull.base_url, "hub address (a mirror, or a local server in tests)");
  cmd->add_flag("--no-progress", o->quiet, "no progress bar");
  cmd->callback([o] {
    PullOptions p = o->pull;
    p.progress = !o->quiet;
    while (!p.base_url.empty() && p.base_url.back() == '/') p.base_url.pop_back();
    if (const char* token = std::getenv("HF_TOKEN")) p.token = token;
    fmt::print("{}\n", pull_model(o->spec, p));
  });
}

}  // namespace kvsqueeze
