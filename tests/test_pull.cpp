// kvsqueeze pull against a hub-shaped file server started on 127.0.0.1 in the test:
// file choice, download, resume, size and sha256 checks, clear errors.
#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "hub/pull.h"
#include "test_util.h"

using namespace kvsqueeze;
using json = nlohmann::json;

namespace {

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

// Serves /api/models/owner/repo/tree/main and /owner/repo/resolve/main/FILE (with
// ranges), listing each file's size and sha256 as the hub does.
class FakeHub {
 public:
  FakeHub() {
    files_["m-Q4_K_M.gguf"] = random_bytes(300000, 1);
    files_["m-Q8_0.gguf"] = random_bytes(200000, 2);
    files_["README.md"] = "# a model\n";
    http_.Get("/api/models/owner/repo/tree/main", [this](const httplib::Request&, httplib::Response& res) {
      json list = json::array({json{{"type", "directory"}, {"path", "docs"}}});
      for (const auto& [name, bytes] : files_) {
        json e = {{"type", "file"}, {"path", name}, {"size", bytes.size()}};
        if (name.ends_with(".gguf")) {
          const std::string path = test::temp_path("fakehub-" + name);
          std::ofstream(path, std::ios::binary) << bytes;
          e["lfs"] = {{"oid", name == broken_ ? std::string(64, '0') : file_sha256(path)}, {"size", bytes.size()}};
        }
        list.push_back(e);
      }
      res.set_content(list.dump(), "application/json");
    });
    http_.Get(R"(/owner/repo/resolve/main/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      ++downloads_;
      {
        std::lock_guard lock(mu_);
        last_range_ = req.get_header_value("Range");
      }
      const auto it = files_.find(req.matches[1]);
      if (it == files_.end()) {
        res.status = 404;
        res.set_content("no such file", "text/plain");
        return;
      }
      res.set_content(it->second, "application/octet-stream");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
  }
  ~FakeHub() {
    http_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& bytes(const std::string& name) { return files_.at(name); }
  void break_sha(const std::string& name) { broken_ = name; }
  int downloads() const { return downloads_; }
  std::string last_range() {
    std::lock_guard lock(mu_);
    return last_range_;
  }

 private:
  std::map<std::string, std::string> files_;
  std::string broken_;
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> downloads_{0};
  std::mutex mu_;
  std::string last_range_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(Pull, DownloadsTheNamedQuantAndFindsItCompleteTheSecondTime) {
  FakeHub hub;
  const std::string dir = test::fresh_dir("pull-basic");
  const auto r = test::run("pull owner/repo:q8_0 --base-url " + hub.url() + " -o " + dir + " --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, dir + "/m-Q8_0.gguf\n");
  EXPECT_EQ(slurp(dir + "/m-Q8_0.gguf"), hub.bytes("m-Q8_0.gguf"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/m-Q8_0.gguf.part"));
  const int before = hub.downloads();
  const auto again = test::run("pull owner/repo:Q8_0 --base-url " + hub.url() + " -o " + dir);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(hub.downloads(), before) << "a complete, verified file is not fetched again";
  EXPECT_NE(again.err.find("already here"), std::string::npos) << again.err;
  // Without a quant: Q4_K_M, as llama.cpp picks.
  PullOptions o;
  o.base_url = hub.url();
  o.out_dir = dir;
  o.progress = false;
  EXPECT_EQ(pull_model("owner/repo", o), dir + "/m-Q4_K_M.gguf");
  EXPECT_EQ(slurp(dir + "/m-Q4_K_M.gguf"), hub.bytes("m-Q4_K_M.gguf"));
}

TEST(Pull, ResumesAPartialDownloadWithARangeRequest) {
  FakeHub hub;
  const std::string dir = test::fresh_dir("pull-resume");
  const std::string& full = hub.bytes("m-Q4_K_M.gguf");
  std::ofstream(dir + "/m-Q4_K_M.gguf.part", std::ios::binary) << full.substr(0, 123457);
  PullOptions o;
  o.base_url = hub.url();
  o.out_dir = dir;
  o.progress = false;
  EXPECT_EQ(pull_model("owner/repo:Q4_K_M", o), dir + "/m-Q4_K_M.gguf");
  EXPECT_EQ(hub.last_range(), "bytes=123457-");
  EXPECT_EQ(slurp(dir + "/m-Q4_K_M.gguf"), full);
}

TEST(Pull, BadFilesAndBadAddressesGetOneClearError) {
  FakeHub hub;
  hub.break_sha("m-Q8_0.gguf");
  const std::string dir = test::fresh_dir("pull-errors");
  const std::string base = " --base-url " + hub.url() + " -o " + dir + " --no-progress";
  test::expect_clean_failure(test::run("pull owner/repo:Q8_0" + base), "sha256");
  EXPECT_FALSE(std::filesystem::exists(dir + "/m-Q8_0.gguf"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/m-Q8_0.gguf.part")) << "a corrupt download is not kept";
  test::expect_clean_failure(test::run("pull owner/repo:Q6_K" + base), "m-Q8_0.gguf");  // names the choices
  test::expect_clean_failure(test::run("pull owner/repo:gguf" + base), "several");
  test::expect_clean_failure(test::run("pull owner/nothing" + base), "not found");
  test::expect_clean_failure(test::run("pull just-a-name" + base), "OWNER/NAME");
  test::expect_clean_failure(test::run("pull owner/repo --base-url http://127.0.0.1:9 -o " + dir), "cannot reach");
}
