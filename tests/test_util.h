// Shared helpers for the test suite: fixture paths, temp files, comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "tensor/cpu_features.h"

namespace kvsqueeze::test {

inline std::string shared_path(const std::string& rel) { return std::string(KVSQUEEZE_SHARED_DIR) + "/" + rel; }

// Skips the current test, with a visible notice, when a fixture under ../shared is absent.
#define REQUIRE_FIXTURE(rel)                                                              \
  do {                                                                                    \
    if (!std::filesystem::exists(::kvsqueeze::test::shared_path(rel)))                    \
      GTEST_SKIP() << "fixture " << ::kvsqueeze::test::shared_path(rel) << " not found"; \
  } while (0)

inline std::string temp_path(const std::string& name) {
  std::filesystem::create_directories(KVSQUEEZE_TEST_TMP);
  return std::string(KVSQUEEZE_TEST_TMP) + "/" + name;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline std::vector<float> read_f32(const std::string& path) {
  auto b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// n standard-normal floats, deterministic per seed.
inline std::vector<float> gaussian_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ||a - b|| / ||b|| over n values.
inline double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Two caches hold the same rows: positions, and key and value bytes of every head.
inline void expect_same_cache_rows(const KvCache& a, const KvCache& b, const std::string& what) {
  ASSERT_EQ(a.next_pos(), b.next_pos()) << what;
  for (int l = 0; l < a.n_layer(); ++l)
    for (int h = 0; h < a.n_head_kv(); ++h) {
      const HeadRows& x = a.head(l, h);
      const HeadRows& y = b.head(l, h);
      ASSERT_EQ(x.pos, y.pos) << what << " layer " << l << " head " << h;
      ASSERT_EQ(0, std::memcmp(x.k.data(), y.k.data(), static_cast<size_t>(x.size() * a.k_row_bytes())))
          << what << " layer " << l << " head " << h;
      ASSERT_EQ(0, std::memcmp(x.v.data(), y.v.data(), static_cast<size_t>(x.size() * a.v_row_bytes())))
          << what << " layer " << l << " head " << h;
    }
}

}  // namespace kvsqueeze::test
