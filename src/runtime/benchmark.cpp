#include "runtime/benchmark.h"

#include <algorithm>
#include <functional>
#include <random>
#include <stdexcept>

#include "model/model.h"
#include "press/compression_press.h"
#include "runtime/generator.h"
#include "runtime/memory_stats.h"

namespace kvsqueeze {

std::vector<int32_t> random_tokens(const Model& model, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(model.config().vocab));
  return ids;
}

BenchResult run_bench(const Model& model, const std::vector<int32_t>& prompt, int decode, const PressConfig& press,
                      DType kv_type) {
  if (prompt.empty()) throw std::invalid_argument("a benchmark needs a prompt");
  reset_peak_resident();
  auto p = press.enabled() ? make_compression_press(press) : nullptr;
  BenchResult r;
  {
    Generator gen(model, nullptr, kv_type);
    std::vector<float> logits = gen.prefill(prompt, p.get());
    r.prompt_tokens = static_cast<int64_t>(prompt.size());
    r.prompt_tps = gen.stats().prompt_tps();
    r.compress_seconds = p ? p->seconds() : 0;
    r.kv_bytes = gen.cache().bytes_used();
    GenerationOptions opt;
    opt.n_predict = decode + 1;  // decode steps = tokens - 1: the last token needs no pass
    opt.stop_at_eog = false;
    if (decode > 0) {
      gen.decode(std::move(logits), opt);
      r.decode_tps = gen.stats().decode_tps();
    }
    r.peak_rss_bytes = peak_resident_bytes();
  }
  return r;
}

BenchResult median_result(const std::vector<BenchResult>& runs) {
  if (runs.empty()) throw std::invalid_argument("no runs to summarise");
  auto median = [&](const std::function<double(const BenchResult&)>& f) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(f(r));
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  BenchResult out;
  out.prompt_tokens = runs.front().prompt_tokens;
  out.prompt_tps = median([](const BenchResult& r) { return r.prompt_tps; });
  out.compress_seconds = median([](const BenchResult& r) { return r.compress_seconds; });
  out.decode_tps = median([](const BenchResult& r) { return r.decode_tps; });
  out.kv_bytes = static_cast<size_t>(median([](const BenchResult& r) { return static_cast<double>(r.kv_bytes); }));
  out.peak_rss_bytes = static_cast<size_t>(median([](const BenchResult& r) { return static_cast<double>(r.peak_rss_bytes); }));
  return out;
}

}  // namespace kvsqueeze
