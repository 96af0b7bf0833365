// The reference kvsqueeze is checked against (tests/test_real_models.cpp): llama.cpp,
// prebuilt (scripts/fetch_llamacpp.sh), driven through its C API on the same GGUF.
//
//   llamacpp_ref tokenize MODEL [--add-special] [--parse-special] [--nul-split] [FILE]
//       Token ids of the text in FILE (stdin when absent or "-"), space separated, one
//       line. With --nul-split the input holds several texts separated by NUL bytes and
//       each gets its own line.
//   llamacpp_ref logits MODEL IDS_FILE OUT_FILE
//       Teacher-forced: the ids as one batch, the logits of every row written as float32
//       little-endian [n_ids][n_vocab].
//   llamacpp_ref greedy MODEL IDS_FILE N [--gaps]
//       IDS_FILE holds one prompt per line; for each, N greedy ids on one line (the prompt
//       as one batch, then one token per step). --gaps adds a line per prompt with, for
//       each step, the top logit minus the runner-up.
//
// Options for every command: -t N (threads, default 1), --kv-type f16|f32 (default f16,
// llama.cpp's own default), --backends DIR (the folder of the CPU backend libraries).
// Bad input of any kind: one "error:" line on stderr and exit status 1.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace {

struct Options {
  std::string command;
  std::vector<std::string> args;  // positional, after the command
  int threads = 1;
  ggml_type kv_type = GGML_TYPE_F16;
  std::string backends = LLAMACPP_BACKEND_DIR;
  bool add_special = false, parse_special = false, nul_split = false, gaps = false;
};

constexpr const char* kUsage =
    "usage: llamacpp_ref tokenize MODEL [--add-special] [--parse-special] [--nul-split] [FILE] | "
    "logits MODEL IDS_FILE OUT_FILE | greedy MODEL IDS_FILE N [--gaps]; options: -t N, --kv-type f16|f32, "
    "--backends DIR";

int parse_int(std::string_view s, const char* what) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) throw std::invalid_argument(std::string("bad ") + what + " '" + std::string(s) + "'");
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  if (argc < 2) throw std::invalid_argument(kUsage);
  o.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("option " + std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "-t" || a == "--threads") {
      o.threads = parse_int(value(), "thread count");
      if (o.threads < 1) throw std::invalid_argument("the thread count must be at least 1");
    } else if (a == "--kv-type") {
      const std::string t = value();
      if (t == "f16") o.kv_type = GGML_TYPE_F16;
      else if (t == "f32") o.kv_type = GGML_TYPE_F32;
      else throw std::invalid_argument("unknown --kv-type '" + t + "' (f16 or f32)");
    } else if (a == "--backends") {
      o.backends = value();
    } else if (a == "--add-special") {
      o.add_special = true;
    } else if (a == "--parse-special") {
      o.parse_special = true;
    } else if (a == "--nul-split") {
      o.nul_split = true;
    } else if (a == "--gaps") {
      o.gaps = true;
    } else if (a.size() > 1 && a[0] == '-') {
      throw std::invalid_argument("unknown option '" + std::string(a) + "'");
    } else {
      o.args.emplace_back(a);
    }
  }
  return o;
}

std::string read_all(const std::string& path) {
  if (path == "-") return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path + "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Whitespace- or comma-separated ids, checked against the vocabulary.
std::vector<llama_token> parse_ids(const std::string& text, int n_vocab) {
  std::string spaced = text;
  std::replace(spaced.begin(), spaced.end(), ',', ' ');
  std::istringstream in(spaced);
  std::vector<llama_token> ids;
  for (std::string word; in >> word;) {
    const int id = parse_int(word, "token id");
    if (id < 0 || id >= n_vocab)
      throw std::invalid_argument("token id " + word + " is outside the vocabulary (" + std::to_string(n_vocab) + ")");
    ids.push_back(id);
  }
  return ids;
}

void quiet_log(ggml_log_level, const char*, void*) {}

// The model and (when asked for) a context, freed on every path out.
struct Engine {
  std::unique_ptr<llama_model, decltype(&llama_model_free)> model{nullptr, llama_model_free};
  std::unique_ptr<llama_context, decltype(&llama_free)> ctx{nullptr, llama_free};
  const llama_vocab* vocab = nullptr;
  int n_vocab = 0;

  Engine(const Options& o, const std::string& path, bool vocab_only) {
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = vocab_only;
    if (!vocab_only) ggml_backend_load_all_from_path(o.backends.c_str());  // the CPU variant that fits this CPU
    if (!std::ifstream(path)) throw std::runtime_error("cannot read model '" + path + "'");
    model.reset(llama_model_load_from_file(path.c_str(), mp));
    if (!model) throw std::runtime_error("llama.cpp could not load '" + path + "'");
    vocab = llama_model_get_vocab(model.get());
    n_vocab = llama_vocab_n_tokens(vocab);
  }

  // A context for up to n_ctx positions that takes `batch` tokens in one call.
  void make_context(const Options& o, int n_ctx, int batch) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_ctx);
    cp.n_batch = static_cast<uint32_t>(batch);
    cp.n_threads = o.threads;
    cp.n_threads_batch = o.threads;
    cp.type_k = o.kv_type;
    cp.type_v = o.kv_type;
    cp.no_perf = true;
    ctx.reset(llama_init_from_model(model.get(), cp));
    if (!ctx) throw std::runtime_error("llama.cpp could not create a context");
  }

  // Feeds ids at positions first.. in one llama_decode; logits for every row or the last.
  void decode(const std::vector<llama_token>& ids, int first, bool all_logits) {
    llama_batch b = llama_batch_init(static_cast<int32_t>(ids.size()), 0, 1);
    for (size_t i = 0; i < ids.size(); ++i) {
      b.token[i] = ids[i];
      b.pos[i] = first + static_cast<llama_pos>(i);
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = all_logits || i + 1 == ids.size();
    }
    b.n_tokens = static_cast<int32_t>(ids.size());
    const int rc = llama_decode(ctx.get(), b);
    llama_batch_free(b);
    if (rc != 0) throw std::runtime_error("llama_decode failed (" + std::to_string(rc) + ")");
  }
};

