// Server counters in the Prometheus text exposition format (GET /metrics).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace kvsqueeze {

class Metrics {
 public:
  void request_done(const std::string& endpoint, int status, double seconds);
  void tokens(int64_t prompt, int64_t generated);
  // KV bytes a generation or saved context starts holding / stops holding, and what
  // compression evicted from it.
  void kv_acquired(int64_t bytes);
  void kv_released(int64_t bytes);
  void kv_evicted(int64_t bytes);
  void first_token(double seconds);
  // What the scheduler holds right now, rendered beside the counters.
  struct Live {
    int64_t running_sessions = 0, queued_sessions = 0;
    int64_t session_kv_bytes = 0;  // the running sessions' caches
    int64_t reserved_bytes = 0;    // memory admission has handed out
    int64_t decode_steps = 0, decode_rows = 0;
  };
  std::string render(const Live& live) const;

 private:
  static constexpr std::array<double, 11> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  struct Histogram {
    std::array<int64_t, kBuckets.size()> counts{};
    int64_t count = 0;
    double sum = 0;
    void observe(double v);
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram first_token_;
  int64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  int64_t kv_held_ = 0, kv_evicted_ = 0;  // kv_held_: saved contexts
};

}  // namespace kvsqueeze
