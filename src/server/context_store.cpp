#include "server/context_store.h"

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "cache/atomic_file.h"
#include "cache/cache_file.h"
#include "server/api_request.h"
#include "server/metrics.h"

namespace kvsqueeze {

nlohmann::json SavedContext::describe() const {
  return {{"id", id}, {"object", "context"}, {"created", created}, {"tokens", tokens},
          {"bytes", bytes()}, {"persisted", persisted}, {"kv_cache", kv_cache}};
}

ContextStore::ContextStore(size_t memory_cap, std::string dir, CacheIdentity model, Metrics& metrics)
    : cap_(memory_cap), dir_(std::move(dir)), model_(model), metrics_(metrics) {
  if (!dir_.empty()) {
    std::filesystem::create_directories(dir_);
    recover_directory();
  }
}

void ContextStore::recover_directory() {
  namespace fs = std::filesystem;
  std::error_code ignored;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const fs::path& p = entry.path();
    const std::string name = p.filename().string();
    // AtomicFile's temporaries end in ".tmp-XXXXXX"; a description goes with its cache.
    if (name.find(".tmp-") != std::string::npos) stale.push_back(p);
    else if (p.extension() == ".json" && !fs::exists(fs::path(p).replace_extension(".kvc"))) stale.push_back(p);
  }
  for (const fs::path& p : stale) fs::remove(p, ignored);
}

ContextStore::~ContextStore() { metrics_.kv_released(static_cast<int64_t>(bytes_)); }

std::string ContextStore::new_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex m;
  std::lock_guard lock(m);
  return fmt::format("ctx-{:016x}", rng());
}

std::string ContextStore::without_dir(std::string message) const {
  // Error messages name files; clients are not told where the server keeps them.
  const std::string prefix = (std::filesystem::path(dir_) / "").string();
  for (size_t at; !dir_.empty() && (at = message.find(prefix)) != std::string::npos;) message.erase(at, prefix.size());
  return message;
}

std::string ContextStore::path_of(const std::string& id, const char* ext) const {
  return (std::filesystem::path(dir_) / (id + ext)).string();
}

void ContextStore::evict_beyond(size_t cap) {
  while (bytes_ > cap && !memory_.empty()) {
    auto oldest = last_used_.begin();
    for (auto it = last_used_.begin(); it != last_used_.end(); ++it)
      if (it->second < oldest->second) oldest = it;
    const auto ctx = memory_.find(oldest->first);
    bytes_ -= ctx->second.bytes();
    metrics_.kv_released(static_cast<int64_t>(ctx->second.bytes()));
    memory_.erase(ctx);
    last_used_.erase(oldest);
  }
}

void ContextStore::add(SavedContext c, bool persist) {
  if (c.bytes() > cap_)
    throw ApiError(413, "context_too_large",
                   fmt::format("the compressed context needs {} bytes, more than this server keeps ({} bytes): "
                               "use a smaller budget",
                               c.bytes(), cap_));
  if (persist) {
    if (dir_.empty()) throw ApiError(400, "invalid_request_error", "this server has no --context-dir to persist to", "persist");
    c.persisted = true;
    const nlohmann::json meta = c.describe();
    // Each file is written atomically; the cache goes last, so a context is on disk once
    // its .kvc is (a crash between the two leaves a stray .json, which the next start
    // removes). A context saved again under its id first loses its old pair, so a
    // crash cannot mix the old cache with the new description.
    bool wrote_meta = false;
    try {
      std::filesystem::remove(path_of(c.id, ".kvc"));
      std::filesystem::remove(path_of(c.id, ".json"));
      write_file_atomically(path_of(c.id, ".json"), meta.dump());
      wrote_meta = true;
      save_cache(path_of(c.id, ".kvc"), *c.cache, model_.fingerprint);
    } catch (const std::exception& e) {
      std::error_code ignored;  // only what this call wrote goes, and quietly
      if (wrote_meta) std::filesystem::remove(path_of(c.id, ".json"), ignored);
      throw ApiError(500, "server_error", fmt::format("context '{}' could not be persisted: {}", c.id, without_dir(e.what())));
    }
  }
  std::lock_guard lock(mu_);
  if (const auto old = memory_.find(c.id); old != memory_.end()) {
    bytes_ -= old->second.bytes();
    metrics_.kv_released(static_cast<int64_t>(old->second.bytes()));
    memory_.erase(old);
  }
  bytes_ += c.bytes();
  metrics_.kv_acquired(static_cast<int64_t>(c.bytes()));
  last_used_[c.id] = ++tick_;
  memory_[c.id] = std::move(c);
  evict_beyond(cap_);
}

std::optional<SavedContext> ContextStore::get(const std::string& id) {
  if (!valid_context_id(id)) return std::nullopt;
  {
    std::lock_guard lock(mu_);
    if (const auto it = memory_.find(id); it != memory_.end()) {
      last_used_[id] = ++tick_;
      return it->second;
    }
  }
  if (dir_.empty() || !std::filesystem::exists(path_of(id, ".kvc"))) return std::nullopt;
  SavedContext c;
  try {
    std::ifstream meta_in(path_of(id, ".json"));
    const nlohmann::json meta = nlohmann::json::parse(meta_in);
    c.id = id;
    c.tokens = meta.at("tokens").get<int64_t>();
    c.created = meta.at("created").get<int64_t>();
    c.kv_cache = meta.at("kv_cache");
    c.persisted = true;
    c.cache = std::make_shared<const KvCache>(load_cache(path_of(id, ".kvc"), model_));
  } catch (const std::exception& e) {
    throw ApiError(500, "server_error", fmt::format("saved context '{}' could not be read back: {}", id, without_dir(e.what())));
  }
  add(c, false);  // back in memory (the files are already there)
  return c;
}

bool ContextStore::remove(const std::string& id) {
  if (!valid_context_id(id)) return false;
  bool found = false;
  {
    std::lock_guard lock(mu_);
    if (const auto it = memory_.find(id); it != memory_.end()) {
      bytes_ -= it->second.bytes();
      metrics_.kv_released(static_cast<int64_t>(it->second.bytes()));
      memory_.erase(it);
      last_used_.erase(id);
      found = true;
    }
  }
  if (!dir_.empty()) {
    found = std::filesystem::remove(path_of(id, ".kvc")) || found;
    std::filesystem::remove(path_of(id, ".json"));
  }
  return found;
}

std::vector<nlohmann::json> ContextStore::describe_all() {
  std::vector<nlohmann::json> out;
  std::lock_guard lock(mu_);
  for (const auto& [id, c] : memory_) out.push_back(c.describe());
  if (dir_.empty()) return out;
  std::error_code err;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, err)) {
    const std::filesystem::path& p = entry.path();
    const std::string id = p.stem().string();
    if (p.extension() != ".kvc" || !valid_context_id(id) || memory_.count(id)) continue;
    try {
      std::ifstream in(path_of(id, ".json"));
      nlohmann::json meta = nlohmann::json::parse(in);
      meta["id"] = id;
      if (!meta.contains("bytes")) meta["bytes"] = std::filesystem::file_size(p);  // written before descriptions held it
      out.push_back(std::move(meta));
    } catch (const std::exception&) {
      // A description that cannot be read: the context is not listed (asking for it says why).
    }
  }
  return out;
}

size_t ContextStore::memory_bytes() {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace kvsqueeze
