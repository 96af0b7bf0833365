#include "tensor/huge_page_buffer.h"

#include <sys/mman.h>

#include <new>
#include <utility>

namespace kvsqueeze {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // Less than one huge page (a tiny model's weights) gains nothing from one: plain pages,
  // no slack.
  const bool huge = bytes >= kHugePage;
  const size_t len = huge ? (bytes + kHugePage - 1) / kHugePage * kHugePage : bytes;
  map_bytes_ = huge ? len + kHugePage : len;  // room to start on a 2 MiB boundary
  void* m = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  map_ = m;
  data_ = static_cast<uint8_t*>(m);
  if (!huge) return;
  data_ = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(m) + kHugePage - 1) & ~(kHugePage - 1));
  // Advice only: without transparent huge pages (or with them off) it fails and the
  // buffer keeps 4 KiB pages.
  (void)::madvise(data_, len, MADV_HUGEPAGE);
}

HugePageBuffer::~HugePageBuffer() { release(); }

HugePageBuffer::HugePageBuffer(HugePageBuffer&& o) noexcept
    : map_(std::exchange(o.map_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& o) noexcept {
  if (this != &o) {
    release();
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void HugePageBuffer::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  data_ = nullptr;
  map_bytes_ = size_ = 0;
}

}  // namespace kvsqueeze
