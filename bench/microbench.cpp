// Google Benchmark microbenchmarks of every compute kernel, at every instruction set the
// CPU runs. Each reports GB/s (bytes the kernel must read) and GFLOP/s, and `of_bw`: its
// GB/s as a fraction of this machine's memory bandwidth, measured first (a streaming
// read of a buffer far larger than the caches).
//
//   build/release/bench/kvsqueeze_microbench [--benchmark_filter=matvec] [-t N via OMP_NUM_THREADS]
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "kernels/attention.h"
#include "kernels/flash_attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant_dot.h"
#include "tensor/cpu_features.h"
#include "tensor/huge_page_buffer.h"
#include "tensor/quant.h"

using namespace kvsqueeze;

namespace {

double g_bandwidth = 0;  // bytes/s, measured in main

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Streams 512 MiB of huge pages (as the weights lie) with all threads a few times and
// keeps the best rate.
double measure_bandwidth() {
  const size_t n = (size_t{512} << 20) / sizeof(int64_t);
  HugePageBuffer mem(n * sizeof(int64_t));
  auto* buf = reinterpret_cast<int64_t*>(mem.data());
  std::fill(buf, buf + n, 1);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (size_t i = 0; i < n; ++i) sum += buf[i];
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(sum);
    best = std::max(best, static_cast<double>(n * sizeof(int64_t)) / s);
  }
  return best;
}

