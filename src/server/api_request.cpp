#include "server/api_request.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include <fmt/format.h>

namespace kvsqueeze {

nlohmann::json ApiError::body() const {
  nlohmann::json e = {{"message", what()}, {"type", type}, {"code", status}};
  e["param"] = param.empty() ? nlohmann::json() : nlohmann::json(param);
  return {{"error", e}};
}

namespace {

ApiError bad(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", message, param);
}

constexpr const char* kContextIdRule = "a context id is 1 to 64 of A-Z a-z 0-9 _ -";

// Typed field readers: absent (or null) keeps the default, a wrong type is a 400.
template <typename T>
bool read(const nlohmann::json& j, const char* key, T& out);

template <>
bool read(const nlohmann::json& j, const char* key, bool& out) {
  if (!j.contains(key) || j[key].is_null()) return false;
  if (!j[key].is_boolean()) throw bad(key, fmt::format("'{}' must be true or false", key));
  out = j[key].get<bool>();
  return true;
}

template <>
bool read(const nlohmann::json& j, const char* key, int64_t& out) {
  if (!j.contains(key) || j[key].is_null()) return false;
  const auto& v = j[key];
  // Whole numbers only, and within int64 (a float is cast only once it is known to fit).
  if (v.is_number_float()) {
    const double x = v.get<double>();
    if (std::fabs(x) >= 9.2e18) throw bad(key, fmt::format("'{}' is too large", key));
    if (x != std::trunc(x)) throw bad(key, fmt::format("'{}' must be an integer", key));
    out = static_cast<int64_t>(x);
    return true;
  }
  if (!v.is_number_integer()) throw bad(key, fmt::format("'{}' must be an integer", key));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    throw bad(key, fmt::format("'{}' is too large", key));
  out = v.get<int64_t>();
  return true;
}

template <>
bool read(const nlohmann::json& j, const char* key, double& out) {
  if (!j.contains(key) || j[key].is_null()) return false;
  if (!j[key].is_number()) throw bad(key, fmt::format("'{}' must be a number", key));
  out = j[key].get<double>();
  return true;
}

template <>
bool read(const nlohmann::json& j, const char* key, std::string& out) {
  if (!j.contains(key) || j[key].is_null()) return false;
  if (!j[key].is_string()) throw bad(key, fmt::format("'{}' must be a string", key));
  out = j[key].get<std::string>();
  return true;
}

void read_prompt(const nlohmann::json& body, CompletionRequest& r) {
  if (!body.contains("prompt") || body["prompt"].is_null()) throw bad("prompt", "'prompt' is required");
  const auto& p = body["prompt"];
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    for (const auto& id : p) {
      if (!id.is_number_integer()) throw bad("prompt", "a token-id prompt must hold only integers");
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v > INT32_MAX) throw bad("prompt", fmt::format("{} is not a token id", v));
      r.prompt_ids.push_back(static_cast<int32_t>(v));
    }
  } else if (p.is_array() && p.size() > 1) {
    throw bad("prompt", "one prompt per request (batches of prompts are not supported)");
  } else {
    throw bad("prompt", "'prompt' must be a string or an array of token ids");
  }
  if (r.prompt.empty() && r.prompt_ids.empty()) throw bad("prompt", "'prompt' is empty");
}

void read_messages(const nlohmann::json& body, CompletionRequest& r) {
  if (!body.contains("messages")) throw bad("messages", "'messages' is required");
  const auto& ms = body["messages"];
  if (!ms.is_array() || ms.empty()) throw bad("messages", "'messages' must be a non-empty array");
  for (const auto& m : ms) {
    if (!m.is_object()) throw bad("messages", "each message must be an object with 'role' and 'content'");
    ChatMessage msg;
    if (!read(m, "role", msg.role)) throw bad("messages", "each message needs a 'role'");
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      throw bad("messages", fmt::format("message role must be system, user or assistant, not '{}'", msg.role));
    const auto& c = m.contains("content") ? m["content"] : nlohmann::json();
    if (c.is_string()) {
      msg.content = c.get<std::string>();
    } else if (c.is_array()) {  // [{"type": "text", "text": ...}, ...]
      for (const auto& part : c) {
        if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
            !part["text"].is_string())
          throw bad("messages", "only text content parts are supported");
        msg.content += part["text"].get<std::string>();
      }
    } else {
      throw bad("messages", "each message needs a string 'content'");
    }
    r.messages.push_back(std::move(msg));
  }
}

}  // namespace

bool valid_context_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

