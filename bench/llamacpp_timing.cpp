// The llama.cpp half of bench/vs_llamacpp.sh: times one prompt length on a GGUF the way
// `kvsqueeze bench` does (random token ids, the prompt in one call, then greedy one-token
// steps), with llama.cpp's default context settings. Prints one JSON record on stdout.
//
//   llamacpp_timing MODEL PROMPT_TOKENS DECODE_STEPS THREADS REPETITIONS BACKEND_DIR
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace {

size_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

void quiet_log(ggml_log_level, const char*, void*) {}

int fail(const char* what) {
  std::fprintf(stderr, "error: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) return fail("usage: llamacpp_timing MODEL PROMPT_TOKENS DECODE_STEPS THREADS REPETITIONS BACKEND_DIR");
  const char* model_path = argv[1];
  const int n_prompt = std::atoi(argv[2]), n_decode = std::atoi(argv[3]), n_threads = std::atoi(argv[4]),
            reps = std::atoi(argv[5]);
  if (n_prompt < 1 || n_decode < 0 || n_threads < 1 || reps < 1) return fail("bad numeric argument");

  llama_log_set(quiet_log, nullptr);
  ggml_backend_load_all_from_path(argv[6]);  // the CPU backend variant that fits this CPU
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(model_path, llama_model_default_params());
  if (!model) return fail("llama.cpp could not load the model");

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_prompt + n_decode + 16);
  cp.n_batch = static_cast<uint32_t>(n_prompt);  // the whole prompt in one call, as kvsqueeze reads it
  cp.n_threads = n_threads;
  cp.n_threads_batch = n_threads;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return fail("llama.cpp could not create a context");
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

  std::mt19937_64 rng(static_cast<uint64_t>(n_prompt));
  std::vector<llama_token> prompt(static_cast<size_t>(n_prompt));
  for (auto& t : prompt) t = static_cast<llama_token>(rng() % static_cast<uint64_t>(n_vocab));

  auto greedy = [&] {
    const float* logits = llama_get_logits_ith(ctx, -1);
    return static_cast<llama_token>(std::max_element(logits, logits + n_vocab) - logits);
  };
  // One run: clear the cache, read the prompt, decode. Returns {prompt s, decode s}.
  auto run = [&](int prompt_len, int decode_steps, double& prompt_s, double& decode_s) {
    llama_memory_clear(llama_get_memory(ctx), true);
    auto t0 = std::chrono::steady_clock::now();
    if (llama_decode(ctx, llama_batch_get_one(prompt.data(), prompt_len)) != 0) return false;
    prompt_s = seconds_since(t0);
    llama_token next = greedy();
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < decode_steps; ++i) {
      if (llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0) return false;
      next = greedy();
    }
    decode_s = seconds_since(t0);
    return true;
  };

  double ps = 0, ds = 0;
  if (!run(std::min(n_prompt, 64), 4, ps, ds)) return fail("llama_decode failed in the warm-up");
  std::vector<double> prompt_tps, decode_tps;
  for (int r = 0; r < reps; ++r) {
    if (!run(n_prompt, n_decode, ps, ds)) return fail("llama_decode failed");
    prompt_tps.push_back(n_prompt / ps);
    decode_tps.push_back(n_decode > 0 ? n_decode / ds : 0);
  }
  // llama.cpp reserves f16 K and V rows for the whole context up front.
  const size_t head_dim = static_cast<size_t>(llama_model_n_embd(model) / llama_model_n_head(model));
  const size_t kv_bytes = static_cast<size_t>(llama_n_ctx(ctx)) * static_cast<size_t>(llama_model_n_layer(model)) *
                          static_cast<size_t>(llama_model_n_head_kv(model)) * head_dim * 2 * sizeof(uint16_t);
  std::printf(
      "{\"engine\": \"llama.cpp\", \"preset\": \"none\", \"budget\": null, \"prompt_tokens\": %d, \"decode_tokens\": %d, "
      "\"prompt_tps\": %.3f, \"decode_tps\": %.3f, \"compress_seconds\": 0, \"kv_bytes\": %zu, "
      "\"peak_rss_bytes\": %zu, \"threads\": %d, \"repetitions\": %d}\n",
      n_prompt, n_decode, median(prompt_tps), median(decode_tps), kv_bytes, peak_rss_bytes(), n_threads,
      reps);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
