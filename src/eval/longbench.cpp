#include "eval/longbench.h"

#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvsqueeze::eval {

const std::vector<LongBenchDataset>& longbench_datasets() {
  // The benchmark's own prompts, verbatim: any change to them changes the scores.
  static const std::vector<LongBenchDataset> sets{
      {"narrativeqa",
       "You are given a story, which can be either a novel or a movie script, and a question. Answer the question "
       "asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: "
       "{context}\n\nNow, answer the question based on the story asconcisely as you can, using a single phrase if "
       "possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:",
       AnswerMetric::QaF1, 128, false},
      {"qasper",
       "You are given a scientific article and a question. Answer the question as concisely as you can, using a "
       "single phrase or sentence if possible. If the question cannot be answered based on the information in the "
       "article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or "
       "\"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the "
       "above article as concisely as you can, using a single phrase or sentence if possible. If the question "
       "cannot be answered based on the information in the article, write \"unanswerable\". If the question is a "
       "yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nQuestion: "
       "{input}\n\nAnswer:",
       AnswerMetric::QaF1, 128, false},
      {"multifieldqa_en",
       "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the "
       "above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
       AnswerMetric::QaF1, 64, false},
      {"multifieldqa_zh",
       "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。"
       "\n\n问题：{input}\n回答：",
       AnswerMetric::QaF1Zh, 64, false},
      {"hotpotqa",
       "Answer the question based on the given passages. Only give me the answer and do not output any other "
       "words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. "
       "Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
       AnswerMetric::QaF1, 32, false},
      {"2wikimqa",
       "Answer the question based on the given passages. Only give me the answer and do not output any other "
       "words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. "
       "Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
       AnswerMetric::QaF1, 32, false},
      {"musique",
       "Answer the question based on the given passages. Only give me the answer and do not output any other "
       "words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. "
       "Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
       AnswerMetric::QaF1, 32, false},
      {"dureader", "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答：",
       AnswerMetric::RougeLZh, 128, false},
      {"gov_report",
       "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n"
       "{context}\n\nNow, write a one-page summary of the report.\n\nSummary:",
       AnswerMetric::RougeL, 512, false},
      {"qmsum",
       "You are given a meeting transcript and a query containing a question or instruction. Answer the query in "
       "one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting "
       "transcript in one or more sentences.\n\nQuery: {input}\nAnswer:",
       AnswerMetric::RougeL, 512, false},
      {"multi_news",
       "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, "
       "write a one-page summary of all the news.\n\nSummary:",
       AnswerMetric::RougeL, 512, false},
      {"vcsum", "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结：",
       AnswerMetric::RougeLZh, 512, false},
      {"trec",
       "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
       AnswerMetric::Classification, 64, true},
      {"triviaqa",
       "Answer the question based on the given passage. Only give me the answer and do not output any other words. "
       "The following are some examples.\n\n{context}\n\n{input}",
       AnswerMetric::QaF1, 32, true},
      {"samsum",
       "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
       AnswerMetric::RougeL, 128, true},
      {"lsht", "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}", AnswerMetric::Classification, 64, true},
      {"passage_count",
       "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully "
       "read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In "
       "other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final "
       "count of unique paragraphs after removing duplicates. The output format should only contain the number, "
       "such as 1, 2, 3, and so on.\n\nThe final answer is: ",
       AnswerMetric::Count, 32, false},
      {"passage_retrieval_en",
       "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the "
       "abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the "
       "paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", "
       "etc.\n\nThe answer is: ",
       AnswerMetric::Retrieval, 32, false},
      {"passage_retrieval_zh",
       "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n"
       "请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是：",
       AnswerMetric::RetrievalZh, 32, false},
      {"lcc", "Please complete the code given below. \n{context}Next line of code:\n", AnswerMetric::CodeSimilarity, 64,
       false},
      {"repobench-p", "Please complete the code given below. \n{context}{input}Next line of code:\n",
       AnswerMetric::CodeSimilarity, 64, false},
  };
  return sets;
}

