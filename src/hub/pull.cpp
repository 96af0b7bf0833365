#include "hub/pull.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvsqueeze {

namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

struct CurlHandle {
  CurlHandle() : h(curl_easy_init()) {
    if (!h) throw std::runtime_error("libcurl could not start");
  }
  ~CurlHandle() {
    curl_easy_cleanup(h);
    if (headers) curl_slist_free_all(headers);
  }
  CURL* h;
  curl_slist* headers = nullptr;
};

void common_setup(CurlHandle& c, const std::string& url, const PullOptions& o) {
  curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 1L);  // the hub redirects file downloads to its CDN
  curl_easy_setopt(c.h, CURLOPT_USERAGENT, "kvsqueeze");
  curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT, 20L);
  // Give up on a connection that moves less than 1 KB/s for a minute.
  curl_easy_setopt(c.h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(c.h, CURLOPT_LOW_SPEED_TIME, 60L);
  if (!o.token.empty()) c.headers = curl_slist_append(c.headers, ("Authorization: Bearer " + o.token).c_str());
  if (c.headers) curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.headers);
}

std::string host_of(const std::string& url) {
  const size_t start = url.find("://");
  const size_t from = start == std::string::npos ? 0 : start + 3;
  return url.substr(0, url.find('/', from));
}

[[noreturn]] void fail_transfer(CURLcode rc, const std::string& url) {
  throw std::runtime_error(fmt::format("cannot reach {} ({}); check the network or --base-url", host_of(url),
                                       curl_easy_strerror(rc)));
}

void check_status(long status, const std::string& what, const std::string& url) {
  if (status == 401 || status == 403)
    throw std::runtime_error(fmt::format("{}: access refused (HTTP {}); a gated or private repository needs HF_TOKEN", what, status));
  if (status == 404) throw std::runtime_error(fmt::format("{}: not found (HTTP 404 from {})", what, host_of(url)));
  if (status >= 400) throw std::runtime_error(fmt::format("{}: HTTP {} from {}", what, status, host_of(url)));
}

size_t to_string(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// Byte progress on stderr: in place on a terminal, every 10% otherwise.
class ByteProgress {
 public:
  ByteProgress(std::string name, int64_t total, int64_t already, bool enabled)
      : name_(std::move(name)), total_(total), base_(already), enabled_(enabled), tty_(isatty(2) != 0),
        start_(std::chrono::steady_clock::now()) {}
  void update(int64_t done) {
    if (!enabled_ || total_ <= 0) return;
    const int64_t all = base_ + done;
    const int tenth = static_cast<int>(10 * all / total_);
    const auto now = std::chrono::steady_clock::now();
    if (tty_ ? now - last_ < std::chrono::milliseconds(200) && all < total_ : tenth == last_tenth_) return;
    last_ = now;
    last_tenth_ = tenth;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
    const double eta = rate > 0 ? static_cast<double>(total_ - all) / rate : 0;
    fmt::print(stderr, "{}{}: {:.1f}/{:.1f} MiB {:3.0f}% {:.1f} MiB/s ETA {:.0f}s{}", tty_ ? "\r" : "", name_,
               static_cast<double>(all) / (1 << 20), static_cast<double>(total_) / (1 << 20),
               100.0 * static_cast<double>(all) / static_cast<double>(total_), rate / (1 << 20), eta, tty_ ? "" : "\n");
  }
  void finish() {
    if (enabled_ && tty_) fmt::print(stderr, "\n");
  }

 private:
  std::string name_;
  int64_t total_, base_;
  bool enabled_, tty_;
  int last_tenth_ = -1;
  std::chrono::steady_clock::time_point start_, last_{};
};

struct Download {
  std::FILE* out = nullptr;
  ByteProgress* progress = nullptr;
  long status = 0;
};

size_t to_file(char* data, size_t size, size_t n, void* user) {
  auto* d = static_cast<Download*>(user);
  return std::fwrite(data, size, n, d->out) * size;
}

int on_progress(void* user, curl_off_t, curl_off_t now, curl_off_t, curl_off_t) {
  static_cast<Download*>(user)->progress->update(static_cast<int64_t>(now));
  return 0;
}

}  // namespace

std::string file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", path));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

std::vector<HubFile> list_repo_files(const std::string& repo, const PullOptions& o) {
  const std::string url = fmt::format("{}/api/models/{}/tree/{}?recursive=true", o.base_url, repo, o.revision);
  CurlHandle c;
  common_setup(c, url, o);
  std::string body;
  curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, to_string);
  curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(c.h);
  if (rc != CURLE_OK) fail_transfer(rc, url);
  long status = 0;
  curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
  check_status(status, fmt::format("repository '{}' (revision {})", repo, o.revision), url);
  std::vector<HubFile> files;
  try {
    for (const auto& e : nlohmann::json::parse(body)) {
      if (e.value("type", "file") != "file") continue;
      HubFile f;
      f.path = e.at("path").get<std::string>();
      f.size = e.value("size", int64_t{-1});
      if (e.contains("lfs") && e["lfs"].is_object()) {
        f.sha256 = lower(e["lfs"].value("oid", e["lfs"].value("sha256", "")));
        f.size = e["lfs"].value("size", f.size);
      }
      files.push_back(f);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("unexpected file list from {}: {}", host_of(url), e.what()));
  }
  return files;
}

