#include "eval/results_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

namespace kvsqueeze::eval {

ResultsFile::ResultsFile(const std::string& path) : path_(path) {
  std::string text;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", path));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!text.empty() && text.back() != '\n') {
      // An interrupted write: drop the partial line so appends start on a fresh one.
      const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
      text.resize(keep);
      std::filesystem::resize_file(path, keep);
    }
  }
  size_t line_no = 0;
  for (size_t at = 0; at < text.size();) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error&) {
      throw std::invalid_argument(fmt::format("{}:{}: not a results line (malformed JSON)", path, line_no));
    }
    if (!j.is_object() || !j.contains("task") || !j.contains("preset") || !j.contains("score"))
      throw std::invalid_argument(fmt::format("{}:{}: not a results line (needs task, preset, score)", path, line_no));
    keys_.insert(key_of(j));
    records_.push_back(std::move(j));
  }
  out_ = std::fopen(path.c_str(), "ab");
  if (!out_) throw std::runtime_error(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
}

ResultsFile::~ResultsFile() {
  if (out_) std::fclose(out_);
}

std::string ResultsFile::key_of(const nlohmann::json& r) {
  std::string key;
  for (const char* f : {"model", "task", "subtask", "sample", "preset", "budget", "ratio", "question_agnostic",
                        "kv_type", "window", "alpha", "chat"})
    key += (r.contains(f) ? r[f].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : "-") + "|";
  return key;
}

void ResultsFile::append(const nlohmann::json& record) {
  // A generated answer can end inside a UTF-8 sequence: such bytes become U+FFFD.
  const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), out_) != line.size() || std::fflush(out_) != 0)
    throw std::runtime_error(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
  keys_.insert(key_of(record));
  records_.push_back(record);
}

}  // namespace kvsqueeze::eval
