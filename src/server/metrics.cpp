#include "server/metrics.h"

#include <fmt/format.h>

namespace kvsqueeze {

void Metrics::Histogram::observe(double v) {
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (v <= kBuckets[i]) ++counts[i];
  ++count;
  sum += v;
}

void Metrics::request_done(const std::string& endpoint, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
  latency_[endpoint].observe(seconds);
}

void Metrics::tokens(int64_t prompt, int64_t generated) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += prompt;
  generated_tokens_ += generated;
}

void Metrics::kv_acquired(int64_t bytes) {
  std::lock_guard lock(mu_);
  kv_held_ += bytes;
}

void Metrics::kv_released(int64_t bytes) {
  std::lock_guard lock(mu_);
  kv_held_ -= bytes;
}

void Metrics::kv_evicted(int64_t bytes) {
  std::lock_guard lock(mu_);
  kv_evicted_ += bytes;
}

void Metrics::first_token(double seconds) {
  std::lock_guard lock(mu_);
  first_token_.observe(seconds);
}

namespace {
void histogram_lines(std::string& out, const std::string& name, const std::string& labels, const auto& h,
                     const auto& buckets) {
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < buckets.size(); ++i)
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, buckets[i], h.counts[i]);
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, h.count);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, h.sum, name, braces, h.count);
}
}  // namespace

std::string Metrics::render(const Live& live) const {
  std::lock_guard lock(mu_);
  std::string out;
  out += "# HELP kvsqueeze_requests_total HTTP requests answered, by endpoint and status.\n"
         "# TYPE kvsqueeze_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("kvsqueeze_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  out += fmt::format(
      "# HELP kvsqueeze_prompt_tokens_total Prompt tokens read.\n# TYPE kvsqueeze_prompt_tokens_total counter\n"
      "kvsqueeze_prompt_tokens_total {}\n"
      "# HELP kvsqueeze_generated_tokens_total Tokens generated.\n# TYPE kvsqueeze_generated_tokens_total counter\n"
      "kvsqueeze_generated_tokens_total {}\n"
      "# HELP kvsqueeze_kv_bytes_held KV cache bytes held by running generations and saved contexts.\n"
      "# TYPE kvsqueeze_kv_bytes_held gauge\nkvsqueeze_kv_bytes_held {}\n"
      "# HELP kvsqueeze_kv_bytes_evicted_total KV cache bytes compression released.\n"
      "# TYPE kvsqueeze_kv_bytes_evicted_total counter\nkvsqueeze_kv_bytes_evicted_total {}\n"
      "# HELP kvsqueeze_active_sessions Generations running now (reading their prompt or decoding).\n"
      "# TYPE kvsqueeze_active_sessions gauge\nkvsqueeze_active_sessions {}\n"
      "# HELP kvsqueeze_queued_sessions Generations waiting for a slot or for memory.\n"
      "# TYPE kvsqueeze_queued_sessions gauge\nkvsqueeze_queued_sessions {}\n"
      "# HELP kvsqueeze_reserved_bytes Memory admission has handed to running generations.\n"
      "# TYPE kvsqueeze_reserved_bytes gauge\nkvsqueeze_reserved_bytes {}\n"
      "# HELP kvsqueeze_decode_steps_total Batched decode steps (one pass over the weights each).\n"
      "# TYPE kvsqueeze_decode_steps_total counter\nkvsqueeze_decode_steps_total {}\n"
      "# HELP kvsqueeze_decode_rows_total Session tokens those steps decoded (rows / steps: the mean batch width).\n"
      "# TYPE kvsqueeze_decode_rows_total counter\nkvsqueeze_decode_rows_total {}\n",
      prompt_tokens_, generated_tokens_, kv_held_ + live.session_kv_bytes, kv_evicted_, live.running_sessions,
      live.queued_sessions, live.reserved_bytes, live.decode_steps, live.decode_rows);
  out += "# HELP kvsqueeze_request_duration_seconds Time to answer a request, by endpoint.\n"
         "# TYPE kvsqueeze_request_duration_seconds histogram\n";
  for (const auto& [endpoint, h] : latency_)
    histogram_lines(out, "kvsqueeze_request_duration_seconds", fmt::format("endpoint=\"{}\"", endpoint), h, kBuckets);
  out += "# HELP kvsqueeze_time_to_first_token_seconds From request to the first generated token.\n"
         "# TYPE kvsqueeze_time_to_first_token_seconds histogram\n";
  histogram_lines(out, "kvsqueeze_time_to_first_token_seconds", "", first_token_, kBuckets);
  return out;
}

}  // namespace kvsqueeze
