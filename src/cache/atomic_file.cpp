#include "cache/atomic_file.h"

#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace kvsqueeze {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  std::vector<char> name(path_.begin(), path_.end());
  for (char c : std::string(".tmp-XXXXXX")) name.push_back(c);
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());  // O_CREAT | O_EXCL: never an existing file or link
  if (fd < 0) throw std::runtime_error(fmt::format("cannot create a file beside '{}'", path_));
  tmp_ = name.data();
  f_ = ::fdopen(fd, "wb");
  if (!f_) {
    ::close(fd);
    ::unlink(tmp_.c_str());
    throw std::runtime_error(fmt::format("cannot write beside '{}'", path_));
  }
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  if (ok_ && n > 0) ok_ = std::fwrite(data, 1, n, f_) == n;
}

void AtomicFile::commit() {
  ok_ = ok_ && std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  ok_ = (std::fclose(f_) == 0) && ok_;
  f_ = nullptr;
  if (!ok_ || std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw std::runtime_error(fmt::format("writing '{}' failed (disk full?)", path_));
  tmp_.clear();
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace kvsqueeze