HubFile choose_gguf(const std::vector<HubFile>& files, const std::string& quant) {
  std::vector<HubFile> ggufs;
  for (const HubFile& f : files)
    if (lower(f.path).ends_with(".gguf")) ggufs.push_back(f);
  std::string names;
  for (const HubFile& f : ggufs) names += "\n  " + f.path;
  if (ggufs.empty()) throw std::runtime_error("the repository holds no .gguf file");
  const auto named = [&](const std::string& q) {
    std::vector<HubFile> hits;
    for (const HubFile& f : ggufs)
      if (lower(fs::path(f.path).filename().string()).find(lower(q)) != std::string::npos) hits.push_back(f);
    return hits;
  };
  if (!quant.empty()) {
    const auto hits = named(quant);
    if (hits.size() == 1) return hits[0];
    throw std::runtime_error(fmt::format("{} .gguf file{} match '{}'; the repository has:{}", hits.empty() ? "no" : "several",
                                         hits.empty() ? "" : "s", quant, names));
  }
  if (ggufs.size() == 1) return ggufs[0];
  for (const char* q : {"Q4_K_M", "Q8_0"})
    if (const auto hits = named(q); hits.size() == 1) return hits[0];
  throw std::runtime_error("several .gguf files; name one as REPO:QUANT (e.g. :Q4_K_M). The repository has:" + names);
}

std::string pull_model(const std::string& spec, const PullOptions& o) {
  const size_t colon = spec.find(':');
  const std::string repo = spec.substr(0, colon), quant = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (repo.find('/') == std::string::npos || repo.front() == '/' || repo.back() == '/' || repo.find("..") != std::string::npos)
    throw std::invalid_argument(fmt::format("'{}' is not a repository: expected OWNER/NAME[:QUANT]", spec));
  const HubFile file = choose_gguf(list_repo_files(repo, o), quant);
  fs::create_directories(o.out_dir);
  const std::string name = fs::path(file.path).filename().string();
  const std::string final_path = (fs::path(o.out_dir) / name).string(), part = final_path + ".part";
  const auto verified = [&](const std::string& path) {
    if (file.size >= 0 && static_cast<int64_t>(fs::file_size(path)) != file.size) return false;
    return file.sha256.empty() || file_sha256(path) == file.sha256;
  };
  if (fs::exists(final_path) && verified(final_path)) {
    if (o.progress) fmt::print(stderr, "{} is already here and complete\n", final_path);
    return final_path;
  }
  const std::string url = fmt::format("{}/{}/resolve/{}/{}", o.base_url, repo, o.revision, file.path);
  int64_t have = fs::exists(part) ? static_cast<int64_t>(fs::file_size(part)) : 0;
  if (file.size >= 0 && have > file.size) have = 0;  // a stale .part from another file: start again
  if (file.size < 0 || have < file.size) {
    Download d;
    d.out = std::fopen(part.c_str(), have > 0 ? "ab" : "wb");
    if (!d.out) throw std::runtime_error(fmt::format("cannot write '{}'", part));
    ByteProgress progress(name, file.size, have, o.progress);
    d.progress = &progress;
    CurlHandle c;
    common_setup(c, url, o);
    if (have > 0) curl_easy_setopt(c.h, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(have));
    curl_easy_setopt(c.h, CURLOPT_FAILONERROR, 1L);  // an error page must not land in the file
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, to_file);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &d);
    const CURLcode rc = curl_easy_perform(c.h);
    std::fclose(d.out);
    progress.finish();
    long status = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_RANGE_ERROR || (have > 0 && status == 200)) {
      // The server ignored the range and sent the whole file after the part we had.
      fs::remove(part);
      throw std::runtime_error(fmt::format("{} did not resume the download; run the command again to start over", host_of(url)));
    }
    if (fs::exists(part) && fs::file_size(part) == 0) fs::remove(part);
    if (rc != CURLE_OK) {
      if (status >= 400) check_status(status, fmt::format("'{}'", file.path), url);
      fail_transfer(rc, url);  // the .part stays: the next run resumes it
    }
    check_status(status, fmt::format("'{}'", file.path), url);
  }
  if (file.size >= 0 && static_cast<int64_t>(fs::file_size(part)) != file.size)
    throw std::runtime_error(fmt::format("'{}' is {} bytes, the hub lists {}; run the command again to resume", part,
                                         fs::file_size(part), file.size));
  if (!file.sha256.empty()) {
    const std::string got = file_sha256(part);
    if (got != file.sha256) {
      fs::remove(part);
      throw std::runtime_error(fmt::format("'{}' failed its sha256 check (got {}, the hub lists {}); it was removed",
                                           name, got, file.sha256));
    }
  }
  fs::rename(part, final_path);
  return final_path;
}

}  // namespace kvsqueeze
