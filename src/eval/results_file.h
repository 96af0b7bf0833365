// The results of `eval` as JSON lines, appended one run at a time and flushed, so an
// interrupted grid keeps everything it finished and a rerun skips it.
#pragma once

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvsqueeze::eval {

class ResultsFile {
 public:
  // Opens (creating) the file and reads the runs already in it. A last line cut short by
  // an interrupted run is removed; any other malformed line is an error.
  explicit ResultsFile(const std::string& path);
  ~ResultsFile();
  ResultsFile(const ResultsFile&) = delete;
  ResultsFile& operator=(const ResultsFile&) = delete;

  // What identifies a run: model, task, subtask, sample, preset, budget, ratio, mode and
  // the press options that change results.
  static std::string key_of(const nlohmann::json& record);
  bool has(const std::string& key) const { return keys_.count(key) > 0; }
  void append(const nlohmann::json& record);
  const std::vector<nlohmann::json>& records() const { return records_; }

 private:
  std::string path_;
  std::FILE* out_ = nullptr;
  std::set<std::string> keys_;
  std::vector<nlohmann::json> records_;
};

}  // namespace kvsqueeze::eval
