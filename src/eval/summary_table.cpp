#include "eval/summary_table.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "eval/results_file.h"
#include "eval/runner.h"

namespace kvsqueeze::eval {
namespace {

using nlohmann::json;

std::string column_of(const json& r) {
  if (r["preset"] == "none") return "full";
  return r["budget"].is_null() ? fmt::format("r={}", r["ratio"].get<double>()) : std::to_string(r["budget"].get<int64_t>());
}

}  // namespace

void print_summary(const EvalOptions& o, const std::set<std::string>& wanted, const ResultsFile& results,
                   const std::string& key, const std::string& title) {
  const std::string model = std::filesystem::path(o.model_path).filename().string();
  std::vector<std::string> columns{"full"};
  for (auto b : o.budgets) columns.push_back(std::to_string(b));
  for (auto r : o.ratios) columns.push_back(fmt::format("r={}", r));
  std::map<std::pair<std::string, std::string>, std::map<std::string, std::pair<double, int>>> cells;
  std::vector<std::pair<std::string, std::string>> row_order;
  std::string metric;
  for (const auto& r : results.records()) {
    if (r.value("model", "") != model || r.value("task", "") != o.task ||
        r.value("question_agnostic", false) != o.question_agnostic || !wanted.count(r.value("preset", "")))
      continue;
    const json* v = key == "score" ? &r["score"] : r.contains("metrics") && r["metrics"].contains(key) ? &r["metrics"][key] : nullptr;
    if (!v || !v->is_number()) continue;
    const std::string col = column_of(r);
    if (std::find(columns.begin(), columns.end(), col) == columns.end()) continue;
    const auto row = std::make_pair(r.value("subtask", ""), r["preset"].get<std::string>());
    if (!cells.count(row)) row_order.push_back(row);
    auto& cell = cells[row][col];
    cell.first += v->get<double>();
    ++cell.second;
    if (key == "score") metric = ": " + r.value("metric", "");
  }
  std::stable_sort(row_order.begin(), row_order.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return (a.second == "none") > (b.second == "none");
  });
  fmt::print("\n{} on {} ({}), {}{}\n\n| subtask | preset |", o.task, model,
             o.question_agnostic ? "question-agnostic" : "question-aware", title, metric);
  for (const auto& c : columns) fmt::print(" {} |", c);
  fmt::print("\n|---|---|");
  for (size_t i = 0; i < columns.size(); ++i) fmt::print("---:|");
  fmt::print("\n");
  for (const auto& row : row_order) {
    fmt::print("| {} | {} |", row.first.empty() ? "-" : row.first, row.second);
    for (const auto& c : columns) {
      auto it = cells[row].find(c);
      if (it == cells[row].end()) fmt::print(" |");
      else fmt::print(" {:.4g} |", it->second.first / it->second.second);
    }
    fmt::print("\n");
  }
}

}  // namespace kvsqueeze::eval
