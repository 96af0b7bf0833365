// Saved contexts on disk against kill -9: a process that persists contexts is killed at
// random moments, over and over, on one directory; after each kill a new store on that
// directory must find every context whole (loadable, its description beside it) or not
// at all, and nothing half-written may stay behind.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cli_util.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/model_maker.h"
#include "runtime/generator.h"
#include "server/context_store.h"
#include "server/metrics.h"
#include "test_util.h"

using namespace kvsqueeze;
namespace fs = std::filesystem;

namespace {

// Files of `dir` whose names contain `part`.
int count_files(const std::string& dir, const std::string& part) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().find(part) != std::string::npos;
  return n;
}

}  // namespace

TEST(ContextStoreCrash, KillNineDuringPersistingLeavesEachContextWholeOrAbsent) {
  // A model whose cache of 1500 tokens is ~3 MiB, so each write takes long enough to be hit.
  ModelSpec spec;
  spec.n_layer = 6;
  spec.dim = 256;
  spec.n_head = 4;
  spec.n_head_kv = 2;
  spec.ffn = 256;
  spec.context = 2048;
  const std::string path = test::temp_path("crash-model.gguf");
  make_random_model(spec, path);
  const auto file = std::make_shared<const GgufFile>(path);
  const Model model(file);
  std::vector<int32_t> ids(1500);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(1 + i * 7 % 500);
  Generator g(model, nullptr, DType::F16);
  g.prefill(ids);
  SavedContext saved;
  saved.cache = std::make_shared<const KvCache>(g.cache());
  saved.tokens = static_cast<int64_t>(ids.size());
  saved.kv_cache = {{"preset", "none"}};
  const size_t bytes = saved.bytes();
  ASSERT_GT(bytes, size_t{2} << 20);

  const std::string dir = test::fresh_dir("crash-contexts");
  std::mt19937 rng(7);
  int interrupted = 0;  // kills that left a temporary or a lone description behind
  std::set<std::string> seen;
  for (int round = 0; round < 24; ++round) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // The writer: persists contexts (ids r<round>-<i>, and one id saved again and again)
      // until it is killed.
      Metrics metrics;
      ContextStore store(size_t{1} << 30, dir, model.cache_identity(), metrics);
      for (int i = 0;; ++i) {
        SavedContext c = saved;
        c.id = i % 2 ? std::string("again") : fmt::format("r{}-{}", round, i);
        store.add(c, true);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(2000, 60000)(rng)));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself (status " << status << ")";
    const int temporaries = count_files(dir, ".tmp-");
    int lone_descriptions = 0;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".json" && !fs::exists(fs::path(e.path()).replace_extension(".kvc"))) ++lone_descriptions;
    interrupted += temporaries + lone_descriptions > 0;

    // A restart: what the kill interrupted is gone, every context left is whole.
    Metrics metrics;
    ContextStore store(size_t{1} << 30, dir, model.cache_identity(), metrics);
    EXPECT_EQ(count_files(dir, ".tmp-"), 0) << "round " << round;
    const std::vector<nlohmann::json> listed = store.describe_all();
    EXPECT_EQ(static_cast<int>(listed.size()), count_files(dir, ".kvc")) << "round " << round;
    EXPECT_EQ(count_files(dir, ".json"), count_files(dir, ".kvc")) << "round " << round;
    for (const nlohmann::json& d : listed) {
      const std::string id = d.at("id");
      seen.insert(id);
      EXPECT_EQ(d.at("tokens").get<int64_t>(), saved.tokens) << id;
      EXPECT_EQ(d.at("bytes").get<size_t>(), bytes) << id;
      const std::optional<SavedContext> back = store.get(id);  // throws if the cache is not whole
      ASSERT_TRUE(back.has_value()) << id;
      EXPECT_EQ(back->cache->bytes_used(), bytes) << id;
      EXPECT_EQ(back->cache->next_pos(), saved.cache->next_pos()) << id;
    }
  }
  // The kills did land inside writes, and contexts were completed between them.
  EXPECT_GT(interrupted, 0);
  EXPECT_GT(seen.size(), size_t{4});
}
