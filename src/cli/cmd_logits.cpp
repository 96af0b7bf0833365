// kvsqueeze logits: the logits after every position of a list of ids, as raw float32.
#include <cstdio>

#include <fmt/format.h>

#include "cache/kv_cache.h"
#include "cli/common.h"
#include "model/model.h"

namespace kvsqueeze {

void add_logits_command(CLI::App& app) {
  struct Opts {
    std::string model, ids, ids_file, out;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("logits", "Run token ids as one prompt and write the logits of every position "
                                           "(float32 little-endian, [n_ids][n_vocab])");
  cmd->add_option("-m,--model", o->model, "GGUF model file")->required();
  cmd->add_option("--ids", o->ids, "comma-separated token ids");
  cmd->add_option("--ids-file", o->ids_file, "file with token ids (comma or whitespace separated)");
  cmd->add_option("--out", o->out, "output file")->required();
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    if (o->ids.empty() == o->ids_file.empty()) throw std::invalid_argument("give exactly one of --ids or --ids-file");
    const std::vector<int32_t> ids = parse_ids(o->ids.empty() ? read_file(o->ids_file) : o->ids);
    auto model = Model::load(o->model);
    const int64_t vocab = model->config().vocab;
    KvCache cache = model->make_cache();
    std::vector<float> logits(ids.size() * static_cast<size_t>(vocab));
    // One forward call per 512 ids bounds activation memory; every row is kept.
    for (size_t i = 0; i < ids.size(); i += 512) {
      const size_t n = std::min<size_t>(512, ids.size() - i);
      model->forward(cache, ids.data() + i, static_cast<int64_t>(n), logits.data() + i * static_cast<size_t>(vocab), true);
    }
    std::FILE* f = std::fopen(o->out.c_str(), "wb");
    if (!f) throw std::runtime_error(fmt::format("cannot create '{}'", o->out));
    const size_t written = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
    if (std::fclose(f) != 0 || written != logits.size()) throw std::runtime_error(fmt::format("writing '{}' failed", o->out));
    fmt::print(stderr, "wrote {} x {} logits to {}\n", ids.size(), vocab, o->out);
  });
}

}  // namespace kvsqueeze
