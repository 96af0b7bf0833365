// kvsqueeze logits: the logits after every position of a list of ids, as raw float32;
// optionally with the first N ids compressed and the rest teacher-forced against them.
#include <cstdio>

#include <fmt/format.h>

#include "cache/kv_cache.h"
#include "cli/common.h"
#include "cli/press_cli.h"
#include "model/model.h"

namespace kvsqueeze {

void add_logits_command(CLI::App& app) {
  struct Opts {
    std::string model, ids, ids_file, out;
    int threads = 0;
    int64_t compress_at = 0;
    PressOptions press;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("logits", "Run token ids as one prompt and write the logits of every position "
                                           "(float32 little-endian, [n_ids][n_vocab])");
  add_model_option(cmd, o->model, "model")->required();
  cmd->add_option("--ids", o->ids, "comma-separated token ids");
  cmd->add_option("--ids-file", o->ids_file, "file with token ids (comma or whitespace separated)");
  cmd->add_option("--out", o->out, "output file")->required();
  cmd->add_option("--compress-at", o->compress_at,
                  "the first N ids are the prompt the press compresses; the rest are fed one by one against it")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  add_press_options(cmd, o->press);
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    if (o->ids.empty() == o->ids_file.empty()) throw std::invalid_argument("give exactly one of --ids or --ids-file");
    const std::vector<int32_t> ids = parse_ids(o->ids.empty() ? read_file(o->ids_file) : o->ids);
    auto press = o->press.make_press();
    if (press && o->compress_at == 0) throw std::invalid_argument("--press needs --compress-at N (the prompt length)");
    if (o->compress_at > static_cast<int64_t>(ids.size()))
      throw std::invalid_argument(fmt::format("--compress-at {} is past the {} ids", o->compress_at, ids.size()));
    auto model = Model::load(o->model);
    const int64_t vocab = model->config().vocab;
    KvCache cache = model->make_cache(kv_type_from_name(o->press.kv_type));
    std::vector<float> logits(ids.size() * static_cast<size_t>(vocab));
    const int64_t head = o->compress_at > 0 ? o->compress_at : static_cast<int64_t>(ids.size());
    model->forward(cache, ids.data(), head, logits.data(), true, press.get());
    for (size_t i = static_cast<size_t>(head); i < ids.size(); ++i)
      model->forward(cache, &ids[i], 1, logits.data() + i * static_cast<size_t>(vocab), false);
    std::FILE* f = std::fopen(o->out.c_str(), "wb");
    if (!f) throw std::runtime_error(fmt::format("cannot create '{}'", o->out));
    const size_t written = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
    if (std::fclose(f) != 0 || written != logits.size()) throw std::runtime_error(fmt::format("writing '{}' failed", o->out));
    fmt::print(stderr, "wrote {} x {} logits to {}\n", ids.size(), vocab, o->out);
  });
}

}  // namespace kvsqueeze
