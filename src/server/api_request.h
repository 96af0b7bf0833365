// The JSON bodies of the OpenAI-style endpoints, parsed and checked. Every problem is an
// ApiError carrying the HTTP status and the message the client gets back.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.h"
#include "runtime/chat_template.h"

namespace kvsqueeze {

struct ApiError : std::runtime_error {
  ApiError(int status_code, std::string error_type, const std::string& message, std::string parameter = "")
      : std::runtime_error(message), status(status_code), type(std::move(error_type)), param(std::move(parameter)) {}
  int status;
  std::string type;   // invalid_request_error, authentication_error, not_found_error, ...
  std::string param;  // the offending field, when there is one
  // {"error": {"message", "type", "param", "code"}}
  nlohmann::json body() const;
};

// "kv_press": {"preset", "budget", "ratio", "window", "alpha", "question_agnostic"}.
struct PressRequest {
  std::string preset = "none";
  int64_t budget = 0;
  double ratio = 0;
  int64_t window = 32;
  double alpha = 0.2;
  bool question_agnostic = false;
};

struct CompletionRequest {
  bool chat = false;
  std::string prompt;                      // completions: the prompt text
  std::vector<int32_t> prompt_ids;         // completions: or token ids
  std::vector<ChatMessage> messages;       // chat
  std::string question;                    // completions: read after the prompt was compressed alone
  std::string context_id;                  // completions: the prompt is read against this saved context
  // completions: special-token spellings in prompt and question become their tokens
  // (default: plain text, so a user cannot type control tokens such as "</s>")
  bool parse_special = false;
  bool ignore_eos = false;  // generate max_tokens even past end-of-generation tokens (benchmarks)
  int max_tokens = 16;
  SamplerOptions sampling;
  bool stream = false;
  bool include_usage_in_stream = false;    // stream_options.include_usage
  std::vector<std::string> stop;
  std::optional<PressRequest> press;       // absent: the server's default press
};

// Parses a /v1/completions (chat = false) or /v1/chat/completions body.
CompletionRequest parse_completion_request(const nlohmann::json& body, bool chat);
// "kv_press" object (also used by /v1/contexts).
PressRequest parse_press_request(const nlohmann::json& j);

// Context ids are what the server makes or a client may choose: 1-64 of [A-Za-z0-9_-]
// (they name files in --context-dir).
bool valid_context_id(const std::string& id);

// POST /v1/contexts: {"text", "kv_press", "persist", "id"}.
struct ContextRequest {
  std::string text;
  std::optional<PressRequest> press;
  bool persist = false;
  std::string id;  // empty: the server makes one
};
ContextRequest parse_context_request(const nlohmann::json& body);

}  // namespace kvsqueeze
