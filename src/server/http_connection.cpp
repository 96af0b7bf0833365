#include "server/http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace kvsqueeze {

namespace {

using Clock = std::chrono::steady_clock;

// What the request being answered on this thread asked of its connection.
thread_local bool t_deadline_passed = false;
thread_local bool t_close_after_answer = false;

// The longest a wait sleeps before looking whether the server is stopping.
constexpr std::chrono::milliseconds kStopCheck{100};

int milliseconds_until(Clock::time_point t) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

// poll() on one descriptor: > 0 ready, 0 timed out, < 0 failed.
int poll_one(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

void address_of(const sockaddr_storage& a, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    port = ntohs(v4.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    port = ntohs(v6.sin6_port);
  }
  ip = text;
}

enum class Head { Complete, Closed, TooLarge, TimedOut };

// One connection's bytes: what arrived and was not yet taken stays in `buf_`, across the
// requests of a kept-alive connection (cpp-httplib takes a request byte by byte and never
// past its end, so nothing it leaves belongs to anyone else).
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, const ConnectionLimits& limits, std::function<bool()> stopping)
      : fd_(fd), limits_(limits), stopping_(std::move(stopping)) {}

  // Waits (at most the idle timeout) for a request's first byte; false: close.
  bool await_request() {
    if (off_ < buf_.size()) return true;
    const auto until = Clock::now() + limits_.idle_timeout;
    return wait_until(POLLIN, until) > 0 && fill() > 0;
  }

  // Reads until the head ends (a line that is only CRLF after the request line), within
  // the limits; starts the request's deadline.
  Head read_head() {
    deadline_ = Clock::now() + limits_.request_deadline;
    t_deadline_passed = t_close_after_answer = false;
    size_t scanned = off_, lines = 0;
    for (;;) {
      for (size_t nl; (nl = buf_.find('\n', scanned)) != std::string::npos; scanned = nl + 1) {
        if (nl + 1 - off_ > limits_.max_head_bytes) return Head::TooLarge;
        if (lines > 0 && nl == scanned + 1 && buf_[scanned] == '\r') return Head::Complete;
        if (++lines > limits_.max_header_fields + 1) return Head::TooLarge;  // the request line is no field
      }
      if (buf_.size() - off_ > limits_.max_head_bytes) return Head::TooLarge;
      const int ready = await_bytes();
      if (ready == 0 && t_deadline_passed) return Head::TimedOut;
      if (ready <= 0 || fill() <= 0) return Head::Closed;
    }
  }

  // The request target as far as it arrived ("" when none).
  std::string path() const {
    const std::string_view line(buf_.data() + off_, std::min(buf_.size() - off_, size_t{2048}));
    const size_t start = line.find(' ');
    if (start == std::string_view::npos) return "";
    const size_t end = line.find_first_of(" ?\r\n", start + 1);
    return std::string(line.substr(start + 1, end == std::string_view::npos ? std::string_view::npos : end - start - 1));
  }

