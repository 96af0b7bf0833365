// What a client sends on a connection to `serve`: read by the connection guard
// (src/server/http_connection) and cpp-httplib's parser behind it, with a GET and a POST
// route. Every input must end the connection (no hang: the deadlines are short here)
// without a crash, a leak or a read out of bounds.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <thread>

#include "server/http_connection.h"

using namespace kvsqueeze;

namespace {

GuardedHttpServer& server() {
  static GuardedHttpServer* s = [] {
    ConnectionLimits limits;
    limits.request_deadline = std::chrono::milliseconds(500);
    limits.idle_timeout = std::chrono::milliseconds(50);
    limits.io_timeout = std::chrono::milliseconds(200);
    auto* g = new GuardedHttpServer(limits, [](int, const std::string&, const std::string& message) { return message; });
    g->set_payload_max_length(1 << 16);
    g->Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
    g->Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      if (req.body.size() % 7 == 3) GuardedHttpServer::close_after_answer(res);
      res.set_content(req.body, "application/octet-stream");
    });
    g->bind_to_any_port("127.0.0.1");  // a server that is not stopping (it never listens)
    return g;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  GuardedHttpServer& s = server();
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, ends) != 0) return 0;
  std::thread client([&] {
    for (size_t at = 0; at < size;) {
      const ssize_t n = send(ends[0], data + at, size - at, MSG_NOSIGNAL);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    shutdown(ends[0], SHUT_WR);
    char sink[4096];
    while (recv(ends[0], sink, sizeof sink, 0) > 0) {
    }
  });
  s.serve_connection(ends[1]);  // closes its end
  client.join();
  close(ends[0]);
  return 0;
}