std::vector<llama_token> tokenize(const Engine& e, const std::string& text, const Options& o) {
  std::vector<llama_token> ids(text.size() + 8);
  auto run = [&] {
    return llama_tokenize(e.vocab, text.data(), static_cast<int32_t>(text.size()), ids.data(),
                          static_cast<int32_t>(ids.size()), o.add_special, o.parse_special);
  };
  int n = run();
  if (n < 0 && n != INT32_MIN) {  // too small: -n is the size it needs
    ids.resize(static_cast<size_t>(-n));
    n = run();
  }
  if (n < 0) throw std::runtime_error("llama_tokenize failed");
  ids.resize(static_cast<size_t>(n));
  return ids;
}

void print_ids(const std::vector<llama_token>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
}

void cmd_tokenize(const Options& o) {
  if (o.args.empty() || o.args.size() > 2) throw std::invalid_argument("tokenize needs MODEL [FILE]");
  const Engine e(o, o.args[0], /*vocab_only=*/true);
  const std::string input = read_all(o.args.size() == 2 ? o.args[1] : "-");
  if (!o.nul_split) return print_ids(tokenize(e, input, o));
  size_t start = 0;
  while (true) {
    const size_t end = input.find('\0', start);
    print_ids(tokenize(e, input.substr(start, end == std::string::npos ? std::string::npos : end - start), o));
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

void cmd_logits(const Options& o) {
  if (o.args.size() != 3) throw std::invalid_argument("logits needs MODEL IDS_FILE OUT_FILE");
  Engine e(o, o.args[0], false);
  const auto ids = parse_ids(read_all(o.args[1]), e.n_vocab);
  if (ids.empty()) throw std::invalid_argument("no token ids in '" + o.args[1] + "'");
  const int n = static_cast<int>(ids.size());
  e.make_context(o, n, n);
  e.decode(ids, 0, true);
  std::FILE* out = std::fopen(o.args[2].c_str(), "wb");
  if (!out) throw std::runtime_error("cannot create '" + o.args[2] + "'");
  bool ok = true;
  for (int i = 0; i < n && ok; ++i)
    ok = std::fwrite(llama_get_logits_ith(e.ctx.get(), i), sizeof(float), static_cast<size_t>(e.n_vocab), out) ==
         static_cast<size_t>(e.n_vocab);
  if (std::fclose(out) != 0 || !ok) throw std::runtime_error("writing '" + o.args[2] + "' failed");
}

void cmd_greedy(const Options& o) {
  if (o.args.size() != 3) throw std::invalid_argument("greedy needs MODEL IDS_FILE N");
  const int steps = parse_int(o.args[2], "step count");
  if (steps < 1) throw std::invalid_argument("the step count must be at least 1");
  Engine e(o, o.args[0], false);
  std::vector<std::vector<llama_token>> prompts;
  std::istringstream lines(read_all(o.args[1]));
  for (std::string line; std::getline(lines, line);)
    if (line.find_first_not_of(" \t\r,") != std::string::npos) prompts.push_back(parse_ids(line, e.n_vocab));
  if (prompts.empty()) throw std::invalid_argument("no prompts in '" + o.args[1] + "'");
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  e.make_context(o, static_cast<int>(longest) + steps, static_cast<int>(longest));
  for (const auto& prompt : prompts) {
    llama_memory_clear(llama_get_memory(e.ctx.get()), true);
    std::vector<llama_token> out;
    std::vector<float> gaps;
    std::vector<llama_token> next = prompt;
    int pos = 0;
    for (int s = 0; s < steps; ++s) {
      e.decode(next, pos, false);
      pos += static_cast<int>(next.size());
      const float* logits = llama_get_logits_ith(e.ctx.get(), -1);
      const auto best = static_cast<llama_token>(std::max_element(logits, logits + e.n_vocab) - logits);
      float runner_up = -INFINITY;
      for (int v = 0; v < e.n_vocab; ++v)
        if (v != best) runner_up = std::max(runner_up, logits[v]);
      out.push_back(best);
      gaps.push_back(logits[best] - runner_up);
      next = {best};
    }
    print_ids(out);
    if (o.gaps) {
      for (size_t i = 0; i < gaps.size(); ++i) std::printf(i ? " %.6g" : "%.6g", gaps[i]);
      std::printf("\n");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  llama_log_set(quiet_log, nullptr);
  try {
    const Options o = parse_options(argc, argv);
    llama_backend_init();
    if (o.command == "tokenize") cmd_tokenize(o);
    else if (o.command == "logits") cmd_logits(o);
    else if (o.command == "greedy") cmd_greedy(o);
    else throw std::invalid_argument("unknown command '" + o.command + "'; " + kUsage);
    llama_backend_free();
    return 0;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "error: %s\n", ex.what());
    return 1;
  }
}
