// The connections of `kvsqueeze serve`. Debian's cpp-httplib (0.11) reads a request's
// head with no bound on the number of header fields, before any handler can refuse it,
// and times a slow client per read rather than per request, so a client that trickles
// bytes holds its connection forever. GuardedHttpServer keeps cpp-httplib's parsing,
// routing and answers but owns each connection's reads: a request's head is read whole,
// within limits, before cpp-httplib sees it, and head and body must arrive within one
// deadline.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

namespace kvsqueeze {

struct ConnectionLimits {
  size_t max_head_bytes = 32 * 1024;  // request line and header fields together
  size_t max_header_fields = 100;
  std::chrono::milliseconds request_deadline{30000};  // from a request's first byte to its body's last
  std::chrono::milliseconds idle_timeout{5000};       // a connection with no request this long is closed
  std::chrono::milliseconds io_timeout{5000};         // a read or write that makes no progress this long fails
};

class GuardedHttpServer : public httplib::Server {
 public:
  // The body (JSON) of an answer the guard gives itself (431, 408), and a place to count
  // it: status, the request's path as far as it arrived, a message for the client.
  using Refusal = std::function<std::string(int status, const std::string& path, const std::string& message)>;

  GuardedHttpServer(ConnectionLimits limits, Refusal refusal);

  // Serves one accepted connection until it ends, then closes it: what the pool runs for
  // each connection (public for the fuzz target, which hands it one end of a socket pair
  // on a bound server).
  bool serve_connection(socket_t sock);

  // Ends the connection after this answer (its "Connection: close"): for answers given
  // before the request's body was read, which must not be taken for the next request.
  static void close_after_answer(httplib::Response& res);

  // True on the thread answering a request whose body did not arrive before its deadline
  // (cpp-httplib then answers 400; the error handler makes it 408).
  static bool request_deadline_passed();

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool stopping() const;

  ConnectionLimits limits_;
  Refusal refusal_;
};

}  // namespace kvsqueeze
