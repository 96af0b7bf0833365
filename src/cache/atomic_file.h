// Writing a file so that it is either complete or absent, whatever happens during the
// write (a crash, kill -9, a full disk): the bytes go to a new temporary file beside it
// (created exclusively, so a planted symlink is never followed and concurrent writers
// never share one), are flushed to disk, and only then renamed over the target.
#pragma once

#include <cstdio>
#include <string>

namespace kvsqueeze {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws std::runtime_error when it cannot create the temporary
  ~AtomicFile();                          // without commit(): the temporary is removed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends bytes (failures are remembered and reported by commit()).
  void write(const void* data, size_t n);
  // Flushes, syncs and renames into place; throws std::runtime_error naming the file when
  // anything failed (nothing is left behind then).
  void commit();

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  bool ok_ = true;
};

// The whole of `bytes` written atomically to `path`.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace kvsqueeze
