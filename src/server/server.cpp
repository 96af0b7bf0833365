#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <numeric>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "press/compression_press.h"
#include "press/press_config.h"
#include "runtime/batch_scheduler.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "tensor/quant.h"
#include "server/api_request.h"
#include "runtime/chat_template.h"
#include "server/api_key.h"
#include "server/context_store.h"
#include "server/http_connection.h"
#include "server/metrics.h"
#include "server/openapi.h"
#include "server/stream_text.h"
#include "tokenizer/tokenizer.h"

namespace kvsqueeze {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kSpareConnections = 256;  // idle, slow or quick requests beside the generations

ConnectionLimits connection_limits(const ServerOptions& o) {
  ConnectionLimits l;
  l.request_deadline = std::chrono::milliseconds(static_cast<int64_t>(o.request_timeout_seconds * 1000));
  return l;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The metrics label of a request path: a route, or "unmatched" (clients must not be able
// to grow the metric set with made-up paths).
std::string endpoint_label(const std::string& path) {
  static const char* const routes[] = {"/health",         "/metrics",     "/openapi.json", "/v1/models",
                                       "/v1/completions", "/v1/contexts", "/v1/chat/completions"};
  for (const char* r : routes)
    if (path == r) return path;
  const size_t prefix = std::string_view("/v1/contexts/").size();
  if (path.rfind("/v1/contexts/", 0) == 0 && path.size() > prefix && path.find('/', prefix) == std::string::npos)
    return "/v1/contexts/{id}";
  return "unmatched";
}

// The methods cpp-httplib 0.11 parses; any other fails the request line.
constexpr const char* kKnownMethods = "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH, PRI";

// The methods a route answers (its Allow header), or null for a path that is no route.
const char* allowed_methods(const std::string& path) {
  const std::string route = endpoint_label(path);
  if (route == "/v1/completions" || route == "/v1/chat/completions") return "POST";
  if (route == "/v1/contexts") return "GET, HEAD, POST";
  if (route == "/v1/contexts/{id}") return "DELETE";
  if (route == "unmatched") return nullptr;
  return "GET, HEAD";
}

bool method_in(const std::string& method, const std::string& allowed) {
  for (size_t at = 0; at < allowed.size();) {
    const size_t end = std::min(allowed.find(", ", at), allowed.size());
    if (allowed.compare(at, end - at, method) == 0) return true;
    at = end + 2;
  }
  return false;
}

// MemAvailable from /proc/meminfo (0 when unreadable).
size_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

// What one generation may hold at its peak, while its prompt is read: the rows its cache
// keeps (a press's budget on the layers it compresses, the window on sliding layers,
// every row elsewhere) and room for n_new more, plus the layer-major pass's per-token
// buffers (hidden state, one layer's float K/V, queries), a prompt tile's activations
// and logits. Once the prompt is read, the scheduler lowers the reservation to what the
// cache really holds plus its room to grow.
size_t estimate_request_bytes(const ModelConfig& c, int64_t n_prompt, int64_t n_new, DType kv_type,
                              const PressConfig* press) {
  const auto row = [&](int64_t width) { return static_cast<size_t>(row_bytes(kv_type, width)); };
  const size_t kv_row = static_cast<size_t>(c.n_head_kv) * (row(c.head_dim) + row(c.head_dim_v) + sizeof(int32_t));
  int64_t rows = c.full_cache_rows(n_prompt);  // per KV head, over all layers
  if (press && press->enabled()) {
    const int64_t budget = press->budget > 0 ? press->budget
                                             : static_cast<int64_t>(std::ceil(press->ratio * static_cast<double>(n_prompt)));
    const auto pressed = static_cast<int64_t>(c.press_layers.size());
    rows -= pressed * (n_prompt - std::min(n_prompt, std::max(budget, press->window)));
  }
  rows += static_cast<int64_t>(c.n_layer) * n_new;
  const size_t kv_w = static_cast<size_t>(c.n_head_kv) * static_cast<size_t>(c.head_dim + c.head_dim_v);
  const size_t per_prompt_token = sizeof(float) * (static_cast<size_t>(c.dim) + kv_w + static_cast<size_t>(c.n_head * c.head_dim));
  const size_t tile = 256 * sizeof(float) * (3 * static_cast<size_t>(c.dim) + 2 * static_cast<size_t>(c.ffn) +
                                             2 * static_cast<size_t>(c.n_head * c.head_dim));
  return kv_row * static_cast<size_t>(rows) + per_prompt_token * static_cast<size_t>(n_prompt) + tile +
         static_cast<size_t>(c.vocab) * sizeof(float) * 2;
}

// A request checked and tokenized, ready to run.
struct Prepared {
  std::shared_ptr<const KvCache> base;  // a saved context to start from (copied), or null
  std::vector<int32_t> first;   // read first (compressed by the press)
  std::vector<int32_t> second;  // question-agnostic: read afterwards, uncompressed
  std::unique_ptr<CompressionPress> press;
  std::string preset = "none";
  GenerationOptions gen;
  std::vector<std::string> stop;
  int64_t prompt_tokens() const { return static_cast<int64_t>(first.size() + second.size()); }
  int64_t context_tokens = 0;  // tokens already in `base`
  size_t memory = 0;           // estimated peak bytes (admission control)
};

struct Outcome {
  std::string text;
  int64_t completion_tokens = 0;
  std::string finish_reason = "length";
  bool cancelled = false;
  size_t kv_uncompressed = 0, kv_after_prompt = 0, kv_end = 0;
  std::optional<int64_t> budget;  // the press's, when one compressed the prompt
  json layers = json::array();
};

struct StopGeneration {};

}  // namespace

struct ApiServer::State {
  State(const Model& m, const Tokenizer& t, const std::string& chat_text, ServerOptions o)
      : model(m), tok(t), opt(std::move(o)),
        memory_budget(opt.max_memory ? opt.max_memory : available_memory() / 4 * 3),
        scheduler(m, &t, SchedulerOptions{std::max(1, opt.parallel), opt.max_queue, memory_budget}),
        contexts(opt.context_memory, opt.context_dir, m.cache_identity(), metrics) {
    try {
      chat = chat_template_for(chat_text, t);
    } catch (const std::invalid_argument& e) {
      chat_error = e.what();
    }
    max_context = opt.max_context > 0 ? std::min<int64_t>(opt.max_context, m.config().context) : m.config().context;
  }

  const Model& model;
  const Tokenizer& tok;
  ServerOptions opt;
  std::optional<ChatTemplate> chat;
  std::string chat_error;
  int64_t max_context = 0;
  const std::string openapi_text = dump(openapi_json());  // a broken embedded document fails at start
  GuardedHttpServer http{connection_limits(opt), [this](int status, const std::string& path, const std::string& message) {
                           metrics.request_done(endpoint_label(path), status, 0);
                           return dump(ApiError(status, "invalid_request_error", message).body());
                         }};
  std::atomic<bool> run_started{false}, run_finished{false}, stop_requested{false};
  Metrics metrics;
  size_t memory_budget;
  BatchScheduler scheduler;  // every generation's compute, batched
  ContextStore contexts;
  int listen_socket = -1;  // the bound socket (set while binding)
  std::atomic<uint64_t> next_id{1};

  Prepared prepare(const CompletionRequest& r) {
    Prepared p;
    const PressRequest pr = r.press ? *r.press : PressRequest{opt.default_press, opt.default_budget};
    if (r.chat) {
      if (!chat) throw ApiError(400, "invalid_request_error", chat_error, "messages");
      // Markup special, message contents plain: no message can forge a turn.
      const std::vector<ChatPart> full = render_chat_parts(*chat, r.messages);
      if (pr.question_agnostic) {
        // The conversation before the last user message is the context, compressed alone.
        size_t last_user = r.messages.size();
        while (last_user > 0 && r.messages[last_user - 1].role != "user") --last_user;
        if (last_user <= 1)
          throw ApiError(400, "invalid_request_error", "question_agnostic needs messages before the last user message",
                         "kv_press.question_agnostic");
        const std::vector<ChatMessage> context(r.messages.begin(), r.messages.begin() + static_cast<long>(last_user - 1));
        const std::vector<ChatPart> prefix = render_chat_parts(*chat, context, false);
        // Rendering the first messages gives the first parts of rendering them all.
        for (size_t i = 0; i < prefix.size(); ++i)
          if (i >= full.size() || full[i].text != prefix[i].text) throw std::logic_error("chat rendering is not prefix-stable");
        p.first = encode_chat(tok, prefix, true);
        p.second = encode_chat(tok, std::vector<ChatPart>(full.begin() + static_cast<long>(prefix.size()), full.end()), false);
      } else {
        p.first = encode_chat(tok, full, true);
      }
    } else if (!r.context_id.empty()) {
      // A question against a saved context: read uncompressed after its cache.
      if (r.press) throw ApiError(400, "invalid_request_error", "kv_press applies when a context is saved, not to questions", "kv_press");
      const auto ctx = contexts.get(r.context_id);
      if (!ctx) throw ApiError(404, "not_found_error", fmt::format("no saved context '{}'", r.context_id), "context_id");
      p.base = ctx->cache;
      p.context_tokens = ctx->cache->next_pos();
      p.first = r.prompt_ids.empty() ? tok.encode(r.prompt, false, r.parse_special) : r.prompt_ids;
      for (int32_t id : p.first)
        if (id >= tok.n_vocab())
          throw ApiError(400, "invalid_request_error", fmt::format("token id {} is outside the vocabulary", id), "prompt");
    } else {
      if (!r.prompt_ids.empty()) {
        for (int32_t id : r.prompt_ids)
          if (id >= tok.n_vocab())
            throw ApiError(400, "invalid_request_error", fmt::format("token id {} is outside the vocabulary", id), "prompt");
        p.first = r.prompt_ids;
      } else {
        p.first = tok.encode(r.prompt, true, r.parse_special);
      }
      if (pr.question_agnostic && r.question.empty())
        throw ApiError(400, "invalid_request_error",
                       "question_agnostic compresses the prompt alone and then reads 'question': give a 'question'",
                       "question");
      if (!r.question.empty()) p.second = tok.encode(r.question, false, r.parse_special);
    }
    if (p.first.empty()) throw ApiError(400, "invalid_request_error", "the prompt tokenizes to nothing", r.chat ? "messages" : "prompt");
    const int64_t used = p.context_tokens + p.prompt_tokens();
    if (used >= max_context)
      throw ApiError(413, "context_length_exceeded",
                     fmt::format("the prompt has {} tokens; this server's context is {}", used, max_context));
    const int64_t room = max_context - used;
    p.gen.n_predict = static_cast<int>(r.max_tokens < 0 ? room : std::min<int64_t>(r.max_tokens, room));
    p.gen.sampling = r.sampling;
    p.gen.stop_at_eog = !r.ignore_eos;
    try {
      (void)Sampler(p.gen.sampling);  // refused now, not after a 200 went out
    } catch (const std::invalid_argument& e) {
      throw ApiError(400, "invalid_request_error", e.what());
    }
    p.stop = r.stop;
    if (!p.base) {
      p.press = make_press(pr);
      p.preset = pr.preset;
    }
    p.memory = estimate_request_bytes(model.config(), p.prompt_tokens(), p.gen.n_predict, opt.kv_type,
                                      p.press ? &p.press->config() : nullptr) +
               (p.base ? p.base->bytes_used() : 0);
    check_fits(p.memory);
    return p;
  }

  // A request that could never fit the memory budget is refused outright.
  void check_fits(size_t bytes) const {
    if (bytes > memory_budget)
      throw ApiError(413, "request_too_large",
                     fmt::format("this request may need {:.1f} MiB, more than the server allows ({:.1f} MiB): "
                                 "shorten the prompt or max_tokens",
                                 static_cast<double>(bytes) / (1 << 20), static_cast<double>(memory_budget) / (1 << 20)));
  }

  // Hands a job to the scheduler, where it waits for a slot and for memory; refused
  // (429) only when the queue is full.
  std::shared_ptr<BatchSession> submit(BatchJob job) {
    try {
      return scheduler.submit(std::move(job));
    } catch (const SchedulerFull&) {
      throw ApiError(429, "rate_limit_error", "the server is busy (its queue is full); retry later");
    }
  }

  std::shared_ptr<BatchSession> submit(Prepared& p) {
    BatchJob job;
    job.base = p.base;
    job.kv_type = opt.kv_type;
    job.first = p.first;
    job.second = p.second;
    job.press = std::move(p.press);
    job.gen = p.gen;
    job.prefill_bytes = p.memory;
    return submit(std::move(job));
  }

  Metrics::Live live() const {
    return {scheduler.running(),        scheduler.queued(),       scheduler.kv_bytes(),
            static_cast<int64_t>(scheduler.memory_in_use()), scheduler.decode_steps(), scheduler.decode_rows()};
  }

  static std::unique_ptr<CompressionPress> make_press(const PressRequest& pr) {
    PressConfig c;
    try {
      c = PressConfig::from_preset(pr.preset);
    } catch (const std::exception& e) {
      throw ApiError(400, "invalid_request_error", e.what(), "kv_press.preset");
    }
    if (!c.enabled()) return nullptr;
    c.budget = pr.budget;
    c.ratio = pr.ratio;
    c.window = pr.window;
    c.alpha = pr.alpha;
    try {
      c.validate();
      return make_compression_press(c);
    } catch (const std::exception& e) {
      throw ApiError(400, "invalid_request_error", e.what(), "kv_press");
    }
  }

  // Follows a submitted session to its end; emit(text) gets the text as it becomes final
  // and returns false once the client is gone (the session is then cancelled).
  Outcome run(BatchSession& session, const Prepared& p, const std::function<bool(const std::string&)>& emit) {
    const auto t0 = Clock::now();
    Outcome out;
    StreamText text(p.stop);
    // Whatever ends this (a stop string, a hang-up, an error), the session leaves the batch.
    struct Leave {
      BatchSession& s;
      ~Leave() { s.cancel(); }
    } leave{session};
    while (const std::optional<int32_t> id = session.next()) {
      if (out.completion_tokens == 0) metrics.first_token(seconds_since(t0));
      ++out.completion_tokens;
      if (p.gen.stop_at_eog && tok.is_end_of_generation(*id)) {
        out.finish_reason = "stop";
        break;
      }
      const std::string ready = text.add(tok.piece(*id));
      out.text += ready;
      if (!ready.empty() && !emit(ready)) {
        out.cancelled = true;
        break;
      }
      if (text.stopped()) {
        out.finish_reason = "stop";
        break;
      }
    }
    session.cancel();
    // Wait for the scheduler to let go of the session before reading its cache.
    while (session.next()) {
    }
    if (!out.cancelled) {
      const std::string rest = text.flush();
      out.text += rest;
      if (!rest.empty() && !emit(rest)) out.cancelled = true;
    }
    out.kv_uncompressed = session.stats().kv_bytes_uncompressed;
    out.kv_after_prompt = session.kv_after_prompt();
    out.kv_end = session.has_cache() ? session.cache().bytes_used() : 0;
    if (session.press()) {
      out.budget = session.press()->config().budget;
      if (session.has_cache())
        metrics.kv_evicted(static_cast<int64_t>(out.kv_uncompressed) - static_cast<int64_t>(out.kv_after_prompt));
    }
    metrics.tokens(p.prompt_tokens(), out.completion_tokens);
    out.layers = layer_budgets(session.press());
    return out;
  }

  // Per layer: the smallest, mean and largest head budget a press gave.
  static json layer_budgets(const CompressionPress* press) {
    json layers = json::array();
    if (!press) return layers;
    const auto& all = press->head_budgets();
    for (size_t l = 0; l < all.size(); ++l) {
      const auto& b = all[l];
      if (b.empty()) continue;
      const auto [lo, hi] = std::minmax_element(b.begin(), b.end());
      const double mean = static_cast<double>(std::accumulate(b.begin(), b.end(), int64_t{0})) / static_cast<double>(b.size());
      layers.push_back({{"layer", l}, {"min", *lo}, {"mean", mean}, {"max", *hi}});
    }
    return layers;
  }

  json usage(const Prepared& p, const Outcome& o) const {
    return {{"prompt_tokens", p.prompt_tokens()},
            {"completion_tokens", o.completion_tokens},
            {"total_tokens", p.prompt_tokens() + o.completion_tokens}};
  }

  json kv_report(const Prepared& p, const Outcome& o) const {
    if (p.base) return {{"context_bytes", p.base->bytes_used()}, {"bytes_end", o.kv_end}};
    json k = {{"preset", p.preset},
              {"bytes_before", o.kv_uncompressed},
              {"bytes_after", o.kv_after_prompt},
              {"bytes_end", o.kv_end}};
    if (o.budget) {
      k["budget"] = *o.budget;
      k["layers"] = o.layers;
    }
    return k;
  }

  std::string new_id(bool chat_request) { return fmt::format("{}-{}", chat_request ? "chatcmpl" : "cmpl", next_id++); }

  static int64_t unix_time() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  // One streamed or whole completion (both endpoints).
  // Sets `streamed` when the answer is a stream (which counts itself when it ends).
  void complete(const httplib::Request& req, httplib::Response& res, bool chat_request, const std::string& endpoint,
                Clock::time_point t0, bool& streamed) {
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::parse_error& e) {
      throw ApiError(400, "invalid_request_error", std::string("malformed JSON: ") + e.what());
    }
    const CompletionRequest r = parse_completion_request(body, chat_request);
    auto p = std::make_shared<Prepared>(prepare(r));
    const std::shared_ptr<BatchSession> session = submit(*p);
    const std::string id = new_id(chat_request);
    const int64_t created = unix_time();
    const std::string object = chat_request ? "chat.completion" : "text_completion";
    auto status = std::make_shared<int>(200);
    // Runs once when the response is finished or dropped (even if the client left before
    // the first byte): a session still waiting or running leaves the batch here.
    auto release = [this, session, status, endpoint, t0](bool success) {
      if (!success && *status == 200) *status = 499;
      session->cancel();
      metrics.request_done(endpoint, *status, seconds_since(t0));
    };
    streamed = true;
    if (!r.stream) {
      // The whole answer is one JSON document at the end. Whitespace may precede it, so
      // one space goes out per token: when the client has gone that write fails and the
      // generation stops, as it does for a stream.
      res.set_chunked_content_provider(
          "application/json",
          [this, p, session, id, created, chat_request, object, status](size_t, httplib::DataSink& sink) {
            json out;
            try {
              const Outcome o = run(*session, *p, [&](const std::string&) { return sink.is_writable() && sink.write(" ", 1); });
              if (o.cancelled) {
                *status = 499;
                sink.done();
                return true;
              }
              json choice = {{"index", 0}, {"finish_reason", o.finish_reason}};
              if (chat_request) choice["message"] = {{"role", "assistant"}, {"content", o.text}};
              else choice["text"] = o.text, choice["logprobs"] = nullptr;
              out = {{"id", id},       {"object", object},          {"created", created},
                     {"model", opt.model_id}, {"choices", json::array({choice})}, {"usage", usage(*p, o)},
                     {"kv_cache", kv_report(*p, o)}};
            } catch (const std::exception& e) {
              *status = 500;
              out = ApiError(500, "server_error", e.what()).body();
            }
            const std::string text = dump(out);
            sink.write(text.data(), text.size());
            sink.done();
            return true;
          },
          release);
      return;
    }
    const bool include_usage = r.include_usage_in_stream;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, p, session, id, created, chat_request, include_usage, status](size_t, httplib::DataSink& sink) {
          const std::string chunk_object = chat_request ? "chat.completion.chunk" : "text_completion";
          auto chunk = [&](const json& delta_or_text, const json& finish) {
            json choice = {{"index", 0}, {"finish_reason", finish}};
            if (chat_request) choice["delta"] = delta_or_text;
            else choice["text"] = delta_or_text;
            return json{{"id", id}, {"object", chunk_object}, {"created", created}, {"model", opt.model_id},
                        {"choices", json::array({choice})}};
          };
          auto send = [&](const json& j) {
            const std::string event = "data: " + dump(j) + "\n\n";
            return sink.is_writable() && sink.write(event.data(), event.size());
          };
          try {
            if (chat_request) send(chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr));
            Outcome o = run(*session, *p, [&](const std::string& piece) {
              return send(chunk(chat_request ? json{{"content", piece}} : json(piece), nullptr));
            });
            if (!o.cancelled) {
              json last = chunk(chat_request ? json::object() : json(""), o.finish_reason);
              last["usage"] = usage(*p, o);
              last["kv_cache"] = kv_report(*p, o);
              send(last);
              if (include_usage) {
                json u = {{"id", id}, {"object", chunk_object}, {"created", created}, {"model", opt.model_id},
                          {"choices", json::array()}, {"usage", usage(*p, o)}};
                send(u);
              }
              const std::string done = "data: [DONE]\n\n";
              if (sink.is_writable()) sink.write(done.data(), done.size());
            } else {
              *status = 499;  // the client closed the connection
            }
          } catch (const std::exception& e) {
            *status = 500;
            send(ApiError(500, "server_error", e.what()).body());
          }
          sink.done();
          return true;
        },
        release);
  }

  // POST /v1/contexts: read a text through a press once and keep its cache.
  void save_context(const httplib::Request& req, httplib::Response& res) {
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::parse_error& e) {
      throw ApiError(400, "invalid_request_error", std::string("malformed JSON: ") + e.what());
    }
    const ContextRequest cr = parse_context_request(body);
    if (cr.persist && opt.context_dir.empty())
      throw ApiError(400, "invalid_request_error", "this server has no --context-dir to persist to", "persist");
    const PressRequest pr = cr.press ? *cr.press : PressRequest{opt.default_press, opt.default_budget};
    const std::vector<int32_t> tokens = tok.encode(cr.text, true, false);  // a document: plain text
    if (static_cast<int64_t>(tokens.size()) >= max_context)
      throw ApiError(413, "context_length_exceeded",
                     fmt::format("the text has {} tokens; this server's context is {}", tokens.size(), max_context));
    auto press = make_press(pr);
    BatchJob job;
    job.kv_type = opt.kv_type;
    job.first = tokens;
    job.gen.n_predict = 0;  // read only: the cache is the result
    job.prefill_bytes = estimate_request_bytes(model.config(), static_cast<int64_t>(tokens.size()), 0, opt.kv_type,
                                               press ? &press->config() : nullptr);
    check_fits(job.prefill_bytes);
    job.press = std::move(press);
    const std::shared_ptr<BatchSession> session = submit(std::move(job));
    struct Leave {
      BatchSession& s;
      ~Leave() { s.cancel(); }
    } leave{*session};
    while (session->next()) {
    }
    SavedContext c;
    c.id = cr.id.empty() ? ContextStore::new_id() : cr.id;
    c.tokens = static_cast<int64_t>(tokens.size());
    c.created = unix_time();
    Prepared shape;
    shape.preset = pr.preset;
    Outcome o;
    o.kv_uncompressed = session->stats().kv_bytes_uncompressed;
    o.kv_after_prompt = o.kv_end = session->cache().bytes_used();
    if (session->press()) o.budget = session->press()->config().budget;
    o.layers = layer_budgets(session->press());
    c.kv_cache = kv_report(shape, o);
    c.kv_cache.erase("bytes_end");
    if (session->press()) metrics.kv_evicted(static_cast<int64_t>(o.kv_uncompressed) - static_cast<int64_t>(o.kv_after_prompt));
    metrics.tokens(c.tokens, 0);
    c.cache = std::make_shared<const KvCache>(std::move(session->cache()));
    contexts.add(c, cr.persist);
    c.persisted = cr.persist;
    res.set_content(dump(c.describe()), "application/json");
  }

  // Runs a handler, turning errors into JSON answers and counting the request.
  void guarded(const std::string& endpoint, httplib::Response& res, const std::function<void(Clock::time_point, bool&)>& fn) {
    const auto t0 = Clock::now();
    bool streamed = false;
    try {
      fn(t0, streamed);
    } catch (const ApiError& e) {
      res.status = e.status;
      res.set_content(dump(e.body()), "application/json");
    } catch (const std::invalid_argument& e) {
      res.status = 400;
      res.set_content(dump(ApiError(400, "invalid_request_error", e.what()).body()), "application/json");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(dump(ApiError(500, "server_error", e.what()).body()), "application/json");
    }
    if (!streamed) metrics.request_done(endpoint, res.status < 0 ? 200 : res.status, seconds_since(t0));
  }

  void routes() {
    http.set_payload_max_length(opt.max_body_bytes);
    // SO_REUSEADDR only: cpp-httplib's default SO_REUSEPORT would let a second server
    // share a port that is already in use instead of failing to start.
    http.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      listen_socket = sock;
    });
    // cpp-httplib gives each connection a pool thread for as long as it is open: a thread
    // per running generation, one per request allowed to wait (so that a full queue is
    // answered 429 by the session gate instead of piling up unseen in the pool's own
    // queue), and room for idle and slow connections. An idle one holds its thread at
    // most the idle timeout, a slow one the request deadline (http_connection.h).
    const size_t threads = static_cast<size_t>(opt.parallel) + static_cast<size_t>(opt.max_queue) + kSpareConnections;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    // Runs once the headers are read and before any body is: what is refused here costs
    // the server nothing but the headers.
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const auto refuse = [&](int status, const std::string& type, const std::string& message) {
        res.status = status;
        GuardedHttpServer::close_after_answer(res);  // the unread body must not be taken for the next request
        res.set_content(dump(ApiError(status, type, message).body()), "application/json");
        metrics.request_done(endpoint_label(req.path), status, 0);
        return httplib::Server::HandlerResponse::Handled;
      };
      // cpp-httplib 0.11 applies the body limit to Content-Length only: a chunked body
      // would be read whole, whatever its size, so bodies must say their length.
      if (req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos)
        return refuse(411, "invalid_request_error", "request bodies must have a Content-Length (chunked bodies are not accepted)");
      // The packaged (compiled) cpp-httplib reads form-encoded bodies under a fixed 8 KiB
      // limit of its own: say so, rather than a 413 that names --max-body-mib.
      if (req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0 &&
          std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) > 8192)
        return refuse(413, "invalid_request_error",
                      "form-encoded bodies are limited to 8 KiB: send JSON with 'Content-Type: application/json'");
      if (const char* allowed = allowed_methods(req.path); allowed && !method_in(req.method, allowed)) {
        res.set_header("Allow", allowed);
        return refuse(405, "invalid_request_error", fmt::format("{} answers {} only", endpoint_label(req.path), allowed));
      }
      if (req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      if (opt.api_key.empty() || same_key(req.get_header_value("Authorization"), "Bearer " + opt.api_key))
        return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      return refuse(401, "authentication_error", "missing or wrong API key (Authorization: Bearer KEY)");
    });
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      // The request's body may be unread (a request line that failed, a path with no
      // route): the connection must not read it as the next request.
      GuardedHttpServer::close_after_answer(res);
      // A method cpp-httplib does not know (QUERY, say) fails the request line, before the
      // path is read: HTTP's answer to a method a server does not recognise is 501.
      if (res.status == 400 && req.path.empty() && !req.method.empty() && !method_in(req.method, kKnownMethods))
        res.status = 501;
      if (GuardedHttpServer::request_deadline_passed()) res.status = 408;  // the body came too slowly
      std::string message = fmt::format("no such endpoint: {} {}", req.method, req.path);
      std::string type = "not_found_error";
      if (res.status == 413) {
        message = fmt::format("the request body is larger than {} bytes", opt.max_body_bytes);
        type = "invalid_request_error";
      } else if (res.status == 408) {
        message = fmt::format("the request's body did not arrive within {} s", opt.request_timeout_seconds);
        type = "invalid_request_error";
      } else if (res.status == 501) {
        message = fmt::format("the method {} is not implemented here", req.method);
        type = "invalid_request_error";
      } else if (res.status != 404) {
        message = fmt::format("HTTP {}", res.status);
        type = "invalid_request_error";
      }
      res.set_content(dump(ApiError(res.status, type, message).body()), "application/json");
      metrics.request_done(endpoint_label(req.path), res.status, 0);
    });
    http.Get("/health", [this](const httplib::Request& req, httplib::Response& res) {
      (void)req;
      guarded("/health", res, [&](Clock::time_point, bool&) { res.set_content(R"({"status":"ok"})", "application/json"); });
    });
    http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      (void)req;
      guarded("/v1/models", res, [&](Clock::time_point, bool&) {
        json m = {{"id", opt.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "kvsqueeze"}};
        m["meta"] = {{"context", max_context}, {"vocab", tok.n_vocab()},
                     {"chat_template", chat ? json(chat->name()) : json(nullptr)}};
        res.set_content(dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
      });
    });
    http.Get("/openapi.json", [this](const httplib::Request& req, httplib::Response& res) {
      (void)req;
      guarded("/openapi.json", res, [&](Clock::time_point, bool&) { res.set_content(openapi_text, "application/json"); });
    });
    http.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      (void)req;
      guarded("/metrics", res, [&](Clock::time_point, bool&) { res.set_content(metrics.render(live()), "text/plain; version=0.0.4"); });
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded("/v1/completions", res,
              [&](Clock::time_point t0, bool& streamed) { complete(req, res, false, "/v1/completions", t0, streamed); });
    });
    http.Post("/v1/contexts", [this](const httplib::Request& req, httplib::Response& res) {
      guarded("/v1/contexts", res, [&](Clock::time_point, bool&) { save_context(req, res); });
    });
    http.Get("/v1/contexts", [this](const httplib::Request& req, httplib::Response& res) {
      (void)req;
      guarded("/v1/contexts", res, [&](Clock::time_point, bool&) {
        json data = json::array();
        for (nlohmann::json& c : contexts.describe_all()) data.push_back(std::move(c));
        res.set_content(dump(json{{"object", "list"}, {"data", data}, {"memory_bytes", contexts.memory_bytes()}}),
                        "application/json");
      });
    });
    http.Delete(R"(/v1/contexts/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      guarded("/v1/contexts/{id}", res, [&](Clock::time_point, bool&) {
        const std::string id = req.matches[1];
        if (!contexts.remove(id)) throw ApiError(404, "not_found_error", fmt::format("no saved context '{}'", id), "id");
        res.set_content(dump(json{{"id", id}, {"object", "context.deleted"}, {"deleted", true}}), "application/json");
      });
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded("/v1/chat/completions", res, [&](Clock::time_point t0, bool& streamed) {
        complete(req, res, true, "/v1/chat/completions", t0, streamed);
      });
    });
  }
};

