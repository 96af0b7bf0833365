#include "tensor/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

namespace kvsqueeze {
namespace {

struct Entry {
  uint32_t id;
  DTypeTraits t;
};

// Block sizes follow the ggml block layouts (see quant_blocks.h).
constexpr std::array<Entry, 15> kTypes{{
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 18, true}},
    {3, {"Q4_1", 32, 20, true}},
    {6, {"Q5_0", 32, 22, true}},
    {7, {"Q5_1", 32, 24, true}},
    {8, {"Q8_0", 32, 34, true}},
    {9, {"Q8_1", 32, 36, false}},
    {10, {"Q2_K", 256, 84, false}},
    {11, {"Q3_K", 256, 110, false}},
    {12, {"Q4_K", 256, 144, true}},
    {13, {"Q5_K", 256, 176, true}},
    {14, {"Q6_K", 256, 210, true}},
    {15, {"Q8_K", 256, 292, false}},
    {30, {"BF16", 1, 2, true}},
}};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t raw_id) {
  for (const auto& e : kTypes)
    if (e.id == raw_id) return e.t;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  // Indexed by id: this sits on hot paths (row strides).
  static const auto by_id = [] {
    std::array<const DTypeTraits*, 31> a{};
    for (const auto& e : kTypes) a[e.id] = &e.t;
    return a;
  }();
  const auto id = static_cast<uint32_t>(t);
  if (id >= by_id.size() || !by_id[id]) throw std::logic_error("traits: unknown dtype");
  return *by_id[id];
}

std::string_view dtype_name(DType t) { return traits(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string upper(name);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  for (const auto& e : kTypes)
    if (upper == e.t.name) return static_cast<DType>(e.id);
  return std::nullopt;
}

int64_t row_bytes(DType t, int64_t n) {
  const auto& tr = traits(t);
  return n / tr.block_elems * tr.block_bytes;
}

}  // namespace kvsqueeze
