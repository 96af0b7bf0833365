// Anonymous memory for data streamed on every step (the weight matrices), aligned to
// 2 MiB and offered to the kernel for transparent huge pages. On the machine of
// docs/BENCHMARKS.md two threads stream ~20% more bytes per second from such memory than
// from the 4 KiB pages of a mapped file: fewer TLB misses, and the hardware prefetchers
// do not stop at every 4 KiB boundary.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvsqueeze {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // Throws std::bad_alloc when the memory cannot be mapped. Where transparent huge pages
  // are off, the buffer is plain anonymous memory and works the same; so is a buffer of
  // less than 2 MiB (page-aligned only).
  explicit HugePageBuffer(size_t bytes);
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& o) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& o) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release();

  void* map_ = nullptr;  // the whole mapping, with the slack that aligns data_
  size_t map_bytes_ = 0;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvsqueeze
