// kvsqueeze serve: an OpenAI-compatible HTTP API (cpp-httplib) over one loaded model,
// with KV-cache compression as a per-request option ("kv_press").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tensor/dtype.h"

namespace kvsqueeze {

class Model;
class Tokenizer;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (bind() returns it)
  int parallel = 2;                // generations admitted at once; more wait in a queue
  int max_queue = 64;              // waiting requests beyond this are refused with 429
  size_t max_memory = 0;           // bytes running generations may need together; 0: 3/4 of
                                   // the memory available at start. Beyond it: 429 (413 alone)
  int64_t max_context = 0;         // tokens per request (prompt + generation); 0: the model's
  std::string default_press = "none";
  int64_t default_budget = 0;
  std::string api_key;             // non-empty: every endpoint but /health wants "Bearer KEY"
  size_t max_body_bytes = 8u << 20;
  double request_timeout_seconds = 30;  // from a request's first byte to the last of its body
  DType kv_type = DType::F16;
  std::string model_id = "kvsqueeze";  // what /v1/models lists
  size_t context_memory = size_t{1} << 30;  // bytes of saved contexts kept in memory
  std::string context_dir;         // non-empty: saved contexts can persist here
};

class ApiServer {
 public:
  // `chat_template` is the GGUF's tokenizer.chat_template text ("" when it has none).
  ApiServer(const Model& model, const Tokenizer& tokenizer, const std::string& chat_template, ServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds the socket; returns the port. Throws std::runtime_error when it cannot.
  int bind();
  // Serves until stop() (from another thread or a signal handler's thread).
  void run();
  void stop();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace kvsqueeze