PressRequest parse_press_request(const nlohmann::json& j) {
  if (!j.is_object()) throw bad("kv_press", "'kv_press' must be an object");
  static const char* const known[] = {"preset", "budget", "ratio", "window", "alpha", "question_agnostic"};
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) throw bad("kv_press." + key, fmt::format("unknown kv_press field '{}'", key));
  }
  PressRequest p;
  read(j, "preset", p.preset);
  read(j, "budget", p.budget);
  read(j, "ratio", p.ratio);
  read(j, "window", p.window);
  read(j, "alpha", p.alpha);
  read(j, "question_agnostic", p.question_agnostic);
  if (p.budget < 0) throw bad("kv_press.budget", "'budget' must be positive");
  if (p.window < 0) throw bad("kv_press.window", "'window' must not be negative");
  if (!(p.ratio >= 0 && p.ratio <= 1)) throw bad("kv_press.ratio", "'ratio' must be in [0, 1] (0: use the budget)");
  if (!(p.alpha >= 0 && p.alpha <= 1)) throw bad("kv_press.alpha", "'alpha' must be in [0, 1]");
  return p;
}

CompletionRequest parse_completion_request(const nlohmann::json& body, bool chat) {
  if (!body.is_object()) throw bad("", "the request body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  if (chat) read_messages(body, r);
  else read_prompt(body, r);
  std::string model;  // which model: ignored (one is served), but it must be a string
  read(body, "model", model);
  read(body, "question", r.question);
  if (read(body, "context_id", r.context_id) && !valid_context_id(r.context_id)) throw bad("context_id", kContextIdRule);
  if (chat && !r.context_id.empty()) throw bad("context_id", "'context_id' works with /v1/completions (the prompt is the question)");
  if (!r.context_id.empty() && !r.question.empty()) throw bad("question", "with 'context_id' the prompt is the question");
  int64_t max_tokens = chat ? -1 : 16;
  read(body, "max_tokens", max_tokens);  // both are checked; a chat's newer name wins
  if (chat) read(body, "max_completion_tokens", max_tokens);
  if (max_tokens < -1 || max_tokens > (1 << 24)) throw bad("max_tokens", "'max_tokens' must be between 0 and 16777216");
  r.max_tokens = static_cast<int>(max_tokens);  // -1: until the end of generation or the context
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0, seed = 0;
  read(body, "temperature", temperature);
  read(body, "top_p", top_p);
  read(body, "top_k", top_k);
  read(body, "seed", seed);
  if (temperature < 0 || temperature > 100) throw bad("temperature", "'temperature' must be between 0 and 100");
  if (!(top_p > 0 && top_p <= 1)) throw bad("top_p", "'top_p' must be in (0, 1]");
  if (top_k < 0) throw bad("top_k", "'top_k' must not be negative");
  r.sampling.greedy = temperature == 0;
  r.sampling.temperature = static_cast<float>(temperature);
  r.sampling.top_p = static_cast<float>(top_p);
  r.sampling.top_k = static_cast<int>(std::min<int64_t>(top_k, INT32_MAX));  // k >= the vocabulary: every token
  r.sampling.seed = static_cast<uint64_t>(seed);
  read(body, "stream", r.stream);
  read(body, "ignore_eos", r.ignore_eos);
  if (read(body, "parse_special", r.parse_special) && chat)
    throw bad("parse_special", "'parse_special' applies to /v1/completions; message contents are always plain text");
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    if (!body["stream_options"].is_object()) throw bad("stream_options", "'stream_options' must be an object");
    read(body["stream_options"], "include_usage", r.include_usage_in_stream);
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& s = body["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) throw bad("stop", "'stop' must be a string or an array of strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw bad("stop", "'stop' must be a string or an array of strings");
    }
    for (const auto& x : r.stop)
      if (x.empty()) throw bad("stop", "stop strings must not be empty");
  }
  int64_t n = 1;
  read(body, "n", n);
  if (n != 1) throw bad("n", "only n = 1 is supported");
  if (body.contains("kv_press") && !body["kv_press"].is_null()) r.press = parse_press_request(body["kv_press"]);
  if (!r.question.empty() && chat) throw bad("question", "'question' belongs to /v1/completions; in a chat the last user message is the question");
  return r;
}

ContextRequest parse_context_request(const nlohmann::json& body) {
  if (!body.is_object()) throw bad("", "the request body must be a JSON object");
  ContextRequest c;
  if (!read(body, "text", c.text)) read(body, "prompt", c.text);
  if (c.text.empty()) throw bad("text", "'text' (the context to compress and keep) is required");
  read(body, "persist", c.persist);
  if (read(body, "id", c.id) && !valid_context_id(c.id)) throw bad("id", kContextIdRule);
  if (body.contains("kv_press") && !body["kv_press"].is_null()) {
    c.press = parse_press_request(body["kv_press"]);
    if (c.press->question_agnostic) throw bad("kv_press.question_agnostic", "a saved context is always compressed without the question");
  }
  return c;
}

}  // namespace kvsqueeze