const LongBenchDataset& longbench_dataset(const std::string& name) {
  std::string base = name;
  if (base.size() > 2 && base.ends_with("_e")) base.resize(base.size() - 2);
  std::vector<std::string> known;
  for (const auto& d : longbench_datasets()) {
    if (d.name == base) return d;
    known.push_back(d.name);
  }
  throw std::invalid_argument(fmt::format("unknown LongBench dataset '{}' (known: {})", name, fmt::join(known, ", ")));
}

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

std::string string_field(const nlohmann::json& j, const char* name, const std::string& where) {
  if (!j.contains(name)) throw std::invalid_argument(fmt::format("{}: missing field '{}'", where, name));
  if (!j[name].is_string()) throw std::invalid_argument(fmt::format("{}: field '{}' must be a string", where, name));
  return j[name].get<std::string>();
}

std::vector<std::string> string_list(const nlohmann::json& j, const char* name, const std::string& where) {
  if (!j.contains(name)) throw std::invalid_argument(fmt::format("{}: missing field '{}'", where, name));
  const auto& v = j[name];
  if (!v.is_array()) throw std::invalid_argument(fmt::format("{}: field '{}' must be a list of strings", where, name));
  std::vector<std::string> out;
  for (const auto& x : v) {
    if (!x.is_string()) throw std::invalid_argument(fmt::format("{}: field '{}' must be a list of strings", where, name));
    out.push_back(x.get<std::string>());
  }
  return out;
}

}  // namespace

std::vector<QaSample> longbench_samples(const std::vector<std::string>& files, int limit) {
  if (files.empty()) throw std::invalid_argument("longbench needs JSONL files (--data FILE ...)");
  std::vector<QaSample> out;
  for (const auto& path : files) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", path));
    int line_no = 0, taken = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (limit > 0 && taken >= limit) break;
      const std::string where = fmt::format("{}:{}", path, line_no);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error&) {
        throw std::invalid_argument(fmt::format("{}: not valid JSON", where));
      }
      if (!j.is_object()) throw std::invalid_argument(fmt::format("{}: expected a JSON object", where));
      const LongBenchDataset* found = nullptr;
      try {
        found = &longbench_dataset(string_field(j, "dataset", where));
      } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        throw std::invalid_argument(msg.rfind(where, 0) == 0 ? msg : where + ": " + msg);
      }
      const LongBenchDataset& d = *found;
      QaSample s;
      s.subtask = string_field(j, "dataset", where);
      const std::string context = string_field(j, "context", where);
      const std::string input = string_field(j, "input", where);
      s.answers = string_list(j, "answers", where);
      if (s.answers.empty()) throw std::invalid_argument(fmt::format("{}: field 'answers' is empty", where));
      if (!j.contains("all_classes")) throw std::invalid_argument(fmt::format("{}: missing field 'all_classes'", where));
      if (!j["all_classes"].is_null()) s.all_classes = string_list(j, "all_classes", where);
      if (d.metric == AnswerMetric::Classification && s.all_classes.empty())
        throw std::invalid_argument(fmt::format("{}: dataset '{}' needs 'all_classes'", where, d.name));
      // The prompt up to the context is what question-agnostic compression sees alone.
      const size_t cut = d.prompt.find("{context}");
      const std::string head = d.prompt.substr(0, cut + 9), tail = d.prompt.substr(cut + 9);
      s.context = replace_all(replace_all(head, "{input}", input), "{context}", context);
      s.question = replace_all(tail, "{input}", input);
      s.metric = d.metric;
      s.max_new_tokens = d.max_new_tokens;
      s.first_line_only = d.first_line_only;
      s.id = j.contains("_id") && j["_id"].is_string() ? j["_id"].get<std::string>() : fmt::format("{}-{}", s.subtask, line_no);
      if (j.contains("length") && j["length"].is_number()) s.tags["length"] = j["length"];
      out.push_back(std::move(s));
      ++taken;
    }
  }
  if (out.empty()) throw std::invalid_argument("the LongBench files hold no samples");
  return out;
}

}  // namespace kvsqueeze::eval
