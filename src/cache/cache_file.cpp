#include "cache/cache_file.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace kvsqueeze {
namespace {

constexpr uint32_t kMagic = 0x5153564B;  // "KVSQ"
constexpr uint32_t kVersion = 1;

class Reader {
 public:
  Reader(std::vector<uint8_t> b, std::string path) : b_(std::move(b)), path_(std::move(path)) {}
  template <typename T>
  T get() {
    T v;
    bytes(&v, sizeof v);
    return v;
  }
  void bytes(void* out, size_t n) {
    if (n > b_.size() - pos_) throw std::runtime_error(fmt::format("'{}' is truncated (not a complete KV cache file)", path_));
    std::memcpy(out, b_.data() + pos_, n);
    pos_ += n;
  }
  size_t remaining() const { return b_.size() - pos_; }

 private:
  std::vector<uint8_t> b_;
  std::string path_;
  size_t pos_ = 0;
};

}  // namespace

void save_cache(const std::string& path, const KvCache& cache, uint64_t fingerprint) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(fmt::format("cannot create '{}'", tmp));
  bool ok = true;
  auto put = [&](const void* p, size_t n) { ok = ok && (n == 0 || std::fwrite(p, 1, n, f) == n); };
  auto put32 = [&](uint32_t v) { put(&v, 4); };
  put32(kMagic);
  put32(kVersion);
  put(&fingerprint, 8);
  put32(static_cast<uint32_t>(cache.type()));
  put32(static_cast<uint32_t>(cache.n_layer()));
  put32(static_cast<uint32_t>(cache.n_head_kv()));
  put32(static_cast<uint32_t>(cache.head_dim()));
  put32(static_cast<uint32_t>(cache.head_dim_v()));
  const int32_t next = cache.next_pos();
  put(&next, 4);
  for (int l = 0; l < cache.n_layer(); ++l)
    for (int h = 0; h < cache.n_head_kv(); ++h) {
      const HeadRows& r = cache.head(l, h);
      const uint64_t rows = static_cast<uint64_t>(r.size());
      put(&rows, 8);
      put(r.pos.data(), r.pos.size() * sizeof(int32_t));
      put(r.k.data(), r.k.size());
      put(r.v.data(), r.v.size());
    }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("writing '{}' failed (disk full?)", path));
  }
}

KvCache load_cache(const std::string& path, uint64_t fingerprint) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}'", path));
  Reader r({std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()}, path);
  if (r.remaining() < 8 || r.get<uint32_t>() != kMagic) throw std::runtime_error(fmt::format("'{}' is not a kvsqueeze KV cache file", path));
  const uint32_t version = r.get<uint32_t>();
  if (version != kVersion)
    throw std::runtime_error(fmt::format("'{}' has cache format version {}; this build reads version {}", path, version, kVersion));
  if (r.get<uint64_t>() != fingerprint)
    throw std::runtime_error(fmt::format("'{}' was made by a different model; it cannot be used with this one", path));
  const auto type = static_cast<DType>(r.get<uint32_t>());
  const auto n_layer = static_cast<int>(r.get<uint32_t>()), n_kv = static_cast<int>(r.get<uint32_t>());
  const auto hd = static_cast<int>(r.get<uint32_t>()), hdv = static_cast<int>(r.get<uint32_t>());
  const int32_t next = r.get<int32_t>();
  if (!dtype_traits(static_cast<uint32_t>(type)))
    throw std::runtime_error(fmt::format("'{}' has an unknown storage type", path));
  KvCache cache(n_layer, n_kv, hd, hdv, type);
  std::vector<float> k(static_cast<size_t>(hd)), v(static_cast<size_t>(hdv));
  std::vector<uint8_t> kb(static_cast<size_t>(cache.k_row_bytes())), vb(static_cast<size_t>(cache.v_row_bytes()));
  for (int l = 0; l < n_layer; ++l)
    for (int h = 0; h < n_kv; ++h) {
      const uint64_t rows = r.get<uint64_t>();
      const uint64_t row_size = 4 + kb.size() + vb.size();
      if (rows > r.remaining() / row_size) throw std::runtime_error(fmt::format("'{}' is truncated (not a complete KV cache file)", path));
      std::vector<int32_t> pos(rows);
      r.bytes(pos.data(), rows * 4);
      std::vector<uint8_t> keys(rows * kb.size()), values(rows * vb.size());
      r.bytes(keys.data(), keys.size());
      r.bytes(values.data(), values.size());
      cache.adopt_rows(l, h, std::move(keys), std::move(values), std::move(pos));
    }
  if (r.remaining() != 0) throw std::runtime_error(fmt::format("'{}' has trailing bytes: not a valid KV cache file", path));
  cache.set_next_pos(next);
  return cache;
}

}  // namespace kvsqueeze
