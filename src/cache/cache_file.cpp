#include "cache/cache_file.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "cache/atomic_file.h"

namespace kvsqueeze {
namespace {

constexpr uint32_t kMagic = 0x5153564B;  // "KVSQ"
constexpr uint32_t kVersion = 2;  // 2: a checksum at the end

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
    if (n == 0) return;  // a head without rows: its empty buffers may be null
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

constexpr uint64_t kChecksumSeed = 1469598103934665603ull;

uint64_t checksum_more(uint64_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

uint64_t cache_checksum(const uint8_t* data, size_t n) { return checksum_more(kChecksumSeed, data, n); }

void save_cache(const std::string& path, const KvCache& cache, uint64_t fingerprint) {
  AtomicFile f(path);
  uint64_t sum = kChecksumSeed;
  auto put = [&](const void* p, size_t n) {
    sum = checksum_more(sum, static_cast<const uint8_t*>(p), n);
    f.write(p, n);
  };
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
  const uint64_t total = sum;
  f.write(&total, 8);
  f.commit();
}

KvCache load_cache(const std::string& path, const CacheIdentity& model) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}'", path));
  std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto bad = [&](const std::string& why) { return std::runtime_error(fmt::format("'{}' {}", path, why)); };
  if (bytes.size() < 8 || std::memcmp(bytes.data(), &kMagic, 4) != 0) throw bad("is not a kvsqueeze KV cache file");
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 4, 4);
  if (version != kVersion)
    throw bad(fmt::format("has cache format version {}; this build reads version {} (save the context again)", version, kVersion));
  // Everything else is trusted only once the checksum holds.
  if (bytes.size() < 48) throw bad("is truncated (not a complete KV cache file)");
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (cache_checksum(bytes.data(), bytes.size() - 8) != stored)
    throw bad("is corrupt or truncated (its checksum does not match)");
  bytes.resize(bytes.size() - 8);
  Reader r(std::move(bytes), path);
  r.get<uint32_t>();
  r.get<uint32_t>();
  if (r.get<uint64_t>() != model.fingerprint) throw bad("was made by a different model; it cannot be used with this one");
  const uint32_t type_id = r.get<uint32_t>();
  const auto n_layer = r.get<uint32_t>(), n_kv = r.get<uint32_t>(), hd = r.get<uint32_t>(), hdv = r.get<uint32_t>();
  const int32_t next = r.get<int32_t>();
  if (n_layer != static_cast<uint32_t>(model.n_layer) || n_kv != static_cast<uint32_t>(model.n_head_kv) ||
      hd != static_cast<uint32_t>(model.head_dim) || hdv != static_cast<uint32_t>(model.head_dim_v))
    throw bad(fmt::format("holds a cache of {} layers x {} heads of {}/{}, this model's is {} x {} of {}/{}", n_layer, n_kv,
                          hd, hdv, model.n_layer, model.n_head_kv, model.head_dim, model.head_dim_v));
  const auto type = static_cast<DType>(type_id);
  if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0)
    throw bad(fmt::format("has an unknown storage type ({})", type_id));
  if (next < 0) throw bad(fmt::format("has a negative next position ({})", next));
  KvCache cache(model.n_layer, model.n_head_kv, model.head_dim, model.head_dim_v, type);
  const uint64_t row_size = 4 + static_cast<uint64_t>(cache.k_row_bytes() + cache.v_row_bytes());
  for (int l = 0; l < model.n_layer; ++l)
    for (int h = 0; h < model.n_head_kv; ++h) {
      const uint64_t rows = r.get<uint64_t>();
      if (rows > r.remaining() / row_size) throw bad("is truncated (not a complete KV cache file)");
      std::vector<int32_t> pos(rows);
      r.bytes(pos.data(), rows * 4);
      for (size_t i = 0; i < pos.size(); ++i)
        if (pos[i] < 0 || pos[i] >= next || (i > 0 && pos[i] <= pos[i - 1]))
          throw bad(fmt::format("holds position {} in layer {} head {}: positions must ascend from 0 and stay below {}",
                                pos[i], l, h, next));
      std::vector<uint8_t> keys(rows * static_cast<uint64_t>(cache.k_row_bytes())), values(rows * static_cast<uint64_t>(cache.v_row_bytes()));
      r.bytes(keys.data(), keys.size());
      r.bytes(values.data(), values.size());
      cache.adopt_rows(l, h, std::move(keys), std::move(values), std::move(pos));
    }
  if (r.remaining() != 0) throw bad("has trailing bytes: not a valid KV cache file");
  cache.set_next_pos(next);
  return cache;
}

}  // namespace kvsqueeze