  // Answers with `status` and a JSON body, without waiting for what the client still
  // sends; then reads and drops a bounded amount of it, so that closing does not reset
  // the connection before the client has read the answer.
  void refuse(int status, const char* reason, const std::string& body) {
    const std::string answer = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", status,
        reason, body.size(), body);
    if (write(answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) return;
    ::shutdown(fd_, SHUT_WR);
    const auto until = Clock::now() + std::chrono::seconds(1);
    char sink[16384];
    for (size_t drained = 0; drained < (size_t{1} << 20) && wait_until(POLLIN, until) > 0;) {
      const ssize_t n = ::recv(fd_, sink, sizeof sink, 0);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
  }

  bool is_readable() const override {
    return off_ < buf_.size() || poll_one(fd_, POLLIN, static_cast<int>(limits_.io_timeout.count())) > 0;
  }

  bool is_writable() const override {
    if (poll_one(fd_, POLLOUT, static_cast<int>(limits_.io_timeout.count())) <= 0) return false;
    // Writable is also what a socket the client closed says: look for its end of file.
    if (poll_one(fd_, POLLIN, 0) == 0) return true;
    char b;
    return ::recv(fd_, &b, 1, MSG_PEEK) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (off_ == buf_.size()) {
      if (await_bytes() <= 0) return -1;
      const ssize_t n = fill();
      if (n <= 0) return n;
    }
    const size_t n = std::min(size, buf_.size() - off_);
    std::memcpy(ptr, buf_.data() + off_, n);
    off_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (poll_one(fd_, POLLOUT, static_cast<int>(limits_.io_timeout.count())) <= 0) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) address_of(a, ip, port);
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) address_of(a, ip, port);
  }

  socket_t socket() const override { return fd_; }

 private:
  // Waits in short slices, so that a stopping server is not held up: > 0 ready,
  // 0 timed out or stopping, < 0 failed.
  int wait_until(short events, Clock::time_point until) const {
    for (;;) {
      const int slice = std::min(milliseconds_until(until), static_cast<int>(kStopCheck.count()));
      const int r = poll_one(fd_, events, slice);
      if (r != 0 || stopping_() || Clock::now() >= until) return r;
    }
  }

  // Waits for more of the request: at most the I/O timeout, and never past the request's
  // deadline (then marked on the thread). As wait_until.
  int await_bytes() const {
    const int ready = wait_until(POLLIN, std::min(deadline_, Clock::now() + limits_.io_timeout));
    if (ready == 0 && Clock::now() >= deadline_) t_deadline_passed = true;
    return ready;
  }

  // Appends what the socket has (dropping what was taken first): bytes read, 0 at its
  // end, < 0 on an error.
  ssize_t fill() {
    if (off_ == buf_.size()) {
      buf_.clear();
      off_ = 0;
    }
    char chunk[16384];
    ssize_t n;
    do n = ::recv(fd_, chunk, sizeof chunk, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) buf_.append(chunk, static_cast<size_t>(n));
    return n;
  }

  int fd_;
  const ConnectionLimits& limits_;
  std::function<bool()> stopping_;
  std::string buf_;
  size_t off_ = 0;
  Clock::time_point deadline_ = Clock::time_point::max();
};

}  // namespace

GuardedHttpServer::GuardedHttpServer(ConnectionLimits limits, Refusal refusal)
    : limits_(limits), refusal_(std::move(refusal)) {}

bool GuardedHttpServer::request_deadline_passed() { return t_deadline_passed; }

void GuardedHttpServer::close_after_answer(httplib::Response& res) {
  res.set_header("Connection", "close");
  t_close_after_answer = true;
}

bool GuardedHttpServer::stopping() const { return svr_sock_ == INVALID_SOCKET; }

bool GuardedHttpServer::process_and_close_socket(socket_t sock) { return serve_connection(sock); }

bool GuardedHttpServer::serve_connection(socket_t sock) {
  ConnectionStream strm(sock, limits_, [this] { return stopping(); });
  bool ok = false;
  for (size_t left = keep_alive_max_count_; left > 0 && !stopping() && strm.await_request(); --left) {
    const Head head = strm.read_head();
    if (head == Head::Closed) break;
    if (head == Head::TooLarge) {
      strm.refuse(431, "Request Header Fields Too Large",
                  refusal_(431, strm.path(),
                           fmt::format("the request's head is over {} bytes or {} header fields", limits_.max_head_bytes,
                                       limits_.max_header_fields)));
      break;
    }
    if (head == Head::TimedOut) {
      strm.refuse(408, "Request Timeout",
                  refusal_(408, strm.path(),
                           fmt::format("the request's head did not arrive within {} s",
                                       std::chrono::duration<double>(limits_.request_deadline).count())));
      break;
    }
    bool closed = false;
    ok = process_request(strm, left == 1, closed, nullptr);
    if (!ok || closed || t_deadline_passed || t_close_after_answer) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace kvsqueeze
