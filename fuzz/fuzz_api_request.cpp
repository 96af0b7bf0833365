// Fuzz target: the JSON bodies `serve` parses (completions, chat, contexts, kv_press).
// Any bytes must parse or raise ApiError (the client's 400), nothing else.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "server/api_request.h"

using namespace kvsqueeze;

namespace {
template <typename F>
void expect_clean(F&& parse) {
  try {
    parse();
  } catch (const ApiError&) {
  }  // any other exception escapes: libFuzzer reports it as a crash
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json body = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;  // what serve answers "malformed JSON" before any parser runs
  expect_clean([&] { (void)parse_completion_request(body, false); });
  expect_clean([&] { (void)parse_completion_request(body, true); });
  expect_clean([&] { (void)parse_context_request(body); });
  if (body.is_object() && body.contains("kv_press")) expect_clean([&] { (void)parse_press_request(body["kv_press"]); });
  return 0;
}
