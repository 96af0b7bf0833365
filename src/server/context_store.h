// Saved contexts: a text read once through a press, its compressed KV cache kept so any
// number of questions can be asked against it (POST /v1/contexts, then "context_id").
// Caches live in memory under a byte cap, least recently used first out; with a
// directory they are also written to disk, and one pushed out of memory (or left by an
// earlier run of the server) is read back when it is asked for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/cache_file.h"
#include "cache/kv_cache.h"

namespace kvsqueeze {

class Metrics;

struct SavedContext {
  std::string id;
  std::shared_ptr<const KvCache> cache;  // shared: a question copies it without holding the store
  int64_t tokens = 0;                    // tokens read into it
  int64_t created = 0;                   // unix seconds
  bool persisted = false;
  nlohmann::json kv_cache;               // the press report made when it was saved
  size_t bytes() const { return cache ? cache->bytes_used() : 0; }
  nlohmann::json describe() const;       // the API's view of it
};

class ContextStore {
 public:
  // memory_cap: bytes of caches kept in memory; dir: "" for memory only. One server
  // per directory: the start clears what an interrupted write left there.
  ContextStore(size_t memory_cap, std::string dir, CacheIdentity model, Metrics& metrics);
  ~ContextStore();

  static std::string new_id();
  // Keeps a context (and writes it when persist is set and there is a directory), then
  // pushes the least recently used others out of memory until the cap holds. Throws
  // ApiError(413) when this context alone is larger than the cap.
  void add(SavedContext c, bool persist);
  // The context, read back from disk if it is only there; nullopt when unknown.
  std::optional<SavedContext> get(const std::string& id);
  // Forgets a context in memory and on disk; false when unknown.
  bool remove(const std::string& id);
  // The API's view of every context: those in memory and those only on disk.
  std::vector<nlohmann::json> describe_all();
  size_t memory_bytes();

 private:
  // At start: what a killed write left in the directory goes (temporaries, and a
  // description whose cache never arrived), so every context there is whole.
  void recover_directory();
  std::string path_of(const std::string& id, const char* ext) const;
  std::string without_dir(std::string message) const;
  void evict_beyond(size_t cap);  // with mu_ held

  size_t cap_;
  std::string dir_;
  CacheIdentity model_;
  Metrics& metrics_;
  std::mutex mu_;
  std::map<std::string, SavedContext> memory_;
  std::map<std::string, uint64_t> last_used_;
  uint64_t tick_ = 0;
  size_t bytes_ = 0;
};

}  // namespace kvsqueeze
