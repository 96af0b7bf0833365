// kvsqueeze serve: the OpenAI-compatible HTTP API (src/server) on one model.
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cli/common.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "server/api_key.h"
#include "server/server.h"
#include "cache/kv_cache.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

void add_serve_command(CLI::App& app) {
  struct Opts {
    std::string model, kv_type = "f16";
    ServerOptions server;
    int threads = 0;
    size_t max_body_mib = 8, context_memory_mib = 1024, max_memory_mib = 0;
    std::optional<std::string> api_key;
    std::string api_key_file;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("serve", "Serve an OpenAI-compatible HTTP API (completions, chat, per-request kv_press)");
  add_model_option(cmd, o->model, "model")->required();
  cmd->add_option("--host", o->server.host, "address to listen on");
  cmd->add_option("--port", o->server.port, "port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", o->server.parallel, "sessions decoded together: the batch width (more wait in the queue)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-context", o->server.max_context, "tokens per request, prompt and generation (default: the model's)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--default-press", o->server.default_press, "press for requests without kv_press");
  cmd->add_option("--default-budget", o->server.default_budget, "budget of the default press")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--api-key", o->api_key,
                  "require 'Authorization: Bearer KEY' on all but /health (visible to other users in ps: prefer "
                  "--api-key-file or KVSQUEEZE_API_KEY)");
  cmd->add_option("--api-key-file", o->api_key_file, "read the API key from the first line of this file");
  cmd->add_option("--kv-type", o->kv_type, "KV cache storage: f32 | f16 | q8_0")->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  cmd->add_option("--max-body-mib", o->max_body_mib, "largest request body accepted (MiB)")->check(CLI::Range(1, 1024));
  cmd->add_option("--request-timeout", o->server.request_timeout_seconds,
                  "seconds a request may take to arrive, head and body (slower clients get 408)")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--max-queue", o->server.max_queue, "requests that may wait for a slot; beyond them: 429")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--max-memory-mib", o->max_memory_mib,
                  "memory running generations may need together (MiB; default 3/4 of what is available); beyond: 429")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--context-memory-mib", o->context_memory_mib,
                  "saved contexts kept in memory (MiB); beyond it the least recently used go")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--context-dir", o->server.context_dir,
                  "directory where saved contexts can persist (\"persist\": true) and are found again after a restart");
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    set_threads(o->threads);
    const std::string api_key = resolve_api_key(o->api_key, o->api_key_file, std::getenv("KVSQUEEZE_API_KEY"));
    auto file = std::make_shared<const GgufFile>(o->model);
    const Model model(file);
    const auto tokenizer = Tokenizer::from_gguf(*file);
    ServerOptions so = o->server;
    so.api_key = api_key;
    so.kv_type = kv_type_from_name(o->kv_type);
    so.max_body_bytes = o->max_body_mib << 20;
    so.context_memory = o->context_memory_mib << 20;
    so.max_memory = o->max_memory_mib << 20;
    so.model_id = std::filesystem::path(o->model).filename().string();
    // SIGINT/SIGTERM stop the server cleanly: they are waited for on a thread of their own.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ApiServer server(model, *tokenizer, file->get_string_or("tokenizer.chat_template", ""), so);
    const int port = server.bind();
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      server.stop();
    });
    fmt::print(stderr, "kvsqueeze serving {} on http://{}:{} ({} parallel, default press {})\n", so.model_id, so.host, port,
               so.parallel, so.default_press);
    server.run();
    pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiter if the server stopped on its own
    waiter.join();
  });
}

}  // namespace kvsqueeze