// Rates from the loop's own wall time (the benchmarks use real time), so `of_bw` is a
// plain fraction rather than a per-second counter.
class Rates {
 public:
  Rates() : t0_(std::chrono::steady_clock::now()) {}
  void report(benchmark::State& state, double bytes, double flops) const {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double iters = static_cast<double>(state.iterations());
    state.counters["GB/s"] = bytes * iters / s / 1e9;
    state.counters["GFLOP/s"] = flops * iters / s / 1e9;
    state.counters["of_bw"] = bytes * iters / s / g_bandwidth;
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// Weights [rows x cols] of `type` times `tokens` activation rows: matrix-vector when
// tokens = 1 (decode), matrix-matrix otherwise (prompt).
void bm_matmul(benchmark::State& state, DType type, Isa isa, int64_t rows, int64_t cols, int64_t tokens,
               Columns columns) {
  IsaScope scope(isa);
  const auto wf = random_floats(static_cast<size_t>(rows * cols), 1);
  const int64_t rb = row_bytes(type, cols);
  HugePageBuffer w(static_cast<size_t>(rows * rb));  // where the engine keeps weights
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * cols, w.data() + r * rb, cols);
  const MatrixView mv{type, w.data(), rows, cols};
  const auto x = random_floats(static_cast<size_t>(tokens * cols), 2);
  std::vector<float> y(static_cast<size_t>(tokens * rows));
  const Rates rates;
  for (auto _ : state) {
    matmul(mv, x.data(), tokens, y.data(), columns);
    benchmark::DoNotOptimize(y.data());
  }
  rates.report(state, static_cast<double>(rows * rb), 2.0 * static_cast<double>(rows * cols * tokens));
}

// One decode step's attention: G query heads over `ctx` stored rows of one KV head.
void bm_attention(benchmark::State& state, DType kv_type, Isa isa, int64_t ctx) {
  IsaScope scope(isa);
  const int64_t hd = 64, G = 3;
  const auto kf = random_floats(static_cast<size_t>(ctx * hd), 3), vf = random_floats(static_cast<size_t>(ctx * hd), 4);
  const int64_t rb = row_bytes(kv_type, hd);
  std::vector<uint8_t> k(static_cast<size_t>(ctx * rb)), v(k.size());
  std::vector<int32_t> pos(static_cast<size_t>(ctx));
  for (int64_t r = 0; r < ctx; ++r) {
    quantize_row(kv_type, kf.data() + r * hd, k.data() + r * rb, hd);
    quantize_row(kv_type, vf.data() + r * hd, v.data() + r * rb, hd);
    pos[static_cast<size_t>(r)] = static_cast<int32_t>(r);
  }
  const RowsView view{kv_type, k.data(), v.data(), pos.data(), ctx, rb, rb};
  const auto q = random_floats(static_cast<size_t>(G * hd), 5);
  std::vector<float> out(static_cast<size_t>(G * hd)), scratch;
  const Rates rates;
  for (auto _ : state) {
    attend_group(q.data(), hd, G, &view, 1, hd, hd, static_cast<int32_t>(ctx), 0.125f, out.data(), hd, nullptr, scratch);
    benchmark::DoNotOptimize(out.data());
  }
  rates.report(state, 2.0 * static_cast<double>(ctx * rb), 4.0 * static_cast<double>(G * ctx * hd));
}

// A whole decode step's attention from memory: `layers` x 3 KV heads (SmolLM2-135M's
// shape: 9 query heads, head size 64) of `ctx` f16 rows each, every head in its own
// buffers as the cache keeps them, far larger than the caches when ctx is large. Each
// head's rows are split into parts over the threads and merged, as a decode step does.
void bm_attention_layers(benchmark::State& state, Isa isa, int64_t ctx, int layers, int64_t max_parts) {
  IsaScope scope(isa);
  const int64_t hd = 64, G = 3, heads = 3;
  const int64_t rb = row_bytes(DType::F16, hd);
  const auto f = random_floats(static_cast<size_t>(ctx * hd), 3);
  std::vector<uint8_t> encoded(static_cast<size_t>(ctx * rb));
  for (int64_t r = 0; r < ctx; ++r) quantize_row(DType::F16, f.data() + r * hd, encoded.data() + r * rb, hd);
  std::vector<int32_t> pos(static_cast<size_t>(ctx));
  for (int64_t r = 0; r < ctx; ++r) pos[static_cast<size_t>(r)] = static_cast<int32_t>(r);
  std::vector<HeadRows> rows(static_cast<size_t>(layers * heads));
  for (auto& h : rows) h.k = h.v = encoded;
  const int64_t n_parts = decode_part_count(ctx, kDecodePartRows, max_parts);
  const auto q = random_floats(static_cast<size_t>(heads * G * hd), 5);
  std::vector<float> part_out(static_cast<size_t>(heads * n_parts * G * hd)), lse(static_cast<size_t>(heads * n_parts * G));
  std::vector<float> out(static_cast<size_t>(heads * G * hd));
  const Rates rates;
  for (auto _ : state) {
    for (int l = 0; l < layers; ++l) {
#pragma omp parallel
      {
        std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < heads * n_parts; ++i) {
          const int64_t h = i / n_parts, part = i % n_parts;
          const int64_t b = decode_part_begin(part, n_parts, ctx), e = decode_part_begin(part + 1, n_parts, ctx);
          const HeadRows& hr = rows[static_cast<size_t>(l * heads + h)];
          const RowsView view{DType::F16, hr.k.data() + b * rb, hr.v.data() + b * rb, pos.data() + b, e - b, rb, rb};
          attend_group(q.data() + h * G * hd, hd, G, &view, 1, hd, hd, static_cast<int32_t>(ctx), 0.125f,
                       &part_out[static_cast<size_t>(i * G * hd)], hd, &lse[static_cast<size_t>(i * G)], scratch);
        }
#pragma omp for schedule(static)
        for (int64_t h = 0; h < heads; ++h)
          merge_attention(&part_out[static_cast<size_t>(h * n_parts * G * hd)], &lse[static_cast<size_t>(h * n_parts * G)],
                          static_cast<int>(n_parts), G, hd, &out[static_cast<size_t>(h * G * hd)], hd);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  rates.report(state, 2.0 * static_cast<double>(layers * heads * ctx * rb), 4.0 * static_cast<double>(layers * heads * G * ctx * hd));
}

// A prompt tile's attention: 32 query tokens (the last of ctx, SmolLM2's 3 query heads
// of 64 per KV head) against ctx f16 rows, as flash_attend takes them in a prefill.
void bm_flash(benchmark::State& state, Isa isa, int64_t ctx) {
  IsaScope scope(isa);
  const int64_t hd = 64, G = 3, nq = 32;
  const int64_t rb = row_bytes(DType::F16, hd);
  const auto kf = random_floats(static_cast<size_t>(ctx * hd), 3), vf = random_floats(static_cast<size_t>(ctx * hd), 4);
  std::vector<uint8_t> k(static_cast<size_t>(ctx * rb)), v(k.size());
  std::vector<int32_t> pos(static_cast<size_t>(ctx)), q_pos(static_cast<size_t>(nq));
  for (int64_t r = 0; r < ctx; ++r) {
    quantize_row(DType::F16, kf.data() + r * hd, k.data() + r * rb, hd);
    quantize_row(DType::F16, vf.data() + r * hd, v.data() + r * rb, hd);
    pos[static_cast<size_t>(r)] = static_cast<int32_t>(r);
  }
  for (int64_t i = 0; i < nq; ++i) q_pos[static_cast<size_t>(i)] = static_cast<int32_t>(ctx - nq + i);
  const RowsView view{DType::F16, k.data(), v.data(), pos.data(), ctx, rb, rb};
  const auto q = random_floats(static_cast<size_t>(nq * G * hd), 5);
  std::vector<float> out(static_cast<size_t>(nq * G * hd));
  FlashScratch scratch;
  const Rates rates;
  for (auto _ : state) {
    flash_attend(q.data(), G * hd, G, nq, q_pos.data(), &view, 1, hd, hd, 0.125f, 0, out.data(), G * hd, scratch);
    benchmark::DoNotOptimize(out.data());
  }
  rates.report(state, 2.0 * static_cast<double>(ctx * rb), 4.0 * static_cast<double>(nq * G * ctx * hd));
}

void bm_dequantize(benchmark::State& state, DType type, Isa isa) {
  IsaScope scope(isa);
  const int64_t n = 256 * 64;
  const auto xf = random_floats(static_cast<size_t>(n), 6);
  std::vector<uint8_t> q(static_cast<size_t>(row_bytes(type, n)));
  quantize_row(type, xf.data(), q.data(), n);
  std::vector<float> out(static_cast<size_t>(n));
  const Rates rates;
  for (auto _ : state) {
    dequantize_row(type, q.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  rates.report(state, static_cast<double>(q.size()), static_cast<double>(n));
}

void bm_quantize_activations(benchmark::State& state, DType weight_type) {
  const int64_t n = 4096;
  const auto x = random_floats(static_cast<size_t>(n), 7);
  std::vector<uint8_t> out(static_cast<size_t>(act_row_bytes(weight_type, n)));
  const Rates rates;
  for (auto _ : state) {
    quantize_activations(weight_type, x.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  rates.report(state, static_cast<double>(n * 4), 3.0 * static_cast<double>(n));
}

void bm_rms_norm(benchmark::State& state) {
  const int64_t n = 4096;
  const auto x = random_floats(static_cast<size_t>(n), 8), w = random_floats(static_cast<size_t>(n), 9);
  std::vector<float> y(static_cast<size_t>(n));
  const Rates rates;
  for (auto _ : state) {
    rms_norm(x.data(), w.data(), y.data(), n, 1e-5f);
    benchmark::DoNotOptimize(y.data());
  }
  rates.report(state, static_cast<double>(n * 8), 4.0 * static_cast<double>(n));
}

void bm_rope(benchmark::State& state) {
  const int64_t hd = 128, heads = 32;
  std::vector<float> c(hd / 2), s(hd / 2);
  std::vector<double> freqs(hd / 2);
  rope_frequencies(hd, 10000.0f, nullptr, freqs.data());
  rope_angles_from(hd, 1000, freqs.data(), c.data(), s.data());
  auto v = random_floats(static_cast<size_t>(hd * heads), 10);
  const Rates rates;
  for (auto _ : state) {
    for (int64_t h = 0; h < heads; ++h) rope_apply(v.data() + h * hd, hd, true, c.data(), s.data());
    benchmark::DoNotOptimize(v.data());
  }
  rates.report(state, static_cast<double>(hd * heads * 4), 3.0 * static_cast<double>(hd * heads));
}

void bm_silu_mul(benchmark::State& state) {
  const int64_t n = 8192;
  const auto g0 = random_floats(static_cast<size_t>(n), 11), u = random_floats(static_cast<size_t>(n), 12);
  auto g = g0;
  const Rates rates;
  for (auto _ : state) {
    // Fresh gates each time: applied in place over and over they would decay to denormals.
    std::copy(g0.begin(), g0.end(), g.begin());
    silu_mul(g.data(), u.data(), n);
    benchmark::DoNotOptimize(g.data());
  }
  rates.report(state, static_cast<double>(n * 8), 5.0 * static_cast<double>(n));
}

void register_all() {
  const DType weight_types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                                DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (Isa isa : supported_isas()) {
    const std::string tag = isa_name(isa);
    for (DType t : weight_types) {
      const std::string name(dtype_name(t));
      // A 1536 x 2048 projection (both divisible by 256): decode, and a 256-token prompt tile.
      benchmark::RegisterBenchmark(("matvec/" + tag + "/" + name).c_str(), bm_matmul, t, isa, 1536, 2048, 1, Columns::Fastest)
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
      benchmark::RegisterBenchmark(("matmul256/" + tag + "/" + name).c_str(), bm_matmul, t, isa, 1536, 2048, 256, Columns::Fastest)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      // A decode batch of 8 and 16 sessions: each column as alone (what batching promises
      // today) against the fastest kernel for the width.
      for (int64_t b : {8, 16})
        for (Columns c : {Columns::AsAlone, Columns::Fastest})
          benchmark::RegisterBenchmark(("batch" + std::to_string(b) + "/" + tag + "/" + name +
                                        (c == Columns::AsAlone ? "/alone" : "/fastest")).c_str(),
                                       bm_matmul, t, isa, 1536, 2048, b, c)
              ->Unit(benchmark::kMicrosecond)->UseRealTime();
      // Gemma 3 270M's gate/up shape (2048 x 640, Q5_0 there): rows of only 20 blocks, in cache.
      if (t != DType::Q4_K && t != DType::Q5_K && t != DType::Q6_K)
        benchmark::RegisterBenchmark(("matvec_k640/" + tag + "/" + name).c_str(), bm_matmul, t, isa, 2048, 640, 1, Columns::Fastest)
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
      // Gemma 3 270M's output matrix (262144 x 640, Q8_0 there): 171 MiB, read from memory.
      if (t == DType::Q8_0 || t == DType::Q4_1 || t == DType::Q5_0)
        benchmark::RegisterBenchmark(("matvec_from_memory/" + tag + "/" + name).c_str(), bm_matmul, t, isa, 262144, 640, 1, Columns::Fastest)
            ->Unit(benchmark::kMillisecond)->UseRealTime();
      // smollm2-135m's gate/up shape (1536 x 576): short rows, where per-tile overheads show.
      if (t == DType::Q8_0)
        benchmark::RegisterBenchmark(("matmul256_k576/" + tag + "/" + name).c_str(), bm_matmul, t, isa, 1536, 576, 256, Columns::Fastest)
            ->Unit(benchmark::kMillisecond)->UseRealTime();
      if (t != DType::F32) benchmark::RegisterBenchmark(("dequantize/" + tag + "/" + name).c_str(), bm_dequantize, t, isa);
    }
    for (DType kv : {DType::F16, DType::Q8_0, DType::F32})
      for (int64_t ctx : {1024, 16384})
        benchmark::RegisterBenchmark(("attention_decode/" + tag + "/" + std::string(dtype_name(kv)) + "/" + std::to_string(ctx)).c_str(),
                                     bm_attention, kv, isa, ctx)
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("flash_attention/" + tag + "/F16/4096").c_str(), bm_flash, isa, 4096)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    // SmolLM2-135M's 30 layers at 16k tokens: 377 MB of f16 rows per step, read from
    // memory, each head's rows in the engine's parts (at most kDecodeMaxParts) and in the
    // 64 parts of 256 rows that an uncapped split makes.
    for (int64_t max_parts : {kDecodeMaxParts, int64_t{64}})
      benchmark::RegisterBenchmark(("attention_decode_model/" + tag + "/F16/16384/parts" + std::to_string(max_parts)).c_str(),
                                   bm_attention_layers, isa, 16384, 30, max_parts)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  benchmark::RegisterBenchmark("quantize_activations/32", bm_quantize_activations, DType::Q8_0);
  benchmark::RegisterBenchmark("quantize_activations/256", bm_quantize_activations, DType::Q4_K);
  benchmark::RegisterBenchmark("rms_norm", bm_rms_norm);
  benchmark::RegisterBenchmark("rope", bm_rope);
  benchmark::RegisterBenchmark("silu_mul", bm_silu_mul);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  g_bandwidth = measure_bandwidth();
  std::printf("memory bandwidth (streaming read, %d threads): %.1f GB/s; best instruction set: %s\n",
              omp_get_max_threads(), g_bandwidth / 1e9, isa_name(cpu_isa()));
  benchmark::AddCustomContext("memory_bandwidth_GBps", std::to_string(g_bandwidth / 1e9));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