ApiServer::ApiServer(const Model& model, const Tokenizer& tokenizer, const std::string& chat_template, ServerOptions options)
    : s_(std::make_unique<State>(model, tokenizer, chat_template, std::move(options))) {
  if (s_->opt.parallel < 1) throw std::invalid_argument("--parallel must be at least 1");
  // A client that hangs up mid-stream must cost a failed write, not the process: this
  // cpp-httplib writes with plain send(), which raises SIGPIPE on a closed socket.
  std::signal(SIGPIPE, SIG_IGN);
  // The default press must be valid before anyone asks for it.
  State::make_press(PressRequest{s_->opt.default_press, s_->opt.default_budget});
  s_->routes();
}

ApiServer::~ApiServer() = default;

int ApiServer::bind() {
  const int port = s_->opt.port == 0 ? s_->http.bind_to_any_port(s_->opt.host)
                                     : (s_->http.bind_to_port(s_->opt.host, s_->opt.port) ? s_->opt.port : -1);
  if (port < 0) throw std::runtime_error(fmt::format("cannot listen on {}:{}", s_->opt.host, s_->opt.port));
  // cpp-httplib 0.11 listens with a backlog of 5: connections arriving faster than one
  // accept loop takes them had their SYNs dropped and waited seconds for a retry. Listening
  // again on the bound socket only raises the backlog.
  if (s_->listen_socket >= 0) ::listen(s_->listen_socket, SOMAXCONN);
  return port;
}

// httplib's stop() does nothing until listen has begun, so a stop that comes first would
// be lost and run() would serve forever. Each side announces itself before looking at
// the other (sequentially consistent atomics), so one of them always sees the other.
void ApiServer::run() {
  s_->run_started = true;
  if (s_->stop_requested) return;
  s_->http.listen_after_bind();
  s_->run_finished = true;
}

void ApiServer::stop() {
  s_->stop_requested = true;
  if (!s_->run_started) return;
  while (!s_->http.is_running() && !s_->run_finished) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s_->http.stop();
}

}  // namespace kvsqueeze
